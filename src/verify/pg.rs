//! The Postgres side of a verification, the same SQL on the source and on a postgres
//! destination: per key bucket the row count and the two hash sums, and per key (in chosen
//! buckets) the row hash, with `xmin` on the source to tell whether a row changed between two
//! snapshots. Sessions run under [`PG_SETTINGS`] (see [`super::canonical`]).

use sqlx::postgres::PgConnectOptions;
use sqlx::{PgConnection, Row as _};

use super::canonical::{Columns, PG_SETTINGS};
use super::compare::{Entries, Entry};

/// The session options under which the canonical text is what the replicator received.
/// Hashing a large table takes long by design: no "slow statement" warnings.
pub fn session(options: PgConnectOptions) -> PgConnectOptions {
    use sqlx::ConnectOptions as _;
    options
        .options(PG_SETTINGS.iter().copied())
        .disable_statement_logging()
}

/// One table as read by the SQL of this module.
#[derive(Debug, Clone)]
pub struct PgTable {
    /// The relation, quoted for SQL.
    pub relation: String,
    /// `FROM ONLY` (a plain table: its inheritance children are not part of it).
    pub only: bool,
    /// The publication's row filter (source only).
    pub filter: Option<String>,
    pub columns: Columns,
    /// Read each row version's `xmin` (source only).
    pub xmin: bool,
}

impl PgTable {
    /// `SELECT b, k, h, x FROM …`: bucket, key text, row hash, row version (`''` when not
    /// read). The inner query names only the table's columns, the outer one only its aliases.
    fn rows_sql(&self, digits: usize) -> String {
        let only = if self.only { "ONLY " } else { "" };
        let filter = self
            .filter
            .as_ref()
            .map(|f| format!(" WHERE ({f})"))
            .unwrap_or_default();
        let xmin = if self.xmin { "xmin::text" } else { "''" };
        format!(
            "SELECT substr(md5(k), 1, {digits}) AS b, k, h, x FROM \
             (SELECT {key} AS k, md5({row}) AS h, {xmin} AS x FROM {only}{relation}{filter}) AS r",
            key = self.columns.pg_key(),
            row = self.columns.pg_row(),
            relation = self.relation,
        )
    }

    /// Per bucket (all, or those in `scope`): rows and hash sums.
    pub async fn buckets(
        &self,
        conn: &mut PgConnection,
        digits: usize,
        scope: Option<&[String]>,
    ) -> Result<Entries, sqlx::Error> {
        let sql = format!(
            "SELECT b, count(*)::int8, \
               sum(('x' || substr(h, 1, 8))::bit(32)::int4)::int8, \
               sum(('x' || substr(h, 9, 8))::bit(32)::int4)::int8 \
             FROM ({}) AS s {} GROUP BY b",
            self.rows_sql(digits),
            if scope.is_some() {
                "WHERE b = ANY($1)"
            } else {
                ""
            }
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql));
        let query = match scope {
            Some(scope) => query.bind(scope),
            None => query,
        };
        let rows = query.fetch_all(&mut *conn).await?;
        let mut out = Entries::new();
        for row in rows {
            let fingerprint = format!(
                "{}:{}",
                row.try_get::<i64, _>(2)?,
                row.try_get::<i64, _>(3)?
            );
            out.insert(
                row.try_get(0)?,
                Entry {
                    rows: row.try_get(1)?,
                    stamp: fingerprint.clone(),
                    fingerprint,
                },
            );
        }
        Ok(out)
    }

    /// Per key in the buckets of `scope`: its row hash (and row versions on the source).
    pub async fn keys(
        &self,
        conn: &mut PgConnection,
        digits: usize,
        scope: &[String],
    ) -> Result<Entries, sqlx::Error> {
        let sql = format!(
            "SELECT k, h, x FROM ({}) AS s WHERE b = ANY($1)",
            self.rows_sql(digits)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope)
            .fetch_all(&mut *conn)
            .await?;
        let mut out = Entries::new();
        for row in rows {
            let stamp: String = row.try_get(2)?;
            add_key(&mut out, row.try_get(0)?, row.try_get(1)?, stamp);
        }
        Ok(out)
    }
}

/// Adds one row to the per-key entries (a table without a key may hold equal rows twice).
pub fn add_key(out: &mut Entries, key: String, hash: String, stamp: String) {
    match out.get_mut(&key) {
        Some(entry) => {
            entry.rows += 1;
            let mut stamps: Vec<&str> = entry.stamp.split(',').chain([stamp.as_str()]).collect();
            stamps.sort_unstable();
            entry.stamp = stamps.join(",");
        }
        None => {
            out.insert(
                key,
                Entry {
                    rows: 1,
                    fingerprint: hash,
                    stamp,
                },
            );
        }
    }
}
