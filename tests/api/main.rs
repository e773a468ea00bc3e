//! Integration tests of the control plane (`etl serve-api`): every route against a real
//! PostgreSQL (a fresh database per test for the `app` schema, and per-test source databases),
//! secrets at rest, key rotation, the `local` runtime with real processes, and the CLI.

#[path = "../common/mod.rs"]
mod common;
#[path = "../k8s/fake_api.rs"]
#[allow(dead_code)]
mod fake_api;
#[path = "../destinations/servers.rs"]
#[allow(dead_code)]
mod servers;

mod auth;
mod cli;
mod destinations;
mod e2e;
mod helpers;
mod hostile_tenant;
mod identity;
mod images;
mod kafka_destination;
mod kubernetes_runtime;
mod local_runtime;
mod nats_destination;
mod pipelines;
mod rotation;
mod sources;
mod table_actions;
mod tenants;
mod verify;
