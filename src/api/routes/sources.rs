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
use crate::api::error::{ApiError, ApiErrors};
use crate::api::extract::{JsonBody, PathParam, TenantId};
use crate::api::routes::owned;
use crate::api::source_db::{self, checks, publications};
use crate::api::state::AppState;
use crate::api::{reach, secrets, source_db::connect};

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
    owned::find(state, TABLE, tenant, id).await
}

/// A stored source's settings, decrypted.
pub(crate) fn open(state: &AppState, row: ConfiguredRow) -> Result<Value, ApiError> {
    let context = TABLE.seal_context(&row.tenant_id, row.id);
    Ok(secrets::open(row.config.0, &state.encryptor, &context)?)
}

/// Connects to a tenant's source with its decrypted settings.
pub(crate) async fn connect_source(
    state: &AppState,
    tenant: &TenantId,
    id: i64,
) -> Result<sqlx::PgPool, ApiError> {
    let row = find(state, tenant, id).await?;
    connect(&open(state, row)?, &state.policy).await
}

/// The settings of a create or update, checked against the network policy.
async fn checked(state: &AppState, plain: &Value) -> Result<(), ApiError> {
    reach::check(&state.policy, &reach::source_target(plain)?).await?;
    Ok(())
}

#[utoipa::path(post, path = "/v1/sources", tag = "sources", request_body = CreateSource,
    params(("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 201, description = "Created", body = Source),
        ApiErrors,
    ))]
pub async fn create_source(
    State(state): State<AppState>,
    tenant: TenantId,
    JsonBody(body): JsonBody<CreateSource>,
) -> Result<(StatusCode, Json<Source>), ApiError> {
    validate_name("name", &body.name).map_err(ApiError::Invalid)?;
    let plain = body.config.to_json().map_err(ApiError::Invalid)?;
    checked(&state, &plain).await?;
    let seal = |id| secrets::seal(plain, &state.encryptor, &TABLE.seal_context(&tenant.0, id));
    let row = configured::create(&state.pool, TABLE, &tenant.0, &body.name, seal)
        .await
        .map_err(|e| owned::write_error(TABLE, &tenant, &body.name, e))?;
    Ok((StatusCode::CREATED, Json(to_source(row)?)))
}

#[utoipa::path(get, path = "/v1/sources", tag = "sources",
    params(("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "The tenant's sources", body = Sources),
        ApiErrors,
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
        ApiErrors,
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
        ApiErrors,
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
        Some(config) => Some(reseal(&state, config, stored).await?),
        None => None,
    };
    let row = owned::update(
        &state,
        TABLE,
        &tenant,
        id,
        body.name.as_deref(),
        sealed.as_ref(),
    )
    .await?;
    Ok(Json(to_source(row)?))
}

/// New settings checked and sealed, keeping the stored password when the update leaves it out.
async fn reseal(
    state: &AppState,
    config: &SourceConfigIn,
    stored: ConfiguredRow,
) -> Result<Value, ApiError> {
    let mut plain = config.to_json().map_err(ApiError::Invalid)?;
    checked(state, &plain).await?;
    let (tenant, id) = (stored.tenant_id.clone(), stored.id);
    secrets::keep_omitted_secrets(&mut plain, &open(state, stored)?);
    let context = TABLE.seal_context(&tenant, id);
    Ok(secrets::seal(plain, &state.encryptor, &context))
}

#[utoipa::path(delete, path = "/v1/sources/{source_id}", tag = "sources",
    params(("source_id" = i64, Path, description = "Source id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 204, description = "Deleted"),
        ApiErrors,
    ))]
pub async fn delete_source(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
) -> Result<StatusCode, ApiError> {
    owned::delete(&state, TABLE, &tenant, id).await
}

#[utoipa::path(get, path = "/v1/sources/{source_id}/tables", tag = "sources",
    params(("source_id" = i64, Path, description = "Source id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "The source database's tables", body = SourceTables),
        ApiErrors,
    ))]
pub async fn list_source_tables(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
) -> Result<Json<SourceTables>, ApiError> {
    let pool = connect_source(&state, &tenant, id).await?;
    Ok(Json(SourceTables {
        tables: publications::tables(&pool).await?,
    }))
}

#[utoipa::path(post, path = "/v1/sources/validate", tag = "sources", request_body = ValidateSource,
    params(("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "Failed prerequisites (empty: all passed)", body = ValidationReport),
        ApiErrors,
    ))]
pub async fn validate_source(
    State(state): State<AppState>,
    _tenant: TenantId,
    JsonBody(body): JsonBody<ValidateSource>,
) -> Result<Json<ValidationReport>, ApiError> {
    let plain = body.config.to_json().map_err(ApiError::Invalid)?;
    let findings = match source_db::connect(&plain, &state.policy).await {
        Ok(pool) => checks::run(&pool, body.publication.as_deref()).await?,
        Err(ApiError::Source(message)) => vec![checks::unreachable(message)],
        Err(other) => return Err(other),
    };
    Ok(Json(ValidationReport { findings }))
}
