//! Column values as Debezium's PostgreSQL connector writes them through Kafka Connect's JSON
//! converter with its defaults (`time.precision.mode=adaptive`, `interval.handling.mode=numeric`,
//! `binary.handling.mode=bytes`), except numeric, written as with `decimal.handling.mode=string`
//! (the default `precise` mode writes the unscaled value as base64 bytes whose scale is only in
//! the schema, which a schemaless message does not carry, and cannot hold `NaN` or `±Infinity`).
//!
//! | PostgreSQL | JSON |
//! |---|---|
//! | bool | `true` / `false` |
//! | int2, int4, int8, oid | number |
//! | float4, float8 | number as Postgres printed it; `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | numeric, money | string as Postgres printed it (`"12.50"`, `"NaN"`, `"$1,234.50"`) |
//! | date | days since 1970-01-01 (`io.debezium.time.Date`) |
//! | time(0..3) | milliseconds since midnight (`Time`); time, time(4..6): microseconds (`MicroTime`) |
//! | timestamp(0..3) | milliseconds since 1970-01-01 (`Timestamp`); timestamp, timestamp(4..6): microseconds (`MicroTimestamp`) |
//! | timestamptz | UTC ISO-8601 string `"2024-02-29T11:45:06.5Z"` (`ZonedTimestamp`) |
//! | timetz | UTC string `"08:15:00Z"` (`ZonedTime`) |
//! | interval | microseconds, a month counted as 30.4375 days (`MicroDuration`) |
//! | bytea | base64 string |
//! | json, jsonb | the JSON text as a string (`io.debezium.data.Json`) |
//! | uuid, inet, cidr, macaddr, macaddr8, xml, text types, enums, domains, other types | string as Postgres printed it |
//! | arrays | JSON arrays of the element mapping (nested for several dimensions; bounds dropped) |
//!
//! `±infinity` (no Debezium equivalent in these modes): dates `2147483647` / `-2147483648`,
//! timestamps `9223372036854775807` / `-9223372036854775808`, timestamptz `"infinity"` /
//! `"-infinity"`. A timestamp whose microseconds since 1970 overflow `i64` (the last ~30 years
//! before Postgres's maximum) is written like `infinity`.

use base64::Engine as _;
use serde_json::{Number, Value as Json};

use crate::base::schema::ColumnSchema;
use crate::base::values::{self, DateValue, TimestampValue, Value, oid};

/// What Debezium writes for an unchanged TOASTed value the source did not send
/// (`unavailable.value.placeholder`).
pub const UNAVAILABLE: &str = "__debezium_unavailable_value";

/// Microseconds in the average month Debezium's `MicroDuration` uses (365.25 / 12 days).
const MICROS_PER_MONTH: i64 = 2_629_800_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The placeholder in the column's shape: base64 bytes for bytea, a one-element array for
/// arrays, a string otherwise (as Debezium does).
pub fn unavailable(column: &ColumnSchema) -> Json {
    if column.type_oid == oid::BYTEA {
        Json::String(base64::engine::general_purpose::STANDARD.encode(UNAVAILABLE))
    } else if values::array_element_type(column.type_oid).is_some() {
        Json::Array(vec![Json::String(UNAVAILABLE.to_owned())])
    } else {
        Json::String(UNAVAILABLE.to_owned())
    }
}

/// A non-NULL value of `column` given in Postgres text form.
pub fn value(column: &ColumnSchema, text: &str) -> Json {
    match values::parse(column.type_oid, text) {
        Ok(parsed) => typed(&parsed, column.type_modifier, text),
        // Not what the type promises (cannot come from Postgres): keep the text.
        Err(_) => Json::String(text.to_owned()),
    }
}

/// `typmod` is the column's (or the array's) type modifier: it picks milliseconds or
/// microseconds for time and timestamp. `text` is the value's own text, for floats.
fn typed(value: &Value, typmod: i32, text: &str) -> Json {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::Int2(v) => Json::from(*v),
        Value::Int4(v) => Json::from(*v),
        Value::Int8(v) => Json::from(*v),
        Value::Oid(v) => Json::from(*v),
        Value::Float4(v) => float(f64::from(*v), text),
        Value::Float8(v) => float(*v, text),
        Value::Numeric(t) | Value::Text(t) | Value::Money(t) | Value::Json(t) => {
            Json::String(t.clone())
        }
        Value::Bytea(bytes) => {
            Json::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Value::Date { value, .. } => Json::from(match value {
            DateValue::Days(_) => value.unix_days().unwrap_or(i32::MAX),
            DateValue::Infinity => i32::MAX,
            DateValue::NegInfinity => i32::MIN,
        }),
        Value::Time { micros, .. } => {
            if millisecond_precision(typmod) {
                Json::from(micros / 1000)
            } else {
                Json::from(*micros)
            }
        }
        Value::TimeTz {
            micros,
            offset_seconds,
            ..
        } => {
            let utc = (micros - i64::from(*offset_seconds) * 1_000_000).rem_euclid(MICROS_PER_DAY);
            Json::String(format!("{}Z", clock(utc)))
        }
        Value::Timestamp { value, .. } => {
            let micros = match value {
                TimestampValue::NegInfinity => i64::MIN,
                _ => value.unix_micros().unwrap_or(i64::MAX),
            };
            if millisecond_precision(typmod) && micros != i64::MIN && micros != i64::MAX {
                Json::from(micros.div_euclid(1000))
            } else {
                Json::from(micros)
            }
        }
        Value::TimestampTz { value, .. } => Json::String(match value {
            TimestampValue::Micros(micros) => zoned_timestamp(*micros),
            TimestampValue::Infinity => "infinity".to_owned(),
            TimestampValue::NegInfinity => "-infinity".to_owned(),
        }),
        Value::Interval {
            months,
            days,
            micros,
            ..
        } => Json::from(
            i64::from(*months)
                .saturating_mul(MICROS_PER_MONTH)
                .saturating_add(i64::from(*days).saturating_mul(MICROS_PER_DAY))
                .saturating_add(*micros),
        ),
        Value::Array { dims, elements, .. } => array(dims, elements, typmod),
        Value::Uuid(_) | Value::Inet { .. } | Value::Cidr { .. } | Value::MacAddr(_) => {
            Json::String(text.to_owned())
        }
    }
}

/// `time(p)` / `timestamp(p)` with `p <= 3` are written in milliseconds (adaptive mode).
fn millisecond_precision(typmod: i32) -> bool {
    (0..=3).contains(&typmod)
}

/// Finite floats as Postgres printed them (exact and valid JSON); the others as strings.
fn float(value: f64, text: &str) -> Json {
    if value.is_nan() {
        return Json::String("NaN".into());
    }
    if value.is_infinite() {
        return Json::String(if value > 0.0 { "Infinity" } else { "-Infinity" }.into());
    }
    // An array element's text is not at hand: its parsed value is printed instead.
    let number = text
        .parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .or_else(|| Number::from_f64(value));
    number.map_or(Json::Null, Json::Number)
}

/// Nested JSON arrays, row-major, `null` for NULL elements.
fn array(dims: &[usize], elements: &[Option<Value>], typmod: i32) -> Json {
    let Some((&len, inner)) = dims.split_first() else {
        return Json::Array(Vec::new());
    };
    let stride: usize = inner.iter().product();
    let items = (0..len)
        .map(|i| {
            if inner.is_empty() {
                match elements.get(i) {
                    Some(Some(element)) => typed(element, typmod, &element_text(element)),
                    _ => Json::Null,
                }
            } else {
                let start = (i * stride).min(elements.len());
                let end = (start + stride).min(elements.len());
                array(inner, &elements[start..end], typmod)
            }
        })
        .collect();
    Json::Array(items)
}

/// The text of an element whose JSON is a string of its Postgres text (uuid, inet, …).
fn element_text(value: &Value) -> String {
    match value {
        Value::Uuid(b) => {
            let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &hex[0..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..32]
            )
        }
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
        // Floats are printed from their value; the rest do not use the text.
        Value::Float4(v) => v.to_string(),
        Value::Float8(v) => v.to_string(),
        _ => String::new(),
    }
}

/// `HH:MM:SS[.ffffff]` of microseconds since midnight, trailing zeros of the fraction dropped.
fn clock(micros: i64) -> String {
    let seconds = micros / 1_000_000;
    let mut text = format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    push_fraction(&mut text, micros % 1_000_000);
    text
}

fn push_fraction(text: &mut String, micros: i64) {
    if micros != 0 {
        let fraction = format!(".{micros:06}");
        text.push_str(fraction.trim_end_matches('0'));
    }
}

/// Microseconds since 2000-01-01 UTC as `2024-02-29T11:45:06.5Z`.
fn zoned_timestamp(micros: i64) -> String {
    let full = crate::destinations::jsonl::encode::postgres_micros_to_rfc3339(micros);
    // `…:SS.ffffffZ`: drop the fraction's trailing zeros (and the dot when nothing is left).
    let (seconds, _) = full.split_at(full.len() - 8);
    let mut text = seconds.to_owned();
    push_fraction(&mut text, micros.rem_euclid(1_000_000));
    text.push('Z');
    text
}
