//! [`ApiError`]: the one place that decides how a failure looks from outside. Every error is a
//! JSON body `{"error": code, "message": text}` with a status code a client can branch on;
//! database errors and other unexpected failures are logged with their cause and answered with
//! a generic 500 that leaks neither SQL nor secrets.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::crypto::CryptoError;
use super::runtime::RuntimeError;

/// The body of every error response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `not_found`, `conflict`, `invalid`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
}

/// The error answers every `/v1` route may give (the OpenAPI document lists them per route).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum ApiErrors {
    /// Malformed request: bad JSON, a bad path parameter, a missing `tenant_id` header.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No valid `Authorization: Bearer` key.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The key is scoped to one tenant and the operation needs an administrator key.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such object for this tenant.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The request conflicts with the current state (duplicate name, object in use, running).
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body is larger than `api.max_body_bytes`.
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// The body is not JSON (`Content-Type` must be `application/json`).
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// Well-formed but invalid input, or the source database refused or cannot be reached.
    #[response(status = 422)]
    Unprocessable(ErrorBody),
}

/// The answer of routes that call the pipeline runtime when it fails.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum RuntimeUnavailable {
    /// The runtime (processes, Kubernetes) could not start, stop or report the replicator.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request: bad JSON, bad path parameter, missing `tenant_id` header.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("missing or invalid API key: send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// The caller's key may not do this (a tenant-scoped key changing tenants or images).
    #[error("{0}")]
    Forbidden(String),
    /// The object does not exist or belongs to another tenant.
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but invalid input (a field value, a config shape).
    #[error("{0}")]
    Invalid(String),
    /// The source database of a request cannot be reached or refused the operation.
    #[error("{0}")]
    Source(String),
    /// The body is over the configured limit.
    #[error("the request body is larger than the server accepts (api.max_body_bytes)")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The pipeline runtime (processes or Kubernetes) failed.
    #[error("pipeline runtime: {0}")]
    Runtime(String),
    /// A bug or an unexpected failure: logged in full, answered generically.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Invalid(_) | ApiError::Source(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Runtime(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Invalid(_) => "invalid",
            ApiError::Source(_) => "source_error",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Runtime(_) => "runtime_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                "internal error; the server log has the details".to_owned()
            }
            ApiError::Runtime(detail) => {
                tracing::warn!(error = %detail, "pipeline runtime failed");
                self.to_string()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: self.code().to_owned(),
            message,
        };
        (status, Json(body)).into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::Internal(format!("database: {error}"))
    }
}

impl From<CryptoError> for ApiError {
    fn from(error: CryptoError) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl From<RuntimeError> for ApiError {
    fn from(error: RuntimeError) -> Self {
        match error {
            RuntimeError::Invalid(message) => ApiError::Invalid(message),
            other => ApiError::Runtime(other.to_string()),
        }
    }
}

/// The Postgres error code of a failed statement (`23505` unique violation, …).
pub fn pg_code(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Maps a unique violation to 409 with `message`, anything else through [`From`].
pub fn conflict_on_unique(error: sqlx::Error, message: impl FnOnce() -> String) -> ApiError {
    match pg_code(&error).as_deref() {
        Some("23505") => ApiError::Conflict(message()),
        _ => error.into(),
    }
}
