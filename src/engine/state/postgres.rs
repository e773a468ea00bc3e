//! [`PgStateStore`]: the `etl` tables of one pipeline in the source database (see
//! `migrations/replicator/`): every SQL statement on them.

use std::collections::BTreeMap;

use sqlx::PgPool;

use super::slots::sync_slot_name;
use super::{
    Error, RollbackSelection, RollbackTarget, RolledBack, StateName, TableError, TableState,
};
use crate::base::lsn::Lsn;
use crate::base::schema::{ColumnSchema, ReplicaIdentity, TableId, TableName, TableSchema};

/// The persisted state of one pipeline. Cheap to clone (a pool handle and the id).
#[derive(Debug, Clone)]
pub struct PgStateStore {
    pool: PgPool,
    pipeline_id: i64,
    retries: TableRetries,
}

/// How an `errored` table is retried automatically (`pipeline.table_errors`): up to
/// `max_attempts` errors in a row, each followed by a new copy after `delay_secs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableRetries {
    pub max_attempts: u32,
    pub delay_secs: u64,
}

fn query(action: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| Error::Query { action, source }
}

fn parse_lsn(text: &str) -> Result<Lsn, Error> {
    text.parse()
        .map_err(|e| Error::Corrupt(format!("stored LSN: {e}")))
}

impl PgStateStore {
    pub fn new(pool: PgPool, pipeline_id: u64) -> Self {
        Self {
            pool,
            // Pipeline ids are stored as bigint; ids above i64::MAX wrap, consistently.
            pipeline_id: pipeline_id as i64,
            retries: TableRetries::default(),
        }
    }

    /// The same store, scheduling automatic retries of errored tables per `retries`
    /// (without it, an errored table waits for an operator).
    pub fn with_retries(mut self, retries: TableRetries) -> Self {
        self.retries = retries;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The current state of every table of the pipeline.
    pub async fn table_states(&self) -> Result<BTreeMap<TableId, TableState>, Error> {
        let rows: Vec<(i64, String, Option<String>, Option<serde_json::Value>)> = sqlx::query_as(
            "select table_id::bigint, state, sync_done_lsn::text, error \
             from etl.replication_state where pipeline_id = $1 and is_current",
        )
        .bind(self.pipeline_id)
        .fetch_all(&self.pool)
        .await
        .map_err(query("reading table states"))?;
        let mut states = BTreeMap::new();
        for (table, state, lsn, error) in rows {
            let state = decode_state(&state, lsn.as_deref(), error)?;
            states.insert(TableId(table as u32), state);
        }
        Ok(states)
    }

    /// Makes `state` the table's current state, keeping the previous one in the history.
    pub async fn set_table_state(&self, table: TableId, state: &TableState) -> Result<(), Error> {
        let (lsn, error) = match state {
            TableState::SyncDone(lsn) => (Some(lsn.to_string()), None),
            TableState::Errored(error) => (
                None,
                Some(serde_json::to_value(error).map_err(|e| Error::Corrupt(e.to_string()))?),
            ),
            _ => (None, None),
        };
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query("starting a state transaction"))?;
        let previous: Option<i64> = sqlx::query_scalar(
            "update etl.replication_state set is_current = false \
             where pipeline_id = $1 and table_id = $2::bigint::oid and is_current returning id",
        )
        .bind(self.pipeline_id)
        .bind(i64::from(table.0))
        .fetch_optional(&mut *tx)
        .await
        .map_err(query("replacing a table state"))?;
        // The retry bookkeeping follows the previous row: `ready` clears it, `errored` counts
        // one more error and, with retries left (and a retryable error), schedules the next.
        sqlx::query(
            "insert into etl.replication_state (pipeline_id, table_id, state, sync_done_lsn, \
             error, prev_id, attempts, last_error, next_attempt_at) \
             select $1, $2::bigint::oid, $3, $4::text::pg_lsn, $5, $6, \
             case $3 when 'ready' then 0 when 'errored' then coalesce(p.attempts, 0) + 1 \
                  else coalesce(p.attempts, 0) end, \
             case $3 when 'ready' then null when 'errored' then $5->>'reason' \
                  else p.last_error end, \
             case when $3 = 'errored' and $5->'retry'->>'policy' = 'manual' \
                  and coalesce(p.attempts, 0) + 1 <= $7 \
                  then now() + make_interval(secs => $8) end \
             from (select 1) as one left join etl.replication_state p on p.id = $6",
        )
        .bind(self.pipeline_id)
        .bind(i64::from(table.0))
        .bind(state.name())
        .bind(lsn)
        .bind(error)
        .bind(previous)
        .bind(i64::from(self.retries.max_attempts))
        .bind(self.retries.delay_secs as f64)
        .execute(&mut *tx)
        .await
        .map_err(query("storing a table state"))?;
        tx.commit().await.map_err(query("committing a table state"))
    }

    /// Restores the table's previous state (e.g. before it errored); returns it, or `None` when
    /// there is no earlier state. See [`StateName::check_rollback`] for what is refused.
    pub async fn rollback_table(&self, table: TableId) -> Result<Option<TableState>, Error> {
        match self
            .rollback_tables(RollbackSelection::Table(table), RollbackTarget::Previous)
            .await
        {
            Ok(_) => {}
            Err(Error::NoPreviousState { .. } | Error::UnknownTable { .. }) => return Ok(None),
            Err(error) => return Err(error),
        }
        Ok(self.table_states().await?.remove(&table))
    }

    /// Rolls the selected tables back, in one transaction (the pipeline should not be running:
    /// a running replicator keeps its own copy of the states). The replaced states stay in the
    /// history. Rolling back to `init` also drops the table's leftover table-sync slot when no
    /// session uses it. With [`RollbackSelection::Table`], a table missing from the state or
    /// without a previous state is an error; the other selections skip such tables.
    pub async fn rollback_tables(
        &self,
        selection: RollbackSelection,
        target: RollbackTarget,
    ) -> Result<Vec<RolledBack>, Error> {
        self.move_tables(selection, target, false).await
    }

    /// Sends the selected tables back to `init` so that they are copied again, safe while the
    /// pipeline runs: a running apply worker notices on its refresh tick, stops applying them,
    /// and its table-sync workers copy them under a fresh snapshot. Only `ready` and `errored`
    /// tables move (see [`StateName::check_resync`]): with [`RollbackSelection::Table`] another
    /// state is an error, the other selections skip such tables. History is kept.
    pub async fn resync_tables(
        &self,
        selection: RollbackSelection,
    ) -> Result<Vec<RolledBack>, Error> {
        self.move_tables(selection, RollbackTarget::Init, true)
            .await
    }

    async fn move_tables(
        &self,
        selection: RollbackSelection,
        target: RollbackTarget,
        settled_only: bool,
    ) -> Result<Vec<RolledBack>, Error> {
        let exists: bool =
            sqlx::query_scalar("select to_regclass('etl.replication_state') is not null")
                .fetch_one(&self.pool)
                .await
                .map_err(query("looking for the replication state"))?;
        if !exists {
            return match selection {
                RollbackSelection::Table(table) => Err(Error::UnknownTable { table: table.0 }),
                _ => Ok(Vec::new()),
            };
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query("starting a rollback"))?;
        let current: Vec<(i64, i64, String, Option<i64>)> = sqlx::query_as(
            "select id, table_id::int8, state, prev_id from etl.replication_state \
             where pipeline_id = $1 and is_current order by table_id for update",
        )
        .bind(self.pipeline_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(query("reading the states to roll back"))?;
        let mut chosen = Vec::new();
        for (row, table, state, previous) in current {
            let table = TableId(table as u32);
            let state = StateName::parse(&state)?;
            let selected = match selection {
                RollbackSelection::Table(id) => id == table,
                RollbackSelection::Errored => state == StateName::Errored,
                RollbackSelection::All => true,
            };
            if selected && settled_only {
                match (StateName::check_resync(table, state.as_str()), selection) {
                    (Ok(()), _) => {}
                    (Err(error), RollbackSelection::Table(_)) => return Err(error),
                    (Err(_), _) => continue,
                }
            }
            if selected {
                chosen.push((row, table, state, previous));
            }
        }
        if let RollbackSelection::Table(table) = selection
            && chosen.is_empty()
        {
            return Err(Error::UnknownTable { table: table.0 });
        }
        let mut done = Vec::new();
        for (row, table, from, previous) in chosen {
            let to = match (target, previous) {
                (RollbackTarget::Previous, None) => {
                    if matches!(selection, RollbackSelection::Table(_)) {
                        return Err(Error::NoPreviousState { table: table.0 });
                    }
                    continue;
                }
                (RollbackTarget::Previous, Some(previous)) => {
                    let name: String =
                        sqlx::query_scalar("select state from etl.replication_state where id = $1")
                            .bind(previous)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(query("reading the previous state"))?;
                    StateName::check_rollback(table, from.as_str(), &name)?;
                    unset_current(&mut tx, row).await?;
                    sqlx::query("update etl.replication_state set is_current = true where id = $1")
                        .bind(previous)
                        .execute(&mut *tx)
                        .await
                        .map_err(query("restoring the previous state"))?;
                    StateName::parse(&name)?
                }
                (RollbackTarget::Init, _) => {
                    unset_current(&mut tx, row).await?;
                    sqlx::query(
                        "insert into etl.replication_state (pipeline_id, table_id, state, prev_id) \
                         values ($1, $2::bigint::oid, $3, $4)",
                    )
                    .bind(self.pipeline_id)
                    .bind(i64::from(table.0))
                    .bind(StateName::Init.as_str())
                    .bind(row)
                    .execute(&mut *tx)
                    .await
                    .map_err(query("resetting a table to init"))?;
                    sqlx::query(
                        "select pg_drop_replication_slot(slot_name) from pg_replication_slots \
                         where slot_name = $1 and not active",
                    )
                    .bind(sync_slot_name(self.pipeline_id as u64, table))
                    .execute(&mut *tx)
                    .await
                    .map_err(query("dropping a leftover table-sync slot"))?;
                    StateName::Init
                }
            };
            done.push(RolledBack { table, from, to });
        }
        tx.commit().await.map_err(query("committing a rollback"))?;
        Ok(done)
    }

    /// Sends every errored table whose retry is due back to `init` (copied again by the
    /// running replicator, like a resync), keeping its attempt count and last error. Returns
    /// those tables.
    pub async fn retry_due(&self) -> Result<Vec<TableId>, Error> {
        let tables: Vec<i64> = sqlx::query_scalar(
            "with due as (update etl.replication_state set is_current = false \
               where pipeline_id = $1 and is_current and state = 'errored' \
               and next_attempt_at <= now() \
               returning id, table_id, attempts, last_error) \
             insert into etl.replication_state \
               (pipeline_id, table_id, state, prev_id, attempts, last_error) \
             select $1, table_id, 'init', id, attempts, last_error from due \
             returning table_id::bigint",
        )
        .bind(self.pipeline_id)
        .fetch_all(&self.pool)
        .await
        .map_err(query("scheduling due table retries"))?;
        Ok(tables.into_iter().map(|t| TableId(t as u32)).collect())
    }

    /// Per current table (`schema`, `name`): errors in a row (`attempts`) and when its next
    /// automatic retry is due (Unix seconds; `None` when none is scheduled).
    pub async fn retry_status(&self) -> Result<Vec<(TableName, i32, Option<f64>)>, Error> {
        let rows: Vec<(String, String, i32, Option<f64>)> = sqlx::query_as(
            "select n.nspname::text, c.relname::text, s.attempts, \
               extract(epoch from s.next_attempt_at)::float8 \
             from etl.replication_state s join pg_class c on c.oid = s.table_id \
             join pg_namespace n on n.oid = c.relnamespace \
             where s.pipeline_id = $1 and s.is_current order by s.table_id",
        )
        .bind(self.pipeline_id)
        .fetch_all(&self.pool)
        .await
        .map_err(query("reading the retry bookkeeping"))?;
        Ok(rows
            .into_iter()
            .map(|(schema, name, attempts, next)| (TableName::new(schema, name), attempts, next))
            .collect())
    }

    /// The pipeline's errored tables: id, name (`schema.table`, or the id when the relation
    /// is gone) and the recorded reason, in id order.
    pub async fn errored_tables(&self) -> Result<Vec<(TableId, String, String)>, Error> {
        let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
            "select s.table_id::bigint, coalesce((select format('%I.%I', n.nspname, c.relname) \
             from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where c.oid = s.table_id), s.table_id::text), s.error->>'reason' \
             from etl.replication_state s \
             where s.pipeline_id = $1 and s.is_current and s.state = 'errored' order by s.table_id",
        )
        .bind(self.pipeline_id)
        .fetch_all(&self.pool)
        .await
        .map_err(query("reading errored tables"))?;
        Ok(rows
            .into_iter()
            .map(|(id, name, reason)| (TableId(id as u32), name, reason.unwrap_or_default()))
            .collect())
    }

    /// Forgets a table (removed from the publication): its states, schema and mapping.
    pub async fn remove_table(&self, table: TableId) -> Result<(), Error> {
        for sql in [
            "delete from etl.replication_state where pipeline_id = $1 and table_id = $2::bigint::oid",
            "delete from etl.table_schemas where pipeline_id = $1 and table_id = $2::bigint::oid",
            "delete from etl.table_mappings where pipeline_id = $1 and source_table_id = $2::bigint::oid",
        ] {
            sqlx::query(sql)
                .bind(self.pipeline_id)
                .bind(i64::from(table.0))
                .execute(&self.pool)
                .await
                .map_err(query("removing a table"))?;
        }
        Ok(())
    }

    /// Stores (replaces) the schema of a table.
    pub async fn store_schema(&self, schema: &TableSchema) -> Result<(), Error> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query("starting a schema transaction"))?;
        let id: i64 = sqlx::query_scalar(
            "insert into etl.table_schemas \
             (pipeline_id, table_id, schema_name, table_name, replica_identity) \
             values ($1, $2::bigint::oid, $3, $4, $5::\"char\") \
             on conflict (pipeline_id, table_id) do update set schema_name = excluded.schema_name, \
             table_name = excluded.table_name, replica_identity = excluded.replica_identity, \
             updated_at = now() returning id",
        )
        .bind(self.pipeline_id)
        .bind(i64::from(schema.id.0))
        .bind(&schema.name.schema)
        .bind(&schema.name.name)
        .bind((schema.replica_identity.code() as char).to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(query("storing a table schema"))?;
        sqlx::query("delete from etl.table_columns where table_schema_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(query("replacing table columns"))?;
        for (index, column) in schema.columns.iter().enumerate() {
            sqlx::query(
                "insert into etl.table_columns (table_schema_id, position, name, type_oid, \
                 type_modifier, nullable, primary_key_position) \
                 values ($1, $2, $3, $4::bigint::oid, $5, $6, $7)",
            )
            .bind(id)
            .bind(index as i32 + 1)
            .bind(&column.name)
            .bind(i64::from(column.type_oid))
            .bind(column.type_modifier)
            .bind(column.nullable)
            .bind(column.primary_key_position.map(i32::from))
            .execute(&mut *tx)
            .await
            .map_err(query("storing table columns"))?;
        }
        sqlx::query(
            "insert into etl.table_mappings (pipeline_id, source_table_id, destination_table_id) \
             values ($1, $2::bigint::oid, $3) on conflict (pipeline_id, source_table_id) \
             do update set destination_table_id = excluded.destination_table_id",
        )
        .bind(self.pipeline_id)
        .bind(i64::from(schema.id.0))
        .bind(schema.name.to_string())
        .execute(&mut *tx)
        .await
        .map_err(query("storing a table mapping"))?;
        tx.commit()
            .await
            .map_err(query("committing a table schema"))
    }

    /// Every stored table schema of the pipeline.
    pub async fn table_schemas(&self) -> Result<BTreeMap<TableId, TableSchema>, Error> {
        type ColumnRow = (
            i64,
            String,
            String,
            String,
            String,
            i64,
            i32,
            bool,
            Option<i32>,
        );
        let rows: Vec<ColumnRow> = sqlx::query_as(
            "select s.table_id::bigint, s.schema_name, s.table_name, s.replica_identity::text, \
             c.name, c.type_oid::bigint, c.type_modifier, c.nullable, c.primary_key_position \
             from etl.table_schemas s join etl.table_columns c on c.table_schema_id = s.id \
             where s.pipeline_id = $1 order by s.table_id, c.position",
        )
        .bind(self.pipeline_id)
        .fetch_all(&self.pool)
        .await
        .map_err(query("reading table schemas"))?;
        let mut schemas: BTreeMap<TableId, TableSchema> = BTreeMap::new();
        for (table, schema_name, table_name, identity, name, type_oid, modifier, nullable, key) in
            rows
        {
            let id = TableId(table as u32);
            let identity = identity
                .bytes()
                .next()
                .and_then(ReplicaIdentity::from_code)
                .ok_or_else(|| Error::Corrupt(format!("replica identity `{identity}`")))?;
            let schema = schemas.entry(id).or_insert_with(|| TableSchema {
                id,
                name: TableName::new(schema_name, table_name),
                columns: Vec::new(),
                replica_identity: identity,
            });
            schema.columns.push(ColumnSchema {
                name,
                type_oid: type_oid as u32,
                type_modifier: modifier,
                nullable,
                primary_key_position: key.map(|k| k as u16),
                existing_rows_value: None,
            });
        }
        Ok(schemas)
    }

    /// The stored durable position of the apply worker.
    pub async fn progress(&self) -> Result<Option<Lsn>, Error> {
        let lsn: Option<String> = sqlx::query_scalar(
            "select confirmed_flush_lsn::text from etl.replication_progress where pipeline_id = $1",
        )
        .bind(self.pipeline_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query("reading progress"))?;
        lsn.as_deref().map(parse_lsn).transpose()
    }

    /// Stores the durable position; never moves it backwards.
    pub async fn store_progress(&self, lsn: Lsn) -> Result<(), Error> {
        sqlx::query(
            "insert into etl.replication_progress (pipeline_id, confirmed_flush_lsn) \
             values ($1, $2::text::pg_lsn) on conflict (pipeline_id) do update \
             set confirmed_flush_lsn = greatest(etl.replication_progress.confirmed_flush_lsn, \
             excluded.confirmed_flush_lsn), updated_at = now()",
        )
        .bind(self.pipeline_id)
        .bind(lsn.to_string())
        .execute(&self.pool)
        .await
        .map_err(query("storing progress"))?;
        Ok(())
    }

    /// Forgets the durable position (the slot was recreated: positions restart).
    pub async fn clear_progress(&self) -> Result<(), Error> {
        sqlx::query("delete from etl.replication_progress where pipeline_id = $1")
            .bind(self.pipeline_id)
            .execute(&self.pool)
            .await
            .map_err(query("clearing progress"))?;
        Ok(())
    }
}

async fn unset_current(conn: &mut sqlx::PgConnection, row: i64) -> Result<(), Error> {
    sqlx::query("update etl.replication_state set is_current = false where id = $1")
        .bind(row)
        .execute(conn)
        .await
        .map_err(query("replacing a table state"))?;
    Ok(())
}

fn decode_state(
    state: &str,
    lsn: Option<&str>,
    error: Option<serde_json::Value>,
) -> Result<TableState, Error> {
    Ok(match StateName::parse(state)? {
        StateName::Init => TableState::Init,
        StateName::DataSync => TableState::DataSync,
        StateName::FinishedCopy => TableState::FinishedCopy,
        StateName::SyncDone => {
            let lsn = lsn.ok_or_else(|| Error::Corrupt("sync_done without an LSN".into()))?;
            TableState::SyncDone(parse_lsn(lsn)?)
        }
        StateName::Ready => TableState::Ready,
        StateName::Errored => {
            let error = error.ok_or_else(|| Error::Corrupt("errored without an error".into()))?;
            let error: TableError = serde_json::from_value(error)
                .map_err(|e| Error::Corrupt(format!("table error: {e}")))?;
            TableState::Errored(error)
        }
    })
}
