//! The replication engine: copies the tables of a publication under a consistent snapshot, then
//! streams their changes (pgoutput) into a [`crate::destinations::Destination`], resuming after a
//! crash without losing a change.
//!
//! - [`lsn`], [`schema`], [`event`]: the vocabulary shared with destinations.
//! - [`preconditions`], [`metrics`], [`progress`], [`slot_monitor`]: operations around the engine
//!   (start-up checks, Prometheus metrics, copy progress bars, slot health).
//! - [`source`]: the replication protocol client (knows nothing of table states).
//! - [`pipeline`]: [`run`], start-up (migrations, apply slot, table states) then the apply worker.
//! - `apply`: the apply worker (stream → decode → route by table state → batch → write → ack),
//!   which also coordinates the table-sync workers.
//! - `table_sync`, `table_copy`: one table's snapshot copy and catch-up.
//! - [`state`]: what is persisted in the `etl` schema.
//! - [`cleanup`]: removing a pipeline's slots and state.

mod apply;
mod catalog;
mod changes;
pub mod cleanup;
mod error;
pub mod event;
pub mod lsn;
pub mod metrics;
mod observer;
pub mod pipeline;
pub mod preconditions;
pub mod progress;
mod retry;
pub mod schema;
pub mod slot_monitor;
pub mod source;
pub mod state;
mod table_copy;
mod table_sync;

pub use apply::apply_slot_name;
pub use cleanup::delete_pipeline_state;
pub use error::Error;
pub use observer::Observer;
pub use pipeline::{RunOptions, run};
pub use retry::Backoff;
pub use table_sync::sync_slot_name;
