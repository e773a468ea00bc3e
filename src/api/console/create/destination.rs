//! The new destination form: every destination kind the replicator supports, with its inputs;
//! created through `POST /v1/destinations`' handler.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde_json::{Map, Value, json};

use super::{blank, form_page, refused};
use crate::api::console::ConsoleState;
use crate::api::console::error::ConsoleError;
use crate::api::console::forms::{Problems, input};
use crate::api::console::layout::csrf_field;
use crate::api::console::session::{Form, Posted, Session};
use crate::api::extract::JsonBody;
use crate::api::routes::destinations;
use crate::config::sections::DESTINATION_KINDS;

/// One input of a destination kind: (field below `config.{kind}`, label, input type).
type KindField = (&'static str, &'static str, &'static str);

/// The fields of each destination kind.
const KIND_FIELDS: [(&str, &[KindField]); 5] = [
    ("memory", &[]),
    ("discard", &[]),
    (
        "sqlite",
        &[("path", "File (relative to the tenant's directory)", "text")],
    ),
    (
        "postgres",
        &[
            ("host", "Host", "text"),
            ("port", "Port", "number"),
            ("name", "Database", "text"),
            ("username", "User", "text"),
            ("password", "Password", "password"),
            (
                "schema",
                "Schema for every table (empty: the source's schemas)",
                "text",
            ),
        ],
    ),
    (
        "jsonl",
        &[
            ("path", "File (relative to the tenant's directory)", "text"),
            ("max_file_bytes", "Rotate at bytes", "number"),
        ],
    ),
];

/// The form's inputs of `kind`; `None` for a kind this form has no inputs for (a kind added to
/// the replicator later), whose settings are then typed as a JSON object.
fn kind_fields(kind: &str) -> Option<&'static [KindField]> {
    KIND_FIELDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, fields)| *fields)
}

fn destination_field_names() -> Vec<String> {
    let mut names = vec!["name".to_owned(), "kind".to_owned()];
    for kind in DESTINATION_KINDS {
        names.push(format!("config.{kind}"));
        let fields = kind_fields(kind).unwrap_or(&[]);
        names.extend(fields.iter().map(|(f, _, _)| format!("config.{kind}.{f}")));
    }
    names
}

fn destination_form(session: &Session, form: &Form, problems: &Problems) -> Response {
    form_page(
        session,
        "New destination",
        problems,
        html! {
            form.panel method="post" action="/destinations/new" {
                (csrf_field(session))
                (input(form, problems, "name", "Name", "text", "mirror"))
                label for="kind" { "Kind" }
                select #kind name="kind" data-kind-switch="" {
                    @for kind in DESTINATION_KINDS {
                        option value=(kind) selected[form.get("kind") == *kind] { (kind) }
                    }
                }
                @for kind in DESTINATION_KINDS {
                    fieldset data-kind=(kind) {
                        legend { (kind) }
                        @for message in problems.for_field(&format!("config.{kind}")) {
                            div.field-error { (message) }
                        }
                        @match kind_fields(kind) {
                            Some([]) => { p.muted.small { "No settings." } }
                            Some(fields) => {
                                @for (field, label, input_type) in fields {
                                    (input(form, problems, &format!("config.{kind}.{field}"), label, input_type, ""))
                                }
                            }
                            None => {
                                label for={ "config." (kind) ".json" } { "Settings (JSON object)" }
                                textarea id={ "config." (kind) ".json" } name={ "config." (kind) ".json" }
                                    rows="6" { (form.get(&format!("config.{kind}.json"))) }
                            }
                        }
                    }
                }
                p { button.primary type="submit" { "Create destination" } }
            }
        },
    )
}

/// The destination config of a submitted form: `{kind: {field: value}}` with the fields that
/// were filled in (numbers as numbers when they parse).
fn destination_config(form: &Form) -> Value {
    let kind = form.get("kind");
    let Some(fields) = kind_fields(kind) else {
        // The API names what is wrong with it (`config`: …).
        let typed = form.get(&format!("config.{kind}.json"));
        let settings = match typed {
            "" => json!({}),
            text => serde_json::from_str(text).unwrap_or_else(|_| json!(text)),
        };
        return json!({ kind: settings });
    };
    let mut settings = Map::new();
    for (field, _, input_type) in fields {
        let value = form.get(&format!("config.{kind}.{field}"));
        if value.is_empty() {
            continue;
        }
        let json = match (*input_type, value.parse::<u64>()) {
            ("number", Ok(n)) => json!(n),
            _ => json!(value),
        };
        settings.insert((*field).to_owned(), json);
    }
    json!({ kind: settings })
}

/// `GET /destinations/new`
pub async fn new_destination(session: Session) -> Result<Response, ConsoleError> {
    blank(session, destination_form)
}

/// `POST /destinations/new`
pub async fn create_destination(
    State(state): State<ConsoleState>,
    posted: Posted,
) -> Result<Response, ConsoleError> {
    let tenant = posted.session.tenant()?;
    let form = &posted.form;
    let body = crate::api::domain::destination::CreateDestination {
        name: form.get("name").to_owned(),
        config: destination_config(form),
    };
    let app = State(state.app.clone());
    match destinations::create_destination(app, tenant, JsonBody(body)).await {
        Ok(_) => Ok(Redirect::to("/pipelines/new").into_response()),
        Err(error) => {
            let names = destination_field_names();
            let fields: Vec<&str> = names.iter().map(String::as_str).collect();
            let problems = refused(error, &fields)?;
            Ok(destination_form(&posted.session, form, &problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Form {
        Form(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn a_destination_form_becomes_the_replicators_destination_section() {
        let sqlite = form(&[("kind", "sqlite"), ("config.sqlite.path", "shop.db")]);
        assert_eq!(
            destination_config(&sqlite),
            json!({"sqlite": {"path": "shop.db"}})
        );
        let postgres = form(&[
            ("kind", "postgres"),
            ("config.postgres.host", "m"),
            ("config.postgres.port", "6432"),
            ("config.postgres.schema", ""),
        ]);
        assert_eq!(
            destination_config(&postgres),
            json!({"postgres": {"host": "m", "port": 6432}})
        );
        assert_eq!(
            destination_config(&form(&[("kind", "memory")])),
            json!({"memory": {}})
        );
        // A kind the form has no inputs for takes its settings as JSON.
        let other = form(&[("kind", "future"), ("config.future.json", "{\"a\": 1}")]);
        assert_eq!(destination_config(&other), json!({"future": {"a": 1}}));
        // Every kind the replicator knows, and nothing else, is offered.
        for kind in DESTINATION_KINDS {
            assert!(
                destination_field_names().contains(&format!("config.{kind}")),
                "{kind}"
            );
        }
    }
}
