//! `etl` replicates PostgreSQL into other systems through logical replication, runs the REST
//! control plane that deploys replicators, and runs the migrations of both.
//!
//! # Layout
//!
//! - [`base`]: the shared vocabulary below every other module: positions, table names and
//!   schemas, change events, cell values and their codecs, SQL quoting, error rendering.
//! - [`cli`]: the clap definitions of the one binary (`etl replicate`, `etl serve-api`, …).
//! - [`config`]: configuration shared by every subcommand: `config/base.yaml`, then
//!   `config/{env}.yaml`, then `APP_` variables; typed sections and secrets.
//! - [`telemetry`]: the tracing subscriber (human or JSON lines).
//! - [`replicate`]: `etl replicate`, the engine run from the configuration.
//! - [`operator`]: what the operator commands share (the pipeline's source, confirmation).
//! - [`reset`]: `etl pipeline reset`, a pipeline's slots and state dropped from its source.
//! - [`migrate`]: the two embedded migration sets (`app` for the API, `etl` for the replicator).
//! - [`shutdown`]: SIGTERM/SIGINT turned into a handle every long-running task can wait on.
//! - [`exit`]: how an error becomes an exit code and one readable line.
//! - [`engine`]: the replication engine (the common engine module behind `etl replicate`).
//! - [`destinations`]: where the engine writes, behind one trait.
//! - [`api`]: `etl serve-api`, the REST control plane (routes, auth, encrypted secrets, runtimes).
//! - [`k8s`]: `etl k8s bootstrap` and replicators as StatefulSets (the `kubernetes` runtime).
//! - [`netpolicy`]: which hosts and ports tenants' sources and destinations may reach.
//! - [`verify`]: `etl verify`, a pipeline's destination compared with its source, row hashes in SQL.

pub mod api;
pub mod base;
pub mod cli;
pub mod config;
pub mod destinations;
pub mod engine;
pub mod exit;
pub mod k8s;
pub mod migrate;
pub mod netpolicy;
pub mod operator;
pub mod replicate;
pub mod reset;
pub mod shutdown;
pub mod tables;
pub mod telemetry;
pub mod verify;
