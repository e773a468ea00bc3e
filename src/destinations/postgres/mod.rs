//! The `postgres` destination: a mirror of the replicated tables in another Postgres database.
//!
//! - [`target`]: a mirrored table and its set-based SQL;
//! - [`ddl`]: table creation with the source's types and key, and schema changes;
//! - [`apply`]: batched upserts, updates and deletes;
//! - [`metadata`]: `etl_destination.tables` and `etl_destination.progress`;
//! - [`errors`]: sqlx failures as [`crate::engine::destination::Error`]s.
//!
//! The initial copy streams the source's COPY text unchanged into `COPY … FROM STDIN` (each
//! chunk committed with `synchronous_commit = off`; [`PostgresDestination::finish_copy`] commits
//! synchronously, which makes everything before it durable). Each change batch is one
//! transaction that also stores every touched table's position; replayed changes at or below it
//! are skipped, so each change is applied exactly once. Sessions use `TimeZone=UTC`,
//! `DateStyle=ISO`, `IntervalStyle=postgres` and `extra_float_digits=3`, the settings the source
//! text was produced with, and `etl_destination.writer = on`, which tells the truncate trigger
//! of every mirror that a truncate is etl's own.
//!
//! The database keeps the pipeline identity and, per table, whether its copy finished; a
//! mirror truncated or dropped by hand loses its finished copy, so the engine copies it again.
//! Rows deleted by hand are not noticed.

mod apply;
mod ddl;
mod errors;
mod metadata;
mod target;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};

use crate::base::event::{Change, ChangeEvent, CopyChunk};
use crate::base::schema::{TableId, TableSchema};
use crate::config::{PgConnection, PgConnectionConfig};
use crate::engine::destination::{Destination, Error, PipelineIdentity, Result};

pub use ddl::target_name;

use errors::{server_error, table_error};
use target::TargetTable;

/// Connections to the target: copies of several tables and a change batch can run at once.
const MAX_CONNECTIONS: u32 = 6;

/// The description of a Postgres destination (`postgres etl@mirror:5432/shop`, with
/// ` schema x` when every mirror goes into one schema).
pub fn describe(connection: &PgConnection, target_schema: Option<&str>) -> String {
    match target_schema {
        Some(schema) => format!("postgres {} schema {schema}", connection.describe()),
        None => format!("postgres {}", connection.describe()),
    }
}

/// A Postgres database mirroring the replicated tables.
pub struct PostgresDestination {
    pool: PgPool,
    describe: String,
    /// All mirrors go into this schema; `None`: each keeps its source schema's name.
    target_schema: Option<String>,
    tables: Mutex<HashMap<TableId, Arc<TargetTable>>>,
}

impl std::fmt::Debug for PostgresDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDestination")
            .field("target_schema", &self.target_schema)
            .finish_non_exhaustive()
    }
}

impl PostgresDestination {
    /// Connects to the target and creates the `etl_destination` schema if missing.
    pub async fn connect(
        connection: &PgConnectionConfig,
        target_schema: Option<String>,
    ) -> Result<Self> {
        let connection = connection.resolve().map_err(|e| Error::Fatal {
            message: format!("destination.postgres: {e}"),
            source: None,
        })?;
        let options = connection.sqlx_options().options([
            ("TimeZone", "UTC"),
            ("DateStyle", "ISO"),
            ("IntervalStyle", "postgres"),
            ("extra_float_digits", "3"),
            metadata::WRITER_SETTING,
        ]);
        // One connection first, so that a wrong address or password fails at once.
        let mut first = sqlx::PgConnection::connect_with(&options)
            .await
            .map_err(|e| server_error(&format!("connecting to {}", connection.describe()), e))?;
        let mut tx = first
            .begin()
            .await
            .map_err(|e| server_error("starting a transaction", e))?;
        metadata::ensure(&mut tx)
            .await
            .map_err(|e| server_error("creating the etl_destination schema", e))?;
        tx.commit()
            .await
            .map_err(|e| server_error("creating the etl_destination schema", e))?;
        let _ = first.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(options);
        Ok(PostgresDestination {
            pool,
            describe: describe(&connection, target_schema.as_deref()),
            target_schema,
            tables: Mutex::new(HashMap::new()),
        })
    }

    fn cached(&self, schema: &TableSchema) -> Option<Arc<TargetTable>> {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables
            .get(&schema.id)
            .filter(|t| t.schema == *schema)
            .cloned()
    }

    /// The mirror of `schema`, created or altered first if needed.
    async fn table(&self, schema: &TableSchema) -> Result<Arc<TargetTable>> {
        if let Some(table) = self.cached(schema) {
            return Ok(table);
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| server_error("starting a transaction", e))?;
        let table = ddl::prepare(&mut tx, schema, self.target_schema.as_deref()).await?;
        tx.commit()
            .await
            .map_err(|e| table_error(schema, "committing the mirror of", e))?;
        let table = Arc::new(table);
        self.tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(schema.id, Arc::clone(&table));
        Ok(table)
    }

    /// Runs `work` in one transaction whose commit is synchronous or not.
    async fn in_transaction<T, F>(
        &self,
        schema: &TableSchema,
        synchronous: bool,
        work: F,
    ) -> Result<T>
    where
        F: AsyncFnOnce(&mut sqlx::PgConnection) -> std::result::Result<T, sqlx::Error>,
    {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| server_error("starting a transaction", e))?;
        if !synchronous {
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await
                .map_err(|e| server_error("setting synchronous_commit", e))?;
        }
        let value = work(&mut tx)
            .await
            .map_err(|e| table_error(schema, "writing", e))?;
        tx.commit()
            .await
            .map_err(|e| table_error(schema, "committing", e))?;
        Ok(value)
    }
}

impl Destination for PostgresDestination {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn keeps_identity(&self) -> bool {
        true
    }

    async fn read_identity(&self) -> Result<Option<PipelineIdentity>> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| server_error("connecting", e))?;
        metadata::identity(&mut conn)
            .await
            .map_err(|e| server_error("reading the pipeline identity", e))
    }

    async fn write_identity(&self, identity: &PipelineIdentity) -> Result<()> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| server_error("connecting", e))?;
        metadata::save_identity(&mut conn, identity)
            .await
            .map_err(|e| server_error("storing the pipeline identity", e))
    }

    async fn copied_tables(&self) -> Result<Option<BTreeSet<TableId>>> {
        let fail = |e| server_error("reading the finished copies", e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(metadata::DDL_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        let (copied, vanished) = metadata::copied_tables(&mut tx).await.map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        let mut cache = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        for table in vanished {
            tracing::warn!(
                table_id = table.0,
                "postgres: a mirror table was dropped by hand"
            );
            cache.remove(&table);
        }
        Ok(Some(copied))
    }

    async fn prepare_table(&self, schema: &TableSchema) -> Result<()> {
        self.table(schema).await.map(|_| ())
    }

    async fn begin_copy(&self, schema: &TableSchema) -> Result<()> {
        let table = self.table(schema).await?;
        let truncate = format!("TRUNCATE {}", table.quoted());
        self.in_transaction(schema, true, async |conn| {
            sqlx::query(sqlx::AssertSqlSafe(truncate))
                .execute(&mut *conn)
                .await?;
            metadata::forget_position(conn, schema.id).await?;
            metadata::set_copy_finished(conn, schema.id, false).await
        })
        .await
    }

    async fn write_copy_rows(&self, schema: &TableSchema, chunk: CopyChunk) -> Result<()> {
        let table = self.table(schema).await?;
        let statement = table.copy_sql();
        self.in_transaction(schema, false, async |conn| {
            let mut copy = conn.copy_in_raw(&statement).await?;
            if let Err(e) = copy.send(chunk.raw()).await {
                let _ = copy.abort("etl: sending the chunk failed").await;
                return Err(e);
            }
            copy.finish().await.map(|_| ())
        })
        .await
    }

    async fn finish_copy(&self, schema: &TableSchema) -> Result<()> {
        self.table(schema).await?;
        self.in_transaction(schema, true, async |conn| {
            metadata::set_copy_finished(conn, schema.id, true).await
        })
        .await
    }

    async fn alter_table(&self, _old: &TableSchema, new: &TableSchema) -> Result<()> {
        // The target's own record of the table is the authority on what to change from.
        self.table(new).await.map(|_| ())
    }

    async fn write_events(&self, events: Vec<ChangeEvent>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<TableId> = events.iter().map(|e| e.table.id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut current: HashMap<TableId, Arc<TargetTable>> = {
            let cache = self.tables.lock().unwrap_or_else(|e| e.into_inner());
            ids.iter()
                .filter_map(|id| cache.get(id).map(|t| (*id, Arc::clone(t))))
                .collect()
        };
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| server_error("starting a transaction", e))?;
        let mut positions = metadata::lock_positions(&mut tx, &ids)
            .await
            .map_err(|e| server_error("reading applied positions", e))?;
        let mut moved: Vec<TableId> = Vec::new();
        let mut pending: Vec<(Arc<TargetTable>, &Change)> = Vec::new();
        let mut skipped = 0usize;
        for event in &events {
            let id = event.table.id;
            if positions.get(&id).is_some_and(|p| event.position() <= *p) {
                skipped += 1;
                continue;
            }
            let table = match current.get(&id) {
                Some(table) if table.schema == *event.table => Arc::clone(table),
                _ => {
                    // A schema change: earlier rows are written in the old shape, then the
                    // table follows, inside this same transaction.
                    apply_pending(&mut tx, &mut pending).await?;
                    let table =
                        ddl::prepare(&mut tx, &event.table, self.target_schema.as_deref()).await?;
                    let table = Arc::new(table);
                    current.insert(id, Arc::clone(&table));
                    table
                }
            };
            pending.push((table, &event.change));
            positions.insert(id, event.position());
            if !moved.contains(&id) {
                moved.push(id);
            }
        }
        apply_pending(&mut tx, &mut pending).await?;
        for id in moved {
            if let Some(position) = positions.get(&id) {
                metadata::save_position(&mut tx, id, *position)
                    .await
                    .map_err(|e| server_error("storing applied positions", e))?;
            }
        }
        tx.commit()
            .await
            .map_err(|e| server_error("committing a batch", e))?;
        self.tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(current);
        if skipped > 0 {
            tracing::info!(
                skipped,
                "postgres: skipped changes that were applied before a restart"
            );
        }
        Ok(())
    }
}

/// Writes the collected changes and empties the list.
async fn apply_pending(
    conn: &mut sqlx::PgConnection,
    pending: &mut Vec<(Arc<TargetTable>, &Change)>,
) -> Result<()> {
    apply::Applier::new(conn).apply(pending).await?;
    pending.clear();
    Ok(())
}

/// The mirror of `table` in the target (its name and the source schema it was last written
/// with) and whether its initial copy finished, for readers such as `etl verify`; `None` when
/// the target holds none.
pub async fn mirror_layout(
    conn: &mut sqlx::PgConnection,
    table: TableId,
) -> std::result::Result<Option<(crate::base::schema::TableName, TableSchema, bool)>, sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('etl_destination.tables') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        return Ok(None);
    }
    let Some((name, schema)) = metadata::load_table(conn, table).await? else {
        return Ok(None);
    };
    let copied: bool = sqlx::query_scalar(
        "SELECT copy_finished_at IS NOT NULL FROM etl_destination.tables WHERE table_id = $1",
    )
    .bind(i64::from(table.0))
    .fetch_one(&mut *conn)
    .await?;
    Ok(Some((name, schema, copied)))
}
