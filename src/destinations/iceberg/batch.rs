//! Changelog rows as Arrow record batches in the table's current Iceberg schema: the source's
//! columns (matched by name) plus the `_etl_*` columns ([`META_COLUMNS`]).

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Schema as ArrowSchema};
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};

use super::types::{ColumnValues, Kind, array};
use crate::base::event::{Cell, Change, ChangeEvent};
use crate::base::schema::TableSchema;

/// What happened: `copy`, `insert`, `update`, `delete`, `truncate`.
pub const OP: &str = "_etl_op";
/// The commit LSN of the change's transaction (0 for copied rows).
pub const LSN: &str = "_etl_lsn";
/// The change's position within its transaction (copied rows: their number within the copy).
pub const SEQ: &str = "_etl_seq";
/// The transaction's commit time (null for copied rows).
pub const COMMIT_TIME: &str = "_etl_commit_time";
/// Updates whose key changed (or `REPLICA IDENTITY FULL` tables): the old key (or old row) as a
/// JSON object of Postgres text values.
pub const OLD_KEY: &str = "_etl_old_key";
/// Updates that did not send unchanged TOASTed columns: their names as a JSON array (those
/// columns are null in the row and keep their previous value).
pub const UNCHANGED: &str = "_etl_unchanged";

/// The `_etl_*` columns, in table order.
pub const META_COLUMNS: [&str; 6] = [OP, LSN, SEQ, COMMIT_TIME, OLD_KEY, UNCHANGED];

/// Microseconds from the Unix epoch to the Postgres epoch (2000-01-01).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// The Iceberg schema of a new table for `source`: its columns (all optional, since deletes
/// carry only the key and truncates no columns), then (`with_meta`, changelog mode) the `_etl_*`
/// columns.
pub fn table_schema(source: &TableSchema, with_meta: bool) -> iceberg::Result<Schema> {
    let mut next = 0;
    let mut id = || {
        next += 1;
        next
    };
    let mut fields = Vec::new();
    for column in &source.columns {
        let field_id = id();
        let field_type = Kind::of_column(column).iceberg(&mut id);
        fields.push(Arc::new(NestedField::optional(
            field_id,
            &column.name,
            field_type,
        )));
    }
    for name in META_COLUMNS.iter().filter(|_| with_meta) {
        fields.push(Arc::new(NestedField::optional(id(), name, meta_type(name))));
    }
    Schema::builder().with_fields(fields).build()
}

/// The Iceberg type of an `_etl_*` column.
pub fn meta_type(name: &str) -> Type {
    Type::Primitive(match name {
        LSN | SEQ => PrimitiveType::Long,
        COMMIT_TIME => PrimitiveType::Timestamptz,
        _ => PrimitiveType::String,
    })
}

/// One changelog row.
pub struct Record<'a> {
    pub op: &'static str,
    pub lsn: i64,
    pub seq: i64,
    /// Unix microseconds.
    pub commit_time: Option<i64>,
    /// The source columns' cells; `None` for a truncate.
    pub cells: Option<&'a [Cell]>,
    pub old_key: Option<String>,
    pub unchanged: Option<String>,
}

impl<'a> Record<'a> {
    /// The row of `event` (whose table is `source`).
    pub fn of_event(event: &'a ChangeEvent, source: &TableSchema) -> Record<'a> {
        let mut record = Record {
            op: "truncate",
            lsn: event.commit_lsn.0 as i64,
            seq: i64::from(event.ordinal),
            commit_time: Some(event.commit_time.saturating_add(PG_EPOCH_UNIX_MICROS)),
            cells: None,
            old_key: None,
            unchanged: None,
        };
        match &event.change {
            Change::Insert { new } => {
                record.op = "insert";
                record.cells = Some(new);
            }
            Change::Update { old, new } => {
                record.op = "update";
                record.cells = Some(new);
                record.old_key = old.as_ref().map(|old| row_json(source, old));
                let unchanged: Vec<&str> = source
                    .columns
                    .iter()
                    .zip(new)
                    .filter(|(_, cell)| **cell == Cell::Unchanged)
                    .map(|(column, _)| column.name.as_str())
                    .collect();
                if !unchanged.is_empty() {
                    record.unchanged = serde_json::to_string(&unchanged).ok();
                }
            }
            Change::Delete { old } => {
                record.op = "delete";
                record.cells = Some(old);
            }
            Change::Truncate => {}
        }
        record
    }
}

/// The non-null cells of `row` as a JSON object of text values.
fn row_json(source: &TableSchema, row: &[Cell]) -> String {
    let object: serde_json::Map<String, serde_json::Value> = source
        .columns
        .iter()
        .zip(row)
        .filter_map(|(column, cell)| {
            cell.as_text()
                .map(|text| (column.name.clone(), serde_json::Value::from(text)))
        })
        .collect();
    serde_json::Value::Object(object).to_string()
}

/// The record batch of `records` (rows of `source`) in the Arrow schema `arrow` of the table.
/// Errors say which column is wrong.
pub fn record_batch(
    arrow: &Arc<ArrowSchema>,
    source: &TableSchema,
    records: &[Record<'_>],
) -> Result<RecordBatch, String> {
    if let Some(missing) = source
        .columns
        .iter()
        .find(|c| arrow.field_with_name(&c.name).is_err())
    {
        return Err(format!(
            "column `{}` is not in the Iceberg table's schema (a schema change was not applied)",
            missing.name
        ));
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(arrow.fields().len());
    for field in arrow.fields() {
        let name = field.name().as_str();
        let column: ArrayRef = match name {
            OP => Arc::new(StringArray::from_iter_values(records.iter().map(|r| r.op))),
            LSN => Arc::new(Int64Array::from_iter_values(records.iter().map(|r| r.lsn))),
            SEQ => Arc::new(Int64Array::from_iter_values(records.iter().map(|r| r.seq))),
            COMMIT_TIME => {
                let times =
                    TimestampMicrosecondArray::from_iter(records.iter().map(|r| r.commit_time));
                match field.data_type() {
                    DataType::Timestamp(_, Some(zone)) => {
                        Arc::new(times.with_timezone(zone.clone()))
                    }
                    _ => Arc::new(times),
                }
            }
            OLD_KEY => Arc::new(StringArray::from_iter(
                records.iter().map(|r| r.old_key.as_deref()),
            )),
            UNCHANGED => Arc::new(StringArray::from_iter(
                records.iter().map(|r| r.unchanged.as_deref()),
            )),
            _ => match source.columns.iter().position(|c| c.name == name) {
                Some(index) => {
                    let column = &source.columns[index];
                    let values = ColumnValues {
                        type_oid: column.type_oid,
                        values: records
                            .iter()
                            .map(|r| {
                                r.cells
                                    .and_then(|cells| cells.get(index))
                                    .and_then(Cell::as_text)
                            })
                            .collect(),
                    };
                    array(&Kind::of_column(column), field.data_type(), &values)
                        .map_err(|e| format!("column `{name}`: {e}"))?
                }
                None => arrow_array::new_null_array(field.data_type(), records.len()),
            },
        };
        columns.push(column);
    }
    RecordBatch::try_new(arrow.clone(), columns).map_err(|e| e.to_string())
}
