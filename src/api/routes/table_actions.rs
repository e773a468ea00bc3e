//! Actions on the tables of a pipeline that are safe while it runs, through its state on the
//! source: `POST /v1/pipelines/{id}/tables/{table_id}/resync` sends one `ready` or `errored`
//! table back to `init` (history kept); the replicator notices on its refresh tick and copies
//! it again under a fresh snapshot while the other tables keep streaming. The same
//! [`resync`] serves `rollback-tables` with target `init` while the pipeline runs. What a resync
//! does in the engine is [`crate::engine::state::postgres::PgStateStore::resync_tables`].

use axum::Json;
use axum::extract::State;

use super::pipelines::{connect_source, find};
use crate::api::domain::pipeline::{RollbackResult, RollbackTables, RolledBackTable};
use crate::api::error::{ApiError, ApiErrors};
use crate::api::extract::{PathParam, TenantId};
use crate::api::source_db::chain;
use crate::api::state::AppState;
use crate::base::schema::TableId;
use crate::engine::state::postgres::PgStateStore;
use crate::engine::state::{self, RollbackSelection};

/// Sends the chosen tables back to `init` on the source. A single table that is being copied
/// is a conflict; `errored` and `all` skip such tables.
pub(crate) async fn resync(
    pool: &sqlx::PgPool,
    pipeline_id: i64,
    tables: &RollbackTables,
) -> Result<Vec<RolledBackTable>, ApiError> {
    let not_found =
        |table: i64| ApiError::NotFound(format!("table {table} of pipeline {pipeline_id}"));
    let engine_id = u64::try_from(pipeline_id)
        .map_err(|_| ApiError::NotFound(format!("pipeline {pipeline_id}")))?;
    let selection = match tables {
        RollbackTables::Table(id) => {
            RollbackSelection::Table(TableId(u32::try_from(*id).map_err(|_| not_found(*id))?))
        }
        RollbackTables::Errored => RollbackSelection::Errored,
        RollbackTables::All => RollbackSelection::All,
    };
    let moved = PgStateStore::new(pool.clone(), engine_id)
        .resync_tables(selection)
        .await
        .map_err(|error| match &error {
            state::Error::UnknownTable { table } => not_found(i64::from(*table)),
            state::Error::BeingCopied { .. } => ApiError::Conflict(error.to_string()),
            _ => ApiError::Source(format!("cannot resync: {}", chain(&error))),
        })?;
    Ok(moved
        .into_iter()
        .map(|moved| RolledBackTable {
            table_id: i64::from(moved.table.0),
            from: moved.from.into(),
            to: moved.to.into(),
        })
        .collect())
}

#[utoipa::path(post, path = "/v1/pipelines/{pipeline_id}/tables/{table_id}/resync",
    tag = "pipelines",
    params(("pipeline_id" = i64, Path, description = "Pipeline id"),
           ("table_id" = i64, Path, description = "Table oid on the source (as in replication-status)"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "The table is back at `init`: a running replicator copies it \
            again at its next refresh, a stopped one when it starts", body = RollbackResult),
        ApiErrors,
    ))]
pub async fn resync_table(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam((id, table)): PathParam<(i64, i64)>,
) -> Result<Json<RollbackResult>, ApiError> {
    let row = find(&state, &tenant, id).await?;
    let pool = connect_source(&state, &row).await?;
    let tables = resync(&pool, id, &RollbackTables::Table(table)).await?;
    Ok(Json(RollbackResult { tables }))
}
