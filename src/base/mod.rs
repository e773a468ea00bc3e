//! The vocabulary every layer shares, below all of them: WAL positions ([`lsn`]), table
//! identity and shape ([`schema`]), change events and cell values handed from the engine to a
//! destination ([`event`]), the typed values parsed from Postgres's text output ([`values`]),
//! SQL quoting ([`quote`]) and one-line error rendering ([`error_chain`]).
//!
//! It imports nothing else of this crate: the replication protocol client
//! (`engine::source`), the engine and the destinations all build on it, so none of them has
//! to import another to speak about a row or a position.

pub mod error_chain;
pub mod event;
pub mod lsn;
pub mod quote;
pub mod schema;
pub mod values;

pub use error_chain::error_chain;
