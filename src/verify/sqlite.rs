//! The sqlite side of a verification. SQLite has no `md5()`, so the canonical text and its
//! hashes are application-defined SQL functions registered on a read-only connection
//! (`etl_verify_bucket`, `etl_verify_head`, `etl_verify_key`, `etl_verify_md5`), and the
//! bucketing and sums run in SQLite's own `GROUP BY`: the rows stay in the file. A WAL-mode file
//! is read while the replicator writes it; each query reads one consistent state of it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::{Connection, OpenFlags};

use super::canonical::{Columns, Kind, md5_head, md5_hex, sqlite_row};
use super::compare::{Entries, Entry};
use super::pg::add_key;
use crate::base::quote::quote_identifier;

/// One mirrored table in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteTable {
    pub path: PathBuf,
    /// The SQLite table name (unquoted).
    pub table: String,
    pub columns: Columns,
}

/// Opens `path` read-only (it must exist).
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    Ok(conn)
}

/// The canonical text of the function's arguments, of the given kinds.
fn canonical(ctx: &Context<'_>, kinds: &[Kind]) -> rusqlite::Result<String> {
    if ctx.len() != kinds.len() {
        return Err(rusqlite::Error::InvalidParameterCount(
            ctx.len(),
            kinds.len(),
        ));
    }
    Ok(sqlite_row(
        kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| (*kind, ctx.get_raw(i))),
    ))
}

impl SqliteTable {
    fn register(&self, conn: &Connection, digits: usize) -> rusqlite::Result<()> {
        let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
        let all: Arc<Vec<Kind>> = Arc::new(self.columns.kinds.clone());
        let key: Arc<Vec<Kind>> = Arc::new(
            self.columns
                .key
                .iter()
                .map(|&i| self.columns.kinds[i])
                .collect(),
        );
        let k = key.clone();
        conn.create_scalar_function("etl_verify_bucket", -1, flags, move |ctx| {
            Ok(md5_hex(&canonical(ctx, &k)?)[..digits].to_owned())
        })?;
        let k = key;
        conn.create_scalar_function("etl_verify_key", -1, flags, move |ctx| canonical(ctx, &k))?;
        let a = all.clone();
        conn.create_scalar_function("etl_verify_head", -1, flags, move |ctx| {
            Ok(md5_head(&canonical(ctx, &a)?))
        })?;
        let a = all;
        conn.create_scalar_function("etl_verify_md5", -1, flags, move |ctx| {
            Ok(md5_hex(&canonical(ctx, &a)?))
        })?;
        Ok(())
    }

    fn arguments(&self) -> (String, String) {
        let all: Vec<usize> = (0..self.columns.names.len()).collect();
        (
            self.columns.quoted(&self.columns.key),
            self.columns.quoted(&all),
        )
    }

    /// Per bucket (all, or those in `scope`): rows and hash sums.
    pub async fn buckets(
        &self,
        digits: usize,
        scope: Option<Vec<String>>,
    ) -> rusqlite::Result<Entries> {
        let this = self.clone();
        blocking(move || {
            let conn = open(&this.path)?;
            this.register(&conn, digits)?;
            let (key, all) = this.arguments();
            let filter = if scope.is_some() {
                "WHERE b IN (SELECT value FROM json_each(?1))"
            } else {
                ""
            };
            let sql = format!(
                "SELECT b, count(*), sum(h >> 32), sum((h << 32) >> 32) FROM \
                 (SELECT etl_verify_bucket({key}) AS b, etl_verify_head({all}) AS h FROM {}) \
                 {filter} GROUP BY b",
                quote_identifier(&this.table)
            );
            let mut statement = conn.prepare(&sql)?;
            let json = serde_json::to_string(&scope.unwrap_or_default())
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            let mut rows = if filter.is_empty() {
                statement.query([])?
            } else {
                statement.query([json])?
            };
            let mut out = Entries::new();
            while let Some(row) = rows.next()? {
                let fingerprint = format!("{}:{}", row.get::<_, i64>(2)?, row.get::<_, i64>(3)?);
                out.insert(
                    row.get(0)?,
                    Entry {
                        rows: row.get(1)?,
                        stamp: fingerprint.clone(),
                        fingerprint,
                    },
                );
            }
            Ok(out)
        })
        .await
    }

    /// Per key in the buckets of `scope`: its row hash.
    pub async fn keys(&self, digits: usize, scope: Vec<String>) -> rusqlite::Result<Entries> {
        let this = self.clone();
        blocking(move || {
            let conn = open(&this.path)?;
            this.register(&conn, digits)?;
            let (key, all) = this.arguments();
            let sql = format!(
                "SELECT etl_verify_key({key}), etl_verify_md5({all}) FROM {} \
                 WHERE etl_verify_bucket({key}) IN (SELECT value FROM json_each(?1))",
                quote_identifier(&this.table)
            );
            let json = serde_json::to_string(&scope)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            let mut statement = conn.prepare(&sql)?;
            let mut rows = statement.query([json])?;
            let mut out = Entries::new();
            while let Some(row) = rows.next()? {
                add_key(&mut out, row.get(0)?, row.get(1)?, String::new());
            }
            Ok(out)
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> rusqlite::Result<T> + Send + 'static,
) -> rusqlite::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))
}
