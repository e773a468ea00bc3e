//! The destinations (memory, sqlite, postgres) as the source-feature tests see them: each opened
//! fresh for one test, and its copy of a table read back as text cells in Postgres's output
//! form, so it compares with [`Source::rows`].

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etl::base::event::{Cell, Row};
use etl::config::PgConnectionConfig;
use etl::destinations::memory::MemoryDestination;
use etl::destinations::postgres::PostgresDestination;
use etl::destinations::sqlite::SqliteDestination;
use etl::engine::Destination;
use rusqlite::types::ValueRef;

use crate::helpers::{Running, Source, dest_rows, public};

/// A destination of one test, and how to read it back.
pub enum Mirror {
    Memory(Arc<MemoryDestination>),
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        target: Box<Source>,
    },
}

impl Mirror {
    pub fn memory() -> (Mirror, Arc<MemoryDestination>) {
        let destination = Arc::new(MemoryDestination::new());
        (Mirror::Memory(destination.clone()), destination)
    }

    pub fn sqlite() -> (Mirror, Arc<SqliteDestination>) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("mirror.db");
        let destination = SqliteDestination::open(&path).expect("open the sqlite destination");
        (Mirror::Sqlite { _dir: dir, path }, Arc::new(destination))
    }

    pub async fn postgres(prefix: &str) -> (Mirror, Arc<PostgresDestination>) {
        let target = Source::create(prefix, "unused").await;
        let config = PgConnectionConfig::from_url(target.url.clone());
        let destination = PostgresDestination::connect(&config, None)
            .await
            .expect("connect the postgres destination");
        (
            Mirror::Postgres {
                target: Box::new(target),
            },
            Arc::new(destination),
        )
    }

    /// The mirror's rows of `public.table` (`columns` in that order), ordered by the first.
    pub async fn rows(&self, table: &str, columns: &[&str]) -> Vec<Row> {
        match self {
            Mirror::Memory(destination) => {
                let Some(schema) = destination.schema(&public(table)) else {
                    return Vec::new();
                };
                let positions: Option<Vec<usize>> = columns
                    .iter()
                    .map(|name| schema.columns.iter().position(|c| c.name == *name))
                    .collect();
                // Not there yet (a column being added): nothing to read.
                let Some(positions) = positions else {
                    return Vec::new();
                };
                dest_rows(destination, "public", table)
                    .into_iter()
                    .map(|row| positions.iter().map(|&i| row[i].clone()).collect())
                    .collect()
            }
            Mirror::Postgres { target } => {
                // Not there yet (the table, or a column being added): nothing to read.
                let present: i64 = sqlx::query_scalar(
                    "select count(*) from information_schema.columns \
                     where table_schema = 'public' and table_name = $1 and column_name = any($2)",
                )
                .bind(table)
                .bind(columns)
                .fetch_one(&target.pool)
                .await
                .expect("read the target's catalog");
                if present < columns.len() as i64 {
                    return Vec::new();
                }
                target
                    .rows(&format!("public.{table}"), columns, columns[0])
                    .await
            }
            Mirror::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open the sqlite file");
                let sql = format!(
                    "SELECT {} FROM \"public.{table}\" ORDER BY {}",
                    columns.join(", "),
                    columns[0]
                );
                let Ok(mut statement) = conn.prepare(&sql) else {
                    return Vec::new();
                };
                statement
                    .query_map([], |row| {
                        (0..columns.len())
                            .map(|i| row.get_ref(i).map(cell))
                            .collect::<Result<Row, _>>()
                    })
                    .expect("query the sqlite file")
                    .collect::<Result<Vec<Row>, _>>()
                    .expect("read the sqlite file")
            }
        }
    }

    /// Whether the mirror's column `table.column` refuses NULL (`None` while it is not there):
    /// the memory destination's schema, the postgres target's catalog, SQLite's `table_info`.
    pub async fn not_null(&self, table: &str, column: &str) -> Option<bool> {
        match self {
            Mirror::Memory(destination) => destination.schema(&public(table)).and_then(|s| {
                s.columns
                    .iter()
                    .find(|c| c.name == column)
                    .map(|c| !c.nullable)
            }),
            Mirror::Postgres { target } => sqlx::query_scalar::<_, String>(
                "select is_nullable::text from information_schema.columns \
                 where table_schema = 'public' and table_name = $1 and column_name = $2",
            )
            .bind(table)
            .bind(column)
            .fetch_optional(&target.pool)
            .await
            .expect("read the target's catalog")
            .map(|nullable| nullable == "NO"),
            Mirror::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open the sqlite file");
                let sql = format!(
                    "SELECT \"notnull\" FROM pragma_table_info('public.{table}') WHERE name = ?1"
                );
                conn.query_row(&sql, [column], |row| row.get::<_, bool>(0))
                    .ok()
            }
        }
    }

    pub async fn drop(self) {
        if let Mirror::Postgres { target } = self {
            (*target).drop().await;
        }
    }
}

fn cell(value: ValueRef<'_>) -> Cell {
    match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Text(i.to_string()),
        ValueRef::Real(r) => Cell::Text(r.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Cell::Text(String::from_utf8_lossy(t).into()),
    }
}

/// A source database set up by `setup` (which creates `publication` over one table), and a
/// pipeline streaming it into `destination` once that table is ready.
pub async fn start_one_table<D: Destination + Clone>(
    prefix: &str,
    publication: &str,
    setup: &str,
    destination: D,
) -> (Source, Running) {
    let source = Source::create(prefix, publication).await;
    source.exec(setup).await;
    let running = source.start_with(destination, false);
    source.wait_ready(1).await;
    (source, running)
}

/// Waits until `mirror`'s rows of `public.table` equal the source's (`columns`, the first an
/// integer key); `what` names the wait.
pub async fn wait_mirrored(
    source: &Source,
    mirror: &Mirror,
    table: &str,
    columns: &[&str],
    what: &str,
) {
    let expected = source.rows(table, columns, columns[0]).await;
    let actual = read_until(
        what,
        || mirror.rows(table, columns),
        |rows| rows == expected.as_slice(),
    )
    .await;
    assert_eq!(actual, expected, "{what}");
}

/// Reads with `read` until `done` holds for what it returns, which it then returns; panics
/// naming `what` after a minute.
pub async fn read_until<F, Fut>(what: &str, mut read: F, done: impl Fn(&[Row]) -> bool) -> Vec<Row>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<Row>>,
{
    let start = Instant::now();
    loop {
        let rows = read().await;
        if done(&rows) {
            return rows;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for: {what}; last read: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One `#[tokio::test]` per destination (memory, sqlite, postgres), each running
/// `scenario(database_prefix, &mirror, destination)`.
macro_rules! test_in_every_destination {
    ($scenario:ident, $prefix:literal, $memory:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $memory() {
            let (mirror, destination) = $crate::feature_destinations::Mirror::memory();
            $scenario(concat!($prefix, "_memory"), &mirror, destination).await;
        }

        #[tokio::test]
        async fn $sqlite() {
            let (mirror, destination) = $crate::feature_destinations::Mirror::sqlite();
            $scenario(concat!($prefix, "_sqlite"), &mirror, destination).await;
        }

        #[tokio::test]
        async fn $postgres() {
            let (mirror, destination) =
                $crate::feature_destinations::Mirror::postgres(concat!($prefix, "_pg_target"))
                    .await;
            $scenario(concat!($prefix, "_pg"), &mirror, destination).await;
            mirror.drop().await;
        }
    };
}
pub(crate) use test_in_every_destination;
