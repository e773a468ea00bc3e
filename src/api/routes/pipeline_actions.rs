//! What a pipeline does: `start`, `stop`, `restart` and `status` through the configured
//! runtime; `replication-status` and `rollback-tables` on the source's `etl` state.

use axum::Json;
use axum::extract::State;

use super::pipelines::{connect_source, find, settings, target};
use super::{destinations, sources};
use crate::api::db::configured::{self, ConfigTable};
use crate::api::db::pipelines::{self, PipelineRow};
use crate::api::domain::pipeline::{
    DesiredState, PipelineStatus, ReplicationStatus, RollbackRequest, RollbackResult,
    RollbackTarget,
};
use crate::api::error::{ApiError, ApiErrors, RuntimeUnavailable};
use crate::api::extract::{JsonBody, PathParam, TenantId};
use crate::api::runtime::replicator_config::{self, ReplicatorInputs};
use crate::api::runtime::{self, LaunchSpec};
use crate::api::source_db::state as source_state;
use crate::api::state::AppState;

/// Everything the runtime needs to start the pipeline's replicator, secrets decrypted, file
/// paths placed in the tenant's directory, and the network policy for the replicator to check
/// again right before it connects.
async fn launch_spec(state: &AppState, row: &PipelineRow) -> Result<LaunchSpec, ApiError> {
    let settings = settings(row)?;
    let stored = |table: ConfigTable, id| async move {
        configured::get(&state.pool, table, &row.tenant_id, id)
            .await?
            .ok_or_else(|| {
                ApiError::Internal(format!("pipeline {} lost its {}", row.id, table.noun()))
            })
    };
    let source = sources::open(state, stored(ConfigTable::Sources, row.source_id).await?)?;
    let destination = destinations::open(
        state,
        stored(ConfigTable::Destinations, row.destination_id).await?,
    )?;
    let destination = state
        .files
        .place(&row.tenant_id, destination)
        .map_err(|e| ApiError::Invalid(format!("destination {}: {e}", row.destination_id)))?;
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        ApiError::Internal(format!("pipeline {} {what}: {e}", row.id))
    };
    let config = replicator_config::build(ReplicatorInputs {
        pipeline_id: row.id,
        publication_name: &row.publication_name,
        settings: &settings,
        source: serde_json::from_value(source).map_err(|e| internal("source config", &e))?,
        destination: serde_json::from_value(destination)
            .map_err(|e| internal("destination config", &e))?,
        metrics_address: state
            .runtime
            .metrics_address()
            .map(|address| address.parse())
            .transpose()
            .map_err(|e| internal("metrics address", &e))?,
    })
    .map_err(|e| internal("replicator config", &e))?;
    // One more top-level section of the same document: the replicator's network policy.
    #[derive(serde::Serialize)]
    struct PolicySection {
        network_policy: crate::netpolicy::NetworkPolicyConfig,
    }
    let policy = serde_yaml::to_string(&PolicySection {
        network_policy: state.policy.to_config(),
    })
    .map_err(|e| internal("replicator network policy", &e))?;
    Ok(LaunchSpec {
        target: target(row),
        image: pipelines::image_of(&state.pool, row.replicator_id).await?,
        config_yaml: format!("{}{policy}", config.yaml),
        secrets: config.secrets,
        resources: settings.resources,
    })
}

async fn status_of(state: &AppState, row: &PipelineRow) -> Result<PipelineStatus, ApiError> {
    Ok(runtime::to_api(
        &state.runtime.status(&target(row)).await?,
        row.id,
    ))
}

async fn start_row(state: &AppState, row: &PipelineRow) -> Result<PipelineStatus, ApiError> {
    super::pipeline_reset::refuse_foreign_state(state, row).await?;
    let spec = launch_spec(state, row).await?;
    state.runtime.start(&spec).await?;
    pipelines::set_desired_state(&state.pool, row.id, DesiredState::Started).await?;
    status_of(state, row).await
}

#[utoipa::path(post, path = "/v1/pipelines/{pipeline_id}/start", tag = "pipelines",
    params(("pipeline_id" = i64, Path, description = "Pipeline id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "Started (or replaced, if it ran)", body = PipelineStatus),
        ApiErrors, RuntimeUnavailable,
    ))]
pub async fn start_pipeline(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
) -> Result<Json<PipelineStatus>, ApiError> {
    let row = find(&state, &tenant, id).await?;
    Ok(Json(start_row(&state, &row).await?))
}

#[utoipa::path(post, path = "/v1/pipelines/{pipeline_id}/stop", tag = "pipelines",
    params(("pipeline_id" = i64, Path, description = "Pipeline id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "Stopped", body = PipelineStatus),
        ApiErrors, RuntimeUnavailable,
    ))]
pub async fn stop_pipeline(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
) -> Result<Json<PipelineStatus>, ApiError> {
    let row = find(&state, &tenant, id).await?;
    state.runtime.stop(&target(&row)).await?;
    pipelines::set_desired_state(&state.pool, row.id, DesiredState::Stopped).await?;
    Ok(Json(status_of(&state, &row).await?))
}

#[utoipa::path(post, path = "/v1/pipelines/{pipeline_id}/restart", tag = "pipelines",
    params(("pipeline_id" = i64, Path, description = "Pipeline id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "Stopped and started with the current settings", body = PipelineStatus),
        ApiErrors, RuntimeUnavailable,
    ))]
pub async fn restart_pipeline(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
) -> Result<Json<PipelineStatus>, ApiError> {
    let row = find(&state, &tenant, id).await?;
    state.runtime.stop(&target(&row)).await?;
    Ok(Json(start_row(&state, &row).await?))
}

#[utoipa::path(get, path = "/v1/pipelines/{pipeline_id}/status", tag = "pipelines",
    params(("pipeline_id" = i64, Path, description = "Pipeline id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "What the replicator is doing", body = PipelineStatus),
        ApiErrors, RuntimeUnavailable,
    ))]
pub async fn pipeline_status(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
) -> Result<Json<PipelineStatus>, ApiError> {
    let row = find(&state, &tenant, id).await?;
    Ok(Json(status_of(&state, &row).await?))
}

#[utoipa::path(get, path = "/v1/pipelines/{pipeline_id}/replication-status", tag = "pipelines",
    params(("pipeline_id" = i64, Path, description = "Pipeline id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "Table states and slot lag, read from the source", body = ReplicationStatus),
        ApiErrors,
    ))]
pub async fn replication_status(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
) -> Result<Json<ReplicationStatus>, ApiError> {
    let row = find(&state, &tenant, id).await?;
    let pool = connect_source(&state, &row).await?;
    let tables = source_state::table_states(&pool, id).await?;
    let slot = source_state::slot_status(&pool, id).await?;
    let probe = crate::api::lag::probe::read(&pool, &state.pool, id).await?;
    let wal_forecast = crate::api::lag::wal_forecast(&state.pool, id, &probe).await?;
    Ok(Json(ReplicationStatus {
        pipeline_id: id,
        tables,
        slot,
        wal_forecast: Some(wal_forecast),
    }))
}

#[utoipa::path(post, path = "/v1/pipelines/{pipeline_id}/rollback-tables", tag = "pipelines",
    request_body = RollbackRequest,
    params(("pipeline_id" = i64, Path, description = "Pipeline id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "The tables rolled back", body = RollbackResult),
        ApiErrors, RuntimeUnavailable,
    ))]
pub async fn rollback_tables(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
    JsonBody(body): JsonBody<RollbackRequest>,
) -> Result<Json<RollbackResult>, ApiError> {
    let row = find(&state, &tenant, id).await?;
    if runtime::is_running(&state.runtime.status(&target(&row)).await?) {
        // Back to `init` is a resync, which the running replicator picks up safely.
        if body.target == RollbackTarget::Init {
            let pool = connect_source(&state, &row).await?;
            let tables = super::table_actions::resync(&pool, id, &body.tables).await?;
            return Ok(Json(RollbackResult { tables }));
        }
        return Err(ApiError::Conflict(format!(
            "pipeline {id} is running: roll back to `init` (a resync), or stop it, roll back, \
             then start it again"
        )));
    }
    let pool = connect_source(&state, &row).await?;
    let tables = source_state::rollback(&pool, id, &body.tables, body.target).await?;
    Ok(Json(RollbackResult { tables }))
}
