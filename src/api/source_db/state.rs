//! The replicator's state of one pipeline on its source: table states from
//! `etl.replication_state` (history rows linked by `prev_id`, one `is_current` per table), the
//! apply slot `etl_apply_{pipeline_id}` and the table-sync slots
//! `etl_sync_{pipeline_id}_{table_oid}`.

use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use super::{chain, source_error};
use crate::api::domain::pipeline::{
    RollbackTables, RollbackTarget, RolledBackTable, SlotStatus, TableReplicationState,
};
use crate::api::error::ApiError;
use crate::engine::{cleanup, slot_monitor};

/// The apply worker's slot of a pipeline.
pub fn apply_slot_name(pipeline_id: i64) -> String {
    format!("etl_apply_{pipeline_id}")
}

/// The table-sync slot of one table of a pipeline.
pub fn sync_slot_name(pipeline_id: i64, table_id: i64) -> String {
    format!("etl_sync_{pipeline_id}_{table_id}")
}

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
    );
    let rows: Vec<Row> = sqlx::query_as(
        "select s.table_id::int8, \
           (select n.nspname || '.' || c.relname from pg_class c \
              join pg_namespace n on n.oid = c.relnamespace where c.oid = s.table_id), \
           s.state, s.sync_done_lsn::text, s.error \
         from etl.replication_state s where s.pipeline_id = $1 and s.is_current \
         order by s.table_id",
    )
    .bind(pipeline_id)
    .fetch_all(pool)
    .await
    .map_err(read)?;
    Ok(rows
        .into_iter()
        .map(
            |(table_id, table_name, state, sync_done_lsn, error)| TableReplicationState {
                table_id,
                table_name,
                state,
                sync_done_lsn,
                error: error.map(|Json(v)| v),
            },
        )
        .collect())
}

/// The pipeline's apply slot: lag behind the server's WAL position and `safe_wal_size`, read by
/// the engine's slot monitor.
pub async fn slot_status(pool: &PgPool, pipeline_id: i64) -> Result<SlotStatus, ApiError> {
    let name = apply_slot_name(pipeline_id);
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

/// Rolls the chosen tables back; the pipeline must not be running. One transaction.
pub async fn rollback(
    pool: &PgPool,
    pipeline_id: i64,
    tables: &RollbackTables,
    target: RollbackTarget,
) -> Result<Vec<RolledBackTable>, ApiError> {
    let fail = |e| source_error("cannot roll back", e);
    if !has_table(pool, "etl.replication_state")
        .await
        .map_err(fail)?
    {
        return match tables {
            RollbackTables::Table(id) => Err(ApiError::NotFound(format!(
                "table {id} in the replication state of pipeline {pipeline_id}"
            ))),
            _ => Ok(Vec::new()),
        };
    }
    let mut tx = pool.begin().await.map_err(fail)?;
    let current: Vec<(i64, i64, String, Option<i64>)> = sqlx::query_as(
        "select id, table_id::int8, state, prev_id from etl.replication_state \
         where pipeline_id = $1 and is_current order by table_id for update",
    )
    .bind(pipeline_id)
    .fetch_all(&mut *tx)
    .await
    .map_err(fail)?;
    let chosen: Vec<_> = current
        .into_iter()
        .filter(|(_, table_id, state, _)| match tables {
            RollbackTables::Table(id) => table_id == id,
            RollbackTables::Errored => state == "errored",
            RollbackTables::All => true,
        })
        .collect();
    if let RollbackTables::Table(id) = tables
        && chosen.is_empty()
    {
        return Err(ApiError::NotFound(format!(
            "table {id} in the replication state of pipeline {pipeline_id}"
        )));
    }
    let mut done = Vec::new();
    for (row_id, table_id, state, prev_id) in chosen {
        let to = match (target, prev_id) {
            (RollbackTarget::Previous, None) => {
                if matches!(tables, RollbackTables::Table(_)) {
                    return Err(ApiError::Conflict(format!(
                        "table {table_id} has no previous state to roll back to"
                    )));
                }
                continue;
            }
            (RollbackTarget::Previous, Some(prev)) => {
                let previous: String =
                    sqlx::query_scalar("select state from etl.replication_state where id = $1")
                        .bind(prev)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(fail)?;
                if state == "errored" && skipped_changes_when_errored(&previous) {
                    return Err(ApiError::Conflict(format!(
                        "table {table_id} errored while its changes were being streamed: the \
                         changes made since were not applied, so restoring `{previous}` would \
                         lose them; roll it back with target `init` to copy it again"
                    )));
                }
                unset_current(&mut tx, row_id).await.map_err(fail)?;
                sqlx::query_scalar(
                    "update etl.replication_state set is_current = true where id = $1 \
                     returning state",
                )
                .bind(prev)
                .fetch_one(&mut *tx)
                .await
                .map_err(fail)?
            }
            (RollbackTarget::Init, _) => {
                unset_current(&mut tx, row_id).await.map_err(fail)?;
                sqlx::query(
                    "insert into etl.replication_state (pipeline_id, table_id, state, prev_id) \
                     values ($1, $2::int8::oid, 'init', $3)",
                )
                .bind(pipeline_id)
                .bind(table_id)
                .bind(row_id)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
                drop_slot_if_idle(&mut tx, &sync_slot_name(pipeline_id, table_id))
                    .await
                    .map_err(fail)?;
                "init".to_owned()
            }
        };
        done.push(RolledBackTable {
            table_id,
            from: state,
            to,
        });
    }
    tx.commit().await.map_err(fail)?;
    Ok(done)
}

/// Whether a table that errored in `previous` had its changes skipped from then on (the apply
/// worker streams tables from `sync_done` on; the stream does not come back for them).
fn skipped_changes_when_errored(previous: &str) -> bool {
    matches!(previous, "sync_done" | "ready")
}

async fn unset_current(conn: &mut PgConnection, row_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("update etl.replication_state set is_current = false where id = $1")
        .bind(row_id)
        .execute(conn)
        .await
        .map(drop)
}

async fn drop_slot_if_idle(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "select pg_drop_replication_slot(slot_name) from pg_replication_slots \
         where slot_name = $1 and not active",
    )
    .bind(name)
    .execute(conn)
    .await
    .map(drop)
}

/// Drops the pipeline's slots and deletes its rows from every `etl` table (the engine's own
/// cleanup). Safe to repeat.
pub async fn delete_pipeline_state(pool: &PgPool, pipeline_id: i64) -> Result<(), String> {
    let id = u64::try_from(pipeline_id).map_err(|_| format!("bad pipeline id {pipeline_id}"))?;
    cleanup::delete_pipeline_state(pool, id)
        .await
        .map_err(|e| chain(&e))
}
