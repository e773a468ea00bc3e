//! Integration tests of the operational modules around the engine (`etl::engine::preconditions`,
//! `metrics`, `progress`, `slot_monitor`) against the shared test cluster
//! (`ETL_TEST_DATABASE_URL`) and, for settings it cannot have, a private throwaway cluster.
//! Every test works in its own database and drops its slots and roles.

#[path = "../common/mod.rs"]
mod common;

mod replica_cluster;

mod metrics;
mod preconditions;
mod progress;
mod slot_monitor;
