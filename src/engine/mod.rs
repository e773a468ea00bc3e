//! The replication engine: copies the tables of a publication under a consistent snapshot, then
//! streams their changes (pgoutput) into a [`crate::destinations::Destination`], resuming after a
//! crash without losing a change.
//!
//! - [`lsn`], [`schema`], [`event`]: the vocabulary shared with destinations.

pub mod event;
pub mod lsn;
pub mod schema;
pub mod source;
