//! Loading a table's initial copy: COPY text rows decoded into cells and inserted (upserted by
//! key, so a row repeated by two overlapping chunks cannot fail the copy).

use rusqlite::Connection;

use crate::destinations::Error;
use crate::engine::event::CopyChunk;

use super::apply::{execute, values};
use super::errors::table_error;
use super::table::MirrorTable;

/// Inserts every row of `chunk` (inside the caller's transaction); returns the row count.
pub fn insert_chunk(
    conn: &Connection,
    table: &MirrorTable,
    chunk: &CopyChunk,
) -> Result<usize, Error> {
    let rows = chunk.rows(table.columns.len()).map_err(|e| Error::Table {
        table: table.schema.name.clone(),
        message: format!("initial copy: {e}"),
    })?;
    let all: Vec<usize> = (0..table.columns.len()).collect();
    let sql = table.insert_sql(&all);
    for row in &rows {
        let values = values(table, row, &all)?;
        execute(conn, &sql, values)
            .map_err(|e| table_error(&table.schema.name, "copying into", e))?;
    }
    Ok(rows.len())
}
