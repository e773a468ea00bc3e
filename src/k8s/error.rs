//! [`K8sError`]: every way talking to Kubernetes can fail, told apart so callers (the CLI, the
//! control plane) can branch on it, each naming the object, verb or input at fault.

use std::path::PathBuf;

/// A failure of `etl k8s bootstrap` or of the replicator runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum K8sError {
    /// No kubeconfig and not inside a cluster: there is no cluster to talk to.
    #[error("no Kubernetes cluster configured: {reason}")]
    NoCluster { reason: String },

    /// The API server did not answer (connection refused, DNS, TLS, timeout).
    #[error("cannot reach the Kubernetes API server{}: {reason}", server_suffix(.server))]
    Unreachable {
        server: Option<String>,
        reason: String,
    },

    /// `--context` names a context the kubeconfig does not have.
    #[error("kubeconfig context `{context}` does not exist (available: {})", list_or_none(.available))]
    UnknownContext {
        context: String,
        available: Vec<String>,
    },

    /// The kubeconfig exists but cannot be used (bad YAML, missing cluster URL, bad certificate).
    #[error("invalid kubeconfig: {0}")]
    Kubeconfig(String),

    /// The API server answered 403: the user lacks the RBAC `verb` on `resource`.
    #[error(
        "permission denied: cannot {verb} {resource} `{name}`{}: {message}",
        namespace_suffix(.namespace)
    )]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        name: String,
        namespace: Option<String>,
        message: String,
    },

    /// A name derived from user input is not valid for Kubernetes.
    #[error("invalid {input} `{value}`: {reason}")]
    InvalidName {
        input: &'static str,
        value: String,
        reason: String,
    },

    /// A replicator spec or the `kubernetes` settings hold a value Kubernetes would reject.
    #[error("invalid {field}: {message}")]
    InvalidSpec { field: String, message: String },

    /// The trusted root certificates are missing or not PEM certificates.
    #[error("trusted root certificates {}: {reason}", .path.display())]
    InvalidCaBundle { path: PathBuf, reason: String },

    /// Any other answer of the API server (404 where it matters, 409, 422, 5xx, …).
    #[error(
        "cannot {verb} {resource} `{name}`{}: the API server answered {code}: {message}",
        namespace_suffix(.namespace)
    )]
    Api {
        verb: &'static str,
        resource: &'static str,
        name: String,
        namespace: Option<String>,
        code: u16,
        /// The answer's reason and message (`NotFound: namespaces "x" not found`).
        message: String,
    },

    /// A client-side failure that is none of the above (authentication plugin, bad response).
    #[error(
        "cannot {verb} {resource} `{name}`{}: {message}",
        namespace_suffix(.namespace)
    )]
    Client {
        verb: &'static str,
        resource: &'static str,
        name: String,
        namespace: Option<String>,
        message: String,
    },
}

fn server_suffix(server: &Option<String>) -> String {
    server
        .as_deref()
        .map(|s| format!(" at {s}"))
        .unwrap_or_default()
}

fn namespace_suffix(namespace: &Option<String>) -> String {
    namespace
        .as_deref()
        .map(|n| format!(" in namespace `{n}`"))
        .unwrap_or_default()
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// One API call, so an error can say what was being done to which object.
#[derive(Debug, Clone)]
pub(crate) struct Operation {
    pub verb: &'static str,
    pub resource: &'static str,
    pub name: String,
    pub namespace: Option<String>,
}

impl Operation {
    pub fn new(
        verb: &'static str,
        resource: &'static str,
        name: impl Into<String>,
        namespace: Option<&str>,
    ) -> Self {
        Self {
            verb,
            resource,
            name: name.into(),
            namespace: namespace.map(str::to_owned),
        }
    }

    /// Turns a `kube` error of this operation into a [`K8sError`].
    pub fn error(&self, error: kube::Error) -> K8sError {
        let Operation {
            verb,
            resource,
            name,
            namespace,
        } = self.clone();
        match error {
            kube::Error::Api(status) if status.code == 403 => K8sError::Forbidden {
                verb,
                resource,
                name,
                namespace,
                message: status.message.clone(),
            },
            kube::Error::Api(status) => K8sError::Api {
                verb,
                resource,
                name,
                namespace,
                code: status.code,
                message: if status.reason.is_empty() {
                    status.message.clone()
                } else {
                    format!("{}: {}", status.reason, status.message)
                },
            },
            error @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => {
                K8sError::Unreachable {
                    server: None,
                    reason: format!(
                        "while trying to {verb} {resource} `{name}`: {}",
                        chain(&error)
                    ),
                }
            }
            other => K8sError::Client {
                verb,
                resource,
                name,
                namespace,
                message: chain(&other),
            },
        }
    }
}

pub(crate) use crate::base::error_chain as chain;
