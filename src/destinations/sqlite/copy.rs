//! Loading a table's initial copy: COPY text rows inserted (upserted by key, so a row repeated
//! by two overlapping chunks cannot fail the copy) with one prepared statement per chunk.
//!
//! Fields are bound straight from the chunk's bytes: only a field with a backslash (an escape
//! or `\N`) is decoded into a new string, so most rows are inserted without any allocation.

use std::borrow::Cow;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, Statement};

use crate::base::event::{Cell, CopyChunk, CopyFormatError, decode_copy_line};
use crate::engine::destination::Error;

use super::errors::table_error;
use super::table::MirrorTable;
use super::types::to_sqlite;

/// Inserts every row of `chunk` (inside the caller's transaction); returns the row count.
pub fn insert_chunk(
    conn: &Connection,
    table: &MirrorTable,
    chunk: &CopyChunk,
) -> Result<usize, Error> {
    if chunk.row_count() == 0 {
        return Ok(0);
    }
    let width = table.columns.len();
    let all: Vec<usize> = (0..width).collect();
    let mut statement = conn
        .prepare_cached(&table.insert_sql(&all))
        .map_err(|e| table_error(&table.schema, "copying into", e))?;
    let data = chunk.raw();
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    let mut rows = 0;
    for (index, line) in data.split(|&b| b == b'\n').enumerate() {
        let malformed = |reason: String| {
            Error::table(
                &table.schema,
                format!("initial copy: {}", CopyFormatError { row: index, reason }),
            )
        };
        let mut found = 0;
        for field in line.split(|&b| b == b'\t') {
            if found < width {
                let text = field_text(field).map_err(&malformed)?;
                bind(&mut statement, table, found, text.as_deref())?;
            }
            found += 1;
        }
        if found != width {
            return Err(malformed(format!(
                "expected {width} columns, found {found}"
            )));
        }
        statement
            .raw_execute()
            .map_err(|e| table_error(&table.schema, "copying into", e))?;
        rows += 1;
    }
    Ok(rows)
}

/// The text of one COPY field (`None`: NULL), borrowed unless it has escapes to decode.
fn field_text(field: &[u8]) -> Result<Option<Cow<'_, str>>, String> {
    if !field.contains(&b'\\') {
        let text = std::str::from_utf8(field).map_err(|_| "field is not valid UTF-8")?;
        return Ok(Some(Cow::Borrowed(text)));
    }
    // A field has no tab, so it decodes as a line of one field.
    match decode_copy_line(field)?.pop() {
        Some(Cell::Text(text)) => Ok(Some(Cow::Owned(text))),
        _ => Ok(None),
    }
}

/// Binds column `column`'s value (SQLite copies it) to the statement's parameter for it.
fn bind(
    statement: &mut Statement<'_>,
    table: &MirrorTable,
    column: usize,
    text: Option<&str>,
) -> Result<(), Error> {
    let value = match text {
        None => ToSqlOutput::Borrowed(ValueRef::Null),
        Some(text) => to_sqlite(table.schema.columns[column].type_oid, text).map_err(|e| {
            Error::table(
                &table.schema,
                format!("column {}: {e}", table.schema.columns[column].name),
            )
        })?,
    };
    statement
        .raw_bind_parameter(column + 1, value)
        .map_err(|e| table_error(&table.schema, "copying into", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_without_escapes_are_borrowed_and_the_others_decoded() {
        assert!(matches!(
            field_text(b"plain"),
            Ok(Some(Cow::Borrowed("plain")))
        ));
        assert_eq!(field_text(b"\\N"), Ok(None));
        assert_eq!(
            field_text(b"a\\tb\\\\c").map(|t| t.map(Cow::into_owned)),
            Ok(Some("a\tb\\c".to_owned()))
        );
        assert_eq!(field_text(b""), Ok(Some(Cow::Borrowed(""))));
        assert!(field_text(b"\xff").is_err());
        assert!(field_text(b"lone\\").is_err());
    }
}
