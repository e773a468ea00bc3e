//! Kubernetes tests: manifests (golden files), `etl k8s bootstrap` and the replicator lifecycle,
//! all through a real `kube::Client` talking to the in-process fake API server of `fake_api.rs`
//! (no Kubernetes API server can run on the test machine). None of it needs PostgreSQL, so the
//! shared `tests/common` helpers are not included.
//!
//! `deploy.rs` and `rbac.rs` check the kustomize manifests under `deploy/` against bootstrap and
//! against the calls the runtime makes.
//!
//! Regenerate golden files and the bootstrap files under `deploy/base/` after an intended
//! manifest change with `ETL_UPDATE_GOLDEN=1 cargo test --test k8s`, then review the diff.

mod bootstrap;
mod cli;
mod deploy;
mod fake_api;
mod fake_checks;
mod golden;
mod helpers;
mod lifecycle;
mod manifests;
mod rbac;
mod status;
