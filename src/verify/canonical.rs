//! The one text form every side of a verification agrees on, per column and per row, and the
//! hashes built from it.
//!
//! A value's canonical text is what the type's output function prints under the replication
//! session's settings (`DateStyle=ISO`, `IntervalStyle=postgres`, `TimeZone=UTC`,
//! `extra_float_digits=3`, `bytea_output=hex`) — not a `::text` cast, which trims `character(n)`
//! and adds `/32` to an `inet` — so it is also the text the sqlite destination stores for every
//! type it keeps as TEXT. Where sqlite stores a native value the form is chosen so both sides
//! make it exactly: `bool` is `t`/`f`, integers are decimal, `bytea` is lowercase hex without
//! `\x`, and `float4`/`float8` are the 16 hex digits of the IEEE-754 double (`float4` widened
//! exactly, `-0` as `0`) or `NaN`, so no float printing has to agree between Postgres and Rust.
//!
//! A row's canonical text is its columns' values in order as SQL literals (`quote_nullable`:
//! `NULL`, `'it''s'`, `E'a\\b'`) joined by `,`, which no two different rows share; the key's
//! canonical text is the same over the key columns. Postgres computes both in SQL
//! ([`pg_row`], [`pg_key`]) on the source and on a postgres destination; the sqlite side
//! computes them in application-defined SQL functions from the stored values ([`sqlite_row`]).
//! Rows are bucketed by a hex prefix of `md5(key text)` and hashed by `md5(row text)`, whose
//! first 8 bytes are summed per bucket as two signed 32-bit halves (order-independent, no
//! overflow below 2^31 rows per bucket).

use md5::{Digest as _, Md5};
use rusqlite::types::ValueRef;

use crate::base::quote::quote_identifier;
use crate::base::values::oid;

/// How a column's canonical text is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Integer,
    Float,
    Bytea,
    /// Postgres's text output, as is.
    Text,
}

impl Kind {
    pub fn of(type_oid: u32) -> Kind {
        match type_oid {
            oid::BOOL => Kind::Bool,
            oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => Kind::Integer,
            oid::FLOAT4 | oid::FLOAT8 => Kind::Float,
            oid::BYTEA => Kind::Bytea,
            _ => Kind::Text,
        }
    }
}

/// The session settings under which [`pg_row`] gives the canonical text (startup options).
pub const PG_SETTINGS: &[(&str, &str)] = &[
    ("DateStyle", "ISO"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
];

/// The canonical text of column `name` in SQL (NULL stays NULL). `concat()` prints a value
/// with its type's output function.
fn pg_value(name: &str, kind: Kind) -> String {
    let c = quote_identifier(name);
    match kind {
        Kind::Float => format!(
            "CASE WHEN {c} = 'NaN' THEN 'NaN' ELSE encode(float8send({c}::float8 + 0), 'hex') END"
        ),
        Kind::Bytea => format!("encode({c}, 'hex')"),
        Kind::Integer => format!("{c}::text"),
        Kind::Bool | Kind::Text => format!("CASE WHEN {c} IS NULL THEN NULL ELSE concat({c}) END"),
    }
}

/// The canonical text of the given columns in SQL: their literals joined by `,`.
fn pg_concat<'a>(columns: impl Iterator<Item = (&'a str, Kind)>) -> String {
    let parts: Vec<String> = columns
        .map(|(name, kind)| format!("quote_nullable({})", pg_value(name, kind)))
        .collect();
    if parts.is_empty() {
        "''".into()
    } else {
        parts.join(" || ',' || ")
    }
}

/// The columns of one table as a verification sees them: names on this side, kinds, key.
#[derive(Debug, Clone)]
pub struct Columns {
    pub names: Vec<String>,
    pub kinds: Vec<Kind>,
    /// Indexes of the key columns; every column for a table without a key.
    pub key: Vec<usize>,
}

impl Columns {
    /// The canonical row text in SQL.
    pub fn pg_row(&self) -> String {
        pg_concat(
            self.names
                .iter()
                .map(String::as_str)
                .zip(self.kinds.iter().copied()),
        )
    }

    /// The canonical key text in SQL.
    pub fn pg_key(&self) -> String {
        pg_concat(
            self.key
                .iter()
                .map(|&i| (self.names[i].as_str(), self.kinds[i])),
        )
    }

    /// The quoted column names of the key, then of every column (the sqlite functions' arguments).
    pub fn quoted(&self, indexes: &[usize]) -> String {
        indexes
            .iter()
            .map(|&i| quote_identifier(&self.names[i]))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Appends `text` as Postgres's `quote_literal` writes it: in single quotes, quotes doubled,
/// and, when it holds a backslash, `E'…'` with backslashes doubled.
fn quote_literal(out: &mut String, text: &str) {
    if text.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in text.chars() {
        if c == '\'' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
}

/// Appends the canonical text of one stored sqlite value of `kind`.
fn sqlite_value(out: &mut String, kind: Kind, value: ValueRef<'_>) {
    let text = match (kind, value) {
        (_, ValueRef::Null) => {
            out.push_str("NULL");
            return;
        }
        (Kind::Bool, ValueRef::Integer(0)) => "f".to_owned(),
        (Kind::Bool, ValueRef::Integer(1)) => "t".to_owned(),
        (Kind::Integer, ValueRef::Integer(i)) => i.to_string(),
        (Kind::Float, ValueRef::Real(f)) => float_hex(f),
        (Kind::Float, ValueRef::Integer(i)) => float_hex(i as f64),
        (Kind::Float, ValueRef::Text(b"NaN")) => "NaN".to_owned(),
        (Kind::Bytea, ValueRef::Blob(bytes)) => hex::encode(bytes),
        (Kind::Text, ValueRef::Text(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        // A value of the wrong storage class (written by hand): never equal to the source's.
        (_, other) => format!("?{other:?}"),
    };
    quote_literal(out, &text);
}

/// The 16 hex digits of a double, `-0` as `0`.
fn float_hex(value: f64) -> String {
    format!("{:016x}", (value + 0.0).to_bits())
}

/// The canonical text of stored sqlite values of the given kinds.
pub fn sqlite_row<'a>(values: impl Iterator<Item = (Kind, ValueRef<'a>)>) -> String {
    let mut out = String::new();
    for (i, (kind, value)) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        sqlite_value(&mut out, kind, value);
    }
    out
}

/// `md5(text)` as lowercase hex, as Postgres's `md5()` prints it.
pub fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// The first 8 bytes of `md5(text)` as a signed integer: its high and low 32 bits are the two
/// halves summed per bucket.
pub fn md5_head(text: &str) -> i64 {
    let digest = Md5::digest(text.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(head)
}

/// A key's canonical text shown to people: `id=7`, `(a=1, b=x)`; the text itself when it
/// cannot be read back.
pub fn display_key(names: &[&str], text: &str) -> String {
    let parts = names
        .iter()
        .try_fold((Vec::new(), text), |(mut parts, rest), name| {
            let rest = rest.strip_prefix(',').unwrap_or(rest);
            let (value, rest) = read_literal(rest)?;
            parts.push(format!("{name}={value}"));
            Some((parts, rest))
        })
        .filter(|(_, rest)| rest.is_empty())
        .map(|(parts, _)| parts);
    match parts {
        Some(mut parts) if parts.len() == 1 => parts.remove(0),
        Some(parts) => format!("({})", parts.join(", ")),
        None => text.to_owned(),
    }
}

/// Reads one `quote_nullable` literal from the start of `text`: its value and the rest.
fn read_literal(text: &str) -> Option<(String, &str)> {
    if let Some(rest) = text.strip_prefix("NULL") {
        return Some(("NULL".into(), rest));
    }
    let (escaped, body) = match text.strip_prefix("E'") {
        Some(body) => (true, body),
        None => (false, text.strip_prefix('\'')?),
    };
    let mut value = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let doubled = c == '\'' || (escaped && c == '\\');
        if doubled && chars.peek().map(|(_, next)| *next) == Some(c) {
            chars.next();
            value.push(c);
        } else if c == '\'' {
            return Some((value, &body[i + 1..]));
        } else {
            value.push(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_values_take_the_postgres_canonical_text() {
        let row = sqlite_row(
            [
                (Kind::Integer, ValueRef::Integer(42)),
                (Kind::Bool, ValueRef::Integer(1)),
                (Kind::Float, ValueRef::Real(-0.0)),
                (Kind::Float, ValueRef::Real(1.5)),
                (Kind::Float, ValueRef::Text(b"NaN")),
                (Kind::Bytea, ValueRef::Blob(&[0, 255])),
                (Kind::Text, ValueRef::Text("é".as_bytes())),
                (Kind::Text, ValueRef::Null),
            ]
            .into_iter(),
        );
        assert_eq!(
            row,
            "'42','t','0000000000000000','3ff8000000000000','NaN','00ff','é',NULL"
        );
    }

    #[test]
    fn a_stored_value_of_the_wrong_class_never_matches() {
        let row = sqlite_row([(Kind::Integer, ValueRef::Text(b"42"))].into_iter());
        assert_ne!(row, "'42'");
    }

    #[test]
    fn md5_matches_postgres() {
        // select md5('abc') = '900150983cd24fb0d6963f7d28e17f72'
        assert_eq!(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(md5_head("abc"), 0x9001_5098_3cd2_4fb0_u64 as i64);
    }

    #[test]
    fn keys_are_shown_with_their_column_names() {
        assert_eq!(display_key(&["id"], "'17'"), "id=17");
        assert_eq!(
            display_key(&["a", "b", "c"], "'x'',y',NULL,E'a\\\\b'"),
            "(a=x',y, b=NULL, c=a\\b)"
        );
        assert_eq!(display_key(&["a"], "garbage"), "garbage");
        assert_eq!(display_key(&["a"], "'x','y'"), "'x','y'");
    }

    #[test]
    fn literals_are_quoted_as_postgres_quotes_them() {
        // select quote_literal('it''s'), quote_literal('a\b') = 'it''s', E'a\\b'
        let mut out = String::new();
        quote_literal(&mut out, "it's");
        assert_eq!(out, "'it''s'");
        out.clear();
        quote_literal(&mut out, "a\\b");
        assert_eq!(out, "E'a\\\\b'");
    }

    #[test]
    fn postgres_expressions_quote_names_and_mark_nulls() {
        let columns = Columns {
            names: vec!["Id".into(), "f".into()],
            kinds: vec![Kind::Integer, Kind::Float],
            key: vec![0],
        };
        assert_eq!(columns.pg_key(), "quote_nullable(\"Id\"::text)");
        assert!(columns.pg_row().contains("float8send(\"f\"::float8 + 0)"));
    }
}
