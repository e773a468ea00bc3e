//! Postgres types as Iceberg types, and column values (Postgres text form) as Arrow arrays of
//! the Arrow type iceberg derives from the table's schema.
//!
//! | Postgres | Iceberg |
//! |---|---|
//! | bool | boolean |
//! | int2, int4 | int |
//! | int8, oid | long |
//! | float4 / float8 | float / double |
//! | numeric(p,s), p ≤ 38, 0 ≤ s ≤ p | decimal(p,s) |
//! | numeric without precision, wider than 38 | string (exact text) |
//! | date | date |
//! | time | time (µs) |
//! | timestamp | timestamp (µs, no zone) |
//! | timestamptz | timestamptz (µs, UTC) |
//! | uuid | uuid |
//! | bytea | binary |
//! | one-dimensional arrays of the types above and of text types | list |
//! | json, jsonb, text, varchar, char, name, enums, interval, timetz, money, network types, other arrays, anything else | string (Postgres text form) |
//!
//! A value the Iceberg type cannot hold (`±infinity` dates and timestamps, `NaN` in a decimal,
//! a multi-dimensional array) is an error naming the column, which errors the table.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, FixedSizeBinaryArray, Float32Array,
    Float64Array, Int32Array, Int64Array, LargeBinaryArray, ListArray, StringArray,
    Time64MicrosecondArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field};
use iceberg::spec::{ListType, NestedField, PrimitiveType, Type};

use crate::base::schema::ColumnSchema;
use crate::base::values::{self, Value, oid};

/// How a column's values are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Long,
    Float,
    Double,
    Decimal {
        precision: u32,
        scale: u32,
    },
    /// Postgres text form.
    Str,
    Binary,
    Uuid,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    List(Box<Kind>),
}

impl Kind {
    /// The storage of a column of type `type_oid` with modifier `type_modifier`.
    pub fn of(type_oid: u32, type_modifier: i32) -> Kind {
        if let Some(element) = values::array_element_type(type_oid) {
            return match Kind::of(element, type_modifier) {
                Kind::List(_) => Kind::Str,
                Kind::Str if !is_text_type(element) => Kind::Str,
                inner => Kind::List(Box::new(inner)),
            };
        }
        match type_oid {
            oid::BOOL => Kind::Bool,
            oid::INT2 | oid::INT4 => Kind::Int,
            oid::INT8 | oid::OID => Kind::Long,
            oid::FLOAT4 => Kind::Float,
            oid::FLOAT8 => Kind::Double,
            oid::NUMERIC => numeric_kind(type_modifier),
            oid::BYTEA => Kind::Binary,
            oid::UUID => Kind::Uuid,
            oid::DATE => Kind::Date,
            oid::TIME => Kind::Time,
            oid::TIMESTAMP => Kind::Timestamp,
            oid::TIMESTAMPTZ => Kind::TimestampTz,
            _ => Kind::Str,
        }
    }

    /// The kind of a source column.
    pub fn of_column(column: &ColumnSchema) -> Kind {
        Kind::of(column.type_oid, column.type_modifier)
    }

    /// The Iceberg type; list elements get `element_id`.
    pub fn iceberg(&self, element_id: &mut impl FnMut() -> i32) -> Type {
        let primitive = match self {
            Kind::Bool => PrimitiveType::Boolean,
            Kind::Int => PrimitiveType::Int,
            Kind::Long => PrimitiveType::Long,
            Kind::Float => PrimitiveType::Float,
            Kind::Double => PrimitiveType::Double,
            Kind::Decimal { precision, scale } => PrimitiveType::Decimal {
                precision: *precision,
                scale: *scale,
            },
            Kind::Str => PrimitiveType::String,
            Kind::Binary => PrimitiveType::Binary,
            Kind::Uuid => PrimitiveType::Uuid,
            Kind::Date => PrimitiveType::Date,
            Kind::Time => PrimitiveType::Time,
            Kind::Timestamp => PrimitiveType::Timestamp,
            Kind::TimestampTz => PrimitiveType::Timestamptz,
            Kind::List(inner) => {
                let id = element_id();
                let element = inner.iceberg(element_id);
                return Type::List(ListType::new(Arc::new(NestedField::list_element(
                    id, element, false,
                ))));
            }
        };
        Type::Primitive(primitive)
    }
}

fn is_text_type(type_oid: u32) -> bool {
    matches!(
        type_oid,
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::CHAR
    )
}

/// `numeric(p,s)` as a decimal when Iceberg holds it (p ≤ 38, 0 ≤ s ≤ p), else text.
fn numeric_kind(type_modifier: i32) -> Kind {
    if type_modifier < 4 {
        return Kind::Str;
    }
    let packed = type_modifier - 4;
    let precision = ((packed >> 16) & 0xffff) as u32;
    // Postgres 15+ packs a negative scale as 11-bit two's complement: such scales exceed p.
    let scale = (packed & 0xffff) as u32;
    if (1..=38).contains(&precision) && scale <= precision {
        Kind::Decimal { precision, scale }
    } else {
        Kind::Str
    }
}

/// One column's values, `None` for NULL.
pub struct ColumnValues<'a> {
    pub type_oid: u32,
    pub values: Vec<Option<&'a str>>,
}

/// The Arrow array of `column`'s values for a field of `data_type` (as iceberg derives it from
/// the Iceberg type of `kind`). The error says which value is wrong.
pub fn array(
    kind: &Kind,
    data_type: &DataType,
    column: &ColumnValues<'_>,
) -> Result<ArrayRef, String> {
    if *kind == Kind::Str {
        return Ok(Arc::new(StringArray::from(column.values.clone())));
    }
    let parsed = column
        .values
        .iter()
        .map(|text| {
            text.map(|text| values::parse(column.type_oid, text).map_err(|e| e.to_string()))
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()?;
    typed_array(kind, data_type, parsed)
}

fn typed_array(
    kind: &Kind,
    data_type: &DataType,
    values: Vec<Option<Value>>,
) -> Result<ArrayRef, String> {
    fn each<T>(
        values: Vec<Option<Value>>,
        f: impl Fn(Value) -> Result<T, String>,
    ) -> Result<Vec<Option<T>>, String> {
        values.into_iter().map(|v| v.map(&f).transpose()).collect()
    }
    let unexpected = |v: &Value| format!("unexpected value {v:?} for {kind:?}");
    Ok(match kind {
        Kind::Bool => Arc::new(BooleanArray::from(each(values, |v| match v {
            Value::Bool(b) => Ok(b),
            other => Err(unexpected(&other)),
        })?)),
        Kind::Int => Arc::new(Int32Array::from(each(values, |v| match v {
            Value::Int2(i) => Ok(i32::from(i)),
            Value::Int4(i) => Ok(i),
            other => Err(unexpected(&other)),
        })?)),
        Kind::Long => Arc::new(Int64Array::from(each(values, |v| match v {
            Value::Int8(i) => Ok(i),
            Value::Oid(i) => Ok(i64::from(i)),
            Value::Int4(i) => Ok(i64::from(i)),
            Value::Int2(i) => Ok(i64::from(i)),
            other => Err(unexpected(&other)),
        })?)),
        Kind::Float => Arc::new(Float32Array::from(each(values, |v| match v {
            Value::Float4(f) => Ok(f),
            other => Err(unexpected(&other)),
        })?)),
        Kind::Double => Arc::new(Float64Array::from(each(values, |v| match v {
            Value::Float8(f) => Ok(f),
            Value::Float4(f) => Ok(f64::from(f)),
            other => Err(unexpected(&other)),
        })?)),
        Kind::Decimal { precision, scale } => {
            let scale = *scale;
            let decimals = each(values, |v| match v {
                Value::Numeric(text) => decimal_units(&text, scale),
                other => Err(unexpected(&other)),
            })?;
            Arc::new(
                Decimal128Array::from(decimals)
                    .with_precision_and_scale(*precision as u8, scale as i8)
                    .map_err(|e| e.to_string())?,
            )
        }
        Kind::Str => Arc::new(StringArray::from(each(values, |v| match v {
            Value::Text(text) => Ok(text),
            other => Err(unexpected(&other)),
        })?)),
        Kind::Binary => {
            let bytes = each(values, |v| match v {
                Value::Bytea(bytes) => Ok(bytes),
                other => Err(unexpected(&other)),
            })?;
            Arc::new(LargeBinaryArray::from_iter(bytes))
        }
        Kind::Uuid => {
            let uuids = each(values, |v| match v {
                Value::Uuid(bytes) => Ok(bytes),
                other => Err(unexpected(&other)),
            })?;
            let len = uuids.len();
            if uuids.iter().all(Option::is_none) {
                Arc::new(FixedSizeBinaryArray::new_null(16, len))
            } else {
                Arc::new(
                    FixedSizeBinaryArray::try_from_sparse_iter_with_size(uuids.into_iter(), 16)
                        .map_err(|e| e.to_string())?,
                )
            }
        }
        Kind::Date => Arc::new(Date32Array::from(each(values, |v| match v {
            Value::Date { value, text } => value
                .unix_days()
                .ok_or_else(|| format!("date `{text}` cannot be stored in an Iceberg date")),
            other => Err(unexpected(&other)),
        })?)),
        Kind::Time => Arc::new(Time64MicrosecondArray::from(each(values, |v| match v {
            Value::Time { micros, .. } => Ok(micros),
            other => Err(unexpected(&other)),
        })?)),
        Kind::Timestamp | Kind::TimestampTz => {
            let micros = each(values, |v| match v {
                Value::Timestamp { value, text } | Value::TimestampTz { value, text } => {
                    value.unix_micros().ok_or_else(|| {
                        format!("timestamp `{text}` cannot be stored in an Iceberg timestamp")
                    })
                }
                other => Err(unexpected(&other)),
            })?;
            let array = TimestampMicrosecondArray::from(micros);
            match data_type {
                DataType::Timestamp(_, Some(zone)) => Arc::new(array.with_timezone(zone.clone())),
                _ => Arc::new(array),
            }
        }
        Kind::List(inner) => {
            let DataType::List(field) = data_type else {
                return Err(format!("list column has Arrow type {data_type}"));
            };
            list_array(inner, field, values)?
        }
    })
}

fn list_array(
    inner: &Kind,
    field: &Arc<Field>,
    values: Vec<Option<Value>>,
) -> Result<ArrayRef, String> {
    let mut offsets = vec![0i32];
    let mut valid = Vec::with_capacity(values.len());
    let mut elements = Vec::new();
    for value in values {
        match value {
            None => valid.push(false),
            Some(Value::Array {
                dims,
                elements: items,
                ..
            }) => {
                if dims.len() > 1 {
                    return Err(format!(
                        "a {}-dimensional array cannot be stored in an Iceberg list",
                        dims.len()
                    ));
                }
                elements.extend(items);
                valid.push(true);
            }
            Some(other) => return Err(format!("unexpected value {other:?} for a list")),
        }
        let end = i32::try_from(elements.len()).map_err(|_| "list too large".to_owned())?;
        offsets.push(end);
    }
    let child = typed_array(inner, field.data_type(), elements)?;
    let nulls = arrow_buffer::NullBuffer::from(valid);
    ListArray::try_new(
        field.clone(),
        arrow_buffer::OffsetBuffer::new(offsets.into()),
        child,
        Some(nulls),
    )
    .map(|a| Arc::new(a) as ArrayRef)
    .map_err(|e| e.to_string())
}

/// `text` (a numeric as Postgres prints it) as an integer count of 10^-scale units.
pub fn decimal_units(text: &str, scale: u32) -> Result<i128, String> {
    let bad =
        || format!("numeric `{text}` cannot be stored in an Iceberg decimal with scale {scale}");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > scale as usize
    {
        return Err(bad());
    }
    let mut units: i128 = 0;
    let padding = scale as usize - fraction.len();
    for b in whole
        .bytes()
        .chain(fraction.bytes())
        .chain(std::iter::repeat_n(b'0', padding))
    {
        units = units
            .checked_mul(10)
            .and_then(|u| u.checked_add(i128::from(b - b'0')))
            .ok_or_else(bad)?;
    }
    Ok(if negative { -units } else { units })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_modifiers_choose_decimal_or_text() {
        let typmod = |p: i32, s: i32| ((p << 16) | s) + 4;
        assert_eq!(
            Kind::of(oid::NUMERIC, typmod(10, 2)),
            Kind::Decimal {
                precision: 10,
                scale: 2
            }
        );
        assert_eq!(Kind::of(oid::NUMERIC, -1), Kind::Str);
        assert_eq!(Kind::of(oid::NUMERIC, typmod(50, 2)), Kind::Str);
        assert_eq!(Kind::of(1007, -1), Kind::List(Box::new(Kind::Int)));
        assert_eq!(Kind::of(1009, -1), Kind::List(Box::new(Kind::Str)));
        assert_eq!(Kind::of(oid::JSONB, -1), Kind::Str);
    }

    #[test]
    fn decimals_scale_exactly() {
        assert_eq!(decimal_units("-12.34", 3), Ok(-12340));
        assert_eq!(decimal_units("7", 2), Ok(700));
        assert_eq!(decimal_units("0.5", 1), Ok(5));
        assert!(decimal_units("NaN", 2).is_err());
        assert!(decimal_units("1.234", 2).is_err());
        assert!(decimal_units("", 2).is_err());
    }

    #[test]
    fn infinite_timestamps_are_refused_with_the_value() {
        let column = ColumnValues {
            type_oid: oid::TIMESTAMP,
            values: vec![Some("infinity")],
        };
        let error = array(
            &Kind::Timestamp,
            &DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None),
            &column,
        )
        .unwrap_err();
        assert!(error.contains("infinity"), "{error}");
    }
}
