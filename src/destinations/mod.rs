//! Destinations: the implementations of [`crate::engine::Destination`], one module per kind
//! ([`crate::config::DestinationConfig`] selects one, [`AnyDestination`] dispatches to it). The
//! contract they follow (call order, durability, replays) is documented on the trait; they
//! import it and the shared vocabulary of [`crate::base`], and nothing else of the engine.

pub mod debezium;
pub mod jsonl;
mod mirror;
pub mod postgres;
mod schema_diff;
pub mod sqlite;

pub mod any;
pub mod discard;
pub mod iceberg;
pub mod kafka;
pub mod memory;
pub mod nats;

pub use any::AnyDestination;
