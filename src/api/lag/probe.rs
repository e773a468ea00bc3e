//! One reading of a pipeline's apply slot on its source, with the positions as WAL byte
//! offsets: the server's current position (on a standby, the last received), the slot's
//! confirmed and restart positions, `safe_wal_size`, `wal_status` and the server's
//! `max_slot_wal_keep_size`. Also the live copy progress of the pipeline's tables
//! (`pg_stat_progress_copy`, PostgreSQL 14+).

use std::collections::BTreeMap;

use sqlx::PgPool;

use super::forecast::{Point, WalLimit};
use crate::api::error::ApiError;
use crate::api::source_db::source_error;
use crate::engine::state::slots::apply_slot_name;

/// The slot and the server, as read at `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Unix seconds, the control-plane database's clock ([`super::store::now`]).
    pub at: f64,
    pub wal_lsn: i64,
    pub slot_exists: bool,
    pub confirmed_lsn: Option<i64>,
    pub restart_lsn: Option<i64>,
    pub safe_wal_size: Option<i64>,
    pub wal_status: Option<String>,
    pub limit: WalLimit,
}

impl Probe {
    /// `wal_lsn - confirmed_lsn`, never negative.
    pub fn lag_bytes(&self) -> Option<i64> {
        self.confirmed_lsn.map(|c| (self.wal_lsn - c).max(0))
    }

    pub fn point(&self) -> Point {
        Point {
            at: self.at,
            wal_lsn: self.wal_lsn,
            restart_lsn: self.restart_lsn,
        }
    }
}

const READ: &str = "\
with current as (
    select case when pg_is_in_recovery() then pg_last_wal_receive_lsn()
                else pg_current_wal_lsn() end as lsn
)
select (current.lsn - '0/0'::pg_lsn)::int8,
       s.slot_name is not null,
       (s.confirmed_flush_lsn - '0/0'::pg_lsn)::int8,
       (s.restart_lsn - '0/0'::pg_lsn)::int8,
       s.safe_wal_size,
       s.wal_status::text,
       (select setting::int8 from pg_settings where name = 'max_slot_wal_keep_size')
from current left join pg_replication_slots s
    on s.slot_name = $1 and s.database = current_database()";

type Row = (
    i64,
    bool,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

/// Reads the apply slot of `pipeline_id` on `source`, timed by the control-plane database `app`.
pub async fn read(source: &PgPool, app: &PgPool, pipeline_id: i64) -> Result<Probe, ApiError> {
    let id = u64::try_from(pipeline_id)
        .map_err(|_| ApiError::NotFound(format!("pipeline {pipeline_id}")))?;
    let row: Row = sqlx::query_as(READ)
        .bind(apply_slot_name(id))
        .fetch_one(source)
        .await
        .map_err(|e| source_error("cannot read the replication slot", e))?;
    let at = super::store::now(app).await?;
    let (wal_lsn, slot_exists, confirmed_lsn, restart_lsn, safe_wal_size, wal_status, mb) = row;
    let limit = match mb {
        Some(-1) => WalLimit::Unbounded,
        // `max_slot_wal_keep_size` is in megabytes.
        Some(mb) => WalLimit::Bounded(mb.saturating_mul(1024 * 1024)),
        None => WalLimit::Unknown,
    };
    Ok(Probe {
        at,
        wal_lsn,
        slot_exists,
        confirmed_lsn,
        restart_lsn,
        safe_wal_size,
        wal_status,
        limit,
    })
}

/// A table being copied: rows sent so far and the planner's estimate of its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyProgress {
    pub rows_copied: i64,
    /// `pg_class.reltuples`; `None` before the table was ever analyzed.
    pub rows_estimated: Option<i64>,
}

/// The `COPY … TO` statements running on the source for `tables` (oids), by table. A copy that
/// names its table (`COPY t (…) TO STDOUT`) reports the table's oid; one with a query (the
/// engine's parallel CTID ranges, row filters) reports none and is matched by the quoted table
/// name in its statement, as the engine writes it. Connections of one table are summed. Only
/// the sessions of the connecting role are visible to a role that is not a superuser or
/// `pg_read_all_stats`: here the same role the replicator uses.
pub async fn copy_progress(
    source: &PgPool,
    tables: &[i64],
) -> Result<BTreeMap<i64, CopyProgress>, ApiError> {
    if tables.is_empty() {
        return Ok(BTreeMap::new());
    }
    let rows: Vec<(i64, i64, f32)> = sqlx::query_as(
        "select c.oid::int8, sum(p.tuples_processed)::int8, max(c.reltuples) \
         from pg_stat_progress_copy p \
         join pg_stat_activity a on a.pid = p.pid \
         join pg_class c on c.oid = any($1::int8[]::oid[]) \
         join pg_namespace n on n.oid = c.relnamespace \
         where p.command = 'COPY TO' and (p.relid = c.oid or (p.relid = 0 and strpos(a.query, \
           ' FROM \"' || replace(n.nspname, '\"', '\"\"') || '\".\"' \
           || replace(c.relname, '\"', '\"\"') || '\"') > 0)) \
         group by c.oid",
    )
    .bind(tables)
    .fetch_all(source)
    .await
    .map_err(|e| source_error("cannot read the copy progress", e))?;
    Ok(rows
        .into_iter()
        .map(|(table, copied, estimate)| {
            let estimate = (estimate >= 0.0).then_some(estimate as i64);
            (
                table,
                CopyProgress {
                    rows_copied: copied,
                    rows_estimated: estimate,
                },
            )
        })
        .collect())
}
