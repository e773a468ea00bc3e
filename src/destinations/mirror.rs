//! What the mirror destinations (`sqlite`, `postgres`) share: row checks and the upsert clause.

use crate::base::event::{Cell, Row};
use crate::base::schema::TableSchema;
use crate::engine::destination::Error;

/// Indexes of the columns whose value was sent (not unchanged TOAST).
pub fn sent_columns(row: &Row) -> Vec<usize> {
    (0..row.len())
        .filter(|&i| row[i] != Cell::Unchanged)
        .collect()
}

/// A row must have one cell per column of its table.
pub fn check_width(schema: &TableSchema, row: &Row) -> Result<(), Error> {
    if row.len() == schema.columns.len() {
        return Ok(());
    }
    Err(Error::table(
        schema,
        format!(
            "a row has {} values but the table has {} columns",
            row.len(),
            schema.columns.len()
        ),
    ))
}

/// An update or delete of a table whose rows cannot be identified.
pub fn no_row_identity(schema: &TableSchema) -> Error {
    Error::table(
        schema,
        "an update or delete cannot be applied: the table has no primary key and is \
                  not REPLICA IDENTITY FULL (add a primary key or set REPLICA IDENTITY FULL)",
    )
}

/// ` ON CONFLICT (key) DO UPDATE SET c = excluded.c, …` for quoted column names (`DO NOTHING`
/// when every written column is a key column); the same in SQLite and Postgres.
pub fn on_conflict(key: &[String], updated: &[String]) -> String {
    let mut clause = format!(" ON CONFLICT ({}) DO ", key.join(", "));
    if updated.is_empty() {
        clause.push_str("NOTHING");
    } else {
        let assignments: Vec<String> = updated
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        clause.push_str(&format!("UPDATE SET {}", assignments.join(", ")));
    }
    clause
}
