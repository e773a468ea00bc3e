//! `/v1/pipelines`: create, list, get, update, delete. Deleting stops the replicator, then drops
//! the pipeline's slots and `etl` rows on the source (tolerating an unreachable source: the
//! answer says what was left behind). Start/stop/status live in [`super::pipeline_actions`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::api::db::configured::{self, ConfigTable};
use crate::api::db::pipelines::{self, CreateOutcome, PipelineRow};
use crate::api::domain::pipeline::{
    CreatePipeline, DeletedPipeline, Pipeline, PipelineSettings, Pipelines, UpdatePipeline,
};
use crate::api::error::{ApiError, ApiErrors, conflict_on_unique};
use crate::api::extract::{JsonBody, PathParam, TenantId};
use crate::api::runtime::ReplicatorTarget;
use crate::api::source_db::{self, state as source_state};
use crate::api::state::AppState;

pub(crate) fn target(row: &PipelineRow) -> ReplicatorTarget {
    ReplicatorTarget {
        tenant_id: row.tenant_id.clone(),
        replicator_id: row.replicator_id,
        pipeline_id: row.id,
    }
}

pub(crate) fn settings(row: &PipelineRow) -> Result<PipelineSettings, ApiError> {
    serde_json::from_value(row.config.0.clone())
        .map_err(|e| ApiError::Internal(format!("stored pipeline {} config: {e}", row.id)))
}

fn to_pipeline(row: PipelineRow) -> Result<Pipeline, ApiError> {
    let config = settings(&row)?;
    Ok(Pipeline {
        id: row.id,
        tenant_id: row.tenant_id,
        source_id: row.source_id,
        destination_id: row.destination_id,
        replicator_id: row.replicator_id,
        publication_name: row.publication_name,
        config,
        desired_state: row.desired_state,
    })
}

/// The tenant's pipeline, or 404.
pub(crate) async fn find(
    state: &AppState,
    tenant: &TenantId,
    id: i64,
) -> Result<PipelineRow, ApiError> {
    pipelines::get(&state.pool, &tenant.0, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("pipeline {id}")))
}

/// Connects to the pipeline's source.
pub(crate) async fn connect_source(
    state: &AppState,
    row: &PipelineRow,
) -> Result<sqlx::PgPool, ApiError> {
    let source = configured::get(
        &state.pool,
        ConfigTable::Sources,
        &row.tenant_id,
        row.source_id,
    )
    .await?
    .ok_or_else(|| ApiError::Internal(format!("pipeline {} has no source", row.id)))?;
    source_db::connect(&super::sources::open(state, source)?, &state.policy).await
}

/// Drops the pipeline's slots and `etl` rows on its source; `Err` says why it could not.
pub(crate) async fn cleanup_source(state: &AppState, row: &PipelineRow) -> Result<(), String> {
    let pool = connect_source(state, row)
        .await
        .map_err(|e| e.to_string())?;
    source_state::delete_pipeline_state(&pool, row.id).await
}

#[utoipa::path(post, path = "/v1/pipelines", tag = "pipelines", request_body = CreatePipeline,
    params(("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 201, description = "Created (stopped)", body = Pipeline),
        ApiErrors,
    ))]
pub async fn create_pipeline(
    State(state): State<AppState>,
    tenant: TenantId,
    JsonBody(body): JsonBody<CreatePipeline>,
) -> Result<(StatusCode, Json<Pipeline>), ApiError> {
    let config = body.config.unwrap_or_default();
    config
        .validate(&body.publication_name)
        .map_err(ApiError::Invalid)?;
    let value = serde_json::to_value(&config).map_err(|e| ApiError::Internal(e.to_string()))?;
    let outcome = pipelines::create(
        &state.pool,
        &tenant.0,
        body.source_id,
        body.destination_id,
        &body.publication_name,
        &value,
    )
    .await
    .map_err(|e| {
        conflict_on_unique(e, || {
            "a pipeline of this source, destination and publication exists".to_owned()
        })
    })?;
    match outcome {
        CreateOutcome::Created(row) => {
            super::pipeline_reset::refuse_used_id(&state, &row).await?;
            Ok((StatusCode::CREATED, Json(to_pipeline(row)?)))
        }
        CreateOutcome::Missing("source") => {
            Err(ApiError::NotFound(format!("source {}", body.source_id)))
        }
        CreateOutcome::Missing(_) => Err(ApiError::NotFound(format!(
            "destination {}",
            body.destination_id
        ))),
        CreateOutcome::NoDefaultImage => Err(ApiError::Conflict(
            "no default replicator image: create one with POST /v1/images".into(),
        )),
    }
}

#[utoipa::path(get, path = "/v1/pipelines", tag = "pipelines",
    params(("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "The tenant's pipelines", body = Pipelines),
        ApiErrors,
    ))]
pub async fn list_pipelines(
    State(state): State<AppState>,
    tenant: TenantId,
) -> Result<Json<Pipelines>, ApiError> {
    let rows = pipelines::list(&state.pool, &tenant.0).await?;
    let pipelines = rows
        .into_iter()
        .map(to_pipeline)
        .collect::<Result<_, _>>()?;
    Ok(Json(Pipelines { pipelines }))
}

#[utoipa::path(get, path = "/v1/pipelines/{pipeline_id}", tag = "pipelines",
    params(("pipeline_id" = i64, Path, description = "Pipeline id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "The pipeline", body = Pipeline),
        ApiErrors,
    ))]
pub async fn get_pipeline(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
) -> Result<Json<Pipeline>, ApiError> {
    Ok(Json(to_pipeline(find(&state, &tenant, id).await?)?))
}

#[utoipa::path(patch, path = "/v1/pipelines/{pipeline_id}", tag = "pipelines",
    request_body = UpdatePipeline,
    params(("pipeline_id" = i64, Path, description = "Pipeline id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "Updated; a running replicator picks it up on restart", body = Pipeline),
        ApiErrors,
    ))]
pub async fn update_pipeline(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
    JsonBody(body): JsonBody<UpdatePipeline>,
) -> Result<Json<Pipeline>, ApiError> {
    let current = find(&state, &tenant, id).await?;
    let publication = body
        .publication_name
        .clone()
        .unwrap_or_else(|| current.publication_name.clone());
    let config = match body.config {
        Some(config) => config,
        None => settings(&current)?,
    };
    config.validate(&publication).map_err(ApiError::Invalid)?;
    let value = serde_json::to_value(&config).map_err(|e| ApiError::Internal(e.to_string()))?;
    let row = pipelines::update(&state.pool, &tenant.0, id, Some(&publication), Some(&value))
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                "a pipeline of this source, destination and publication exists".to_owned()
            })
        })?
        .ok_or_else(|| ApiError::NotFound(format!("pipeline {id}")))?;
    Ok(Json(to_pipeline(row)?))
}

#[utoipa::path(delete, path = "/v1/pipelines/{pipeline_id}", tag = "pipelines",
    params(("pipeline_id" = i64, Path, description = "Pipeline id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "Deleted; says whether the source was cleaned up", body = DeletedPipeline),
        ApiErrors,
    ))]
pub async fn delete_pipeline(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
) -> Result<Json<DeletedPipeline>, ApiError> {
    let row = find(&state, &tenant, id).await?;
    let target = target(&row);
    state.runtime.stop(&target).await?;
    let cleanup = cleanup_source(&state, &row).await;
    if let Err(reason) = &cleanup {
        tracing::warn!(pipeline_id = id, %reason, "pipeline deleted; source not cleaned up");
    }
    state.runtime.forget(&target).await?;
    pipelines::delete(&state.pool, id).await?;
    Ok(Json(DeletedPipeline {
        id,
        source_cleaned: cleanup.is_ok(),
        source_cleanup_error: cleanup.err(),
    }))
}
