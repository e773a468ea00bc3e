//! Pipeline identity in the control plane: a pipeline id's state on a source serves exactly one
//! pipeline. [`refuse_used_id`] runs at create (a new id with state already on its source
//! belongs to someone else: 409, nothing created), [`refuse_foreign_state`] at start and restart
//! (state recorded for another destination: 409), and `POST /v1/pipelines/{id}/reset` drops the
//! pipeline's slots and state on its source so that the next start copies everything again.
//!
//! What a pipeline id has on a source and how it is dropped are the engine's
//! ([`crate::engine::identity::footprint`], [`crate::engine::cleanup`]); the replicator makes
//! the same comparison with its destination at start-up, so these checks only answer earlier
//! and more clearly. An unreachable source does not block create or start (the replicator's
//! own check still stands guard).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::pipelines::{connect_source, find, target};
use crate::api::db::configured::{self, ConfigTable};
use crate::api::db::pipelines::{self, PipelineRow};
use crate::api::error::{ApiError, ApiErrors, RuntimeUnavailable};
use crate::api::extract::{PathParam, TenantId};
use crate::api::runtime;
use crate::api::source_db::{chain, state as source_state};
use crate::api::state::AppState;
use crate::config::DestinationConfig;
use crate::destinations::any::describe_config;
use crate::engine::identity::{self, Footprint};

/// The answer of a reset.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PipelineReset {
    pub pipeline_id: i64,
    /// What was dropped from the source (`nothing` when it held no state).
    pub dropped: String,
}

/// What the pipeline's id has on its source; `None` when the source cannot be reached.
async fn footprint_of(state: &AppState, row: &PipelineRow) -> Result<Option<Footprint>, ApiError> {
    let pool = match connect_source(state, row).await {
        Ok(pool) => pool,
        Err(ApiError::Source(reason)) => {
            tracing::warn!(pipeline_id = row.id, %reason,
                "cannot check the pipeline's state on its source");
            return Ok(None);
        }
        Err(other) => return Err(other),
    };
    let id = pipeline_id(row)?;
    let found = identity::footprint(&pool, id)
        .await
        .map_err(|e| ApiError::Source(chain(&e)))?;
    pool.close().await;
    Ok(Some(found))
}

fn pipeline_id(row: &PipelineRow) -> Result<u64, ApiError> {
    u64::try_from(row.id).map_err(|_| ApiError::Internal(format!("bad pipeline id {}", row.id)))
}

/// At create: a new pipeline's id must have nothing on its source. Otherwise the row is deleted
/// again (the id is not reused: the next create gets a new one) and the answer is 409.
pub(crate) async fn refuse_used_id(state: &AppState, row: &PipelineRow) -> Result<(), ApiError> {
    let found = match footprint_of(state, row).await {
        Ok(Some(found)) if !found.is_empty() => found,
        Ok(_) => return Ok(()),
        Err(error) => {
            pipelines::delete(&state.pool, row.id).await?;
            return Err(error);
        }
    };
    pipelines::delete(&state.pool, row.id).await?;
    Err(ApiError::Conflict(format!(
        "pipeline id {id} already has replication state on source {source} ({found}): it \
         belongs to another pipeline with this id (a replicator run from its own configuration, \
         another control plane, or a deleted pipeline whose source was not cleaned up). Nothing \
         was created; create the pipeline again to get a new id, or drop that state first with \
         `etl pipeline reset` in the other pipeline's configuration",
        id = row.id,
        source = row.source_id,
    )))
}

/// At start: state recorded on the source for another destination belongs to another pipeline
/// with the same id; streaming would leave both destinations with gaps.
pub(crate) async fn refuse_foreign_state(
    state: &AppState,
    row: &PipelineRow,
) -> Result<(), ApiError> {
    let Some(Footprint {
        identity: Some(recorded),
        ..
    }) = footprint_of(state, row).await?
    else {
        return Ok(());
    };
    let ours = destination_description(state, row).await?;
    if recorded.destination == ours {
        return Ok(());
    }
    Err(ApiError::Conflict(format!(
        "pipeline {id}'s replication state on source {source} belongs to destination `{theirs}`, \
         not to this pipeline's destination `{ours}`: another pipeline with id {id} replicates \
         from that source. Delete this pipeline and create it again to get a new id, or drop \
         that state (which stops the other pipeline for good) with \
         `POST /v1/pipelines/{id}/reset`",
        id = row.id,
        source = row.source_id,
        theirs = recorded.destination,
    )))
}

/// What the replicator will call this pipeline's destination.
async fn destination_description(state: &AppState, row: &PipelineRow) -> Result<String, ApiError> {
    let stored = configured::get(
        &state.pool,
        ConfigTable::Destinations,
        &row.tenant_id,
        row.destination_id,
    )
    .await?
    .ok_or_else(|| ApiError::Internal(format!("pipeline {} lost its destination", row.id)))?;
    // As the replicator will get it: secrets opened, file paths placed in the tenant's folder.
    let plain = super::destinations::open(state, stored)?;
    let plain = state
        .files
        .place(&row.tenant_id, plain)
        .map_err(|e| ApiError::Invalid(format!("destination {}: {e}", row.destination_id)))?;
    let config: DestinationConfig = serde_json::from_value(plain)
        .map_err(|e| ApiError::Internal(format!("stored destination config: {e}")))?;
    describe_config(&config).map_err(|e| ApiError::Invalid(e.to_string()))
}

#[utoipa::path(post, path = "/v1/pipelines/{pipeline_id}/reset", tag = "pipelines",
    params(("pipeline_id" = i64, Path, description = "Pipeline id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "The pipeline's slots and state are dropped from its \
            source; the next start copies every table again", body = PipelineReset),
        ApiErrors, RuntimeUnavailable,
    ))]
pub async fn reset_pipeline(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
) -> Result<Json<PipelineReset>, ApiError> {
    let row = find(&state, &tenant, id).await?;
    if runtime::is_running(&state.runtime.status(&target(&row)).await?) {
        return Err(ApiError::Conflict(format!(
            "pipeline {id} is running: stop it, reset it, then start it again"
        )));
    }
    let pool = connect_source(&state, &row).await?;
    let found = identity::footprint(&pool, pipeline_id(&row)?)
        .await
        .map_err(|e| ApiError::Source(chain(&e)))?;
    if let Some((slot, pid)) = found.active_slot() {
        return Err(ApiError::Conflict(format!(
            "pipeline {id}'s slot `{slot}` streams to process {pid} on the source: a \
             replicator with this id runs outside this control plane; stop it first"
        )));
    }
    source_state::delete_pipeline_state(&pool, id)
        .await
        .map_err(ApiError::Source)?;
    pool.close().await;
    tracing::info!(pipeline_id = id, dropped = %found, "pipeline reset");
    Ok(Json(PipelineReset {
        pipeline_id: id,
        dropped: found.to_string(),
    }))
}
