//! `etl serve-api`: the REST control plane. Users create tenants, sources, destinations and
//! pipelines, and start, stop and watch replicators through it.
//!
//! - [`startup`]: [`startup::Application`] wires everything and binds the listener;
//!   [`command`] is what the `serve-api` / `api …` subcommands run.
//! - [`routes`]: one module per resource; [`extract`]: request extractors with JSON errors;
//!   [`error`]: [`error::ApiError`], the one mapping from failures to status codes.
//! - [`auth`]: bearer API keys (several, constant-time); [`metrics`]: Prometheus.
//! - [`crypto`] + [`secrets`]: AES-256-GCM encryption of secret config fields at rest, bound to
//!   their tenant, object and field; [`rotate`]: re-encryption with the newest key.
//! - [`reach`]: the network policy applied to tenants' addresses; [`tenant_files`]: where their
//!   file destinations may write.
//! - [`domain`]: request/response shapes and validation; [`db`]: queries on schema `app`;
//!   [`source_db`]: work on a tenant's source database (tables, publications, `etl` state).
//! - [`runtime`]: where replicators run (`local` processes or `kubernetes` StatefulSets).
//! - [`openapi`]: the OpenAPI document and Swagger UI.
//! - [`console`]: the web console under `/` (server-rendered HTML on the same handlers);
//!   [`lag`]: the lag history sampler and the WAL forecast.

pub mod auth;
pub mod command;
pub mod console;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod error;
pub mod extract;
pub mod lag;
pub mod metrics;
pub mod openapi;
pub mod reach;
pub mod rotate;
pub mod routes;
pub mod runtime;
pub mod secrets;
pub mod source_db;
pub mod startup;
pub mod state;
pub mod tenant_files;
