//! What the engine hands to destinations: rows of text cells and ordered change events.
//!
//! Values stay in Postgres's text form (the same for COPY and pgoutput once COPY escapes are
//! removed); a destination that needs typed values parses them with [`super::types`]. An
//! unchanged TOASTed column of an update is [`Cell::Unchanged`], which is not `NULL`: the
//! destination must keep the value it already has.

use std::sync::Arc;

use super::lsn::Lsn;
use super::schema::TableSchema;

/// One column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    /// An unchanged TOASTed value that the update did not send: keep the stored value.
    Unchanged,
    /// The value in Postgres text output format.
    Text(String),
}

impl Cell {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Cell::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// A row: one cell per column of the table's [`TableSchema::columns`], in that order.
pub type Row = Vec<Cell>;

/// One change of one transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Insert {
        new: Row,
    },
    /// `old` is the key (replica identity `default`/`index`: only key columns are `Text`, others
    /// `Null`) or the full old row (`REPLICA IDENTITY FULL`); `None` when the key did not change
    /// and the table is not `FULL` (then `new` carries the key).
    Update {
        old: Option<Row>,
        new: Row,
    },
    /// `old` as for updates: the key columns, or the full row for `FULL` tables.
    Delete {
        old: Row,
    },
    /// Every row of the event's table is removed (one event per table of a TRUNCATE).
    Truncate,
}

/// A change with its position. Within one table, events arrive in commit order and, within a
/// transaction, in `ordinal` order; `(commit_lsn, ordinal)` identifies an event across replays,
/// so a destination can skip what it already applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// The table as it was when the change was made (schema changes arrive before the rows
    /// that need them).
    pub table: Arc<TableSchema>,
    /// WAL position of the change itself.
    pub lsn: Lsn,
    /// End LSN of the transaction's commit (known from its Begin message).
    pub commit_lsn: Lsn,
    pub xid: u32,
    /// Commit time, microseconds since 2000-01-01 (Postgres epoch).
    pub commit_time: i64,
    /// 0-based position of this change within its transaction.
    pub ordinal: u32,
    pub change: Change,
}

impl ChangeEvent {
    /// `(commit_lsn, ordinal)`: a total order of the events of one table, stable across replays.
    pub fn position(&self) -> (Lsn, u32) {
        (self.commit_lsn, self.ordinal)
    }
}

/// A piece of a table's initial copy: complete rows in COPY text format (tab-separated, `\N` for
/// NULL, backslash escapes, one row per `\n`-terminated line), exactly as the source sent them.
/// Destinations that can load this form directly (a Postgres `COPY … FROM STDIN`) pass it
/// through; others call [`CopyChunk::rows`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyChunk {
    data: bytes::Bytes,
    rows: usize,
}

/// COPY text that does not match the table's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed COPY data at row {row}: {reason}")]
pub struct CopyFormatError {
    pub row: usize,
    pub reason: String,
}

impl CopyChunk {
    /// `data` must hold `rows` complete lines.
    pub fn new(data: bytes::Bytes, rows: usize) -> Self {
        Self { data, rows }
    }

    pub fn raw(&self) -> &[u8] {
        &self.data
    }

    pub fn row_count(&self) -> usize {
        self.rows
    }

    /// Decodes every row into cells, checking each has `columns` fields.
    pub fn rows(&self, columns: usize) -> Result<Vec<Row>, CopyFormatError> {
        let mut out = Vec::with_capacity(self.rows);
        let data = self.data.strip_suffix(b"\n").unwrap_or(&self.data);
        if self.rows == 0 {
            return Ok(out);
        }
        for (index, line) in data.split(|&b| b == b'\n').enumerate() {
            let row = decode_copy_line_with(line, columns)
                .map_err(|reason| CopyFormatError { row: index, reason })?;
            if row.len() != columns {
                return Err(CopyFormatError {
                    row: index,
                    reason: format!("expected {columns} columns, found {}", row.len()),
                });
            }
            out.push(row);
        }
        Ok(out)
    }
}

/// Decodes one COPY text-format line (without its `\n`) into cells.
pub fn decode_copy_line(line: &[u8]) -> Result<Row, String> {
    decode_copy_line_with(line, 0)
}

/// [`decode_copy_line`], with room for `columns` cells made once. Most fields hold no
/// backslash: they are validated and copied in one step.
fn decode_copy_line_with(line: &[u8], columns: usize) -> Result<Row, String> {
    let mut row = Vec::with_capacity(columns);
    for field in line.split(|&b| b == b'\t') {
        if field == b"\\N" {
            row.push(Cell::Null);
            continue;
        }
        if !field.contains(&b'\\') {
            let text = std::str::from_utf8(field).map_err(|_| "field is not valid UTF-8")?;
            row.push(Cell::Text(text.to_owned()));
            continue;
        }
        let mut text = Vec::with_capacity(field.len());
        let mut i = 0;
        while i < field.len() {
            let b = field[i];
            if b != b'\\' {
                text.push(b);
                i += 1;
                continue;
            }
            let Some(&next) = field.get(i + 1) else {
                return Err("field ends with a lone backslash".into());
            };
            i += 2;
            match next {
                b'b' => text.push(0x08),
                b'f' => text.push(0x0c),
                b'n' => text.push(b'\n'),
                b'r' => text.push(b'\r'),
                b't' => text.push(b'\t'),
                b'v' => text.push(0x0b),
                b'0'..=b'7' => {
                    let mut value = u32::from(next - b'0');
                    let mut digits = 1;
                    while digits < 3 {
                        match field.get(i) {
                            Some(&d @ b'0'..=b'7') => {
                                value = value * 8 + u32::from(d - b'0');
                                i += 1;
                                digits += 1;
                            }
                            _ => break,
                        }
                    }
                    text.push((value & 0xff) as u8);
                }
                b'x' => {
                    let mut value = 0u32;
                    let mut digits = 0;
                    while digits < 2 {
                        match field.get(i).and_then(|d| (*d as char).to_digit(16)) {
                            Some(d) => {
                                value = value * 16 + d;
                                i += 1;
                                digits += 1;
                            }
                            None => break,
                        }
                    }
                    if digits == 0 {
                        text.push(b'x');
                    } else {
                        text.push(value as u8);
                    }
                }
                other => text.push(other),
            }
        }
        let text = String::from_utf8(text).map_err(|_| "field is not valid UTF-8".to_owned())?;
        row.push(Cell::Text(text));
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_and_nulls_are_decoded() {
        let chunk = CopyChunk::new(
            bytes::Bytes::from_static(b"1\ta\\tb\\nc\\\\d\t\\N\n2\t\\303\\251\t\\x41\n"),
            2,
        );
        let rows = chunk.rows(3).unwrap();
        assert_eq!(
            rows[0],
            vec![
                Cell::Text("1".into()),
                Cell::Text("a\tb\nc\\d".into()),
                Cell::Null
            ]
        );
        assert_eq!(
            rows[1],
            vec![
                Cell::Text("2".into()),
                Cell::Text("é".into()),
                Cell::Text("A".into())
            ]
        );
    }

    #[test]
    fn fields_without_escapes_take_the_fast_path_and_are_still_checked() {
        let chunk = CopyChunk::new(bytes::Bytes::from_static(b"plain\t\\N\t\xff\n"), 1);
        assert_eq!(
            chunk.rows(3).unwrap_err().reason,
            "field is not valid UTF-8"
        );
        let chunk = CopyChunk::new(bytes::Bytes::from_static(b"plain\t\\N\tx\n"), 1);
        let rows = chunk.rows(3).unwrap();
        assert_eq!(
            rows[0],
            vec![
                Cell::Text("plain".into()),
                Cell::Null,
                Cell::Text("x".into())
            ]
        );
    }

    #[test]
    fn a_row_with_the_wrong_width_is_an_error() {
        let chunk = CopyChunk::new(bytes::Bytes::from_static(b"1\t2\n"), 1);
        assert_eq!(chunk.rows(3).unwrap_err().row, 0);
    }
}
