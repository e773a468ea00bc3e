//! Pipeline runtimes: where and how a pipeline's replicator (`etl replicate`) runs.
//!
//! [`PipelineRuntime`] is the contract the routes use; [`local::LocalRuntime`] runs child
//! processes on this machine, [`kubernetes::KubernetesRuntime`] one StatefulSet per replicator.
//! [`replicator_config`] builds what every runtime hands the replicator: its `{env}.yaml`
//! (never a secret) and the secrets as `APP_…` variables.

pub mod kubernetes;
pub mod local;
pub mod replicator_config;

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;

use super::domain::pipeline::{PipelineState, PipelineStatus};
use crate::config::{ResourceSettings, Secret};

/// Which replicator a call is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicatorTarget {
    pub tenant_id: String,
    pub replicator_id: i64,
    pub pipeline_id: i64,
}

/// Everything needed to (re)start a replicator.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub target: ReplicatorTarget,
    /// Container image (the `kubernetes` runtime; the `local` runtime runs its configured binary).
    pub image: String,
    /// The replicator's `{env}.yaml`, without secrets.
    pub config_yaml: String,
    /// `APP_…` variable → secret value.
    pub secrets: BTreeMap<String, Secret>,
    pub resources: Option<ResourceSettings>,
}

/// What a runtime reports about one replicator: the same states for every runtime.
pub use crate::k8s::ReplicatorStatus as RuntimeStatus;

/// The runtime's status in the API's terms.
pub fn to_api(status: &RuntimeStatus, pipeline_id: i64) -> PipelineStatus {
    let (state, reason) = match status {
        RuntimeStatus::Stopped => (PipelineState::Stopped, None),
        RuntimeStatus::Starting => (PipelineState::Starting, None),
        RuntimeStatus::Started => (PipelineState::Started, None),
        RuntimeStatus::Stopping => (PipelineState::Stopping, None),
        RuntimeStatus::Failed { reason } => (PipelineState::Failed, Some(reason.clone())),
        RuntimeStatus::Unknown => (PipelineState::Unknown, None),
    };
    PipelineStatus {
        pipeline_id,
        status: state,
        reason,
    }
}

/// Whether a replicator process exists or is about to (anything but stopped or failed).
pub fn is_running(status: &RuntimeStatus) -> bool {
    !matches!(
        status,
        RuntimeStatus::Stopped | RuntimeStatus::Failed { .. }
    )
}

/// Why a runtime call failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The pipeline's settings cannot be run by this runtime (e.g. a tenant id Kubernetes
    /// rejects); a client error.
    #[error("{0}")]
    Invalid(String),
    /// Starting, stopping or inspecting the replicator failed.
    #[error("{0}")]
    Failed(String),
}

/// Starts, stops and reports replicators.
///
/// Contract: `start` on a running replicator replaces it with the new spec (config and secrets
/// change on every start). `stop` returns once the replicator is gone or being deleted, and is
/// a no-op for a stopped one. `status` never fails because a replicator is missing (that is
/// `Stopped`); errors mean the runtime itself could not be asked. `forget` removes whatever the
/// runtime kept for a deleted pipeline; it is called after `stop`.
pub trait PipelineRuntime: Send + Sync + 'static {
    /// `local` or `kubernetes`.
    fn kind(&self) -> &'static str;

    /// Where the replicator serves its Prometheus metrics (`pipeline.metrics_address`);
    /// `None` turns its endpoint off.
    fn metrics_address(&self) -> Option<String>;

    fn start<'a>(&'a self, spec: &'a LaunchSpec) -> BoxFuture<'a, Result<(), RuntimeError>>;

    fn stop<'a>(&'a self, target: &'a ReplicatorTarget) -> BoxFuture<'a, Result<(), RuntimeError>>;

    fn status<'a>(
        &'a self,
        target: &'a ReplicatorTarget,
    ) -> BoxFuture<'a, Result<RuntimeStatus, RuntimeError>>;

    fn forget<'a>(
        &'a self,
        target: &'a ReplicatorTarget,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;
}
