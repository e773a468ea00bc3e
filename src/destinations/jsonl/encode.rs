//! One change as one JSON object on one line.
//!
//! ```json
//! {"op":"update","schema":"public","table":"orders","lsn":"0/1A2B3C8","commit_lsn":"0/1A2B400",
//!  "ordinal":3,"xid":747,"commit_time":"2026-11-27T00:10:36.123456Z","key":{"id":7},
//!  "old":{"id":7},"new":{"id":7,"total":"19.90","paid":true},"unchanged":["notes"]}
//! ```
//!
//! Every object has every field; what does not apply is `null` (`old` of an insert, positions of
//! initial-copy `read` rows). `key` holds the key columns (from the old row when the key
//! changed), `null` for keyless tables. `old` holds the key columns, or the whole old row for
//! `REPLICA IDENTITY FULL` tables. `unchanged` names the columns of an update whose value the
//! source did not send because it did not change (TOAST); they are missing from `new`. Any other
//! column a consumer holds for the row but that is missing from `new` no longer exists (dropped
//! or renamed), so `new` plus the held values of the `unchanged` columns is the whole row.
//!
//! Values are JSON-typed where JSON holds them exactly: bool → `true`/`false`; int2/4/8, oid →
//! numbers; float4/8 → numbers as Postgres printed them (`NaN`, `Infinity`, `-Infinity` as
//! strings); json/jsonb → embedded JSON as sent; bytea → base64 string; arrays → JSON arrays
//! (nested for several dimensions; as the Postgres text when a lower bound is not 1); numeric
//! and everything else → the Postgres text as a string.

use std::fmt::Write as _;

use base64::Engine as _;

use crate::base::event::{Cell, Change, ChangeEvent, Row};
use crate::base::lsn::Lsn;
use crate::base::schema::{ReplicaIdentity, TableSchema};
use crate::base::values::{self, Value, oid};

/// What the positional fields of a line hold.
struct Position {
    lsn: Lsn,
    commit_lsn: Lsn,
    ordinal: u32,
    xid: u32,
    commit_time: i64,
}

/// Appends the line of a change event (with its `\n`).
pub fn change_line(out: &mut Vec<u8>, event: &ChangeEvent) {
    let schema = &event.table;
    let position = Position {
        lsn: event.lsn,
        commit_lsn: event.commit_lsn,
        ordinal: event.ordinal,
        xid: event.xid,
        commit_time: event.commit_time,
    };
    let full = schema.replica_identity == ReplicaIdentity::Full;
    match &event.change {
        Change::Insert { new } => line(
            out,
            "insert",
            schema,
            Some(&position),
            Some(new),
            None,
            Some(new),
        ),
        Change::Update { old, new } => {
            let key_row = old.as_ref().unwrap_or(new);
            let old = old.as_ref().map(|old| (old, full));
            line(
                out,
                "update",
                schema,
                Some(&position),
                Some(key_row),
                old,
                Some(new),
            );
        }
        Change::Delete { old } => line(
            out,
            "delete",
            schema,
            Some(&position),
            Some(old),
            Some((old, full)),
            None,
        ),
        Change::Truncate => line(out, "truncate", schema, Some(&position), None, None, None),
    }
}

/// Appends the line of an initial-copy row.
pub fn read_line(out: &mut Vec<u8>, schema: &TableSchema, row: &Row) {
    line(out, "read", schema, None, Some(row), None, Some(row));
}

/// Appends the `truncate` line (with null positions) that starts a table's initial copy.
pub fn copy_start_line(out: &mut Vec<u8>, schema: &TableSchema) {
    line(out, "truncate", schema, None, None, None, None);
}

fn line(
    out: &mut Vec<u8>,
    op: &str,
    schema: &TableSchema,
    position: Option<&Position>,
    key_row: Option<&Row>,
    old: Option<(&Row, bool)>,
    new: Option<&Row>,
) {
    out.extend_from_slice(b"{\"op\":");
    string(out, op);
    out.extend_from_slice(b",\"schema\":");
    string(out, &schema.name.schema);
    out.extend_from_slice(b",\"table\":");
    string(out, &schema.name.name);
    match position {
        Some(p) => {
            out.extend_from_slice(b",\"lsn\":");
            string(out, &p.lsn.to_string());
            out.extend_from_slice(b",\"commit_lsn\":");
            string(out, &p.commit_lsn.to_string());
            let _ = write!(Utf8(out), ",\"ordinal\":{},\"xid\":{}", p.ordinal, p.xid);
            out.extend_from_slice(b",\"commit_time\":");
            string(out, &postgres_micros_to_rfc3339(p.commit_time));
        }
        None => out.extend_from_slice(
            b",\"lsn\":null,\"commit_lsn\":null,\"ordinal\":null,\"xid\":null,\"commit_time\":null",
        ),
    }
    let key = schema.key_columns();
    out.extend_from_slice(b",\"key\":");
    match key_row {
        Some(row) if !key.is_empty() => object(out, schema, row, &key),
        _ => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"old\":");
    match old {
        Some((row, true)) => object(out, schema, row, &(0..row.len()).collect::<Vec<_>>()),
        Some((row, false)) => object(out, schema, row, &key),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"new\":");
    match new {
        Some(row) => object(out, schema, row, &(0..row.len()).collect::<Vec<_>>()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"unchanged\":");
    unchanged(out, schema, new);
    out.extend_from_slice(b"}\n");
}

/// `["column", …]` of the unchanged TOAST columns of `row`; `null` when every column was sent.
fn unchanged(out: &mut Vec<u8>, schema: &TableSchema, row: Option<&Row>) {
    let names: Vec<&str> = row
        .into_iter()
        .flat_map(|row| row.iter().zip(&schema.columns))
        .filter(|(cell, _)| **cell == Cell::Unchanged)
        .map(|(_, column)| column.name.as_str())
        .collect();
    if names.is_empty() {
        out.extend_from_slice(b"null");
        return;
    }
    out.push(b'[');
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, name);
    }
    out.push(b']');
}

/// `{"column": value, …}` of the given columns; unchanged TOAST columns are left out.
fn object(out: &mut Vec<u8>, schema: &TableSchema, row: &Row, columns: &[usize]) {
    out.push(b'{');
    let mut first = true;
    for &index in columns {
        let (Some(column), Some(cell)) = (schema.columns.get(index), row.get(index)) else {
            continue;
        };
        if *cell == Cell::Unchanged {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        string(out, &column.name);
        out.push(b':');
        match cell {
            Cell::Text(text) => value(out, column.type_oid, text),
            _ => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

/// A non-NULL value of type `type_oid` given in Postgres text form.
fn value(out: &mut Vec<u8>, type_oid: u32, text: &str) {
    let typed = matches!(
        type_oid,
        oid::BOOL
            | oid::INT2
            | oid::INT4
            | oid::INT8
            | oid::OID
            | oid::FLOAT4
            | oid::FLOAT8
            | oid::BYTEA
            | oid::JSON
            | oid::JSONB
    ) || values::array_element_type(type_oid).is_some();
    if !typed {
        return string(out, text);
    }
    match values::parse(type_oid, text) {
        // Postgres prints finite floats in a form JSON accepts, and exactly.
        Ok(Value::Float4(v)) if v.is_finite() => out.extend_from_slice(text.as_bytes()),
        Ok(Value::Float8(v)) if v.is_finite() => out.extend_from_slice(text.as_bytes()),
        Ok(Value::Array { lower_bounds, .. }) if lower_bounds.iter().any(|b| *b != 1) => {
            string(out, text)
        }
        Ok(parsed) => typed_value(out, &parsed),
        // Not what the type promises (cannot come from Postgres): keep the text.
        Err(_) => string(out, text),
    }
}

fn typed_value(out: &mut Vec<u8>, value: &Value) {
    let _ = match value {
        Value::Bool(b) => write!(Utf8(out), "{b}"),
        Value::Int2(v) => write!(Utf8(out), "{v}"),
        Value::Int4(v) => write!(Utf8(out), "{v}"),
        Value::Int8(v) => write!(Utf8(out), "{v}"),
        Value::Oid(v) => write!(Utf8(out), "{v}"),
        Value::Float4(v) => float(out, f64::from(*v), v.to_string()),
        Value::Float8(v) => float(out, *v, v.to_string()),
        Value::Json(text) => {
            out.extend_from_slice(text.as_bytes());
            Ok(())
        }
        Value::Bytea(bytes) => {
            string(
                out,
                &base64::engine::general_purpose::STANDARD.encode(bytes),
            );
            Ok(())
        }
        Value::Array { dims, elements, .. } => {
            array(out, dims, elements);
            Ok(())
        }
        other => {
            string(out, &scalar_text(other));
            Ok(())
        }
    };
}

fn float(out: &mut Vec<u8>, value: f64, shortest: String) -> std::fmt::Result {
    if value.is_finite() {
        out.extend_from_slice(shortest.as_bytes());
    } else if value.is_nan() {
        string(out, "NaN");
    } else if value > 0.0 {
        string(out, "Infinity");
    } else {
        string(out, "-Infinity");
    }
    Ok(())
}

/// Nested JSON arrays, row-major, `null` for NULL elements.
fn array(out: &mut Vec<u8>, dims: &[usize], elements: &[Option<Value>]) {
    let Some((&len, inner)) = dims.split_first() else {
        out.extend_from_slice(b"[]");
        return;
    };
    let stride: usize = inner.iter().product();
    out.push(b'[');
    for i in 0..len {
        if i > 0 {
            out.push(b',');
        }
        if inner.is_empty() {
            match elements.get(i) {
                Some(Some(element)) => typed_value(out, element),
                _ => out.extend_from_slice(b"null"),
            }
        } else {
            let start = (i * stride).min(elements.len());
            let end = (start + stride).min(elements.len());
            array(out, inner, &elements[start..end]);
        }
    }
    out.push(b']');
}

/// The Postgres text of an array element that JSON keeps as a string.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::Numeric(text) | Value::Text(text) | Value::Money(text) => text.clone(),
        Value::Date { text, .. }
        | Value::Time { text, .. }
        | Value::TimeTz { text, .. }
        | Value::Timestamp { text, .. }
        | Value::TimestampTz { text, .. }
        | Value::Interval { text, .. } => text.clone(),
        Value::Uuid(b) => format!(
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            b[0],
            b[1],
            b[2],
            b[3],
            b[4],
            b[5],
            b[6],
            b[7],
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        ),
        Value::Inet { addr, prefix } => {
            let full = if addr.is_ipv4() { 32 } else { 128 };
            if *prefix == full {
                addr.to_string()
            } else {
                format!("{addr}/{prefix}")
            }
        }
        Value::Cidr { addr, prefix } => format!("{addr}/{prefix}"),
        Value::MacAddr(bytes) => bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        other => format!("{other:?}"),
    }
}

/// A JSON string literal.
fn string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(Utf8(out), "\\u{:04x}", c as u32);
            }
            c => {
                let mut buffer = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Microseconds since 2000-01-01 UTC as `2026-11-27T00:10:36.123456Z`.
pub fn postgres_micros_to_rfc3339(micros: i64) -> String {
    const MICROS_PER_DAY: i64 = 86_400_000_000;
    let days = micros.div_euclid(MICROS_PER_DAY);
    let in_day = micros.rem_euclid(MICROS_PER_DAY);
    // Civil date from days since 2000-03-01 (a 400-year cycle starts on a March 1st).
    let shifted = days - 60;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = 2000 + era * 400 + year_of_era + i64::from(month <= 2);
    let seconds = in_day / 1_000_000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        in_day % 1_000_000
    )
}

/// `fmt::Write` into a byte buffer.
struct Utf8<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Utf8<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(type_oid: u32, text: &str) -> String {
        let mut out = Vec::new();
        value(&mut out, type_oid, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_are_typed_where_json_is_exact() {
        assert_eq!(encoded(oid::BOOL, "t"), "true");
        assert_eq!(
            encoded(oid::INT8, "-9223372036854775808"),
            "-9223372036854775808"
        );
        assert_eq!(encoded(oid::FLOAT8, "1e+30"), "1e+30");
        assert_eq!(encoded(oid::FLOAT4, "NaN"), "\"NaN\"");
        assert_eq!(encoded(oid::NUMERIC, "1.10"), "\"1.10\"");
        assert_eq!(encoded(oid::BYTEA, "\\x00ff"), "\"AP8=\"");
        assert_eq!(
            encoded(oid::JSONB, "{\"a\": [1, 2.50]}"),
            "{\"a\": [1, 2.50]}"
        );
        assert_eq!(encoded(1007, "{{1,2},{NULL,4}}"), "[[1,2],[null,4]]");
        assert_eq!(encoded(1007, "[0:1]={1,2}"), "\"[0:1]={1,2}\"");
        assert_eq!(encoded(1009, "{\"a\\\"b\",NULL}"), "[\"a\\\"b\",null]");
        assert_eq!(encoded(1007, "{}"), "[]");
        assert_eq!(encoded(oid::TEXT, "tab\there"), "\"tab\\there\"");
    }

    #[test]
    fn commit_times_are_rfc3339_utc() {
        assert_eq!(postgres_micros_to_rfc3339(0), "2000-01-01T00:00:00.000000Z");
        assert_eq!(
            postgres_micros_to_rfc3339(5_000 * 86_400_000_000 + 1),
            "2013-09-09T00:00:00.000001Z"
        );
        assert_eq!(
            postgres_micros_to_rfc3339(-1),
            "1999-12-31T23:59:59.999999Z"
        );
        // 2024-02-29 13:45:06.5 UTC
        assert_eq!(
            postgres_micros_to_rfc3339(762_529_506_500_000),
            "2024-02-29T13:45:06.500000Z"
        );
    }

    #[test]
    fn an_update_names_its_unchanged_toast_columns() {
        use crate::base::schema::{ColumnSchema, TableId, TableName};
        use std::sync::Arc;
        let column = |name: &str, key: Option<u16>| ColumnSchema {
            name: name.into(),
            type_oid: oid::TEXT,
            type_modifier: -1,
            nullable: key.is_none(),
            primary_key_position: key,
            existing_rows_value: None,
        };
        let table = Arc::new(TableSchema {
            id: TableId(1),
            name: TableName::new("public", "t"),
            columns: vec![
                column("id", Some(1)),
                column("doc", None),
                column("n", None),
            ],
            replica_identity: ReplicaIdentity::Default,
        });
        let text = |t: &str| Cell::Text(t.into());
        let line = |change: Change| {
            let mut out = Vec::new();
            change_line(
                &mut out,
                &ChangeEvent {
                    table: Arc::clone(&table),
                    lsn: Lsn(8),
                    commit_lsn: Lsn(16),
                    xid: 1,
                    commit_time: 0,
                    ordinal: 0,
                    change,
                },
            );
            let out = String::from_utf8(out).unwrap();
            let start = out.find(",\"new\":").unwrap();
            out[start..].to_owned()
        };
        assert_eq!(
            line(Change::Update {
                old: None,
                new: vec![text("1"), Cell::Unchanged, text("x")],
            }),
            ",\"new\":{\"id\":\"1\",\"n\":\"x\"},\"unchanged\":[\"doc\"]}\n"
        );
        assert_eq!(
            line(Change::Insert {
                new: vec![text("1"), text("d"), Cell::Null],
            }),
            ",\"new\":{\"id\":\"1\",\"doc\":\"d\",\"n\":null},\"unchanged\":null}\n"
        );
    }
}
