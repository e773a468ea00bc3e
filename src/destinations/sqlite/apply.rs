//! Applying change events to mirrored tables, and the exactly-once bookkeeping around them.
//!
//! Called inside one SQLite transaction per batch: for each table, the stored position of its
//! last applied change is read once; events at or below it are skipped (they were applied
//! before a crash), the others are applied and the new position is written before the commit.
//!
//! - insert: upsert by key (keyless tables: plain insert);
//! - update: upsert by key; when the key changed, the row with the old key is updated in place;
//!   keyless `REPLICA IDENTITY FULL` tables update one row whose columns equal the old row;
//! - delete: by key, or one row equal to the old row (`FULL`);
//! - truncate: every row;
//! - [`Cell::Unchanged`] columns are left out of the write, so the stored value stays.
//!
//! Updates and deletes of a table with neither a key nor `REPLICA IDENTITY FULL` cannot be
//! matched (Postgres itself refuses them when the publication publishes them), so they are a
//! table error. A `FULL` update or delete that finds no row is logged and skipped, as Postgres's
//! own subscriber does.

use std::collections::HashMap;

use rusqlite::Connection;
use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::base::event::{Cell, Change, ChangeEvent, Row};
use crate::base::lsn::Lsn;
use crate::base::schema::TableId;
use crate::destinations::mirror::{check_width, no_row_identity, sent_columns};
use crate::engine::destination::Error;

use super::ddl;
use super::errors::{metadata_error, table_error};
use super::metadata;
use super::table::MirrorTable;
use super::types::to_sqlite;

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub applied: usize,
    /// Events at or below their table's stored position (replays).
    pub skipped: usize,
}

/// Applies `events` on `conn` (inside the caller's transaction), updating `tables` when an
/// event's schema is newer than the mirrored one.
pub fn apply_events(
    conn: &Connection,
    tables: &mut HashMap<TableId, MirrorTable>,
    events: &[ChangeEvent],
) -> Result<Applied, Error> {
    let mut positions: HashMap<TableId, Option<(Lsn, u32)>> = HashMap::new();
    let mut moved: Vec<TableId> = Vec::new();
    let mut outcome = Applied::default();
    for event in events {
        let id = event.table.id;
        let Some(table) = tables.get_mut(&id) else {
            return Err(Error::table(
                &event.table,
                "change for a table that was never prepared",
            ));
        };
        if table.schema != *event.table {
            *table = ddl::alter(conn, table, &event.table)
                .map_err(|e| table_error(&event.table, "changing the table's columns", e))?;
        }
        let position = match positions.get(&id) {
            Some(position) => *position,
            None => {
                let stored = metadata::position(conn, id)
                    .map_err(|e| table_error(&event.table, "reading its position", e))?;
                positions.insert(id, stored);
                stored
            }
        };
        if position.is_some_and(|applied| event.position() <= applied) {
            outcome.skipped += 1;
            continue;
        }
        apply_change(conn, table, &event.change)?;
        positions.insert(id, Some(event.position()));
        if !moved.contains(&id) {
            moved.push(id);
        }
        outcome.applied += 1;
    }
    for id in moved {
        if let Some(Some(position)) = positions.get(&id) {
            metadata::save_position(conn, id, *position).map_err(metadata_error)?;
        }
    }
    Ok(outcome)
}

fn apply_change(conn: &Connection, table: &MirrorTable, change: &Change) -> Result<(), Error> {
    let fail = |what: &'static str| {
        move |e: WriteError| match e {
            WriteError::Sqlite(e) => table_error(&table.schema, what, e),
            WriteError::Other(e) => e,
        }
    };
    match change {
        Change::Insert { new } => {
            check_width(&table.schema, new)?;
            let columns = sent_columns(new);
            execute(conn, table, &table.insert_sql(&columns), &[(new, &columns)])
                .map_err(fail("insert"))?;
        }
        Change::Update { old, new } => {
            check_width(&table.schema, new)?;
            if let Some(old) = old {
                check_width(&table.schema, old)?;
            }
            update(conn, table, old.as_ref(), new).map_err(fail("update"))?;
        }
        Change::Delete { old } => {
            check_width(&table.schema, old)?;
            let matched = row_matcher(table)?;
            let columns = matched(old);
            let deleted = execute(conn, table, &table.delete_sql(&columns), &[(old, &columns)])
                .map_err(fail("delete"))?;
            if deleted == 0 && table.key.is_empty() {
                tracing::warn!(table = %table.schema.name, "delete found no matching row; skipped");
            }
        }
        Change::Truncate => {
            conn.execute(&format!("DELETE FROM {}", table.quoted()), [])
                .map_err(|e| table_error(&table.schema, "truncate", e))?;
        }
    }
    Ok(())
}

enum WriteError {
    Sqlite(rusqlite::Error),
    Other(Error),
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        WriteError::Sqlite(e)
    }
}

impl From<Error> for WriteError {
    fn from(e: Error) -> Self {
        WriteError::Other(e)
    }
}

fn update(
    conn: &Connection,
    table: &MirrorTable,
    old: Option<&Row>,
    new: &Row,
) -> Result<(), WriteError> {
    let set = sent_columns(new);
    if table.key.is_empty() {
        let Some(old) = old.filter(|_| table.matches_full_rows()) else {
            return Err(no_row_identity(&table.schema).into());
        };
        let matched = sent_columns(old);
        let sql = table.update_sql(&set, &matched);
        if execute(conn, table, &sql, &[(new, &set), (old, &matched)])? == 0 {
            tracing::warn!(table = %table.schema.name, "update found no matching row; skipped");
        }
        return Ok(());
    }
    let key_changed = old.is_some_and(|old| {
        table
            .key
            .iter()
            .any(|&k| new[k] != Cell::Unchanged && old[k] != new[k])
    });
    if let (true, Some(old)) = (key_changed, old) {
        let sql = table.update_sql(&set, &[]);
        if execute(conn, table, &sql, &[(new, &set), (old, &table.key)])? > 0 {
            return Ok(());
        }
    }
    execute(conn, table, &table.insert_sql(&set), &[(new, &set)])?;
    Ok(())
}

/// Which old columns identify a row for a delete: the key, or every sent column (`FULL`).
fn row_matcher(table: &MirrorTable) -> Result<impl Fn(&Row) -> Vec<usize> + '_, Error> {
    if table.key.is_empty() && !table.matches_full_rows() {
        return Err(no_row_identity(&table.schema));
    }
    Ok(move |row: &Row| {
        if table.key.is_empty() {
            sent_columns(row)
        } else {
            table.key.clone()
        }
    })
}

/// Runs `sql` (a cached prepared statement) with the SQLite values of `columns` of `row` of
/// each part bound in order; returns the rows changed.
fn execute(
    conn: &Connection,
    table: &MirrorTable,
    sql: &str,
    parts: &[(&Row, &Vec<usize>)],
) -> Result<usize, WriteError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut parameter = 0;
    for (row, columns) in parts {
        for &i in columns.iter() {
            parameter += 1;
            let value = match &row[i] {
                Cell::Text(text) => {
                    to_sqlite(table.schema.columns[i].type_oid, text).map_err(|e| {
                        Error::table(
                            &table.schema,
                            format!("column {}: {e}", table.schema.columns[i].name),
                        )
                    })?
                }
                Cell::Null | Cell::Unchanged => ToSqlOutput::Borrowed(ValueRef::Null),
            };
            statement.raw_bind_parameter(parameter, value)?;
        }
    }
    Ok(statement.raw_execute()?)
}
