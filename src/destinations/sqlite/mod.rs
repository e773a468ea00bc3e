//! The `sqlite` destination, the embedded default: a local SQLite file that mirrors every source
//! table, readable by other processes while etl writes (WAL journal mode).
//!
//! - [`naming`]: SQLite table and column names of source tables (no two can collide);
//! - [`types`]: Postgres types → SQLite affinities and exact values;
//! - [`table`]: one mirrored table and the SQL that writes its rows;
//! - [`metadata`]: `etl_tables`, `etl_columns`, `etl_progress`, `etl_pipeline_identity`;
//! - [`ddl`]: creating tables and following schema changes;
//! - [`copy`], [`apply`]: the initial copy and change events (exactly-once);
//! - [`errors`]: SQLite failures as [`crate::engine::destination::Error`]s.
//!
//! One connection does every write, behind a mutex, on tokio's blocking threads (SQLite has a
//! single writer anyway). Each call is one transaction. Change batches commit with
//! `synchronous=FULL` (durable when `Ok`); copy chunks commit with `synchronous=NORMAL` (they
//! survive a crash of etl, and a copy interrupted by a power loss is redone from scratch anyway)
//! and [`SqliteDestination::finish_copy`] makes them durable with a `FULL` commit.
//!
//! The file keeps the pipeline identity and, per table, whether its copy finished
//! (`etl_tables.copy_finished_at`): a replaced or deleted file holds neither, so the engine
//! refuses to stream into it; a mirror table dropped by hand is copied again. Rows deleted by
//! hand from a mirror are not noticed.

mod apply;
mod copy;
mod ddl;
mod errors;
mod metadata;
mod naming;
mod table;
mod types;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::base::event::{ChangeEvent, CopyChunk};
use crate::base::schema::{TableId, TableSchema};
use crate::engine::destination::{Destination, Error, PipelineIdentity, Result};

pub use apply::Applied;
pub use naming::table_name;
pub use types::{Affinity, pg_type_name};

use errors::{file_error, metadata_error, table_error};
use table::MirrorTable;

/// How long a write waits for another process that holds the write lock (e.g. a user's
/// `sqlite3` session writing to the file) before the write fails as transient.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The description of a SQLite destination (`sqlite data/etl.db`).
pub fn describe(path: &Path) -> String {
    format!("sqlite {}", path.display())
}

/// A SQLite file mirroring the replicated tables.
pub struct SqliteDestination {
    path: PathBuf,
    store: Arc<Mutex<Store>>,
}

struct Store {
    conn: Connection,
    tables: HashMap<TableId, MirrorTable>,
    /// The connection's current `synchronous` setting is `FULL`.
    synchronous_full: bool,
}

impl std::fmt::Debug for SqliteDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteDestination")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteDestination {
    /// Opens (or creates, with its parent directories) the SQLite file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let shown = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::fatal(
                    format!("cannot create the directory of sqlite file {shown}"),
                    e,
                )
            })?;
        }
        let open_error = |e| file_error(&format!("opening {shown}"), e);
        let conn = Connection::open(&path).map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(open_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Fatal {
                message: format!(
                    "sqlite file {shown} cannot use WAL journal mode (got `{mode}`); \
                     is it on a network file system?"
                ),
                source: None,
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_error)?;
        conn.set_prepared_statement_cache_capacity(256);
        metadata::ensure(&conn).map_err(|e| match e {
            metadata::MetadataError::Sqlite(e) => open_error(e),
            other => Error::fatal(format!("sqlite file {shown}"), other),
        })?;
        let tables = metadata::load_tables(&conn).map_err(metadata_error)?;
        Ok(SqliteDestination {
            path,
            store: Arc::new(Mutex::new(Store {
                conn,
                tables,
                synchronous_full: true,
            })),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` with the store on a blocking thread.
    async fn with_store<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let mut store = store.lock().map_err(|_| Error::Fatal {
                message: "sqlite destination is unusable after a panic in an earlier write".into(),
                source: None,
            })?;
            work(&mut store)
        })
        .await
        .map_err(|e| Error::fatal("sqlite write task failed", e))?
    }
}

impl Store {
    /// Sets `synchronous` to `FULL` (durable commits) or `NORMAL` (crash-safe, not power-safe).
    fn synchronous(&mut self, full: bool) -> Result<()> {
        if self.synchronous_full != full {
            let mode = if full { "FULL" } else { "NORMAL" };
            self.conn
                .pragma_update(None, "synchronous", mode)
                .map_err(|e| file_error("setting synchronous", e))?;
            self.synchronous_full = full;
        }
        Ok(())
    }

    /// Runs `work` in one write transaction; on failure the transaction is rolled back and the
    /// in-memory table list is reloaded, since `work` may have changed it.
    fn transaction<T>(
        &mut self,
        full: bool,
        work: impl FnOnce(&Connection, &mut HashMap<TableId, MirrorTable>) -> Result<T>,
    ) -> Result<T> {
        self.synchronous(full)?;
        let Store { conn, tables, .. } = self;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| file_error("starting a transaction", e))?;
        let result = work(&tx, tables).and_then(|value| {
            tx.commit()
                .map_err(|e| file_error("committing", e))
                .map(|()| value)
        });
        if result.is_err() {
            match metadata::load_tables(conn) {
                Ok(reloaded) => *tables = reloaded,
                Err(e) => tracing::warn!(error = %e, "could not reload sqlite table metadata"),
            }
        }
        result
    }

    /// The mirrored table of `schema`, created or altered to match it.
    fn table_for<'a>(
        conn: &Connection,
        tables: &'a mut HashMap<TableId, MirrorTable>,
        schema: &TableSchema,
    ) -> Result<&'a MirrorTable> {
        let fail = |e| table_error(schema, "creating or altering", e);
        let table = match tables.remove(&schema.id) {
            Some(table) if table.schema == *schema => table,
            Some(table) => ddl::alter(conn, &table, schema).map_err(fail)?,
            None => ddl::create(conn, schema).map_err(fail)?,
        };
        Ok(tables.entry(schema.id).or_insert(table))
    }
}

fn set_copy_finished(conn: &Connection, table: TableId, finished: bool) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE etl_tables SET copy_finished_at = \
         CASE WHEN ?2 THEN strftime('%Y-%m-%dT%H:%M:%fZ') END WHERE table_id = ?1",
        rusqlite::params![table.0, finished],
    )?;
    Ok(())
}

impl Destination for SqliteDestination {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn describe(&self) -> String {
        describe(&self.path)
    }

    fn keeps_identity(&self) -> bool {
        true
    }

    async fn read_identity(&self) -> Result<Option<PipelineIdentity>> {
        self.with_store(|store| {
            metadata::identity(&store.conn)
                .map_err(|e| file_error("reading the pipeline identity", e))
        })
        .await
    }

    async fn write_identity(&self, identity: &PipelineIdentity) -> Result<()> {
        let identity = identity.clone();
        self.with_store(move |store| {
            store.transaction(true, |conn, _| {
                metadata::save_identity(conn, &identity)
                    .map_err(|e| file_error("storing the pipeline identity", e))
            })
        })
        .await
    }

    async fn copied_tables(&self) -> Result<Option<BTreeSet<TableId>>> {
        self.with_store(|store| {
            store.transaction(true, |conn, tables| {
                let (copied, vanished) = metadata::copied_tables(conn)
                    .map_err(|e| file_error("reading the finished copies", e))?;
                for table in vanished {
                    tracing::warn!(
                        table_id = table.0,
                        "sqlite: a mirror table was dropped by hand"
                    );
                    tables.remove(&table);
                }
                Ok(Some(copied))
            })
        })
        .await
    }

    async fn prepare_table(&self, schema: &TableSchema) -> Result<()> {
        let schema = schema.clone();
        self.with_store(move |store| {
            store.transaction(true, |conn, tables| {
                Store::table_for(conn, tables, &schema).map(|_| ())
            })
        })
        .await
    }

    async fn begin_copy(&self, schema: &TableSchema) -> Result<()> {
        let schema = schema.clone();
        self.with_store(move |store| {
            store.transaction(true, |conn, tables| {
                let table = Store::table_for(conn, tables, &schema)?;
                let fail = |e| table_error(&schema, "emptying", e);
                conn.execute(&format!("DELETE FROM {}", table.quoted()), [])
                    .map_err(fail)?;
                metadata::forget_position(conn, schema.id).map_err(fail)?;
                set_copy_finished(conn, schema.id, false).map_err(fail)
            })
        })
        .await
    }

    async fn write_copy_rows(&self, schema: &TableSchema, chunk: CopyChunk) -> Result<()> {
        let schema = schema.clone();
        self.with_store(move |store| {
            store.transaction(false, |conn, tables| {
                let table = Store::table_for(conn, tables, &schema)?;
                copy::insert_chunk(conn, table, &chunk).map(|_| ())
            })
        })
        .await
    }

    async fn finish_copy(&self, schema: &TableSchema) -> Result<()> {
        let schema = schema.clone();
        self.with_store(move |store| {
            // A FULL commit syncs the WAL, and with it every NORMAL commit of the copy before it.
            store.transaction(true, |conn, tables| {
                Store::table_for(conn, tables, &schema)?;
                set_copy_finished(conn, schema.id, true)
                    .map_err(|e| table_error(&schema, "finishing the copy of", e))
            })
        })
        .await
    }

    async fn alter_table(&self, _old: &TableSchema, new: &TableSchema) -> Result<()> {
        // The file's own record of the table is the authority on what to change from.
        self.prepare_table(new).await
    }

    async fn write_events(&self, events: Vec<ChangeEvent>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let outcome = self
            .with_store(move |store| {
                store.transaction(true, |conn, tables| {
                    apply::apply_events(conn, tables, &events)
                })
            })
            .await?;
        if outcome.skipped > 0 {
            tracing::info!(
                skipped = outcome.skipped,
                applied = outcome.applied,
                "sqlite: skipped changes that were applied before a restart"
            );
        }
        Ok(())
    }
}

/// How one source table is mirrored in a SQLite file, for readers such as `etl verify`.
#[derive(Debug, Clone)]
pub struct MirrorLayout {
    /// The SQLite table.
    pub table: String,
    /// SQLite column names, one per `schema.columns`.
    pub columns: Vec<String>,
    /// The source schema the mirror was last written with.
    pub schema: TableSchema,
    /// Its initial copy finished (`etl_tables.copy_finished_at`).
    pub copied: bool,
}

/// The mirror of `table` in the file `conn` reads, if the file holds one.
pub fn mirror_layout(
    conn: &Connection,
    table: TableId,
) -> std::result::Result<Option<MirrorLayout>, rusqlite::Error> {
    use rusqlite::OptionalExtension as _;
    let has_metadata: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'etl_tables')",
        [],
        |row| row.get(0),
    )?;
    if !has_metadata {
        return Ok(None);
    }
    let row: Option<(String, String, bool)> = conn
        .query_row(
            "SELECT sqlite_table, schema_json, copy_finished_at IS NOT NULL FROM etl_tables \
             WHERE table_id = ?1",
            [i64::from(table.0)],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let Some((name, json, copied)) = row else {
        return Ok(None);
    };
    let schema: TableSchema = serde_json::from_str(&json).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let mirror = MirrorTable::new(schema, name);
    Ok(Some(MirrorLayout {
        table: mirror.name,
        columns: mirror.columns,
        schema: mirror.schema,
        copied,
    }))
}
