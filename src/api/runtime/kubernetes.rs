//! The `kubernetes` runtime: an adapter from [`PipelineRuntime`] to the Kubernetes resource
//! manager ([`ReplicatorManager`]), which runs each replicator as a StatefulSet with its config
//! in a ConfigMap and its secrets in a Secret.

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;

use super::{LaunchSpec, PipelineRuntime, ReplicatorTarget, RuntimeError, RuntimeStatus};
use crate::config::Environment;
use crate::k8s::{K8sError, ReplicatorManager, ReplicatorSpec};

/// Replicators as StatefulSets.
pub struct KubernetesRuntime {
    manager: ReplicatorManager,
    environment: Environment,
    metrics_port: u16,
}

impl KubernetesRuntime {
    /// `metrics_port` is `kubernetes.metrics_port`, the port the pod template exposes.
    pub fn new(manager: ReplicatorManager, environment: Environment, metrics_port: u16) -> Self {
        Self {
            manager,
            environment,
            metrics_port,
        }
    }
}

fn runtime_error(error: K8sError) -> RuntimeError {
    match error {
        K8sError::InvalidName { .. } | K8sError::InvalidSpec { .. } => {
            RuntimeError::Invalid(error.to_string())
        }
        other => RuntimeError::Failed(other.to_string()),
    }
}

impl PipelineRuntime for KubernetesRuntime {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    /// The container port the StatefulSet exposes as `metrics`.
    fn metrics_address(&self) -> Option<String> {
        Some(format!("0.0.0.0:{}", self.metrics_port))
    }

    fn start<'a>(&'a self, spec: &'a LaunchSpec) -> BoxFuture<'a, Result<(), RuntimeError>> {
        async move {
            let replicator = ReplicatorSpec {
                tenant_id: spec.target.tenant_id.clone(),
                replicator_id: spec.target.replicator_id,
                pipeline_id: spec.target.pipeline_id,
                image: spec.image.clone(),
                environment: self.environment,
                config_yaml: spec.config_yaml.clone(),
                secrets: spec.secrets.clone(),
                resources: spec.resources.clone(),
            };
            self.manager.start(&replicator).await.map_err(runtime_error)
        }
        .boxed()
    }

    fn stop<'a>(&'a self, target: &'a ReplicatorTarget) -> BoxFuture<'a, Result<(), RuntimeError>> {
        async move {
            self.manager
                .stop(&target.tenant_id, target.replicator_id)
                .await
                .map_err(runtime_error)
        }
        .boxed()
    }

    fn status<'a>(
        &'a self,
        target: &'a ReplicatorTarget,
    ) -> BoxFuture<'a, Result<RuntimeStatus, RuntimeError>> {
        async move {
            self.manager
                .status(&target.tenant_id, target.replicator_id)
                .await
                .map_err(runtime_error)
        }
        .boxed()
    }

    fn forget<'a>(
        &'a self,
        _target: &'a ReplicatorTarget,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        // `stop` already deleted every object of the replicator.
        async { Ok(()) }.boxed()
    }
}
