//! The create forms: sources, destinations (every kind the replicator supports) and pipelines
//! (on an existing publication of the source, or on a new one made from a list of its tables).
//! Each submit is handed to the API's own create handler; when that refuses, the form comes
//! back with what was typed and the API's message next to the field it names
//! ([`super::forms`]).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ConsoleState;
use super::error::ConsoleError;
use super::forms::{Problems, input, select};
use super::layout::{self, csrf_field};
use super::pipelines::{destination_kind, names};
use super::session::{Form, Posted, Session};
use crate::api::db::configured::ConfigTable;
use crate::api::domain::pipeline::CreatePipeline;
use crate::api::domain::source::{
    CreatePublication, CreateSource, SourceConfigIn, TableName, TlsSettings,
};
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, PathParam, TenantId};
use crate::api::routes::{destinations, pipelines, publications, sources};
use crate::api::source_db::publications as source_publications;
use crate::config::sections::DESTINATION_KINDS;

const TLS_MODES: [&str; 5] = ["disable", "prefer", "require", "verify-ca", "verify-full"];

fn options(values: &[&str]) -> Vec<(String, String)> {
    values
        .iter()
        .map(|v| ((*v).to_owned(), (*v).to_owned()))
        .collect()
}

/// A form page, with status 422 when it comes back with problems.
fn form_page(session: &Session, title: &str, problems: &Problems, body: Markup) -> Response {
    let status = if problems.messages.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (
        status,
        layout::page(
            title,
            session,
            html! { h1 { (title) } (problems.general()) (body) },
        ),
    )
        .into_response()
}

/// What the API says about a refused create, placed among `fields`; other failures pass.
fn refused(error: ApiError, fields: &[&str]) -> Result<Problems, ConsoleError> {
    match error {
        ApiError::Invalid(message) | ApiError::Conflict(message) | ApiError::Source(message) => {
            Ok(Problems::place(&message, fields))
        }
        ApiError::NotFound(what) => Ok(Problems::place(&format!("{what} not found"), fields)),
        other => Err(other.into()),
    }
}

// ---- sources ----

const SOURCE_FIELDS: [&str; 7] = [
    "name",
    "config.host",
    "config.port",
    "config.name",
    "config.username",
    "config.password",
    "config.tls.mode",
];

fn source_form(session: &Session, form: &Form, problems: &Problems) -> Response {
    form_page(
        session,
        "New source",
        problems,
        html! {
            form.panel method="post" action="/sources/new" {
                (csrf_field(session))
                (input(form, problems, "name", "Name", "text", "shop"))
                (input(form, problems, "config.host", "Host", "text", "db.example.com"))
                (input(form, problems, "config.port", "Port", "number", "5432"))
                (input(form, problems, "config.name", "Database", "text", "postgres"))
                (input(form, problems, "config.username", "User", "text", "replicator"))
                (input(form, problems, "config.password", "Password", "password", ""))
                (select(form, problems, "config.tls.mode", "TLS", &options(&TLS_MODES), "prefer"))
                p { button.primary type="submit" { "Create source" } }
            }
        },
    )
}

/// `GET /sources/new`
pub async fn new_source(session: Session) -> Result<Response, ConsoleError> {
    session.tenant()?;
    Ok(source_form(
        &session,
        &Form::default(),
        &Problems::default(),
    ))
}

/// `POST /sources/new`
pub async fn create_source(
    State(state): State<ConsoleState>,
    posted: Posted,
) -> Result<Response, ConsoleError> {
    let tenant = posted.session.tenant()?;
    let form = &posted.form;
    let port = match form.get("config.port") {
        "" => 5432,
        text => match text.parse::<u16>() {
            Ok(port) => port,
            Err(_) => {
                let problems = Problems::field("config.port", "must be between 1 and 65535");
                return Ok(source_form(&posted.session, form, &problems));
            }
        },
    };
    let tls_mode = serde_json::from_value(json!(form.get("config.tls.mode"))).unwrap_or_default();
    let body = CreateSource {
        name: form.get("name").to_owned(),
        config: SourceConfigIn {
            host: form.get("config.host").to_owned(),
            port,
            name: form.get("config.name").to_owned(),
            username: form.get("config.username").to_owned(),
            password: Some(form.get("config.password").to_owned()).filter(|p| !p.is_empty()),
            tls: Some(TlsSettings {
                mode: tls_mode,
                ca_file: None,
            }),
        },
    };
    let app = State(state.app.clone());
    match sources::create_source(app, tenant, JsonBody(body)).await {
        Ok((_, created)) => {
            Ok(Redirect::to(&format!("/pipelines/new?source_id={}", created.0.id)).into_response())
        }
        Err(error) => {
            let problems = refused(error, &SOURCE_FIELDS)?;
            Ok(source_form(&posted.session, form, &problems))
        }
    }
}

// ---- destinations ----

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
    session.tenant()?;
    Ok(destination_form(
        &session,
        &Form::default(),
        &Problems::default(),
    ))
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

// ---- pipelines ----

const PIPELINE_FIELDS: [&str; 5] = [
    "source_id",
    "destination_id",
    "publication_name",
    "new_publication",
    "tables",
];

/// `?source_id=`
#[derive(Debug, Deserialize)]
pub struct SourceChoice {
    #[serde(default)]
    source_id: Option<i64>,
}

async fn pipeline_form(
    state: &ConsoleState,
    session: &Session,
    tenant: &TenantId,
    source_id: Option<i64>,
    form: &Form,
    problems: &Problems,
) -> Result<Response, ConsoleError> {
    let sources = names(state, ConfigTable::Sources, tenant).await?;
    let destinations = names(state, ConfigTable::Destinations, tenant).await?;
    let source_id = source_id.or_else(|| sources.keys().next().copied());
    // The chosen source's publications and tables, or why they cannot be read.
    let on_source = match source_id {
        Some(id) if sources.contains_key(&id) => {
            let pool = sources::connect_source(&state.app, tenant, id).await;
            match pool {
                Ok(pool) => {
                    let found = async {
                        Ok::<_, ApiError>((
                            source_publications::list(&pool).await?,
                            source_publications::tables(&pool).await?,
                        ))
                    }
                    .await;
                    pool.close().await;
                    Some(found)
                }
                Err(error) => Some(Err(error)),
            }
        }
        _ => None,
    };
    let source_options: Vec<(String, String)> = sources
        .values()
        .map(|s| (s.id.to_string(), s.name.clone()))
        .collect();
    let destination_options: Vec<(String, String)> = destinations
        .values()
        .map(|d| {
            (
                d.id.to_string(),
                format!("{} ({})", d.name, destination_kind(d)),
            )
        })
        .collect();
    let chosen = source_id.map(|id| id.to_string()).unwrap_or_default();
    let picked: Vec<&str> = form.all("tables").collect();
    Ok(form_page(
        session,
        "New pipeline",
        problems,
        html! {
            @if sources.is_empty() || destinations.is_empty() {
                p { "A pipeline needs a source and a destination: "
                    a href="/sources/new" { "create a source" } " · "
                    a href="/destinations/new" { "create a destination" } }
            }
            form.panel method="get" action="/pipelines/new" {
                label for="pick-source" { "Source" }
                select id="pick-source" name="source_id" {
                    @for (value, text) in &source_options {
                        option value=(value) selected[*value == chosen] { (text) }
                    }
                }
                " " button type="submit" { "Show its publications" }
            }
            @if let Some(id) = source_id {
                form.panel method="post" action="/pipelines/new" {
                    (csrf_field(session))
                    input type="hidden" name="source_id" value=(id);
                    (select(form, problems, "destination_id", "Destination", &destination_options, ""))
                    @match &on_source {
                        Some(Err(error)) => { p.error { "The source cannot be read: " (error.to_string()) } }
                        Some(Ok((pubs, tables))) => {
                            label for="publication_name" { "Publication" }
                            select id="publication_name" name="publication_name" {
                                option value="" { "— create a new one below —" }
                                @for p in pubs {
                                    option value=(p.name) selected[form.get("publication_name") == p.name] {
                                        (p.name) " (" (p.tables.len()) " tables)"
                                    }
                                }
                            }
                            @for message in problems.for_field("publication_name") { div.field-error { (message) } }
                            fieldset {
                                legend { "…or a new publication of these tables" }
                                (input(form, problems, "new_publication", "New publication name", "text", "orders_pub"))
                                div.checks {
                                    @for t in tables {
                                        label {
                                            input type="checkbox" name="tables" value=(t.id)
                                                checked[picked.contains(&t.id.to_string().as_str())];
                                            " " (t.schema) "." (t.name)
                                        }
                                    }
                                }
                                @for message in problems.for_field("tables") { div.field-error { (message) } }
                            }
                        }
                        None => {}
                    }
                    p { button.primary type="submit" { "Create pipeline" } }
                }
            }
        },
    ))
}

/// `GET /pipelines/new`
pub async fn new_pipeline(
    State(state): State<ConsoleState>,
    session: Session,
    Query(choice): Query<SourceChoice>,
) -> Result<Response, ConsoleError> {
    let tenant = session.tenant()?;
    pipeline_form(
        &state,
        &session,
        &tenant,
        choice.source_id,
        &Form::default(),
        &Problems::default(),
    )
    .await
}

/// `POST /pipelines/new`: creates the new publication first when one is asked for.
pub async fn create_pipeline(
    State(state): State<ConsoleState>,
    posted: Posted,
) -> Result<Response, ConsoleError> {
    let tenant = posted.session.tenant()?;
    let form = &posted.form;
    let again = |problems: Problems| {
        let (state, session, tenant) = (&state, &posted.session, &tenant);
        let source = form.get("source_id").parse().ok();
        async move { pipeline_form(state, session, tenant, source, form, &problems).await }
    };
    let number = |field: &str| form.get(field).parse::<i64>();
    let (Ok(source_id), Ok(destination_id)) = (number("source_id"), number("destination_id"))
    else {
        return again(Problems::field(
            "destination_id",
            "choose a source and a destination",
        ))
        .await;
    };
    let new_publication = form.get("new_publication");
    let publication_name = if new_publication.is_empty() {
        form.get("publication_name").to_owned()
    } else {
        match create_publication(&state, &tenant, source_id, new_publication, form).await {
            Ok(name) => name,
            Err(problems) => return again(problems?).await,
        }
    };
    if publication_name.is_empty() {
        return again(Problems::field(
            "publication_name",
            "choose a publication, or name a new one and pick its tables",
        ))
        .await;
    }
    let body = CreatePipeline {
        source_id,
        destination_id,
        publication_name,
        config: None,
    };
    let app = State(state.app.clone());
    match pipelines::create_pipeline(app, tenant.clone(), JsonBody(body)).await {
        Ok((_, created)) => {
            Ok(Redirect::to(&format!("/pipelines/{}", created.0.id)).into_response())
        }
        Err(error) => again(refused(error, &PIPELINE_FIELDS)?).await,
    }
}

/// Creates publication `name` on the source with the tables picked (by oid).
async fn create_publication(
    state: &ConsoleState,
    tenant: &TenantId,
    source_id: i64,
    name: &str,
    form: &Form,
) -> Result<String, Result<Problems, ConsoleError>> {
    let picked: Vec<i64> = form.all("tables").filter_map(|t| t.parse().ok()).collect();
    if picked.is_empty() {
        return Err(Ok(Problems::field(
            "tables",
            "pick the tables of the new publication",
        )));
    }
    let all = async {
        let pool = sources::connect_source(&state.app, tenant, source_id).await?;
        let tables = source_publications::tables(&pool).await;
        pool.close().await;
        tables
    }
    .await
    .map_err(|e| refused(e, &PIPELINE_FIELDS))?;
    let tables: Vec<TableName> = all
        .into_iter()
        .filter(|t| picked.contains(&t.id))
        .map(|t| TableName {
            schema: t.schema,
            name: t.name,
        })
        .collect();
    let body = CreatePublication {
        name: name.to_owned(),
        tables,
    };
    let app = State(state.app.clone());
    publications::create_publication(app, tenant.clone(), PathParam(source_id), JsonBody(body))
        .await
        .map(|(_, created)| created.0.name)
        .map_err(|e| {
            refused(e, &PIPELINE_FIELDS).map(|mut p| {
                // A message about the publication belongs next to its name.
                for (field, _) in &mut p.messages {
                    if field.is_empty() {
                        *field = "new_publication".into();
                    }
                }
                p
            })
        })
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
