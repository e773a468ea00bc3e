//! Typed values parsed from PostgreSQL's text output, the form both COPY (after its escapes
//! are removed, see [`crate::base::event::CopyChunk::rows`]) and pgoutput deliver.
//!
//! The engine itself passes text through; a destination that needs typed values calls
//! [`parse`] with the column's type OID (from the Relation message or the table schema). The
//! text forms assumed are those of the replication session's settings (`DateStyle=ISO`,
//! `IntervalStyle=postgres`, `TimeZone=UTC`, `bytea_output` hex or escape).
//!
//! Kept exact as text: numeric (any precision, `NaN`, `±Infinity`), money (its format depends on
//! `lc_monetary`), json/jsonb (validated). Date/time values keep their text too, beside a
//! numeric form (days or microseconds since 1970-01-01) with `±infinity` as their own variants.
//! Enums, domains and every type not listed map to [`Value::Text`] (a domain's text is its base
//! type's text).

mod array;
mod datetime;
pub mod oid;

use std::net::IpAddr;

pub use datetime::{DateValue, TimestampValue};

/// A typed value. SQL NULL is not a `Value` (it is [`crate::base::event::Cell::Null`]), but
/// array elements may be NULL (`None`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    /// Includes NaN and ±Infinity.
    Float4(f32),
    Float8(f64),
    /// Exact decimal text as Postgres printed it: `-12.340`, `NaN`, `Infinity`, `-Infinity`.
    Numeric(String),
    /// text, varchar, bpchar, name, "char", enums, domains, xml and any type not known here.
    Text(String),
    Bytea(Vec<u8>),
    Uuid([u8; 16]),
    /// json or jsonb text, checked to be valid JSON.
    Json(String),
    Date {
        text: String,
        value: DateValue,
    },
    /// Microseconds since midnight (`24:00:00` is 86 400 000 000).
    Time {
        text: String,
        micros: i64,
    },
    /// Microseconds since midnight local time, and the offset east of UTC in seconds.
    TimeTz {
        text: String,
        micros: i64,
        offset_seconds: i32,
    },
    /// Without time zone: the wall-clock reading as if it were UTC.
    Timestamp {
        text: String,
        value: TimestampValue,
    },
    /// An instant: microseconds since 1970-01-01 00:00 UTC.
    TimestampTz {
        text: String,
        value: TimestampValue,
    },
    /// Postgres keeps months, days and time apart (a month is not a fixed number of days).
    Interval {
        text: String,
        months: i32,
        days: i32,
        micros: i64,
    },
    Inet {
        addr: IpAddr,
        prefix: u8,
    },
    Cidr {
        addr: IpAddr,
        prefix: u8,
    },
    /// macaddr (6 bytes) or macaddr8 (8 bytes).
    MacAddr(Vec<u8>),
    Oid(u32),
    /// Money as printed, e.g. `$1,234.50` (locale dependent).
    Money(String),
    /// An array: `dims` are the lengths per dimension (empty for `{}`), `lower_bounds` the
    /// first index per dimension (1 unless the text says `[0:2]=…`), `elements` in row-major
    /// order, `None` for NULL elements.
    Array {
        element_type: u32,
        dims: Vec<usize>,
        lower_bounds: Vec<i32>,
        elements: Vec<Option<Value>>,
    },
}

/// Text that is not a valid value of its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {type_name} value `{text}`: {reason}")]
pub struct TypeError {
    pub type_oid: u32,
    pub type_name: &'static str,
    /// The input, cut to 100 characters.
    pub text: String,
    pub reason: String,
}

impl TypeError {
    fn new(type_oid: u32, text: &str, reason: impl Into<String>) -> Self {
        let mut shown: String = text.chars().take(100).collect();
        if shown.len() < text.len() {
            shown.push('…');
        }
        TypeError {
            type_oid,
            type_name: oid::type_name(type_oid),
            text: shown,
            reason: reason.into(),
        }
    }
}

/// The element type of an array type, e.g. `array_element_type(1007) == Some(23)` (int4[]).
pub fn array_element_type(type_oid: u32) -> Option<u32> {
    oid::array_element(type_oid)
}

/// Parses one non-NULL value of type `type_oid` from its text output.
pub fn parse(type_oid: u32, text: &str) -> Result<Value, TypeError> {
    parse_text(type_oid, text)
}

/// [`parse`] of a text the caller owns: values that keep their text (text types, numeric,
/// json, date/time) take it without a copy.
pub fn parse_owned(type_oid: u32, text: String) -> Result<Value, TypeError> {
    parse_text(type_oid, text)
}

fn parse_text<S: AsRef<str> + Into<String>>(type_oid: u32, owned: S) -> Result<Value, TypeError> {
    let text = owned.as_ref();
    if let Some(element) = array_element_type(type_oid) {
        return array::parse(type_oid, element, text);
    }
    let bad = |reason: &str| TypeError::new(type_oid, text, reason);
    Ok(match type_oid {
        oid::BOOL => match text {
            "t" | "true" => Value::Bool(true),
            "f" | "false" => Value::Bool(false),
            _ => return Err(bad("expected t or f")),
        },
        oid::INT2 => Value::Int2(text.parse().map_err(|_| bad("not a 16-bit integer"))?),
        oid::INT4 => Value::Int4(text.parse().map_err(|_| bad("not a 32-bit integer"))?),
        oid::INT8 => Value::Int8(text.parse().map_err(|_| bad("not a 64-bit integer"))?),
        oid::FLOAT4 => Value::Float4(parse_float(text).ok_or_else(|| bad("not a number"))? as f32),
        oid::FLOAT8 => Value::Float8(parse_float(text).ok_or_else(|| bad("not a number"))?),
        oid::NUMERIC => {
            check_numeric(text).map_err(&bad)?;
            Value::Numeric(owned.into())
        }
        oid::BYTEA => Value::Bytea(parse_bytea(text).map_err(&bad)?),
        oid::UUID => Value::Uuid(parse_uuid(text).ok_or_else(|| bad("not a UUID"))?),
        oid::JSON | oid::JSONB => {
            serde_json::from_str::<serde::de::IgnoredAny>(text)
                .map_err(|e| bad(&format!("not valid JSON: {e}")))?;
            Value::Json(owned.into())
        }
        oid::DATE => {
            let value = datetime::parse_date(text).map_err(&bad)?;
            Value::Date {
                text: owned.into(),
                value,
            }
        }
        oid::TIME => {
            let micros = datetime::parse_time(text).map_err(&bad)?;
            Value::Time {
                text: owned.into(),
                micros,
            }
        }
        oid::TIMETZ => {
            let (micros, offset_seconds) = datetime::parse_timetz(text).map_err(&bad)?;
            Value::TimeTz {
                text: owned.into(),
                micros,
                offset_seconds,
            }
        }
        oid::TIMESTAMP => {
            let value = datetime::parse_timestamp(text, false).map_err(&bad)?;
            Value::Timestamp {
                text: owned.into(),
                value,
            }
        }
        oid::TIMESTAMPTZ => {
            let value = datetime::parse_timestamp(text, true).map_err(&bad)?;
            Value::TimestampTz {
                text: owned.into(),
                value,
            }
        }
        oid::INTERVAL => {
            let (months, days, micros) = datetime::parse_interval(text).map_err(&bad)?;
            Value::Interval {
                text: owned.into(),
                months,
                days,
                micros,
            }
        }
        oid::INET => {
            let (addr, prefix) = parse_inet(text).ok_or_else(|| bad("not an IP address"))?;
            Value::Inet { addr, prefix }
        }
        oid::CIDR => {
            let (addr, prefix) = parse_inet(text).ok_or_else(|| bad("not a network"))?;
            Value::Cidr { addr, prefix }
        }
        oid::MACADDR => Value::MacAddr(parse_mac(text, 6).ok_or_else(|| bad("not a MAC address"))?),
        oid::MACADDR8 => {
            Value::MacAddr(parse_mac(text, 8).ok_or_else(|| bad("not an 8-byte MAC address"))?)
        }
        oid::OID => Value::Oid(
            text.parse()
                .map_err(|_| bad("not an unsigned 32-bit integer"))?,
        ),
        oid::MONEY => Value::Money(owned.into()),
        _ => Value::Text(owned.into()),
    })
}

/// Postgres prints `NaN`, `Infinity` and `-Infinity`; Rust spells them differently.
fn parse_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

fn check_numeric(text: &str) -> Result<(), &'static str> {
    if matches!(text, "NaN" | "Infinity" | "-Infinity") {
        return Ok(());
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return Err("not a decimal number");
    }
    if let Some(exponent) = exponent {
        let exponent = exponent.strip_prefix(['-', '+']).unwrap_or(exponent);
        if exponent.is_empty() || !digits(exponent) {
            return Err("bad exponent");
        }
    }
    Ok(())
}

/// `\x…` hex format, or the older escape format (`\\` and `\ooo` octal).
fn parse_bytea(text: &str) -> Result<Vec<u8>, &'static str> {
    if let Some(hex) = text.strip_prefix("\\x") {
        let bytes = hex.as_bytes();
        if bytes.len() % 2 != 0 {
            return Err("odd number of hex digits");
        }
        return bytes
            .chunks_exact(2)
            .map(|pair| {
                let high = (pair[0] as char).to_digit(16);
                let low = (pair[1] as char).to_digit(16);
                match (high, low) {
                    (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                    _ => Err("not a hex digit"),
                }
            })
            .collect();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = bytes.get(i + 1..i + 4).ok_or("truncated escape")?;
            let mut value = 0u32;
            for &d in octal {
                if !(b'0'..=b'7').contains(&d) {
                    return Err("bad octal escape");
                }
                value = value * 8 + u32::from(d - b'0');
            }
            out.push(u8::try_from(value).map_err(|_| "octal escape out of range")?);
            i += 4;
        }
    }
    Ok(out)
}

fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
    let dashes_ok = text.len() == 36
        && text
            .char_indices()
            .all(|(i, c)| (c == '-') == matches!(i, 8 | 13 | 18 | 23));
    if hex.len() != 32 || !dashes_ok {
        return None;
    }
    let mut out = [0u8; 16];
    for (slot, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let high = (pair[0] as char).to_digit(16)?;
        let low = (pair[1] as char).to_digit(16)?;
        *slot = (high * 16 + low) as u8;
    }
    Some(out)
}

fn parse_inet(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(prefix) => prefix.parse::<u8>().ok().filter(|p| *p <= max)?,
        None => max,
    };
    Some((addr, prefix))
}

fn parse_mac(text: &str, len: usize) -> Option<Vec<u8>> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != len {
        return None;
    }
    parts
        .iter()
        .map(|part| {
            if part.len() == 2 {
                u8::from_str_radix(part, 16).ok()
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
