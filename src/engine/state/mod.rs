//! What the engine persists about a pipeline, in the source database's `etl` schema:
//! per-table states ([`TableState`], with history for rollback), the schema of each replicated
//! table, and the apply worker's durable position (monotonic).
//!
//! [`StateStore`] owns every SQL statement on those tables; workers call it at each transition
//! and keep their own in-memory copy. The hand-off states `sync_wait` and `catchup` of
//! DESIGN.md live only in memory (in the apply worker's channel with a table-sync worker).

mod store;

use serde::{Deserialize, Serialize};

use crate::base::lsn::Lsn;

pub use store::StateStore;

/// The persisted state of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableState {
    /// Known, not yet copied.
    Init,
    /// A table-sync worker is copying it (a crash here restarts the copy).
    DataSync,
    /// Copied; its own slot still has to catch up with the apply worker.
    FinishedCopy,
    /// Caught up to this LSN: the apply worker applies its changes of transactions whose
    /// commit LSN is at or after it.
    SyncDone(Lsn),
    /// Streamed by the apply worker.
    Ready,
    /// Stopped for this table; the others continue.
    Errored(TableError),
}

impl TableState {
    /// The name stored in `etl.replication_state.state`.
    pub fn name(&self) -> &'static str {
        match self {
            TableState::Init => "init",
            TableState::DataSync => "data_sync",
            TableState::FinishedCopy => "finished_copy",
            TableState::SyncDone(_) => "sync_done",
            TableState::Ready => "ready",
            TableState::Errored(_) => "errored",
        }
    }

    /// Whether the table's copy has to be (re)done by a table-sync worker.
    pub fn needs_sync(&self) -> bool {
        matches!(
            self,
            TableState::Init | TableState::DataSync | TableState::FinishedCopy
        )
    }
}

/// Why a table stopped, and what may restart it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableError {
    pub reason: String,
    pub hint: String,
    pub retry: RetryPolicy,
}

/// How an errored table can be restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum RetryPolicy {
    /// Retrying cannot help (e.g. the table has a shape the destination cannot store).
    NoRetry,
    /// Fix the cause, then roll the table back (`StateStore::rollback_table`) or reset it.
    Manual,
}

/// A state-store failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("state store query failed while {action}")]
    Query {
        action: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("state store holds an invalid value: {0}")]
    Corrupt(String),
    #[error(
        "table {table} errored while its changes were streamed: restoring `{previous}` would lose \
         the changes skipped since; reset it to `init` to copy it again"
    )]
    RollbackWouldSkipChanges { table: u32, previous: String },
}

impl Error {
    /// Connection problems are worth retrying; SQL errors are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Query { source, .. } => {
                matches!(
                    source,
                    sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
                ) || source
                    .as_database_error()
                    .and_then(|e| e.code())
                    .is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
            }
            Error::Corrupt(_) | Error::RollbackWouldSkipChanges { .. } => false,
        }
    }
}
