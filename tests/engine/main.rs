//! Integration tests of the replication engine (`etl::engine::run`, `etl replicate`) against the
//! shared test cluster (`ETL_TEST_DATABASE_URL`), through the `memory` destination. Every test
//! works in its own database with its own pipeline id (so slot names never collide) and stops
//! its pipeline before dropping the database.

#[path = "../common/mod.rs"]
mod common;

mod helpers;

mod cleanup;
mod cli;
mod column_defaults;
mod copy_and_stream;
mod during_copy;
mod errors;
mod failover_slot;
mod feature_destinations;
mod generated_columns;
mod identity;
mod idle;
mod invalidated_slot;
mod nullability;
mod partitions;
mod private_cluster;
mod publication_changes;
mod replica_identity;
mod restart;
mod resync;
mod row_filters;
mod source_restart;
mod streaming;
mod verify;
mod versions;
mod visibility;
