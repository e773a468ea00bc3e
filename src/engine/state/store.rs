//! [`StateStore`]: where a pipeline's state is persisted, the `etl` tables of the source
//! ([`PgStateStore`]) or memory ([`MemoryStateStore`], for tests). Callers do not care which.

use std::collections::BTreeMap;

use sqlx::PgPool;

use super::memory::MemoryStateStore;
use super::postgres::PgStateStore;
use super::{Error, TableState};
use crate::base::lsn::Lsn;
use crate::base::schema::{TableId, TableSchema};

/// The persisted state of one pipeline. Cheap to clone.
#[derive(Debug, Clone)]
pub enum StateStore {
    Postgres(PgStateStore),
    Memory(MemoryStateStore),
}

impl StateStore {
    /// The `etl` tables of the source behind `pool`.
    pub fn new(pool: PgPool, pipeline_id: u64) -> Self {
        StateStore::Postgres(PgStateStore::new(pool, pipeline_id))
    }

    /// A store that keeps everything in memory.
    pub fn memory() -> Self {
        StateStore::Memory(MemoryStateStore::new())
    }

    /// The current state of every table of the pipeline.
    pub async fn table_states(&self) -> Result<BTreeMap<TableId, TableState>, Error> {
        match self {
            StateStore::Postgres(store) => store.table_states().await,
            StateStore::Memory(store) => Ok(store.table_states()),
        }
    }

    /// Makes `state` the table's current state, keeping the previous one in the history.
    pub async fn set_table_state(&self, table: TableId, state: &TableState) -> Result<(), Error> {
        match self {
            StateStore::Postgres(store) => store.set_table_state(table, state).await,
            StateStore::Memory(store) => store.set_table_state(table, state),
        }
    }

    /// Restores the table's previous state; see [`super::StateName::check_rollback`].
    pub async fn rollback_table(&self, table: TableId) -> Result<Option<TableState>, Error> {
        match self {
            StateStore::Postgres(store) => store.rollback_table(table).await,
            StateStore::Memory(store) => store.rollback_table(table),
        }
    }

    /// Sends the errored tables whose automatic retry is due back to `init`; see
    /// [`super::postgres::PgStateStore::retry_due`]. The memory store schedules no retries.
    pub async fn retry_due(&self) -> Result<Vec<TableId>, Error> {
        match self {
            StateStore::Postgres(store) => store.retry_due().await,
            StateStore::Memory(_) => Ok(Vec::new()),
        }
    }

    /// Per table: errors in a row and when its next automatic retry is due; see
    /// [`super::postgres::PgStateStore::retry_status`]. The memory store keeps no such count.
    pub async fn retry_status(
        &self,
    ) -> Result<Vec<(crate::base::schema::TableName, i32, Option<f64>)>, Error> {
        match self {
            StateStore::Postgres(store) => store.retry_status().await,
            StateStore::Memory(_) => Ok(Vec::new()),
        }
    }

    /// Forgets a table (removed from the publication): its states and schema.
    pub async fn remove_table(&self, table: TableId) -> Result<(), Error> {
        match self {
            StateStore::Postgres(store) => store.remove_table(table).await,
            StateStore::Memory(store) => store.remove_table(table),
        }
    }

    /// Stores (replaces) the schema of a table.
    pub async fn store_schema(&self, schema: &TableSchema) -> Result<(), Error> {
        match self {
            StateStore::Postgres(store) => store.store_schema(schema).await,
            StateStore::Memory(store) => store.store_schema(schema),
        }
    }

    /// Every stored table schema of the pipeline.
    pub async fn table_schemas(&self) -> Result<BTreeMap<TableId, TableSchema>, Error> {
        match self {
            StateStore::Postgres(store) => store.table_schemas().await,
            StateStore::Memory(store) => Ok(store.table_schemas()),
        }
    }

    /// The stored durable position of the apply worker.
    pub async fn progress(&self) -> Result<Option<Lsn>, Error> {
        match self {
            StateStore::Postgres(store) => store.progress().await,
            StateStore::Memory(store) => Ok(store.progress()),
        }
    }

    /// Stores the durable position; never moves it backwards.
    pub async fn store_progress(&self, lsn: Lsn) -> Result<(), Error> {
        match self {
            StateStore::Postgres(store) => store.store_progress(lsn).await,
            StateStore::Memory(store) => store.store_progress(lsn),
        }
    }

    /// Forgets the durable position (the slot was recreated: positions restart).
    pub async fn clear_progress(&self) -> Result<(), Error> {
        match self {
            StateStore::Postgres(store) => store.clear_progress().await,
            StateStore::Memory(store) => store.clear_progress(),
        }
    }
}
