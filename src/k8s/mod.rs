//! Kubernetes: `etl k8s bootstrap` and the replicator runtime of the control plane.
//!
//! - [`connect`]: a `kube::Client` from the kubeconfig (a chosen context) or the in-cluster
//!   service account, with clear errors when there is no cluster or no such context.
//! - [`bootstrap`]: the Namespace, ServiceAccount and trusted-root-certs ConfigMap every
//!   replicator needs, applied idempotently (or printed with `--dry-run`).
//! - [`replicator`]: [`ReplicatorManager`] starts (Secret + ConfigMap + StatefulSet), stops and
//!   reports one replicator per pipeline.
//! - [`resources`]: the manifests, as pure functions; [`names`]: validated object names and
//!   labels; [`status`]: pod state → [`ReplicatorStatus`]; [`error`]: [`K8sError`];
//!   [`yaml`]: manifests as YAML that YAML 1.1 readers (kubectl) read the same way.
//!
//! Everything is applied with server-side apply under the field manager [`FIELD_MANAGER`],
//! forced, so `etl` owns the fields it sets and a re-apply removes fields it no longer sets.

pub mod bootstrap;
pub mod error;
pub mod names;
pub mod replicator;
pub mod resources;
pub mod status;
pub mod yaml;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

pub use error::K8sError;
pub use replicator::{ReplicatorManager, ReplicatorSpec};
pub use status::ReplicatorStatus;

/// The server-side apply field manager of every object `etl` writes.
pub const FIELD_MANAGER: &str = "etl";

/// A client and the API server URL it talks to.
#[derive(Clone)]
pub struct Connection {
    pub client: kube::Client,
    pub server: String,
}

/// Connects with the kubeconfig (`KUBECONFIG`, else `~/.kube/config`) and `context` (else the
/// current context); without a kubeconfig and without `context`, inside a pod, with the pod's
/// service account. Nothing is sent to the server yet: see [`check_reachable`].
pub async fn connect(context: Option<&str>) -> Result<Connection, K8sError> {
    // kube builds its TLS config from the process-wide rustls provider; two are compiled in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match Kubeconfig::read() {
        Ok(kubeconfig) => {
            if let Some(context) = context
                && !kubeconfig.contexts.iter().any(|c| c.name == context)
            {
                return Err(K8sError::UnknownContext {
                    context: context.to_owned(),
                    available: kubeconfig.contexts.iter().map(|c| c.name.clone()).collect(),
                });
            }
            let options = KubeConfigOptions {
                context: context.map(str::to_owned),
                ..KubeConfigOptions::default()
            };
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| K8sError::Kubeconfig(error::chain(&e)))?
        }
        Err(missing @ (KubeconfigError::ReadConfig(..) | KubeconfigError::FindPath))
            if context.is_none() && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() =>
        {
            kube::Config::incluster().map_err(|e| K8sError::NoCluster {
                reason: format!(
                    "{}; the in-cluster service account failed too: {}",
                    no_kubeconfig(&missing),
                    error::chain(&e)
                ),
            })?
        }
        Err(missing @ (KubeconfigError::ReadConfig(..) | KubeconfigError::FindPath)) => {
            return Err(K8sError::NoCluster {
                reason: no_kubeconfig(&missing),
            });
        }
        Err(other) => return Err(K8sError::Kubeconfig(error::chain(&other))),
    };
    let server = config.cluster_url.to_string();
    let client =
        kube::Client::try_from(config).map_err(|e| K8sError::Kubeconfig(error::chain(&e)))?;
    Ok(Connection { client, server })
}

fn no_kubeconfig(error: &KubeconfigError) -> String {
    let path = match error {
        KubeconfigError::ReadConfig(_, path) => format!("{}", path.display()),
        _ => "~/.kube/config".to_owned(),
    };
    let cause = match error {
        KubeconfigError::ReadConfig(io, _) => io.to_string(),
        _ => "no home directory".to_owned(),
    };
    format!(
        "cannot read kubeconfig {path} ({cause}); set KUBECONFIG to a kubeconfig file or \
         select a context with `kubectl config use-context`"
    )
}

/// Asks the API server for its version, so an unreachable cluster is reported before anything
/// else is attempted.
pub async fn check_reachable(connection: &Connection) -> Result<(), K8sError> {
    match connection.client.apiserver_version().await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 401 => Err(K8sError::Kubeconfig(format!(
            "the API server at {} rejected the credentials: {}",
            connection.server, status.message
        ))),
        // Anything answered means the server is there; permissions are checked per object.
        Err(kube::Error::Api(_)) => Ok(()),
        Err(e) => Err(K8sError::Unreachable {
            server: Some(connection.server.clone()),
            reason: error::chain(&e),
        }),
    }
}
