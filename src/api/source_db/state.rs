//! The replicator's state of one pipeline on its source: table states from
//! `etl.replication_state` (history rows linked by `prev_id`, one `is_current` per table), the
//! apply slot `etl_apply_{pipeline_id}` and the table-sync slots
//! `etl_sync_{pipeline_id}_{table_oid}`.

use serde_json::Value;
use sqlx::PgPool;
use sqlx::types::Json;

use super::{chain, source_error};
use crate::api::domain::pipeline::{
    RollbackTables, RollbackTarget, RolledBackTable, SlotStatus, TableReplicationState,
};
use crate::api::error::ApiError;
use crate::base::schema::TableId;
use crate::engine::state::postgres::PgStateStore;
use crate::engine::state::slots::apply_slot_name;
use crate::engine::state::{self, RollbackSelection, StateName};
use crate::engine::{cleanup, slot_monitor};

async fn has_table(pool: &PgPool, table: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select to_regclass($1) is not null")
        .bind(table)
        .fetch_one(pool)
        .await
}

/// The current state of every table of the pipeline (empty before the replicator first ran).
pub async fn table_states(
    pool: &PgPool,
    pipeline_id: i64,
) -> Result<Vec<TableReplicationState>, ApiError> {
    let read = |e| source_error("cannot read the replication state", e);
    if !has_table(pool, "etl.replication_state")
        .await
        .map_err(read)?
    {
        return Ok(Vec::new());
    }
    type Row = (
        i64,
        Option<String>,
        String,
        Option<String>,
        Option<Json<Value>>,
        Option<i32>,
        Option<String>,
        Option<String>,
    );
    // The retry columns read through `to_jsonb`, so a state not yet migrated to them reads too.
    let rows: Vec<Row> = sqlx::query_as(
        "select s.table_id::int8, \
           (select n.nspname || '.' || c.relname from pg_class c \
              join pg_namespace n on n.oid = c.relnamespace where c.oid = s.table_id), \
           s.state, s.sync_done_lsn::text, s.error, \
           (to_jsonb(s)->>'attempts')::int4, to_jsonb(s)->>'last_error', \
           to_jsonb(s)->>'next_attempt_at' \
         from etl.replication_state s where s.pipeline_id = $1 and s.is_current \
         order by s.table_id",
    )
    .bind(pipeline_id)
    .fetch_all(pool)
    .await
    .map_err(read)?;
    rows.into_iter()
        .map(
            |(table_id, table_name, state, sync_done_lsn, error, attempts, last_error, next)| {
                let state = StateName::parse(&state)
                    .map_err(|e| ApiError::Source(format!("table {table_id}: {e}")))?;
                Ok(TableReplicationState {
                    table_id,
                    table_name,
                    state: state.into(),
                    sync_done_lsn,
                    error: error.map(|Json(v)| v),
                    attempts: attempts.unwrap_or(0),
                    last_error,
                    next_attempt_at: next,
                })
            },
        )
        .collect()
}

/// The pipeline's apply slot: lag behind the server's WAL position and `safe_wal_size`, read by
/// the engine's slot monitor.
pub async fn slot_status(pool: &PgPool, pipeline_id: i64) -> Result<SlotStatus, ApiError> {
    let name = apply_slot_name(engine_pipeline_id(pipeline_id)?);
    let slot = slot_monitor::read_slot(pool, &name)
        .await
        .map_err(|e| ApiError::Source(chain(&e)))?;
    Ok(SlotStatus {
        exists: slot.is_some(),
        active: slot.as_ref().map(|s| s.active),
        lag_bytes: slot
            .as_ref()
            .and_then(|s| s.lag_bytes)
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
        safe_wal_size: slot.as_ref().and_then(|s| s.safe_wal_size),
        wal_status: slot.and_then(|s| s.wal_status),
        name,
    })
}

/// Rolls the chosen tables back through the engine's state store (one transaction; the
/// engine's rule on what may be restored applies). The pipeline must not be running.
pub async fn rollback(
    pool: &PgPool,
    pipeline_id: i64,
    tables: &RollbackTables,
    target: RollbackTarget,
) -> Result<Vec<RolledBackTable>, ApiError> {
    let store = PgStateStore::new(pool.clone(), engine_pipeline_id(pipeline_id)?);
    let selection = match tables {
        RollbackTables::Table(id) => {
            let id = u32::try_from(*id).map_err(|_| {
                ApiError::NotFound(format!(
                    "table {id} in the replication state of pipeline {pipeline_id}"
                ))
            })?;
            RollbackSelection::Table(TableId(id))
        }
        RollbackTables::Errored => RollbackSelection::Errored,
        RollbackTables::All => RollbackSelection::All,
    };
    let target = match target {
        RollbackTarget::Previous => state::RollbackTarget::Previous,
        RollbackTarget::Init => state::RollbackTarget::Init,
    };
    let done = store
        .rollback_tables(selection, target)
        .await
        .map_err(|error| match &error {
            state::Error::UnknownTable { table } => ApiError::NotFound(format!(
                "table {table} in the replication state of pipeline {pipeline_id}"
            )),
            state::Error::NoPreviousState { .. }
            | state::Error::RollbackWouldSkipChanges { .. } => {
                ApiError::Conflict(error.to_string())
            }
            _ => ApiError::Source(format!("cannot roll back: {}", chain(&error))),
        })?;
    Ok(done
        .into_iter()
        .map(|rolled| RolledBackTable {
            table_id: i64::from(rolled.table.0),
            from: rolled.from.into(),
            to: rolled.to.into(),
        })
        .collect())
}

/// The engine's id of a pipeline (the API's ids are positive bigints).
fn engine_pipeline_id(pipeline_id: i64) -> Result<u64, ApiError> {
    u64::try_from(pipeline_id).map_err(|_| ApiError::NotFound(format!("pipeline {pipeline_id}")))
}

/// Drops the pipeline's slots and deletes its rows from every `etl` table (the engine's own
/// cleanup). Safe to repeat.
pub async fn delete_pipeline_state(pool: &PgPool, pipeline_id: i64) -> Result<(), String> {
    let id = engine_pipeline_id(pipeline_id).map_err(|e| e.to_string())?;
    cleanup::delete_pipeline_state(pool, id)
        .await
        .map_err(|e| chain(&e))
}
