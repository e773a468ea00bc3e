//! The one text form every side of a verification agrees on, per column and per row, and the
//! hashes built from it.
//!
//! A value's canonical text is what Postgres prints under the replication session's settings
//! (`DateStyle=ISO`, `IntervalStyle=postgres`, `TimeZone=UTC`, `extra_float_digits=3`,
//! `bytea_output=hex`), which is also the text the sqlite destination stores for every type it
//! keeps as TEXT, with three exceptions where sqlite stores a native value: `bool` is
//! `true`/`false`, `bytea` is lowercase hex without `\x`, and `float4`/`float8` are the 16 hex
//! digits of the IEEE-754 double (`float4` widened exactly, `-0` as `0`) or `NaN`, so no float
//! printing has to agree between Postgres and Rust.
//!
//! A row's canonical text is, for each column in order, `N` for NULL or `<chars>:<text>`; the
//! key's canonical text is the same over the key columns. Postgres computes both in SQL
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

/// The canonical text of column `name` in SQL (NULL stays NULL).
fn pg_value(name: &str, kind: Kind) -> String {
    let c = quote_identifier(name);
    match kind {
        Kind::Float => format!(
            "CASE WHEN {c} = 'NaN' THEN 'NaN' ELSE encode(float8send({c}::float8 + 0), 'hex') END"
        ),
        Kind::Bytea => format!("encode({c}, 'hex')"),
        Kind::Bool | Kind::Integer | Kind::Text => format!("{c}::text"),
    }
}

/// The canonical text of the given columns in SQL, concatenated.
fn pg_concat<'a>(columns: impl Iterator<Item = (&'a str, Kind)>) -> String {
    let parts: Vec<String> = columns
        .map(|(name, kind)| {
            let value = pg_value(name, kind);
            format!("coalesce(length({value})::text || ':' || {value}, 'N')")
        })
        .collect();
    if parts.is_empty() {
        "''".into()
    } else {
        parts.join(" || ")
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

/// Appends the canonical text of one stored sqlite value of `kind`.
fn sqlite_value(out: &mut String, kind: Kind, value: ValueRef<'_>) {
    use std::fmt::Write as _;
    let text = match (kind, value) {
        (_, ValueRef::Null) => {
            out.push('N');
            return;
        }
        (Kind::Bool, ValueRef::Integer(0)) => "false".to_owned(),
        (Kind::Bool, ValueRef::Integer(1)) => "true".to_owned(),
        (Kind::Integer, ValueRef::Integer(i)) => i.to_string(),
        (Kind::Float, ValueRef::Real(f)) => float_hex(f),
        (Kind::Float, ValueRef::Integer(i)) => float_hex(i as f64),
        (Kind::Float, ValueRef::Text(b"NaN")) => "NaN".to_owned(),
        (Kind::Bytea, ValueRef::Blob(bytes)) => hex::encode(bytes),
        (Kind::Text, ValueRef::Text(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        // A value of the wrong storage class (written by hand): never equal to the source's.
        (_, other) => format!("?{other:?}"),
    };
    let _ = write!(out, "{}:{text}", text.chars().count());
}

/// The 16 hex digits of a double, `-0` as `0`.
fn float_hex(value: f64) -> String {
    format!("{:016x}", (value + 0.0).to_bits())
}

/// The canonical text of stored sqlite values of the given kinds.
pub fn sqlite_row<'a>(values: impl Iterator<Item = (Kind, ValueRef<'a>)>) -> String {
    let mut out = String::new();
    for (kind, value) in values {
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

/// A key's canonical text shown to people: `id=7`, `(a=1, b=x)`.
pub fn display_key(names: &[&str], text: &str) -> String {
    let mut parts = Vec::new();
    let mut rest = text;
    for name in names {
        let value = if let Some(after) = rest.strip_prefix('N') {
            rest = after;
            "NULL".to_owned()
        } else {
            let Some((len, after)) = rest.split_once(':') else {
                return text.to_owned();
            };
            let Ok(len) = len.parse::<usize>() else {
                return text.to_owned();
            };
            let end = after
                .char_indices()
                .nth(len)
                .map_or(after.len(), |(i, _)| i);
            let value = after[..end].to_owned();
            rest = &after[end..];
            value
        };
        parts.push(format!("{name}={value}"));
    }
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        format!("({})", parts.join(", "))
    }
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
            "2:424:true16:000000000000000016:3ff80000000000003:NaN4:00ff1:éN"
        );
    }

    #[test]
    fn a_stored_value_of_the_wrong_class_never_matches() {
        let row = sqlite_row([(Kind::Integer, ValueRef::Text(b"42"))].into_iter());
        assert_ne!(row, "2:42");
    }

    #[test]
    fn md5_matches_postgres() {
        // select md5('abc') = '900150983cd24fb0d6963f7d28e17f72'
        assert_eq!(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(md5_head("abc"), 0x9001_5098_3cd2_4fb0_u64 as i64);
    }

    #[test]
    fn keys_are_shown_with_their_column_names() {
        assert_eq!(display_key(&["id"], "2:17"), "id=17");
        assert_eq!(display_key(&["a", "b"], "3:x:yN"), "(a=x:y, b=NULL)");
        assert_eq!(display_key(&["a"], "garbage"), "garbage");
    }

    #[test]
    fn postgres_expressions_quote_names_and_mark_nulls() {
        let columns = Columns {
            names: vec!["Id".into(), "f".into()],
            kinds: vec![Kind::Integer, Kind::Float],
            key: vec![0],
        };
        assert_eq!(
            columns.pg_key(),
            "coalesce(length(\"Id\"::text)::text || ':' || \"Id\"::text, 'N')"
        );
        assert!(columns.pg_row().contains("float8send(\"f\"::float8 + 0)"));
    }
}
