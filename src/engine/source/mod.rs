//! The replication source: our own PostgreSQL client for the replication protocol.
//!
//! This module turns bytes on a socket into typed messages and knows nothing of table states,
//! destinations or retries (those belong to the pipeline). Layers, bottom up:
//!
//! - [`connection`]: one session over TCP (+TLS via [`tls`]), startup and authentication
//!   ([`auth`]), message framing (including the `CopyBothResponse` tag that `postgres-protocol`
//!   does not parse) and the simple-query protocol.
//! - [`replication`]: replication commands (`IDENTIFY_SYSTEM`, slots, `START_REPLICATION`) and
//!   the CopyBoth [`ReplicationStream`] with keepalives and standby status updates.
//! - [`copy`]: `COPY … TO STDOUT` on the same session, chunked into complete rows.
//! - [`pgoutput`]: a pure decoder of the pgoutput logical replication messages.
//!
//! Every failure is an [`Error`]; [`Error::is_transient`] tells a retryable failure (connection
//! lost, server restarting) from a fatal one (bad password, bad SQL, protocol violation).

mod auth;
pub mod connection;
pub mod copy;
mod error;
mod low_water;
pub mod pgoutput;
pub mod replication;
mod tls;

pub use connection::ReplicationClient;
pub use copy::CopyOut;
pub use error::{Error, ServerError};
pub use pgoutput::{
    DecodeError, OldTuple, PgOutputMessage, RelationColumn, TupleData, decode as decode_pgoutput,
};
pub use replication::{
    CreatedSlot, PgOutputOptions, ReplicationMessage, ReplicationStream, SnapshotAction, SystemInfo,
};
