//! Request extractors that answer bad input with [`ApiError`]'s JSON instead of axum's plain
//! text: [`JsonBody`] (400 bad JSON, 413 over the body limit, 415 no JSON content type, 422
//! wrong shape), [`PathParam`]
//! (400) and [`TenantId`], the `tenant_id` header every tenant-scoped route requires.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::auth::Caller;
use super::error::ApiError;

/// A JSON request body.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::JsonDataError(e) => ApiError::Invalid(format!(
                    "request body: {}",
                    std::error::Error::source(&e)
                        .map(ToString::to_string)
                        .unwrap_or_else(|| e.body_text())
                )),
                JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(
                    "bad_json",
                    format!(
                        "request body is not valid JSON: {}",
                        std::error::Error::source(&e)
                            .map(ToString::to_string)
                            .unwrap_or_else(|| e.body_text())
                    ),
                ),
                JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                    "send the body as JSON with `Content-Type: application/json`".into(),
                ),
                other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::PayloadTooLarge
                }
                other => ApiError::bad_request("bad_request", other.body_text()),
            }),
        }
    }
}

/// Path parameters.
pub struct PathParam<T>(pub T);

impl<S, T> FromRequestParts<S> for PathParam<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(PathParam(value)),
            Err(rejection) => Err(path_error(rejection)),
        }
    }
}

fn path_error(rejection: PathRejection) -> ApiError {
    ApiError::bad_request("bad_path", format!("path: {}", rejection.body_text()))
}

/// Name of the header that scopes a request to one tenant.
pub const TENANT_HEADER: &str = "tenant_id";

/// The tenant a request is scoped to, from the `tenant_id` header; a tenant the caller's key
/// is not scoped to answers 404.
#[derive(Debug, Clone)]
pub struct TenantId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for TenantId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let value = parts.headers.get(TENANT_HEADER).ok_or_else(|| {
            ApiError::bad_request(
                "missing_tenant_id",
                "this route is scoped to a tenant: send the `tenant_id` header",
            )
        })?;
        let text = value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "bad_tenant_id",
                    "the `tenant_id` header must be a non-empty tenant id",
                )
            })?;
        // A key scoped to another tenant sees this one as missing, like its objects.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            caller.scope(text)?;
        }
        Ok(TenantId(text.to_owned()))
    }
}
