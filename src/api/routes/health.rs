//! `GET /health_check`: answers 200 when the control-plane database answers, 503 otherwise.
//! No authentication, so load balancers and probes can call it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    pub database: bool,
}

#[utoipa::path(get, path = "/health_check", tag = "health", security(()),
    responses(
        (status = 200, description = "The API and its database are up", body = Health),
        (status = 503, description = "The database does not answer", body = Health),
    ))]
pub async fn health_check(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let database = sqlx::query_scalar::<_, i32>("select 1")
        .fetch_one(&state.pool)
        .await
        .is_ok();
    let (code, status) = if database {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (
        code,
        Json(Health {
            status: status.to_owned(),
            database,
        }),
    )
}
