//! The new source form: connection settings, created through `POST /v1/sources`' handler.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde_json::json;

use super::{blank, form_page, options, refused};
use crate::api::console::ConsoleState;
use crate::api::console::error::ConsoleError;
use crate::api::console::forms::{Problems, input, select};
use crate::api::console::layout::csrf_field;
use crate::api::console::session::{Form, Posted, Session};
use crate::api::domain::source::{CreateSource, SourceConfigIn, TlsSettings};
use crate::api::extract::JsonBody;
use crate::api::routes::sources;

const TLS_MODES: [&str; 5] = ["disable", "prefer", "require", "verify-ca", "verify-full"];

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
    blank(session, source_form)
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
