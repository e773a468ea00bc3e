//! What the engine persists about a pipeline, in the source database's `etl` schema:
//! per-table states ([`TableState`], with history for rollback), the schema of each replicated
//! table, and the apply worker's durable position (monotonic).
//!
//! - [`StateStore`]: where it is persisted: the `etl` tables ([`postgres`], every SQL statement
//!   on them) or memory ([`memory`], for tests of the workers without a database).
//! - [`TableStates`]: the per-table state map and every transition (persist, tell the
//!   observer, log once, match against the publication, error, roll back); the workers, the
//!   pipeline's start-up and the control plane all go through it.
//! - [`slots`]: the names of a pipeline's replication slots.
//!
//! The hand-off states `sync_wait` and `catchup` of DESIGN.md live only in memory (in the apply
//! worker's channel with a table-sync worker).

pub mod memory;
pub mod postgres;
pub mod slots;
mod store;
mod table_states;

use serde::{Deserialize, Serialize};

use crate::base::lsn::Lsn;
use crate::base::schema::TableId;

pub use store::StateStore;
pub use table_states::{StateWriter, TableStates};

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

/// The kind of a [`TableState`] without its data: what `etl.replication_state.state` stores,
/// what metrics and the control plane show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateName {
    Init,
    DataSync,
    FinishedCopy,
    SyncDone,
    Ready,
    Errored,
}

impl StateName {
    pub const ALL: [StateName; 6] = [
        StateName::Init,
        StateName::DataSync,
        StateName::FinishedCopy,
        StateName::SyncDone,
        StateName::Ready,
        StateName::Errored,
    ];

    /// The stored name (`init`, `data_sync`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Init => "init",
            StateName::DataSync => "data_sync",
            StateName::FinishedCopy => "finished_copy",
            StateName::SyncDone => "sync_done",
            StateName::Ready => "ready",
            StateName::Errored => "errored",
        }
    }

    /// Reads a stored name.
    pub fn parse(text: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|name| name.as_str() == text)
            .ok_or_else(|| Error::Corrupt(format!("table state `{text}`")))
    }

    /// The one rule of rollbacks: a table that errored after it was streamed (`sync_done` or
    /// `ready`) cannot go back to that state, because the changes skipped since it errored
    /// would be lost; it can only be copied again (`init`).
    pub fn check_rollback(table: TableId, current: &str, previous: &str) -> Result<(), Error> {
        let (current, previous) = (Self::parse(current)?, Self::parse(previous)?);
        if current == StateName::Errored
            && matches!(previous, StateName::SyncDone | StateName::Ready)
        {
            return Err(Error::RollbackWouldSkipChanges {
                table: table.0,
                previous: previous.as_str().to_owned(),
            });
        }
        Ok(())
    }
}

impl StateName {
    /// Which tables can be resynced (copied again while the pipeline runs): a `ready` or an
    /// `errored` one. A table in `init`, `data_sync`, `finished_copy` or `sync_done` is being
    /// (or about to be) copied by a table-sync worker, which a second copy must not disturb.
    pub fn check_resync(table: TableId, current: &str) -> Result<(), Error> {
        match Self::parse(current)? {
            StateName::Ready | StateName::Errored => Ok(()),
            other => Err(Error::BeingCopied {
                table: table.0,
                state: other.as_str().to_owned(),
            }),
        }
    }
}

impl std::fmt::Display for StateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TableState {
    /// The kind of this state.
    pub fn kind(&self) -> StateName {
        match self {
            TableState::Init => StateName::Init,
            TableState::DataSync => StateName::DataSync,
            TableState::FinishedCopy => StateName::FinishedCopy,
            TableState::SyncDone(_) => StateName::SyncDone,
            TableState::Ready => StateName::Ready,
            TableState::Errored(_) => StateName::Errored,
        }
    }

    /// The name stored in `etl.replication_state.state`.
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// An errored state that waits for the operator (fix the cause, then roll back or resync).
    pub fn errored(reason: impl Into<String>, hint: impl Into<String>) -> Self {
        TableState::Errored(TableError {
            reason: reason.into(),
            hint: hint.into(),
            retry: RetryPolicy::Manual,
        })
    }

    /// Whether the apply worker applies this table's changes of a transaction committing at
    /// `commit_lsn`: every change once `ready`, and from the catch-up point on once `sync_done`.
    pub fn applies_at(&self, commit_lsn: Lsn) -> bool {
        match self {
            TableState::Ready => true,
            TableState::SyncDone(lsn) => commit_lsn >= *lsn,
            _ => false,
        }
    }

    /// Copied and streamed, or stopped: nothing more happens to it without an operator.
    pub fn is_settled(&self) -> bool {
        matches!(self, TableState::Ready | TableState::Errored(_))
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

/// Where a rollback takes a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackTarget {
    /// The state before the current one (see [`StateName::check_rollback`]).
    Previous,
    /// `init`: the table is copied again from scratch.
    Init,
}

/// Which tables a rollback touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackSelection {
    Table(TableId),
    /// Every table in state `errored`.
    Errored,
    All,
}

/// One table a rollback moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    pub table: TableId,
    pub from: StateName,
    pub to: StateName,
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
    #[error("table {table} is not in the replication state of the pipeline")]
    UnknownTable { table: u32 },
    #[error("table {table} has no previous state to roll back to")]
    NoPreviousState { table: u32 },
    #[error(
        "table {table} is being copied (state `{state}`): wait until it is `ready` or `errored`, \
         then resync it"
    )]
    BeingCopied { table: u32, state: String },
}

impl Error {
    /// Connection problems are worth retrying; SQL errors are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Query { source, .. } => crate::engine::error::connection_lost(source),
            Error::Corrupt(_)
            | Error::RollbackWouldSkipChanges { .. }
            | Error::UnknownTable { .. }
            | Error::NoPreviousState { .. }
            | Error::BeingCopied { .. } => false,
        }
    }
}
