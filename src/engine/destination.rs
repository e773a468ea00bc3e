//! The destination contract, owned by the engine that calls it: the [`Destination`] trait and
//! its [`Error`]. Implementations live in the `destinations` module; they import this module and
//! `crate::base`, and the engine never imports them.
//!
//! # Contract
//!
//! Call order for one table:
//! 1. [`Destination::prepare_table`] — create (or check) the destination table. Also called at
//!    start-up for every table already being replicated. Idempotent.
//! 2. During a (re)copy: [`Destination::begin_copy`] removes every row of the table and forgets
//!    its applied positions (a crashed copy is redone from scratch), then
//!    [`Destination::write_copy_rows`] any number of times (possibly concurrently for parallel
//!    COPY streams of one table), then [`Destination::finish_copy`].
//! 3. After `finish_copy` returned `Ok`: [`Destination::write_events`] with the table's changes,
//!    interleaved with [`Destination::alter_table`] when its columns change (before any row of
//!    the new shape).
//!
//! `Ok` from any method means the write is **durable**: only then does the engine acknowledge
//! the WAL to Postgres. (Copied rows are the one exception: a destination may hold them back
//! until [`Destination::finish_copy`], since a copy cut short is redone from `begin_copy`.) An `Err` means nothing of that call may be assumed written; the engine
//! retries transient errors ([`Error::is_transient`]) with backoff and marks the table errored
//! for [`Error::Table`].
//!
//! After a crash the engine replays events from the last acknowledged commit, so a destination
//! receives some events again. Within one table, events come in increasing
//! [`ChangeEvent::position`] order (`(commit_lsn, ordinal)`), and a replayed event has the same
//! position as the first time. A mirror makes replays harmless by upserting by key; an exactly-once
//! destination stores the last applied position per table in the same transaction as the data and
//! skips events at or below it. Positions are per table because a table that is catching up after
//! its copy replays older transactions than the other tables.
//!
//! # Pipeline identity and checkpoints
//!
//! At start-up, before anything is copied or streamed, the engine asks the destination for the
//! [`PipelineIdentity`] it keeps beside its positions ([`Destination::read_identity`]) and
//! compares it with the one stored on the source (see [`super::identity`]); it writes a new one
//! with [`Destination::write_identity`] when a pipeline starts from nothing. A destination that
//! has nowhere to keep one (`discard`, `jsonl` on stdout) says so with
//! [`Destination::keeps_identity`]; the engine then only compares [`Destination::describe`].
//! Then [`Destination::copied_tables`] lists the tables whose finished copy the destination
//! holds: the destination's checkpoint is the truth, and a table the state streams but the
//! destination does not hold is copied again.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

pub use super::identity::PipelineIdentity;
use crate::base::event::{ChangeEvent, CopyChunk};
use crate::base::schema::{TableId, TableSchema};

/// Why a destination write failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Worth retrying: connection lost, timeout, busy file.
    #[error("destination temporarily unavailable: {message}")]
    Transient {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Only this table cannot be written (e.g. a value the destination cannot store); the other
    /// tables continue and this one is marked errored.
    /// `table` is the source table's id ([`TableSchema::id`]), so the engine knows which table
    /// to mark without looking names up.
    #[error("table {name}: {message}")]
    Table {
        table: TableId,
        /// The table's name, for messages.
        name: String,
        message: String,
    },
    /// The destination cannot continue at all (bad credentials, disk full, corrupt file).
    #[error("destination failed: {message}")]
    Fatal {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient { .. })
    }

    pub fn transient(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Transient {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// Only `schema`'s table cannot be written.
    pub fn table(schema: &TableSchema, message: impl Into<String>) -> Self {
        Error::Table {
            table: schema.id,
            name: schema.name.to_string(),
            message: message.into(),
        }
    }

    pub fn fatal(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Fatal {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A place the engine replicates into. See the module documentation for the contract.
pub trait Destination: Send + Sync + 'static {
    /// Short name for logs and metrics (`sqlite`, `postgres`, …).
    fn kind(&self) -> &'static str;

    /// The destination's kind and location for messages and the pipeline identity
    /// (`sqlite data/etl.db`, `postgres etl@mirror:5432/shop`); never a secret. Built from the
    /// configuration alone, so the control plane can compute it without opening anything.
    fn describe(&self) -> String;

    /// Whether the destination keeps a [`PipelineIdentity`] beside its data. `false` means it
    /// cannot tell which pipeline's copy it holds: only its [`Self::describe`] is compared at
    /// start-up. Destinations that store positions should keep one. (No default: a wrapper
    /// that forgot to forward this would silently weaken the identity check.)
    fn keeps_identity(&self) -> bool;

    /// The identity stored beside the destination's positions; `None` when it holds none (new,
    /// emptied or replaced) or does not keep one.
    fn read_identity(&self) -> impl Future<Output = Result<Option<PipelineIdentity>>> + Send;

    /// Stores `identity` durably, replacing the one held before. Called before the identity
    /// is recorded on the source. Nothing to do for a destination that keeps none.
    fn write_identity(
        &self,
        identity: &PipelineIdentity,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The tables whose initial copy the destination holds complete ([`Self::finish_copy`]
    /// returned and nothing emptied them since but the engine); `None` when it cannot tell
    /// (at-least-once destinations). A table whose storage disappeared (dropped by hand) is
    /// forgotten, so a later copy creates it again.
    fn copied_tables(&self) -> impl Future<Output = Result<Option<BTreeSet<TableId>>>> + Send;

    /// Creates the destination table for `schema` if missing. Idempotent.
    fn prepare_table(&self, schema: &TableSchema) -> impl Future<Output = Result<()>> + Send;

    /// Starts a (re)copy of the table: deletes its rows and forgets its applied positions.
    fn begin_copy(&self, schema: &TableSchema) -> impl Future<Output = Result<()>> + Send;

    /// Writes rows of the table's initial copy.
    fn write_copy_rows(
        &self,
        schema: &TableSchema,
        chunk: CopyChunk,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The copy of the table is complete; everything written for it must be durable.
    fn finish_copy(&self, schema: &TableSchema) -> impl Future<Output = Result<()>> + Send;

    /// The table's columns changed from `old` to `new` (added, dropped, renamed, retyped).
    fn alter_table(
        &self,
        old: &TableSchema,
        new: &TableSchema,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Applies change events in order (possibly of several tables and transactions; a large
    /// transaction may be split over several calls).
    fn write_events(&self, events: Vec<ChangeEvent>) -> impl Future<Output = Result<()>> + Send;
}

/// Shared destinations are destinations.
impl<D: Destination> Destination for Arc<D> {
    fn kind(&self) -> &'static str {
        (**self).kind()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }

    fn keeps_identity(&self) -> bool {
        (**self).keeps_identity()
    }

    fn read_identity(&self) -> impl Future<Output = Result<Option<PipelineIdentity>>> + Send {
        (**self).read_identity()
    }

    fn write_identity(
        &self,
        identity: &PipelineIdentity,
    ) -> impl Future<Output = Result<()>> + Send {
        (**self).write_identity(identity)
    }

    fn copied_tables(&self) -> impl Future<Output = Result<Option<BTreeSet<TableId>>>> + Send {
        (**self).copied_tables()
    }

    fn prepare_table(&self, schema: &TableSchema) -> impl Future<Output = Result<()>> + Send {
        (**self).prepare_table(schema)
    }

    fn begin_copy(&self, schema: &TableSchema) -> impl Future<Output = Result<()>> + Send {
        (**self).begin_copy(schema)
    }

    fn write_copy_rows(
        &self,
        schema: &TableSchema,
        chunk: CopyChunk,
    ) -> impl Future<Output = Result<()>> + Send {
        (**self).write_copy_rows(schema, chunk)
    }

    fn finish_copy(&self, schema: &TableSchema) -> impl Future<Output = Result<()>> + Send {
        (**self).finish_copy(schema)
    }

    fn alter_table(
        &self,
        old: &TableSchema,
        new: &TableSchema,
    ) -> impl Future<Output = Result<()>> + Send {
        (**self).alter_table(old, new)
    }

    fn write_events(&self, events: Vec<ChangeEvent>) -> impl Future<Output = Result<()>> + Send {
        (**self).write_events(events)
    }
}
