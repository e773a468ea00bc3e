//! [`Error`]: why the pipeline (or one of its workers) stopped, and whether retrying can help.

use super::{destination, source, state};
use crate::base::lsn::Lsn;
use crate::base::schema::TableName;

/// A pipeline failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Source(#[from] source::Error),
    #[error(transparent)]
    Destination(#[from] destination::Error),
    #[error(transparent)]
    State(#[from] state::Error),
    #[error("cannot query the source database while {action}")]
    Query {
        action: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "replication slot `{slot}` was invalidated (wal_status = lost): the WAL it needed is \
         gone. Set `pipeline.invalidated_slot_behavior: recreate` to copy every table again, or \
         delete the pipeline's state"
    )]
    SlotInvalidated { slot: String },
    #[error("cannot read the schema of table {table}: {message}")]
    Schema { table: TableName, message: String },
    #[error("the change at {lsn} cannot be decoded: {message}")]
    Decode { lsn: Lsn, message: String },
    #[error("the source is not ready for replication: {}", problems.join("; "))]
    SourceNotReady { problems: Vec<String> },
    #[error(
        "publication `{publication}` does not exist in the source database (create it with \
         CREATE PUBLICATION {publication} FOR TABLE …)"
    )]
    NoPublication { publication: String },
    #[error("the source exported no snapshot for a parallel copy of table {table}")]
    NoExportedSnapshot { table: TableName },
    #[error("gave up after {attempts} failed attempts (retry.once_attempts, with --once)")]
    GaveUp {
        attempts: u32,
        #[source]
        last: Box<Error>,
    },
    #[error("the source {target} did not answer within {seconds} s")]
    SourceTimeout { target: String, seconds: u64 },
    #[error(
        "the destination `{destination}` no longer holds the copy of {} that the pipeline's \
         state streams (dropped, truncated or replaced); with pipeline.lost_copy: refuse the \
         pipeline stops here: copy them again with `etl tables resync --table …` (or \
         pipeline.lost_copy: recopy), or start over with `etl pipeline reset`",
        tables.join(", ")
    )]
    LostCopy {
        destination: String,
        tables: Vec<String>,
    },
    #[error("the source reported a WAL position that is not an LSN")]
    BadLsn(#[source] crate::base::lsn::InvalidLsn),
    #[error("a table-sync worker stopped unexpectedly")]
    WorkerStopped {
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("cannot check the source's preconditions")]
    Preconditions(#[from] super::preconditions::Error),
    #[error("cannot read the replication slot")]
    Slot(#[from] super::slot_monitor::Error),
    /// The pipeline's state on the source and its destination do not belong together.
    #[error(transparent)]
    Identity(#[from] super::identity::IdentityError),
    #[error("cannot run the replicator migrations")]
    Migration(#[from] crate::migrate::MigrationError),
    /// Spilling a streamed transaction failed (`Full`: the apply worker goes back to
    /// protocol 1; otherwise a disk problem, retried).
    #[error(transparent)]
    Spill(#[from] super::apply::SpillError),
}

impl From<super::router::RouteError> for Error {
    fn from(error: super::router::RouteError) -> Self {
        use super::router::RouteError;
        match error {
            RouteError::Decode { lsn, source } => Error::Decode {
                lsn,
                message: source.to_string(),
            },
            RouteError::UnknownRelation { lsn, relation } => Error::Decode {
                lsn,
                message: format!("change of relation {relation} before its Relation message"),
            },
        }
    }
}

/// Whether a query failed because the connection or the server went away (worth retrying)
/// rather than because of the query: I/O, the pool, class `08` (connection exception) and
/// `57P01`–`57P03` (administrator shutdown, crash, server starting up).
pub(crate) fn connection_lost(source: &sqlx::Error) -> bool {
    matches!(
        source,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
    ) || source
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
}

impl Error {
    /// Worth retrying after a pause (connection lost, server restarting, destination busy).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Source(e) => e.is_transient(),
            Error::Destination(e) => e.is_transient(),
            Error::State(e) => e.is_transient(),
            Error::SourceTimeout { .. } => true,
            Error::Spill(_) => true,
            Error::Query { source, .. } => connection_lost(source),
            _ => false,
        }
    }

    pub(crate) fn query(action: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
        move |source| Error::Query { action, source }
    }
}
