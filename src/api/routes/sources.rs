//! `/v1/sources`: a tenant's source databases (password sealed at rest, never returned), their
//! tables, and `POST /v1/sources/validate` for the replication prerequisites.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use crate::api::db::configured::{self, ConfigTable, ConfiguredRow};
use crate::api::domain::source::{
    CreateSource, Source, SourceConfigIn, SourceTables, Sources, UpdateSource, ValidateSource,
    ValidationReport, view,
};
use crate::api::domain::tenant::validate_name;
use crate::api::error::{ApiError, ErrorBody, conflict_on_unique, pg_code};
use crate::api::extract::{JsonBody, PathParam, TenantId};
use crate::api::source_db::{self, checks, publications};
use crate::api::state::AppState;
use crate::api::{secrets, source_db::connect};

const TABLE: ConfigTable = ConfigTable::Sources;

pub(crate) fn to_source(row: ConfiguredRow) -> Result<Source, ApiError> {
    Ok(Source {
        id: row.id,
        tenant_id: row.tenant_id,
        name: row.name,
        config: view(secrets::redact(row.config.0)).map_err(ApiError::Internal)?,
    })
}

/// The stored row of a tenant's source, or 404.
pub(crate) async fn find(
    state: &AppState,
    tenant: &TenantId,
    id: i64,
) -> Result<ConfiguredRow, ApiError> {
    configured::get(&state.pool, TABLE, &tenant.0, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("source {id}")))
}

/// Connects to a tenant's source with its decrypted settings.
pub(crate) async fn connect_source(
    state: &AppState,
    tenant: &TenantId,
    id: i64,
) -> Result<sqlx::PgConnection, ApiError> {
    let row = find(state, tenant, id).await?;
    connect(&secrets::open(row.config.0, &state.encryptor)?).await
}

fn name_taken(name: &str) -> impl FnOnce() -> String + '_ {
    move || format!("a source named `{name}` exists")
}

fn tenant_missing(error: sqlx::Error, tenant: &TenantId) -> ApiError {
    match pg_code(&error).as_deref() {
        Some("23503") => ApiError::NotFound(format!("tenant `{}`", tenant.0)),
        _ => error.into(),
    }
}

#[utoipa::path(post, path = "/v1/sources", tag = "sources", request_body = CreateSource,
    params(("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 201, description = "Created", body = Source),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "A source with this name exists", body = ErrorBody),
        (status = 422, description = "Invalid settings", body = ErrorBody),
    ))]
pub async fn create_source(
    State(state): State<AppState>,
    tenant: TenantId,
    JsonBody(body): JsonBody<CreateSource>,
) -> Result<(StatusCode, Json<Source>), ApiError> {
    validate_name("name", &body.name).map_err(ApiError::Invalid)?;
    let plain = body.config.to_json().map_err(ApiError::Invalid)?;
    let sealed = secrets::seal(plain, &state.encryptor);
    let row = configured::create(&state.pool, TABLE, &tenant.0, &body.name, &sealed)
        .await
        .map_err(|e| match pg_code(&e).as_deref() {
            Some("23505") => conflict_on_unique(e, name_taken(&body.name)),
            _ => tenant_missing(e, &tenant),
        })?;
    Ok((StatusCode::CREATED, Json(to_source(row)?)))
}

#[utoipa::path(get, path = "/v1/sources", tag = "sources",
    params(("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "The tenant's sources", body = Sources),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
    ))]
pub async fn list_sources(
    State(state): State<AppState>,
    tenant: TenantId,
) -> Result<Json<Sources>, ApiError> {
    let rows = configured::list(&state.pool, TABLE, &tenant.0).await?;
    let sources = rows.into_iter().map(to_source).collect::<Result<_, _>>()?;
    Ok(Json(Sources { sources }))
}

#[utoipa::path(get, path = "/v1/sources/{source_id}", tag = "sources",
    params(("source_id" = i64, Path, description = "Source id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "The source, without its password", body = Source),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such source for this tenant", body = ErrorBody),
    ))]
pub async fn get_source(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
) -> Result<Json<Source>, ApiError> {
    Ok(Json(to_source(find(&state, &tenant, id).await?)?))
}

#[utoipa::path(patch, path = "/v1/sources/{source_id}", tag = "sources", request_body = UpdateSource,
    params(("source_id" = i64, Path, description = "Source id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "Updated", body = Source),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such source for this tenant", body = ErrorBody),
        (status = 409, description = "A source with this name exists", body = ErrorBody),
        (status = 422, description = "Invalid settings", body = ErrorBody),
    ))]
pub async fn update_source(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
    JsonBody(body): JsonBody<UpdateSource>,
) -> Result<Json<Source>, ApiError> {
    if let Some(name) = &body.name {
        validate_name("name", name).map_err(ApiError::Invalid)?;
    }
    let stored = find(&state, &tenant, id).await?;
    let sealed = match &body.config {
        Some(config) => Some(reseal(&state, config, &stored.config.0)?),
        None => None,
    };
    let row = configured::update(
        &state.pool,
        TABLE,
        &tenant.0,
        id,
        body.name.as_deref(),
        sealed.as_ref(),
    )
    .await
    .map_err(|e| conflict_on_unique(e, name_taken(body.name.as_deref().unwrap_or_default())))?
    .ok_or_else(|| ApiError::NotFound(format!("source {id}")))?;
    Ok(Json(to_source(row)?))
}

/// New settings sealed, keeping the stored password when the update leaves it out.
fn reseal(state: &AppState, config: &SourceConfigIn, stored: &Value) -> Result<Value, ApiError> {
    let mut plain = config.to_json().map_err(ApiError::Invalid)?;
    secrets::keep_omitted_secrets(&mut plain, stored);
    Ok(secrets::seal(plain, &state.encryptor))
}

#[utoipa::path(delete, path = "/v1/sources/{source_id}", tag = "sources",
    params(("source_id" = i64, Path, description = "Source id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such source for this tenant", body = ErrorBody),
        (status = 409, description = "Pipelines use the source", body = ErrorBody),
    ))]
pub async fn delete_source(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
) -> Result<StatusCode, ApiError> {
    match configured::delete(&state.pool, TABLE, &tenant.0, id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::NotFound(format!("source {id}"))),
        Err(e) if pg_code(&e).as_deref() == Some("23503") => Err(ApiError::Conflict(format!(
            "source {id} is used by pipelines: delete them first"
        ))),
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(get, path = "/v1/sources/{source_id}/tables", tag = "sources",
    params(("source_id" = i64, Path, description = "Source id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "The source database's tables", body = SourceTables),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such source for this tenant", body = ErrorBody),
        (status = 422, description = "The source cannot be reached", body = ErrorBody),
    ))]
pub async fn list_source_tables(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
) -> Result<Json<SourceTables>, ApiError> {
    let mut conn = connect_source(&state, &tenant, id).await?;
    Ok(Json(SourceTables {
        tables: publications::tables(&mut conn).await?,
    }))
}

#[utoipa::path(post, path = "/v1/sources/validate", tag = "sources", request_body = ValidateSource,
    params(("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "Failed prerequisites (empty: all passed)", body = ValidationReport),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 422, description = "Invalid settings", body = ErrorBody),
    ))]
pub async fn validate_source(
    _tenant: TenantId,
    JsonBody(body): JsonBody<ValidateSource>,
) -> Result<Json<ValidationReport>, ApiError> {
    let plain = body.config.to_json().map_err(ApiError::Invalid)?;
    let findings = match source_db::connect(&plain).await {
        Ok(mut conn) => checks::run(&mut conn, body.publication.as_deref()).await?,
        Err(ApiError::Source(message)) => vec![checks::unreachable(message)],
        Err(other) => return Err(other),
    };
    Ok(Json(ValidationReport { findings }))
}
