//! The `discard` destination: accepts every write at once and keeps only counters, so a
//! benchmark measures the engine and the source alone.
//!
//! It holds nothing, so it keeps no pipeline identity and cannot be checked: the engine only
//! compares its description (`discard`) with the one the pipeline's state records.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::base::event::{ChangeEvent, CopyChunk};
use crate::base::schema::{TableId, TableSchema};
use crate::engine::destination::{Destination, PipelineIdentity, Result};

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

    async fn write_copy_rows(&self, _schema: &TableSchema, chunk: CopyChunk) -> Result<()> {
        self.rows_copied
            .fetch_add(chunk.row_count() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn finish_copy(&self, _schema: &TableSchema) -> Result<()> {
        Ok(())
    }

    async fn alter_table(&self, _old: &TableSchema, _new: &TableSchema) -> Result<()> {
        Ok(())
    }

    async fn write_events(&self, events: Vec<ChangeEvent>) -> Result<()> {
        self.events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
