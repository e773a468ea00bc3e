//! The create forms: sources, destinations (every kind the replicator supports) and pipelines
//! (on an existing publication of the source, or on a new one made from a list of its tables).
//! Each submit is handed to the API's own create handler; when that refuses, the form comes
//! back with what was typed and the API's message next to the field it names
//! ([`super::forms`]).

pub mod destination;
pub mod pipeline;
pub mod source;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::error::ConsoleError;
use super::forms::Problems;
use super::layout;
use super::session::{Form, Session};
use crate::api::error::ApiError;

pub use destination::{create_destination, new_destination};
pub use pipeline::{create_pipeline, new_pipeline};
pub use source::{create_source, new_source};

pub(super) fn options(values: &[&str]) -> Vec<(String, String)> {
    values
        .iter()
        .map(|v| ((*v).to_owned(), (*v).to_owned()))
        .collect()
}

/// A form page, with status 422 when it comes back with problems.
pub(super) fn form_page(
    session: &Session,
    title: &str,
    problems: &Problems,
    body: Markup,
) -> Response {
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
pub(super) fn refused(error: ApiError, fields: &[&str]) -> Result<Problems, ConsoleError> {
    match error {
        ApiError::Invalid(message) | ApiError::Conflict(message) | ApiError::Source(message) => {
            Ok(Problems::place(&message, fields))
        }
        ApiError::NotFound(what) => Ok(Problems::place(&format!("{what} not found"), fields)),
        other => Err(other.into()),
    }
}

/// A form as first shown: empty, for the session's tenant.
pub(super) fn blank(
    session: Session,
    render: fn(&Session, &Form, &Problems) -> Response,
) -> Result<Response, ConsoleError> {
    session.tenant()?;
    Ok(render(&session, &Form::default(), &Problems::default()))
}
