//! Integration tests of `etl::engine::source` (the replication client, COPY, the replication
//! stream, pgoutput decoding and type parsing) against the shared test cluster
//! (`ETL_TEST_DATABASE_URL`). Every test works in its own database and drops its slots.

#[path = "../common/mod.rs"]
mod common;

mod helpers;

mod auth_methods;
mod connection;
mod private_cluster;
mod slots;
mod streaming;
mod tls;
mod types_roundtrip;
