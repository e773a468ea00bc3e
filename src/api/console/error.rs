//! [`ConsoleError`]: how a failure looks in the browser. No session: a redirect to the sign-in
//! page (the console's script follows it out of a fragment too); no tenant chosen: to the tenant
//! picker; a bad CSRF token: 403; an error of the API's handlers: its status and message in a
//! page, the message in an element `#error-message` the script shows for in-page actions.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::layout;
use crate::api::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("sign in first")]
    SignIn,
    #[error("choose a tenant first")]
    NoTenant,
    #[error(
        "the form is stale or did not come from this console (CSRF check failed): reload the page and try again"
    )]
    Csrf,
    #[error("the request body is too large")]
    TooLarge,
    #[error("{0}")]
    Api(#[from] ApiError),
}

impl From<sqlx::Error> for ConsoleError {
    fn from(error: sqlx::Error) -> Self {
        ConsoleError::Api(error.into())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ConsoleError::SignIn => return Redirect::to("/sign-in").into_response(),
            ConsoleError::NoTenant => return Redirect::to("/tenants").into_response(),
            ConsoleError::Csrf => (StatusCode::FORBIDDEN, self.to_string()),
            ConsoleError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, self.to_string()),
            ConsoleError::Api(error) => {
                let status = error.status();
                // The API's own answer decides what is said (and logs internal errors).
                let message = match error {
                    ApiError::Internal(detail) => {
                        tracing::error!(error = %detail, "console request failed");
                        "internal error; the server log has the details".to_owned()
                    }
                    other => other.to_string(),
                };
                (status, message)
            }
        };
        let body = layout::bare(
            "Error",
            html! {
                h1 { "Error " (status.as_u16()) }
                p.error id="error-message" { (message) }
                p { a href="/pipelines" { "Back to the pipelines" } }
            },
        );
        (status, body).into_response()
    }
}
