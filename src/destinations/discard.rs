//! The `discard` destination: decodes every value it is given into the typed values a real
//! destination would store (as `values::parse` does for sqlite, jsonl and the message
//! destinations), then drops them and keeps only counters, so a benchmark measures the engine,
//! the source and the decoding every typed destination pays, and nothing of a store.
//!
//! It holds nothing, so it keeps no pipeline identity and cannot be checked: the engine only
//! compares its description (`discard`) with the one the pipeline's state records.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::base::event::{Cell, Change, ChangeEvent, CopyChunk, Row};
use crate::base::schema::{TableId, TableSchema};
use crate::base::values;
use crate::engine::destination::{Destination, Error, PipelineIdentity, Result};

/// Parses every value of `row` as its column's type (the texts move into the values, as a
/// destination that owns its rows does), and drops the result.
fn decode_owned(schema: &TableSchema, row: Row) -> Result<()> {
    for (column, cell) in schema.columns.iter().zip(row) {
        if let Cell::Text(text) = cell {
            let value = values::parse_owned(column.type_oid, text)
                .map_err(|e| Error::table(schema, format!("column {}: {e}", column.name)))?;
            std::hint::black_box(value);
        }
    }
    Ok(())
}

/// What [`Destination::describe`] says of every discard destination.
pub const DESCRIPTION: &str = "discard";

/// Drops everything; counts what it was given.
#[derive(Debug, Default)]
pub struct DiscardDestination {
    rows_copied: AtomicU64,
    events: AtomicU64,
}

impl DiscardDestination {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows received through the initial copy.
    pub fn rows_copied(&self) -> u64 {
        self.rows_copied.load(Ordering::Relaxed)
    }

    /// Change events received.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
}

impl Destination for DiscardDestination {
    fn kind(&self) -> &'static str {
        "discard"
    }

    fn describe(&self) -> String {
        DESCRIPTION.to_owned()
    }

    fn keeps_identity(&self) -> bool {
        false
    }

    async fn read_identity(&self) -> Result<Option<PipelineIdentity>> {
        Ok(None)
    }

    async fn write_identity(&self, _identity: &PipelineIdentity) -> Result<()> {
        Ok(())
    }

    async fn copied_tables(&self) -> Result<Option<BTreeSet<TableId>>> {
        Ok(None)
    }

    async fn prepare_table(&self, _schema: &TableSchema) -> Result<()> {
        Ok(())
    }

    async fn begin_copy(&self, _schema: &TableSchema) -> Result<()> {
        Ok(())
    }

    async fn write_copy_rows(&self, schema: &TableSchema, chunk: CopyChunk) -> Result<()> {
        let rows = chunk
            .rows(schema.columns.len())
            .map_err(|e| Error::table(schema, format!("initial copy: {e}")))?;
        let count = rows.len() as u64;
        for row in rows {
            decode_owned(schema, row)?;
        }
        self.rows_copied.fetch_add(count, Ordering::Relaxed);
        Ok(())
    }

    async fn finish_copy(&self, _schema: &TableSchema) -> Result<()> {
        Ok(())
    }

    async fn alter_table(&self, _old: &TableSchema, _new: &TableSchema) -> Result<()> {
        Ok(())
    }

    async fn write_events(&self, events: Vec<ChangeEvent>) -> Result<()> {
        let count = events.len() as u64;
        for event in events {
            let table = &event.table;
            match event.change {
                Change::Insert { new } => decode_owned(table, new)?,
                Change::Update { old, new } => {
                    if let Some(old) = old {
                        decode_owned(table, old)?;
                    }
                    decode_owned(table, new)?;
                }
                Change::Delete { old } => decode_owned(table, old)?,
                Change::Truncate => {}
            }
        }
        self.events.fetch_add(count, Ordering::Relaxed);
        Ok(())
    }
}
