//! The `memory` destination: an inspectable in-memory mirror of every table (upsert/delete by
//! key, like a real mirror) plus, when asked for, a log of every change event received, so tests
//! can compare the mirror with the source and count how often a change was applied.
//!
//! It is the reference implementation of the [`Destination`] contract: every write is "durable"
//! the moment it returns, replays are harmless (inserts of an existing key replace it), and an
//! unchanged TOAST cell keeps the stored value.
//!
//! Its pipeline identity and finished copies live in memory like its rows: a new process holds
//! none, so a pipeline whose state says its tables were copied refuses to stream into a fresh
//! memory destination (nothing of the copy is there). [`MemoryDestination::clone_contents`]
//! keeps them, as a destination that survived a crash would.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::base::event::{Cell, Change, ChangeEvent, CopyChunk, Row};
use crate::base::schema::{TableId, TableName, TableSchema};
use crate::engine::destination::{Destination, Error, PipelineIdentity, Result};

/// How a stored row is found again: its key column values, or an insertion number for tables
/// without a key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum RowKey {
    Key(Vec<Option<String>>),
    Seq(u64),
}

/// One mirrored table.
#[derive(Debug, Clone)]
struct MemoryTable {
    schema: TableSchema,
    rows: BTreeMap<RowKey, Row>,
    next_seq: u64,
    copied_rows: u64,
}

#[derive(Debug, Clone, Default)]
struct MemoryState {
    tables: BTreeMap<TableId, MemoryTable>,
    log: Vec<ChangeEvent>,
    failing: BTreeMap<TableName, String>,
    altered: BTreeSet<TableId>,
    identity: Option<PipelineIdentity>,
    /// Tables whose copy finished (and was not begun again since).
    copied: BTreeSet<TableId>,
}

/// What [`Destination::describe`] says of every memory destination.
pub const DESCRIPTION: &str = "memory";

/// An in-memory mirror. Share it with `Arc` to inspect it while the engine runs.
#[derive(Debug, Default)]
pub struct MemoryDestination {
    state: Mutex<MemoryState>,
    log_events: bool,
}

fn cell_text(cell: &Cell) -> Option<String> {
    cell.as_text().map(str::to_owned)
}

impl MemoryTable {
    fn new(schema: TableSchema) -> Self {
        Self {
            schema,
            rows: BTreeMap::new(),
            next_seq: 0,
            copied_rows: 0,
        }
    }

    /// The key of `row` when the table has key columns.
    fn key_of(&self, row: &Row) -> Option<RowKey> {
        let keys = self.schema.key_columns();
        if keys.is_empty() {
            return None;
        }
        Some(RowKey::Key(
            keys.iter()
                .map(|&i| row.get(i).and_then(cell_text))
                .collect(),
        ))
    }

    /// The stored row matching `old` (by key, else by every sent value).
    fn find(&self, old: &Row) -> Option<RowKey> {
        if let Some(key) = self.key_of(old) {
            return self.rows.contains_key(&key).then_some(key);
        }
        self.rows
            .iter()
            .find(|(_, row)| {
                row.len() == old.len()
                    && row
                        .iter()
                        .zip(old)
                        .all(|(a, b)| *b == Cell::Unchanged || a == b)
            })
            .map(|(key, _)| key.clone())
    }

    fn insert(&mut self, row: Row) {
        let key = self.key_of(&row).unwrap_or_else(|| {
            self.next_seq += 1;
            RowKey::Seq(self.next_seq)
        });
        self.rows.insert(key, row);
    }

    fn apply(&mut self, change: &Change) {
        match change {
            Change::Insert { new } => self.insert(new.clone()),
            Change::Update { old, new } => {
                let found = self.find(old.as_ref().unwrap_or(new));
                let previous = found.and_then(|key| self.rows.remove(&key));
                let mut row = new.clone();
                if let Some(previous) = previous {
                    for (cell, before) in row.iter_mut().zip(previous) {
                        if *cell == Cell::Unchanged {
                            *cell = before;
                        }
                    }
                }
                self.insert(row);
            }
            Change::Delete { old } => {
                if let Some(key) = self.find(old) {
                    self.rows.remove(&key);
                }
            }
            Change::Truncate => self.rows.clear(),
        }
    }
}

impl MemoryState {
    /// The mirrored table of `schema`, created empty when unknown.
    fn table(&mut self, schema: &TableSchema) -> &mut MemoryTable {
        self.tables
            .entry(schema.id)
            .or_insert_with(|| MemoryTable::new(schema.clone()))
    }
}

impl MemoryDestination {
    /// A mirror without an event log (what `destination: {memory: {}}` runs).
    pub fn new() -> Self {
        Self::default()
    }

    /// A mirror that also keeps every event it receives (tests).
    pub fn with_event_log() -> Self {
        Self {
            state: Mutex::default(),
            log_events: true,
        }
    }

    /// A new destination holding the same tables and log: what survived a crash, for a restart.
    pub fn clone_contents(&self) -> Self {
        Self {
            state: Mutex::new(self.lock().clone()),
            log_events: self.log_events,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic while holding the lock leaves consistent data (each write is applied whole).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rows of the table named `name` in key (or insertion) order; `None` if it is unknown.
    pub fn rows(&self, name: &TableName) -> Option<Vec<Row>> {
        let state = self.lock();
        let table = state.tables.values().find(|t| t.schema.name == *name)?;
        Some(table.rows.values().cloned().collect())
    }

    /// The schema the destination holds for `name`.
    pub fn schema(&self, name: &TableName) -> Option<TableSchema> {
        let state = self.lock();
        let table = state.tables.values().find(|t| t.schema.name == *name)?;
        Some(table.schema.clone())
    }

    /// Rows written through the initial copy of `name` (since its last `begin_copy`).
    pub fn copied_rows(&self, name: &TableName) -> u64 {
        let state = self.lock();
        state
            .tables
            .values()
            .find(|t| t.schema.name == *name)
            .map_or(0, |t| t.copied_rows)
    }

    /// Every event received, in order (only with [`Self::with_event_log`]).
    pub fn events(&self) -> Vec<ChangeEvent> {
        self.lock().log.clone()
    }

    /// Whether `alter_table` was called for the table.
    pub fn was_altered(&self, id: TableId) -> bool {
        self.lock().altered.contains(&id)
    }

    /// Forgets every row and finished copy of `name`, as if its table were emptied behind the
    /// engine's back (tests of the destination checkpoint rule).
    pub fn lose_table(&self, name: &TableName) {
        let mut state = self.lock();
        let ids: Vec<TableId> = state
            .tables
            .values()
            .filter(|t| t.schema.name == *name)
            .map(|t| t.schema.id)
            .collect();
        for id in ids {
            state.tables.remove(&id);
            state.copied.remove(&id);
        }
    }

    /// Makes every later write touching `name` fail with [`Error::Table`] (tests of errored
    /// tables).
    pub fn fail_writes_for(&self, name: TableName, message: impl Into<String>) {
        self.lock().failing.insert(name, message.into());
    }

    /// Lets writes touching `name` succeed again (the cause of the failure was fixed).
    pub fn stop_failing(&self, name: &TableName) {
        self.lock().failing.remove(name);
    }

    fn check_failing(state: &MemoryState, schema: &TableSchema) -> Result<()> {
        match state.failing.get(&schema.name) {
            Some(message) => Err(Error::table(schema, message.clone())),
            None => Ok(()),
        }
    }
}

impl Destination for MemoryDestination {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn describe(&self) -> String {
        DESCRIPTION.to_owned()
    }

    fn keeps_identity(&self) -> bool {
        true
    }

    async fn read_identity(&self) -> Result<Option<PipelineIdentity>> {
        Ok(self.lock().identity.clone())
    }

    async fn write_identity(&self, identity: &PipelineIdentity) -> Result<()> {
        self.lock().identity = Some(identity.clone());
        Ok(())
    }

    async fn copied_tables(&self) -> Result<Option<BTreeSet<TableId>>> {
        Ok(Some(self.lock().copied.clone()))
    }

    async fn prepare_table(&self, schema: &TableSchema) -> Result<()> {
        let mut state = self.lock();
        Self::check_failing(&state, schema)?;
        state.table(schema).schema = schema.clone();
        Ok(())
    }

    async fn begin_copy(&self, schema: &TableSchema) -> Result<()> {
        let mut state = self.lock();
        Self::check_failing(&state, schema)?;
        state
            .tables
            .insert(schema.id, MemoryTable::new(schema.clone()));
        let id = schema.id;
        state.copied.remove(&id);
        state.log.retain(|event| event.table.id != id);
        Ok(())
    }

    async fn write_copy_rows(&self, schema: &TableSchema, chunk: CopyChunk) -> Result<()> {
        let rows = chunk
            .rows(schema.columns.len())
            .map_err(|e| Error::table(schema, e.to_string()))?;
        let mut state = self.lock();
        Self::check_failing(&state, schema)?;
        let table = state.table(schema);
        table.copied_rows += rows.len() as u64;
        for row in rows {
            table.insert(row);
        }
        Ok(())
    }

    async fn finish_copy(&self, schema: &TableSchema) -> Result<()> {
        self.lock().copied.insert(schema.id);
        Ok(())
    }

    async fn alter_table(&self, old: &TableSchema, new: &TableSchema) -> Result<()> {
        let mut state = self.lock();
        Self::check_failing(&state, new)?;
        state.altered.insert(new.id);
        let Some(table) = state.tables.get_mut(&new.id) else {
            state.tables.insert(new.id, MemoryTable::new(new.clone()));
            return Ok(());
        };
        // Each new column takes the old column of the same name; with the same number of
        // columns, an unmatched one is a rename and takes the old column at its position.
        let sources: Vec<Option<usize>> = new
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| {
                old.columns
                    .iter()
                    .position(|c| c.name == column.name)
                    .or((old.columns.len() == new.columns.len()).then_some(i))
            })
            .collect();
        let rows = std::mem::take(&mut table.rows);
        table.schema = new.clone();
        for (_, row) in rows {
            let row = sources
                .iter()
                .zip(&new.columns)
                .map(|(source, column)| {
                    source.and_then(|i| row.get(i).cloned()).unwrap_or_else(|| {
                        column
                            .existing_rows_value
                            .clone()
                            .map_or(Cell::Null, Cell::Text)
                    })
                })
                .collect();
            table.insert(row);
        }
        Ok(())
    }

    async fn write_events(&self, events: Vec<ChangeEvent>) -> Result<()> {
        let mut state = self.lock();
        for event in &events {
            Self::check_failing(&state, &event.table)?;
        }
        for event in &events {
            let table = state.table(&event.table);
            if table.schema.columns != event.table.columns {
                table.schema = (*event.table).clone();
            }
            table.apply(&event.change);
        }
        if self.log_events {
            state.log.extend(events);
        }
        Ok(())
    }
}
