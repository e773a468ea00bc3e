//! `POST /v1/pipelines/{id}/verify`: compares the pipeline's destination with its source, the
//! same [`crate::verify::verify`] as `etl verify`, with the tenant's decrypted configs, each
//! address checked against the network policy (and pinned) as when the control plane connects
//! to a source. A sqlite destination is read from the tenant's directory, which only the `local`
//! runtime shares with the control plane; jsonl, memory and discard are not verifiable.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use super::pipelines::find;
use super::{destinations, sources};
use crate::api::db::configured::{self, ConfigTable};
use crate::api::error::{ApiError, ApiErrors};
use crate::api::extract::{JsonBody, PathParam, TenantId};
use crate::api::reach;
use crate::api::source_db::chain;
use crate::api::state::AppState;
use crate::config::DestinationConfig;
use crate::verify::{self, Error, Options, Report, Target};

/// What to verify.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Tables as SQL names (`public.orders`); absent or empty: every table of the pipeline.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Resync (copy again, online) every table found to differ.
    #[serde(default)]
    pub repair: bool,
    /// Seconds to wait for the destination to reach the source's position (default 120, at
    /// most 600).
    #[serde(default)]
    pub wait_secs: Option<u64>,
}

fn to_api(error: Error) -> ApiError {
    match &error {
        Error::NotVerifiable(_) | Error::NoDestination(_) | Error::UnknownTable(_) => {
            ApiError::Invalid(error.to_string())
        }
        Error::NotReplicated { .. } => ApiError::NotFound(error.to_string()),
        Error::NotReached { .. } => ApiError::Conflict(error.to_string()),
        _ => ApiError::Source(chain(&error)),
    }
}

#[utoipa::path(post, path = "/v1/pipelines/{pipeline_id}/verify", tag = "pipelines",
    request_body = VerifyRequest,
    params(("pipeline_id" = i64, Path, description = "Pipeline id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "Per table: `equal`, `drift` (the key buckets and keys \
            that differ, with row counts) or `not_verified` (why). Compared at a position the \
            destination had reached, so the pipeline must be running (409 otherwise)", body = Report),
        ApiErrors,
    ))]
pub async fn verify_pipeline(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
    JsonBody(body): JsonBody<VerifyRequest>,
) -> Result<Json<Report>, ApiError> {
    let row = find(&state, &tenant, id).await?;
    let wait = body.wait_secs.unwrap_or(120);
    if wait > 600 {
        return Err(ApiError::Invalid(format!(
            "`wait_secs` is {wait}; at most 600"
        )));
    }
    let stored = |table: ConfigTable, config_id| {
        let state = &state;
        let row = &row;
        async move {
            configured::get(&state.pool, table, &row.tenant_id, config_id)
                .await?
                .ok_or_else(|| {
                    ApiError::Internal(format!("pipeline {} lost its {}", row.id, table.noun()))
                })
        }
    };
    let plain_source = sources::open(&state, stored(ConfigTable::Sources, row.source_id).await?)?;
    let source = reach::source_target(&plain_source)?;
    let checked = reach::check(&state.policy, &source).await?;
    let source = reach::pinned(source.connection, &checked);

    let plain_destination = destinations::open(
        &state,
        stored(ConfigTable::Destinations, row.destination_id).await?,
    )?;
    let kind = serde_json::from_value::<DestinationConfig>(plain_destination.clone())
        .map(|config| config.kind())
        .unwrap_or("unknown");
    if kind == "sqlite" && state.runtime.kind() != "local" {
        return Err(ApiError::Invalid(format!(
            "destination `sqlite` is not verifiable from the control plane: the file lives with \
             the replicator of the `{}` runtime; run `etl verify` there",
            state.runtime.kind()
        )));
    }
    let target = match reach::destination_target(&plain_destination)? {
        Some(postgres) => {
            let checked = reach::check(&state.policy, &postgres).await?;
            let schema = match serde_json::from_value::<DestinationConfig>(plain_destination) {
                Ok(DestinationConfig::Postgres(config)) => config.schema,
                _ => None,
            };
            Target::Postgres {
                connection: reach::pinned(postgres.connection, &checked),
                schema,
            }
        }
        None => {
            let placed = state
                .files
                .place(&row.tenant_id, plain_destination)
                .map_err(|e| {
                    ApiError::Invalid(format!("destination {}: {e}", row.destination_id))
                })?;
            let config: DestinationConfig = serde_json::from_value(placed).map_err(|e| {
                ApiError::Internal(format!("pipeline {} destination config: {e}", row.id))
            })?;
            Target::from_config(&config).map_err(to_api)?
        }
    };
    let pipeline_id =
        u64::try_from(id).map_err(|_| ApiError::NotFound(format!("pipeline {id}")))?;
    let options = Options {
        tables: body.tables,
        repair: body.repair,
        wait: Duration::from_secs(wait),
    };
    let report = verify::verify(
        pipeline_id,
        &row.publication_name,
        &source,
        &target,
        &options,
    )
    .await
    .map_err(to_api)?;
    Ok(Json(report))
}
