//! What the routes of sources and destinations share: both are tenant-owned, named objects
//! with a sealed config in tables of the same shape ([`ConfigTable`]).

use axum::http::StatusCode;

use crate::api::db::configured::{self, ConfigTable, ConfiguredRow};
use crate::api::error::{ApiError, conflict_on_unique, pg_code};
use crate::api::extract::TenantId;
use crate::api::state::AppState;

fn not_found(table: ConfigTable, id: i64) -> ApiError {
    ApiError::NotFound(format!("{} {id}", table.noun()))
}

/// The tenant's row, or 404.
pub async fn find(
    state: &AppState,
    table: ConfigTable,
    tenant: &TenantId,
    id: i64,
) -> Result<ConfiguredRow, ApiError> {
    configured::get(&state.pool, table, &tenant.0, id)
        .await?
        .ok_or_else(|| not_found(table, id))
}

/// A failed insert or update: 404 for an unknown tenant, 409 for a taken name.
pub fn write_error(
    table: ConfigTable,
    tenant: &TenantId,
    name: &str,
    error: sqlx::Error,
) -> ApiError {
    match pg_code(&error).as_deref() {
        Some("23503") => ApiError::NotFound(format!("tenant `{}`", tenant.0)),
        _ => conflict_on_unique(error, || {
            format!("a {} named `{name}` exists", table.noun())
        }),
    }
}

/// Deletes the tenant's row: 404 when missing, 409 while pipelines use it.
pub async fn delete(
    state: &AppState,
    table: ConfigTable,
    tenant: &TenantId,
    id: i64,
) -> Result<StatusCode, ApiError> {
    match configured::delete(&state.pool, table, &tenant.0, id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(not_found(table, id)),
        Err(e) if pg_code(&e).as_deref() == Some("23503") => Err(ApiError::Conflict(format!(
            "{} {id} is used by pipelines: delete them first",
            table.noun()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Updates the tenant's row (`None` keeps a field).
pub async fn update(
    state: &AppState,
    table: ConfigTable,
    tenant: &TenantId,
    id: i64,
    name: Option<&str>,
    sealed: Option<&serde_json::Value>,
) -> Result<ConfiguredRow, ApiError> {
    configured::update(&state.pool, table, &tenant.0, id, name, sealed)
        .await
        .map_err(|e| write_error(table, tenant, name.unwrap_or_default(), e))?
        .ok_or_else(|| not_found(table, id))
}
