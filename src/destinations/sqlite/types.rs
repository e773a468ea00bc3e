//! Postgres types in SQLite: the column affinity each type gets, how a value in Postgres text form
//! becomes an SQLite value, and the Postgres type name recorded in `etl_columns`.
//!
//! Only what SQLite holds exactly becomes a number or a blob: bool (0/1), int2/int4/int8/oid
//! (INTEGER), float4/float8 (REAL; `NaN` is stored as the text `NaN` because SQLite turns a NaN
//! REAL into NULL), bytea (BLOB). Everything else keeps Postgres's text form in a TEXT column:
//! numeric (any precision), dates and times (ISO, UTC for timestamptz, `infinity`, BC), json,
//! uuid, arrays (`{1,NULL,3}`), intervals, network types, money, enums, domains, user types.
//! Declared column types are the affinity names themselves, so SQLite never converts a value
//! (a `NUMERIC` declaration would turn `1.10` into the REAL `1.1`).

use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};

use crate::base::values::{self, TypeError, Value, oid};

/// The SQLite column affinity of a Postgres type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    Integer,
    Real,
    Text,
    Blob,
}

impl Affinity {
    pub fn of(type_oid: u32) -> Affinity {
        match type_oid {
            oid::BOOL | oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => Affinity::Integer,
            oid::FLOAT4 | oid::FLOAT8 => Affinity::Real,
            oid::BYTEA => Affinity::Blob,
            _ => Affinity::Text,
        }
    }

    /// The declared type in `CREATE TABLE`.
    pub fn sql(self) -> &'static str {
        match self {
            Affinity::Integer => "INTEGER",
            Affinity::Real => "REAL",
            Affinity::Text => "TEXT",
            Affinity::Blob => "BLOB",
        }
    }
}

/// The SQLite value of one non-NULL Postgres value; text is borrowed, not copied.
pub fn to_sqlite(type_oid: u32, text: &str) -> Result<ToSqlOutput<'_>, TypeError> {
    if Affinity::of(type_oid) == Affinity::Text {
        return Ok(ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())));
    }
    let value = match values::parse(type_oid, text)? {
        Value::Bool(b) => SqlValue::Integer(i64::from(b)),
        Value::Int2(v) => SqlValue::Integer(i64::from(v)),
        Value::Int4(v) => SqlValue::Integer(i64::from(v)),
        Value::Int8(v) => SqlValue::Integer(v),
        Value::Oid(v) => SqlValue::Integer(i64::from(v)),
        Value::Float4(v) if v.is_nan() => SqlValue::Text("NaN".into()),
        Value::Float8(v) if v.is_nan() => SqlValue::Text("NaN".into()),
        Value::Float4(v) => SqlValue::Real(f64::from(v)),
        Value::Float8(v) => SqlValue::Real(v),
        Value::Bytea(bytes) => SqlValue::Blob(bytes),
        _ => return Ok(ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes()))),
    };
    Ok(ToSqlOutput::Owned(value))
}

/// First OID of objects created after `initdb`; lower OIDs are built-in and the same everywhere.
pub const FIRST_USER_OID: u32 = 16_384;

/// The Postgres type as `format_type` would print it for the built-in types we know
/// (`numeric(12,2)`, `character varying(40)`, `int4[]`); `user type <oid>` otherwise.
pub fn pg_type_name(type_oid: u32, type_modifier: i32) -> String {
    if let Some(element) = oid::array_element(type_oid) {
        return format!("{}[]", pg_type_name(element, type_modifier));
    }
    let known = oid::array_of(type_oid).is_some();
    if !known {
        return if type_oid < FIRST_USER_OID {
            format!("built-in type {type_oid}")
        } else {
            format!("user type {type_oid}")
        };
    }
    let modifier = type_modifier - 4; // varlena header included in the stored modifier
    match type_oid {
        oid::VARCHAR if type_modifier >= 4 => format!("character varying({modifier})"),
        oid::VARCHAR => "character varying".into(),
        oid::BPCHAR if type_modifier >= 4 => format!("character({modifier})"),
        oid::BPCHAR => "character".into(),
        oid::NUMERIC if type_modifier >= 4 => {
            format!("numeric({},{})", modifier >> 16, modifier & 0xffff)
        }
        oid::TIMESTAMP | oid::TIMESTAMPTZ | oid::TIME | oid::TIMETZ if type_modifier >= 0 => {
            format!("{}({type_modifier})", oid::type_name(type_oid))
        }
        _ => oid::type_name(type_oid).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_values_keep_their_form() {
        let text = |out: ToSqlOutput<'_>| match out {
            ToSqlOutput::Borrowed(ValueRef::Text(t)) => String::from_utf8(t.to_vec()).unwrap(),
            ToSqlOutput::Owned(SqlValue::Text(t)) => t,
            other => panic!("not text: {other:?}"),
        };
        assert_eq!(text(to_sqlite(oid::NUMERIC, "1.10").unwrap()), "1.10");
        assert_eq!(text(to_sqlite(oid::FLOAT8, "NaN").unwrap()), "NaN");
        assert_eq!(
            to_sqlite(oid::BOOL, "t").unwrap(),
            ToSqlOutput::Owned(SqlValue::Integer(1))
        );
        assert_eq!(
            to_sqlite(oid::BYTEA, "\\x00ff").unwrap(),
            ToSqlOutput::Owned(SqlValue::Blob(vec![0, 255]))
        );
        assert!(to_sqlite(oid::INT4, "twelve").is_err());
    }

    #[test]
    fn type_names_include_modifiers() {
        assert_eq!(
            pg_type_name(oid::NUMERIC, (12 << 16 | 2) + 4),
            "numeric(12,2)"
        );
        assert_eq!(pg_type_name(oid::VARCHAR, 44), "character varying(40)");
        assert_eq!(pg_type_name(1007, -1), "int4[]");
        assert_eq!(pg_type_name(70_000, -1), "user type 70000");
    }
}
