//! The replication engine: copies the tables of a publication under a consistent snapshot, then
//! streams their changes (pgoutput) into a [`Destination`], resuming after a crash without losing
//! a change.
//!
//! Layers point one way: [`crate::base`] (positions, schemas, events, values) is below
//! everything; [`source`] builds on it alone; the engine owns the [`Destination`] contract
//! ([`destination`]), which the `destinations` module implements without the engine importing them.
//!
//! - [`destination`]: the trait every destination implements, and its error.
//! - [`preconditions`], [`metrics`], [`progress`], [`slot_monitor`]: operations around the engine
//!   (start-up checks, Prometheus metrics, copy progress bars, slot health).
//! - [`source`]: the replication protocol client (knows nothing of table states).
//! - [`pipeline`]: [`run`], start-up (migrations, apply slot, table states) then the apply worker.
//! - `apply`: the apply worker (stream → decode → route by table state → batch → write → ack),
//!   which also coordinates the table-sync workers.
//! - `table_sync`, `table_copy`: one table's snapshot copy and catch-up.
//! - [`state`]: what is persisted in the `etl` schema.
//! - [`identity`]: which destination a pipeline's state serves, checked at start-up; what a
//!   pipeline id has left on a source.
//! - [`cleanup`]: removing a pipeline's slots and state.

mod apply;
mod catalog;
mod changes;
pub mod cleanup;
pub mod destination;
mod error;
pub mod identity;
pub mod metrics;
mod observer;
pub mod pipeline;
pub mod preconditions;
pub mod progress;
mod retry;
mod router;
pub mod slot_monitor;
pub mod source;
pub mod state;
mod table_copy;
mod table_sync;
#[cfg(test)]
mod test_messages;
pub mod visibility;

pub use apply::apply_slot_name;
pub use cleanup::delete_pipeline_state;
pub use destination::{Destination, Error as DestinationError};
pub use error::Error;
pub use identity::{IdentityError, PipelineIdentity};
pub use observer::Observer;
pub use pipeline::{RunOptions, run};
pub use retry::Backoff;
pub use state::slots::sync_slot_name;
