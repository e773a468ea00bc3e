//! Applying a batch of change events to the target, set-based.
//!
//! Consecutive changes of one table and one kind form a run written by one statement: full rows
//! (inserts, updates that sent every column) as an upsert, updates with unchanged TOAST columns
//! (same columns sent) as an `UPDATE … FROM unnest(…)`, deletes as a `DELETE … USING
//! unnest(…)`. Within a run, a later change of the same key replaces an earlier one, which is
//! what applying them in order would leave. Key changes, truncates and the updates and deletes
//! of keyless `REPLICA IDENTITY FULL` tables are written one by one, in order.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::PgConnection;

use crate::base::event::{Cell, Change, Row};
use crate::base::schema::ReplicaIdentity;
use crate::engine::destination::Error;

use crate::destinations::mirror::{check_width, no_row_identity, sent_columns as sent};

use super::errors::table_error;
use super::target::TargetTable;

#[derive(Debug, Clone, PartialEq, Eq)]
enum RunKind {
    /// Full rows of these columns, upserted by key (keyless: inserted).
    Upsert(Vec<usize>),
    /// These columns set on rows matched by key.
    Update(Vec<usize>),
    Delete,
}

/// Consecutive changes of one table, written together.
struct Run<'a> {
    table: &'a TargetTable,
    kind: RunKind,
    rows: Vec<&'a Row>,
    /// Key texts → index in `rows` (keyed tables only).
    by_key: HashMap<Vec<Option<&'a str>>, usize>,
}

/// Writes changes in order, batching what can be batched.
pub struct Applier<'c> {
    conn: &'c mut PgConnection,
}

impl<'c> Applier<'c> {
    pub fn new(conn: &'c mut PgConnection) -> Self {
        Applier { conn }
    }

    /// Applies `changes` (all on their tables, in order).
    pub async fn apply<'a>(
        &mut self,
        changes: &'a [(Arc<TargetTable>, &'a Change)],
    ) -> Result<(), Error> {
        let mut run: Option<Run<'a>> = None;
        for (table, change) in changes {
            let (table, change): (&'a TargetTable, &'a Change) = (table, change);
            let (kind, row) = match change {
                Change::Insert { new } => (RunKind::Upsert(sent(new)), new),
                Change::Update { old, new } if !table.key.is_empty() => {
                    if let Some(old) = old.as_ref().filter(|old| key_changed(table, old, new)) {
                        self.flush(run.take()).await?;
                        self.update_key(table, old, new).await?;
                        continue;
                    }
                    let columns = sent(new);
                    if columns.len() == new.len() {
                        (RunKind::Upsert(columns), new)
                    } else {
                        (RunKind::Update(columns), new)
                    }
                }
                Change::Delete { old } if !table.key.is_empty() => (RunKind::Delete, old),
                Change::Update { old, new } => {
                    self.flush(run.take()).await?;
                    let old = full_old_row(table, old.as_ref())?;
                    self.update_full_row(table, old, new).await?;
                    continue;
                }
                Change::Delete { old } => {
                    self.flush(run.take()).await?;
                    let old = full_old_row(table, Some(old))?;
                    self.delete_full_row(table, old).await?;
                    continue;
                }
                Change::Truncate => {
                    self.flush(run.take()).await?;
                    let sql = format!("TRUNCATE {}", table.quoted());
                    self.execute(table, "truncating", sqlx::query(sqlx::AssertSqlSafe(sql)))
                        .await?;
                    continue;
                }
            };
            check_width(&table.schema, row)?;
            let same_run = run
                .as_ref()
                .is_some_and(|r| std::ptr::eq(r.table, table) && r.kind == kind);
            if !same_run {
                self.flush(run.take()).await?;
                run = Some(Run {
                    table,
                    kind,
                    rows: Vec::new(),
                    by_key: HashMap::new(),
                });
            }
            if let Some(run) = run.as_mut() {
                run.push(row);
            }
        }
        self.flush(run).await
    }

    async fn flush(&mut self, run: Option<Run<'_>>) -> Result<(), Error> {
        let Some(run) = run else { return Ok(()) };
        let table = run.table;
        let (sql, columns, doing) = match &run.kind {
            RunKind::Upsert(columns) => {
                (table.upsert_sql(columns), columns.clone(), "upserting into")
            }
            RunKind::Update(columns) => {
                let mut bound = columns.clone();
                bound.extend(&table.key);
                (table.update_by_key_sql(columns), bound, "updating")
            }
            RunKind::Delete => (
                table.delete_by_key_sql(),
                table.key.clone(),
                "deleting from",
            ),
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for &column in &columns {
            let values: Vec<Option<&str>> =
                run.rows.iter().map(|row| row[column].as_text()).collect();
            query = query.bind(values);
        }
        self.execute(table, doing, query).await.map(|_| ())
    }

    async fn execute(
        &mut self,
        table: &TargetTable,
        doing: &str,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<u64, Error> {
        query
            .execute(&mut *self.conn)
            .await
            .map(|done| done.rows_affected())
            .map_err(|e| table_error(&table.schema, doing, e))
    }

    /// An update that changed the key: the row with the old key takes the new values (or, if
    /// it is missing, the new row is upserted).
    async fn update_key(&mut self, table: &TargetTable, old: &Row, new: &Row) -> Result<(), Error> {
        check_width(&table.schema, new)?;
        check_width(&table.schema, old)?;
        let set = sent(new);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(table.update_by_key_sql(&set)));
        for &column in &set {
            query = query.bind(vec![new[column].as_text()]);
        }
        for &column in &table.key {
            query = query.bind(vec![old[column].as_text()]);
        }
        if self.execute(table, "updating", query).await? > 0 {
            return Ok(());
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(table.upsert_sql(&set)));
        for &column in &set {
            query = query.bind(vec![new[column].as_text()]);
        }
        self.execute(table, "upserting into", query)
            .await
            .map(|_| ())
    }

    async fn update_full_row(
        &mut self,
        table: &TargetTable,
        old: &Row,
        new: &Row,
    ) -> Result<(), Error> {
        check_width(&table.schema, new)?;
        check_width(&table.schema, old)?;
        let set = sent(new);
        let matched = sent(old);
        let sql = table.update_full_row_sql(&set, &matched);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for &column in &set {
            query = query.bind(new[column].as_text());
        }
        for &column in &matched {
            query = query.bind(old[column].as_text());
        }
        if self.execute(table, "updating", query).await? == 0 {
            tracing::warn!(table = %table.schema.name, "update found no matching row; skipped");
        }
        Ok(())
    }

    async fn delete_full_row(&mut self, table: &TargetTable, old: &Row) -> Result<(), Error> {
        check_width(&table.schema, old)?;
        let matched = sent(old);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(table.delete_full_row_sql(&matched)));
        for &column in &matched {
            query = query.bind(old[column].as_text());
        }
        if self.execute(table, "deleting from", query).await? == 0 {
            tracing::warn!(table = %table.schema.name, "delete found no matching row; skipped");
        }
        Ok(())
    }
}

impl<'a> Run<'a> {
    fn push(&mut self, row: &'a Row) {
        if self.table.key.is_empty() {
            self.rows.push(row);
            return;
        }
        let key: Vec<Option<&'a str>> = self.table.key.iter().map(|&k| row[k].as_text()).collect();
        match self.by_key.get(&key) {
            Some(&index) => self.rows[index] = row,
            None => {
                self.by_key.insert(key, self.rows.len());
                self.rows.push(row);
            }
        }
    }
}

fn key_changed(table: &TargetTable, old: &Row, new: &Row) -> bool {
    table
        .key
        .iter()
        .any(|&k| new.get(k) != Some(&Cell::Unchanged) && old.get(k) != new.get(k))
}

/// The old row that identifies a row of a keyless table, which must be `REPLICA IDENTITY FULL`.
fn full_old_row<'a>(table: &TargetTable, old: Option<&'a Row>) -> Result<&'a Row, Error> {
    match old {
        Some(old) if table.schema.replica_identity == ReplicaIdentity::Full => Ok(old),
        _ => Err(no_row_identity(&table.schema)),
    }
}
