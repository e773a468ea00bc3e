//! `etl verify` and `POST /v1/pipelines/{id}/verify`: compares every `ready` table of a
//! pipeline's source with its destination, without moving rows, at a position the destination
//! has reached, and reports per table equal, or the key buckets and keys that differ;
//! `--repair` resyncs the tables that drifted.
//!
//! - [`canonical`]: the text form and hashes every side agrees on;
//! - [`pg`], [`sqlite`]: the SQL that buckets and hashes rows on the source, a postgres
//!   destination, and a sqlite destination (postgres and sqlite only: other destinations are
//!   not verifiable);
//! - [`compare`]: which buckets or keys differ, and which differences are drift rather than
//!   changes in flight;
//! - [`report`]: the outcome; [`command`]: `etl verify` on the command line.
//!
//! How one table is checked: a snapshot `S0` is taken on the source, then a marker is written
//! (`pg_logical_emit_message`, else the WAL position is read) and verify waits until the
//! pipeline's apply slot has confirmed it, i.e. the destination durably holds every change
//! visible in `S0`. Both sides then sum row hashes per key bucket; equal sums mean equal
//! tables. Buckets that differ are re-checked in rounds (see [`compare`]): down to single keys
//! when few buckets differ, else bucket by bucket.

pub mod canonical;
pub mod command;
pub mod compare;
pub mod pg;
pub mod report;
pub mod sqlite;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};

use crate::base::schema::{TableId, TableSchema};
use crate::config::{DestinationConfig, PgConnection};
use crate::engine::state::postgres::PgStateStore;
use crate::engine::state::{self, RollbackSelection};

use canonical::{Columns, Kind, display_key, md5_hex};
use compare::{Entries, Rounds, differing};
use pg::PgTable;
pub use report::{DiffKind, RangeDrift, Report, RowDrift, TableReport, TableStatus};
use sqlite::SqliteTable;

/// Keys listed per table in a report.
pub const MAX_ROWS_SHOWN: usize = 100;
/// Re-check rounds before a difference the source keeps changing is left unsettled.
const MAX_ROUNDS: u32 = 6;
/// Differing buckets are re-checked key by key up to this many buckets…
const MAX_KEY_BUCKETS: usize = 4096;
/// …holding up to this many rows; beyond, bucket by bucket.
const MAX_KEY_ROWS: i64 = 500_000;

/// What to verify.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tables as SQL names (`public.orders`, `'"Sales"."Orders"'`); empty: every table.
    pub tables: Vec<String>,
    /// Resync the tables that drifted.
    pub repair: bool,
    /// How long to wait for the destination to reach the source's position.
    pub wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tables: Vec::new(),
            repair: false,
            wait: Duration::from_secs(120),
        }
    }
}

/// Why a verification could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "destination `{0}` is not verifiable: only sqlite and postgres destinations can hash \
         their rows in SQL"
    )]
    NotVerifiable(String),
    #[error("the destination {0} does not exist: the pipeline has not written to it yet")]
    NoDestination(String),
    #[error("table `{0}` does not exist on the source")]
    UnknownTable(String),
    #[error("table `{table}` is not replicated by pipeline {pipeline_id} (not in its state)")]
    NotReplicated { table: String, pipeline_id: u64 },
    #[error(
        "the destination did not reach the source position {lsn} within {secs} s ({why}); \
         verify compares at a position the destination has reached, so the pipeline's \
         replicator must be running and keeping up"
    )]
    NotReached { lsn: String, secs: u64, why: String },
    #[error("{context}: {source}")]
    Postgres {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot resync table {table}: {source}")]
    Repair {
        table: String,
        #[source]
        source: state::Error,
    },
}

impl Error {
    /// The caller named something that does not exist or cannot be verified.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::NotVerifiable(_)
                | Error::NoDestination(_)
                | Error::UnknownTable(_)
                | Error::NotReplicated { .. }
        )
    }
}

fn pg_error(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Error {
    let context = context.into();
    move |source| Error::Postgres { context, source }
}

fn sqlite_error(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
    let context = context.into();
    move |source| Error::Sqlite { context, source }
}

/// A destination that can be verified, as its configuration names it.
#[derive(Debug, Clone)]
pub enum Target {
    /// A sqlite file (it must exist).
    Sqlite(PathBuf),
    /// A postgres target; `schema` is `destination.postgres.schema`.
    Postgres {
        connection: PgConnection,
        schema: Option<String>,
    },
}

impl Target {
    /// The verifiable destination `config` describes; other kinds are [`Error::NotVerifiable`].
    pub fn from_config(config: &DestinationConfig) -> Result<Target, Error> {
        match config {
            DestinationConfig::Sqlite(sqlite) => Ok(Target::Sqlite(sqlite.path.clone())),
            DestinationConfig::Postgres(postgres) => Ok(Target::Postgres {
                connection: postgres.connection.resolve().map_err(|e| {
                    Error::NotVerifiable(format!("postgres: destination.postgres: {e}"))
                })?,
                schema: postgres.schema.clone(),
            }),
            other => Err(Error::NotVerifiable(other.kind().to_owned())),
        }
    }

    /// The destination as its description names it (`sqlite data/etl.db`).
    pub fn describe(&self) -> String {
        match self {
            Target::Sqlite(path) => crate::destinations::sqlite::describe(path),
            Target::Postgres { connection, schema } => {
                crate::destinations::postgres::describe(connection, schema.as_deref())
            }
        }
    }

    async fn open(&self) -> Result<Reader, Error> {
        match self {
            Target::Sqlite(path) => {
                if !path.exists() {
                    return Err(Error::NoDestination(self.describe()));
                }
                Ok(Reader::Sqlite(path.clone()))
            }
            Target::Postgres { connection, .. } => {
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(pg::session(connection.sqlx_options()))
                    .await
                    .map_err(pg_error(format!(
                        "cannot connect to the destination {}",
                        connection.describe()
                    )))?;
                Ok(Reader::Postgres(pool))
            }
        }
    }
}

/// Where the destination's rows are read.
enum Reader {
    Sqlite(PathBuf),
    Postgres(PgPool),
}

/// The destination side of one table.
enum TargetTable {
    Sqlite(SqliteTable),
    Postgres(PgTable),
}

/// The source: a connection that holds the snapshot, a pool for markers and the slot.
struct Source {
    snapshot: PoolConnection<Postgres>,
    pool: PgPool,
    slot: String,
    wait: Duration,
    /// `pg_logical_emit_message` is allowed (else the WAL position is the marker).
    emit: bool,
    /// A snapshot transaction is open on `snapshot`.
    open: bool,
}

impl Source {
    /// Starts a new snapshot and returns the marker written after it.
    async fn snapshot(&mut self) -> Result<String, Error> {
        self.end().await?;
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1")
            .execute(&mut *self.snapshot)
            .await
            .map_err(pg_error("cannot take a snapshot of the source"))?;
        self.open = true;
        if self.emit {
            match sqlx::query_scalar::<_, String>(
                "SELECT pg_logical_emit_message(true, 'etl_verify', '')::text",
            )
            .fetch_one(&self.pool)
            .await
            {
                Ok(lsn) => return Ok(lsn),
                Err(e) => {
                    tracing::debug!(error = %e, "no logical message: the WAL position is the marker");
                    self.emit = false;
                }
            }
        }
        sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&self.pool)
            .await
            .map_err(pg_error("cannot read the source's WAL position"))
    }

    /// Ends the current snapshot, if any.
    async fn end(&mut self) -> Result<(), Error> {
        if std::mem::take(&mut self.open) {
            sqlx::raw_sql("COMMIT")
                .execute(&mut *self.snapshot)
                .await
                .map_err(pg_error("cannot end a snapshot of the source"))?;
        }
        Ok(())
    }

    /// Waits until the apply slot confirmed `lsn`: the destination holds all before it.
    async fn wait_for(&self, lsn: &str) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            let row: Option<(Option<bool>, bool)> = sqlx::query_as(
                "SELECT confirmed_flush_lsn >= $1::pg_lsn, active FROM pg_replication_slots \
                 WHERE slot_name = $2",
            )
            .bind(lsn)
            .bind(&self.slot)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_error("cannot read the pipeline's slot"))?;
            let why = match row {
                Some((Some(true), _)) => return Ok(()),
                None => format!("the slot `{}` does not exist", self.slot),
                Some((_, false)) => format!("the slot `{}` is not active", self.slot),
                Some((_, true)) => format!("the slot `{}` is behind", self.slot),
            };
            if started.elapsed() >= self.wait {
                return Err(Error::NotReached {
                    lsn: lsn.to_owned(),
                    secs: self.wait.as_secs(),
                    why,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One table to compare: both sides and how finely to bucket it.
struct Pair {
    source: PgTable,
    target: TargetTable,
    digits: usize,
    key_names: Vec<String>,
}

impl Pair {
    async fn source_buckets(
        &self,
        source: &mut Source,
        scope: Option<&[String]>,
    ) -> Result<Entries, Error> {
        self.source
            .buckets(&mut source.snapshot, self.digits, scope)
            .await
            .map_err(pg_error("cannot hash the source's rows"))
    }

    async fn source_keys(&self, source: &mut Source, scope: &[String]) -> Result<Entries, Error> {
        self.source
            .keys(&mut source.snapshot, self.digits, scope)
            .await
            .map_err(pg_error("cannot hash the source's rows"))
    }

    async fn target_buckets(
        &self,
        target: &Reader,
        scope: Option<&[String]>,
    ) -> Result<Entries, Error> {
        let context = "cannot hash the destination's rows";
        match (&self.target, target) {
            (TargetTable::Sqlite(table), _) => table
                .buckets(self.digits, scope.map(<[String]>::to_vec))
                .await
                .map_err(sqlite_error(context)),
            (TargetTable::Postgres(table), Reader::Postgres(pool)) => {
                let mut conn = pool.acquire().await.map_err(pg_error(context))?;
                table
                    .buckets(&mut conn, self.digits, scope)
                    .await
                    .map_err(pg_error(context))
            }
            (TargetTable::Postgres(_), Reader::Sqlite(_)) => unreachable_pair(),
        }
    }

    async fn target_keys(&self, target: &Reader, scope: &[String]) -> Result<Entries, Error> {
        let context = "cannot hash the destination's rows";
        match (&self.target, target) {
            (TargetTable::Sqlite(table), _) => table
                .keys(self.digits, scope.to_vec())
                .await
                .map_err(sqlite_error(context)),
            (TargetTable::Postgres(table), Reader::Postgres(pool)) => {
                let mut conn = pool.acquire().await.map_err(pg_error(context))?;
                table
                    .keys(&mut conn, self.digits, scope)
                    .await
                    .map_err(pg_error(context))
            }
            (TargetTable::Postgres(_), Reader::Sqlite(_)) => unreachable_pair(),
        }
    }

    /// The bucket of a key's canonical text.
    fn bucket_of(&self, key: &str) -> String {
        md5_hex(key)[..self.digits].to_owned()
    }
}

/// A postgres table is only ever paired with a postgres target (built together in
/// [`target_table`]); this is the error should that change.
fn unreachable_pair<T>() -> Result<T, Error> {
    Err(Error::NotVerifiable(
        "a postgres table paired with a sqlite file".into(),
    ))
}

/// Verifies the pipeline `pipeline_id` (publication `publication`) of the source at `source`
/// against `destination`, and with `options.repair` resyncs the tables that drifted.
pub async fn verify(
    pipeline_id: u64,
    publication: &str,
    source: &PgConnection,
    destination: &Target,
    options: &Options,
) -> Result<Report, Error> {
    let description = destination.describe();
    let target = destination.open().await?;
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(pg::session(source.sqlx_options()))
        .await
        .map_err(pg_error(format!(
            "cannot connect to the source {}",
            source.describe()
        )))?;
    let tables = selected_tables(&pool, pipeline_id, &options.tables).await?;
    let mut session = Source {
        snapshot: pool
            .acquire()
            .await
            .map_err(pg_error("cannot connect to the source"))?,
        pool: pool.clone(),
        slot: crate::engine::apply_slot_name(pipeline_id),
        wait: options.wait,
        emit: true,
        open: false,
    };
    let mut reports = Vec::new();
    for (table, state) in tables {
        let name = table_name(&pool, table).await?;
        let report = if state != "ready" {
            TableReport::not_verified(
                name,
                table.0,
                format!("the table is not streaming yet (state {state})"),
            )
        } else {
            match pair(&pool, publication, &target, table).await? {
                Ok(pair) => compare_table(&mut session, &target, &pair, name, table).await?,
                Err(reason) => TableReport::not_verified(name, table.0, reason),
            }
        };
        tracing::info!(table = %report.table, status = ?report.status, "verified");
        reports.push(report);
    }
    let _ = sqlx::raw_sql("COMMIT")
        .execute(&mut *session.snapshot)
        .await;
    if options.repair {
        let store = PgStateStore::new(pool.clone(), pipeline_id);
        for report in reports
            .iter_mut()
            .filter(|r| r.status == TableStatus::Drift)
        {
            store
                .resync_tables(RollbackSelection::Table(TableId(report.table_id)))
                .await
                .map_err(|source| Error::Repair {
                    table: report.table.clone(),
                    source,
                })?;
            report.repaired = true;
        }
    }
    Ok(Report {
        pipeline_id,
        destination: description,
        tables: reports,
    })
}

/// The pipeline's tables (all, or those named) with their current state.
async fn selected_tables(
    pool: &PgPool,
    pipeline_id: u64,
    names: &[String],
) -> Result<Vec<(TableId, String)>, Error> {
    let context = "cannot read the pipeline's table states";
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('etl.replication_state') IS NOT NULL")
            .fetch_one(pool)
            .await
            .map_err(pg_error(context))?;
    let states: Vec<(i64, String)> = if exists {
        sqlx::query_as(
            "SELECT table_id::int8, state FROM etl.replication_state \
             WHERE pipeline_id = $1 AND is_current ORDER BY table_id",
        )
        .bind(pipeline_id as i64)
        .fetch_all(pool)
        .await
        .map_err(pg_error(context))?
    } else {
        Vec::new()
    };
    let states: Vec<(TableId, String)> = states
        .into_iter()
        .filter_map(|(id, state)| Some((TableId(u32::try_from(id).ok()?), state)))
        .collect();
    if names.is_empty() {
        return Ok(states);
    }
    let mut chosen = Vec::new();
    for name in names {
        let oid: Option<i64> = sqlx::query_scalar("SELECT to_regclass($1)::oid::int8")
            .bind(name)
            .fetch_one(pool)
            .await
            .map_err(|_| Error::UnknownTable(name.clone()))?;
        let oid = oid
            .and_then(|o| u32::try_from(o).ok())
            .ok_or_else(|| Error::UnknownTable(name.clone()))?;
        let found =
            states
                .iter()
                .find(|(id, _)| id.0 == oid)
                .ok_or_else(|| Error::NotReplicated {
                    table: name.clone(),
                    pipeline_id,
                })?;
        if !chosen.contains(found) {
            chosen.push(found.clone());
        }
    }
    Ok(chosen)
}

async fn table_name(pool: &PgPool, table: TableId) -> Result<String, Error> {
    let name: Option<String> = sqlx::query_scalar(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::int8::oid",
    )
    .bind(i64::from(table.0))
    .fetch_optional(pool)
    .await
    .map_err(pg_error("cannot read the source catalog"))?;
    Ok(name.unwrap_or_else(|| format!("table {table} (dropped)")))
}

fn columns_of(schema: &TableSchema, names: Vec<String>) -> Columns {
    let kinds = schema
        .columns
        .iter()
        .map(|c| Kind::of(c.type_oid))
        .collect();
    let mut key = schema.key_columns();
    if key.is_empty() {
        key = (0..schema.columns.len()).collect();
    }
    Columns { names, kinds, key }
}

/// Both sides of `table`, or why it cannot be compared.
async fn pair(
    pool: &PgPool,
    publication: &str,
    target: &Reader,
    table: TableId,
) -> Result<Result<Pair, String>, Error> {
    let (schema, target_table) = match target {
        Reader::Sqlite(path) => {
            let conn = sqlite::open(path).map_err(sqlite_error(format!(
                "cannot open the sqlite file {}",
                path.display()
            )))?;
            let layout = crate::destinations::sqlite::mirror_layout(&conn, table).map_err(
                sqlite_error(format!("cannot read the metadata of {}", path.display())),
            )?;
            let Some(layout) = layout.filter(|l| l.copied) else {
                return Ok(Err("the destination holds no finished copy of it".into()));
            };
            let columns = columns_of(&layout.schema, layout.columns.clone());
            let target_table = TargetTable::Sqlite(SqliteTable {
                path: path.clone(),
                table: layout.table,
                columns,
            });
            (layout.schema, target_table)
        }
        Reader::Postgres(target_pool) => {
            let mut conn = target_pool
                .acquire()
                .await
                .map_err(pg_error("cannot connect to the destination"))?;
            let layout = crate::destinations::postgres::mirror_layout(&mut conn, table)
                .await
                .map_err(pg_error("cannot read the destination's metadata"))?;
            let Some((name, schema, true)) = layout else {
                return Ok(Err("the destination holds no finished copy of it".into()));
            };
            let names = schema.columns.iter().map(|c| c.name.clone()).collect();
            let target_table = TargetTable::Postgres(PgTable {
                relation: name.quoted(),
                only: false,
                filter: None,
                columns: columns_of(&schema, names),
                xmin: false,
            });
            (schema, target_table)
        }
    };
    let context = "cannot read the source catalog";
    let Some((relation, kind, estimate)): Option<(String, String, i64)> = sqlx::query_as(
        "SELECT c.oid::regclass::text, c.relkind::text, \
           (SELECT coalesce(sum(greatest(p.reltuples, 0)), 0)::int8 \
              FROM pg_partition_tree(c.oid) t JOIN pg_class p ON p.oid = t.relid) \
         FROM pg_class c WHERE c.oid = $1::int8::oid",
    )
    .bind(i64::from(table.0))
    .fetch_optional(pool)
    .await
    .map_err(pg_error(context))?
    else {
        return Ok(Err("the table no longer exists on the source".into()));
    };
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int4")
        .fetch_one(pool)
        .await
        .map_err(pg_error(context))?;
    let filter: Option<String> = if version >= 150_000 {
        sqlx::query_scalar(
            "SELECT rowfilter FROM pg_publication_tables t \
             JOIN pg_class c ON c.relname = t.tablename \
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = t.schemaname \
             WHERE t.pubname = $1 AND c.oid = $2::int8::oid",
        )
        .bind(publication)
        .bind(i64::from(table.0))
        .fetch_optional(pool)
        .await
        .map_err(pg_error(context))?
        .flatten()
    } else {
        None
    };
    let encoding: String = sqlx::query_scalar("SELECT current_setting('server_encoding')")
        .fetch_one(pool)
        .await
        .map_err(pg_error(context))?;
    if encoding != "UTF8" {
        return Ok(Err(format!(
            "the source database's encoding is {encoding}; verify hashes UTF8 text"
        )));
    }
    let names: Vec<String> = schema.columns.iter().map(|c| c.name.clone()).collect();
    let columns = columns_of(&schema, names);
    let key_names = columns
        .key
        .iter()
        .map(|&i| columns.names[i].clone())
        .collect();
    Ok(Ok(Pair {
        source: PgTable {
            relation,
            only: kind != "p",
            filter,
            columns,
            xmin: true,
        },
        target: target_table,
        digits: digits_for(estimate),
        key_names,
    }))
}

/// Hex digits of the bucket prefix: about 256 rows per bucket, 16 to 1 M buckets.
fn digits_for(rows: i64) -> usize {
    (1..=5)
        .find(|d| 16_i64.pow(*d as u32) * 256 >= rows)
        .unwrap_or(5)
}

/// Compares one table (see the module documentation).
async fn compare_table(
    source: &mut Source,
    target: &Reader,
    pair: &Pair,
    name: String,
    table: TableId,
) -> Result<TableReport, Error> {
    let marker = source.snapshot().await?;
    source.wait_for(&marker).await?;
    // Both sides hash at the same time (the destination has reached S0: any moment will do).
    let (source_buckets, target_buckets) = tokio::join!(
        pair.source_buckets(source, None),
        pair.target_buckets(target, None)
    );
    let (source_buckets, target_buckets) = (source_buckets?, target_buckets?);
    let rows = |entries: &Entries| entries.values().map(|e| e.rows).sum::<i64>();
    let mut report = TableReport {
        table: name,
        table_id: table.0,
        status: TableStatus::Equal,
        reason: None,
        source_rows: rows(&source_buckets),
        destination_rows: rows(&target_buckets),
        ranges: Vec::new(),
        rows: Vec::new(),
        more_rows: 0,
        unsettled: 0,
        rechecks: 0,
        repaired: false,
    };
    let suspects: Vec<String> = differing(&source_buckets, &target_buckets)
        .into_iter()
        .collect();
    if suspects.is_empty() {
        return Ok(report);
    }
    let suspect_rows = suspects
        .iter()
        .map(|b| {
            let of = |e: &Entries| e.get(b).map_or(0, |e| e.rows);
            of(&source_buckets).max(of(&target_buckets))
        })
        .sum::<i64>();
    let by_key = suspects.len() <= MAX_KEY_BUCKETS && suspect_rows <= MAX_KEY_ROWS;
    // Round 0 reads the source in S0 (still open) and the destination now (it reached S0).
    let (mut before, mut current) = if by_key {
        let (before, current) = tokio::join!(
            pair.source_keys(source, &suspects),
            pair.target_keys(target, &suspects)
        );
        (before?, current?)
    } else {
        (source_buckets.clone(), target_buckets.clone())
    };
    let mut rounds = Rounds::new(if by_key {
        differing(&before, &current).into_iter().collect::<Vec<_>>()
    } else {
        suspects.clone()
    });
    let mut scope = suspects;
    for round in 0..MAX_ROUNDS {
        let marker = source.snapshot().await?;
        let after = if by_key {
            pair.source_keys(source, &scope).await?
        } else {
            pair.source_buckets(source, Some(&scope)).await?
        };
        rounds.round(&before, &current, &after);
        report.rechecks += 1;
        if rounds.is_done() || round + 1 == MAX_ROUNDS {
            break;
        }
        scope = if by_key {
            let buckets: BTreeSet<String> = rounds.pending().map(|k| pair.bucket_of(k)).collect();
            buckets.into_iter().collect()
        } else {
            rounds.pending().cloned().collect()
        };
        source.wait_for(&marker).await?;
        current = if by_key {
            pair.target_keys(target, &scope).await?
        } else {
            pair.target_buckets(target, Some(&scope)).await?
        };
        before = after;
    }
    let (drift, unsettled) = rounds.finish();
    report.unsettled = unsettled.len() as u64;
    if drift.is_empty() {
        return Ok(report);
    }
    report.status = TableStatus::Drift;
    let buckets: BTreeSet<String> = if by_key {
        drift.iter().map(|d| pair.bucket_of(&d.name)).collect()
    } else {
        drift.iter().map(|d| d.name.clone()).collect()
    };
    report.ranges = buckets
        .into_iter()
        .map(|bucket| RangeDrift {
            source_rows: source_buckets.get(&bucket).map_or(0, |e| e.rows),
            destination_rows: target_buckets.get(&bucket).map_or(0, |e| e.rows),
            bucket,
        })
        .collect();
    if by_key {
        let names: Vec<&str> = pair.key_names.iter().map(String::as_str).collect();
        report.more_rows = drift.len().saturating_sub(MAX_ROWS_SHOWN) as u64;
        report.rows = drift
            .iter()
            .take(MAX_ROWS_SHOWN)
            .map(|d| RowDrift {
                key: display_key(&names, &d.name),
                kind: d.kind,
            })
            .collect();
    }
    Ok(report)
}
