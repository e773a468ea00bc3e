//! The replication engine: copies the tables of a publication under a consistent snapshot, then
//! streams their changes (pgoutput) into a [`crate::destinations::Destination`], resuming after a
//! crash without losing a change.
//!
//! - [`lsn`], [`schema`], [`event`]: the vocabulary shared with destinations.
//! - [`preconditions`], [`metrics`], [`progress`], [`slot_monitor`]: operations around the engine
//!   (start-up checks, Prometheus metrics, copy progress bars, slot health).

pub mod event;
pub mod lsn;
pub mod metrics;
pub mod preconditions;
pub mod progress;
pub mod schema;
pub mod slot_monitor;
pub mod source;
