//! [`MemoryStateStore`]: a pipeline's persisted state kept in memory, with the same behaviour
//! as the `etl` tables (history for rollback, monotonic progress). For tests of the workers and
//! of [`super::TableStates`] without a database; nothing survives the process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Error, StateName, TableState};
use crate::base::lsn::Lsn;
use crate::base::schema::{TableId, TableSchema};

/// Shared handle: clones see the same state, as clones of a pool see the same database.
#[derive(Debug, Clone, Default)]
pub struct MemoryStateStore {
    inner: Arc<Mutex<Tables>>,
}

#[derive(Debug, Default)]
struct Tables {
    /// Every state a table went through, the current one last.
    states: BTreeMap<TableId, Vec<TableState>>,
    schemas: BTreeMap<TableId, TableSchema>,
    progress: Option<Lsn>,
}

impl MemoryStateStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // A panic elsewhere leaves the maps consistent (every update is one statement).
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn table_states(&self) -> BTreeMap<TableId, TableState> {
        self.lock()
            .states
            .iter()
            .filter_map(|(id, history)| history.last().map(|state| (*id, state.clone())))
            .collect()
    }

    pub fn set_table_state(&self, table: TableId, state: &TableState) -> Result<(), Error> {
        self.lock()
            .states
            .entry(table)
            .or_default()
            .push(state.clone());
        Ok(())
    }

    pub fn rollback_table(&self, table: TableId) -> Result<Option<TableState>, Error> {
        let mut tables = self.lock();
        let Some(history) = tables.states.get_mut(&table) else {
            return Ok(None);
        };
        let [.., previous, current] = history.as_slice() else {
            return Ok(None);
        };
        StateName::check_rollback(table, current.name(), previous.name())?;
        history.pop();
        Ok(history.last().cloned())
    }

    pub fn remove_table(&self, table: TableId) -> Result<(), Error> {
        let mut tables = self.lock();
        tables.states.remove(&table);
        tables.schemas.remove(&table);
        Ok(())
    }

    pub fn store_schema(&self, schema: &TableSchema) -> Result<(), Error> {
        self.lock().schemas.insert(schema.id, schema.clone());
        Ok(())
    }

    pub fn table_schemas(&self) -> BTreeMap<TableId, TableSchema> {
        self.lock().schemas.clone()
    }

    pub fn progress(&self) -> Option<Lsn> {
        self.lock().progress
    }

    pub fn store_progress(&self, lsn: Lsn) -> Result<(), Error> {
        let mut tables = self.lock();
        tables.progress = Some(tables.progress.map_or(lsn, |stored| stored.max(lsn)));
        Ok(())
    }

    pub fn clear_progress(&self) -> Result<(), Error> {
        self.lock().progress = None;
        Ok(())
    }
}
