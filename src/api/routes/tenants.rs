//! `/v1/tenants`: create, list, get, update (PATCH), create-or-update (PUT), delete. Deleting a
//! tenant with a running pipeline is refused (409); otherwise its pipelines' slots and state are
//! removed from their sources and everything it owns is deleted. A tenant-scoped key sees and
//! changes only its own tenant and cannot create one.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::pipelines::{cleanup_source, target};
use crate::api::auth::Caller;
use crate::api::db::{pipelines, tenants};
use crate::api::domain::tenant::{
    CreateTenant, Tenant, Tenants, UpdateTenant, validate_name, validate_tenant_id,
};
use crate::api::error::{ApiError, ApiErrors, conflict_on_unique};
use crate::api::extract::{JsonBody, PathParam};
use crate::api::runtime;
use crate::api::state::AppState;

#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses(
        (status = 201, description = "Created", body = Tenant),
        ApiErrors,
    ))]
pub async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateTenant>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    caller.require_admin("creating a tenant")?;
    validate_tenant_id(&body.id).map_err(ApiError::Invalid)?;
    validate_name("name", &body.name).map_err(ApiError::Invalid)?;
    let tenant = tenants::create(&state.pool, &body.id, &body.name)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("tenant `{}` already exists", body.id)))?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants",
    responses(
        (status = 200, description = "Every tenant (a tenant-scoped key: its own)", body = Tenants),
        ApiErrors,
    ))]
pub async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Tenants>, ApiError> {
    let mut all = tenants::list(&state.pool).await?;
    all.retain(|tenant| caller.may_act_for(&tenant.id));
    Ok(Json(Tenants { tenants: all }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        ApiErrors,
    ))]
pub async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<Tenant>, ApiError> {
    caller.scope(&id)?;
    tenants::get(&state.pool, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("tenant `{id}`")))
}

#[utoipa::path(patch, path = "/v1/tenants/{tenant_id}", tag = "tenants", request_body = UpdateTenant,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "Updated", body = Tenant),
        ApiErrors,
    ))]
pub async fn update_tenant(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<UpdateTenant>,
) -> Result<Json<Tenant>, ApiError> {
    caller.scope(&id)?;
    validate_name("name", &body.name).map_err(ApiError::Invalid)?;
    tenants::update(&state.pool, &id, &body.name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("tenant `{id}`")))
}

#[utoipa::path(put, path = "/v1/tenants/{tenant_id}", tag = "tenants", request_body = UpdateTenant,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "Updated", body = Tenant),
        (status = 201, description = "Created", body = Tenant),
        ApiErrors,
    ))]
pub async fn put_tenant(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<UpdateTenant>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    caller.scope(&id)?;
    validate_tenant_id(&id).map_err(ApiError::Invalid)?;
    validate_name("name", &body.name).map_err(ApiError::Invalid)?;
    let (tenant, created) = tenants::upsert(&state.pool, &id, &body.name).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(tenant)))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses(
        (status = 204, description = "Deleted with everything it owned"),
        ApiErrors,
    ))]
pub async fn delete_tenant(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    caller.scope(&id)?;
    if tenants::get(&state.pool, &id).await?.is_none() {
        return Err(ApiError::NotFound(format!("tenant `{id}`")));
    }
    let owned = pipelines::list(&state.pool, &id).await?;
    for pipeline in &owned {
        let status = state.runtime.status(&target(pipeline)).await?;
        if runtime::is_running(&status) {
            return Err(ApiError::Conflict(format!(
                "pipeline {} of tenant `{id}` is running: stop it first",
                pipeline.id
            )));
        }
    }
    for pipeline in &owned {
        if let Err(reason) = cleanup_source(&state, pipeline).await {
            tracing::warn!(pipeline_id = pipeline.id, %reason, "source not cleaned up");
        }
        state.runtime.forget(&target(pipeline)).await?;
    }
    if tenants::delete(&state.pool, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("tenant `{id}`")))
    }
}
