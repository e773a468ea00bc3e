//! Manifest builders: pure functions from settings and a [`ReplicatorSpec`] to the Kubernetes
//! objects `etl` applies. Nothing here talks to a cluster; [`super::bootstrap`] and
//! [`super::replicator`] apply what these return, and the golden tests pin their exact shape.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    Namespace, PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile,
    Secret, SecretKeySelector, SecurityContext, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::K8sError;
use super::names::ReplicatorNames;
use super::replicator::ReplicatorSpec;
pub use super::yaml::to_yaml;
use crate::config::{KubernetesConfig, ResourceSettings};

/// The service account replicator pods run as (created by `etl k8s bootstrap`).
pub const SERVICE_ACCOUNT: &str = "etl-replicator";
/// The ConfigMap holding the PEM bundle of trusted root certificates.
pub const TRUSTED_ROOT_CERTS_CONFIG_MAP: &str = "trusted-root-certs-config";
/// The key of the PEM bundle inside [`TRUSTED_ROOT_CERTS_CONFIG_MAP`].
pub const TRUSTED_ROOT_CERTS_KEY: &str = "ca-certificates.crt";
/// Where a replicator container sees its `{env}.yaml` (`APP_CONFIG_DIR`).
pub const CONFIG_DIR: &str = "/etc/etl/config";
/// Where a replicator container sees the trusted root certificates directory.
pub const TRUSTED_ROOT_CERTS_DIR: &str = "/etc/etl/trusted-root-certs";
/// The full path of the PEM bundle in a replicator container; the control plane can put it into
/// the replicator's `pipeline.pg_connection.tls.ca_file`.
pub const TRUSTED_ROOT_CERTS_PATH: &str = "/etc/etl/trusted-root-certs/ca-certificates.crt";
/// Pod-template annotation that changes on every start, so a restart rolls the pod.
pub const RESTART_ANNOTATION: &str = "etl/restarted-at";
/// The replicator container's name.
pub const CONTAINER_NAME: &str = "replicator";
/// The non-root user (and group) of the image built by the `Dockerfile`.
pub const RUN_AS_USER: i64 = 10001;

/// Variables the StatefulSet sets itself; a secret must not shadow them.
const RESERVED_VARIABLES: &[&str] = &["APP_ENVIRONMENT", "APP_CONFIG_DIR"];

/// Labels of the objects `etl k8s bootstrap` creates.
fn bootstrap_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/managed-by".to_owned(), "etl".to_owned())])
}

/// The data-plane namespace; it enforces the `restricted` Pod Security Standard, which every
/// replicator pod meets.
pub fn namespace(name: &str) -> Namespace {
    let mut labels = bootstrap_labels();
    labels.insert(
        "pod-security.kubernetes.io/enforce".to_owned(),
        "restricted".to_owned(),
    );
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// The service account of replicator pods; they never call the Kubernetes API, so no token is
/// mounted.
pub fn service_account(namespace: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(SERVICE_ACCOUNT.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(bootstrap_labels()),
            ..ObjectMeta::default()
        },
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The ConfigMap of trusted root certificates mounted into every replicator pod.
pub fn trusted_root_certs_config_map(namespace: &str, pem_bundle: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(TRUSTED_ROOT_CERTS_CONFIG_MAP.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(bootstrap_labels()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            TRUSTED_ROOT_CERTS_KEY.to_owned(),
            pem_bundle.to_owned(),
        )])),
        ..ConfigMap::default()
    }
}

/// The three objects of one replicator, in the order they are applied.
#[derive(Debug, Clone)]
pub struct ReplicatorManifests {
    pub names: ReplicatorNames,
    pub secret: Secret,
    pub config_map: ConfigMap,
    pub stateful_set: StatefulSet,
}

/// Builds a replicator's Secret, ConfigMap and StatefulSet. `restart_token` becomes the
/// [`RESTART_ANNOTATION`] of the pod template: a new value rolls the pod.
pub fn replicator_manifests(
    spec: &ReplicatorSpec,
    settings: &KubernetesConfig,
    restart_token: &str,
) -> Result<ReplicatorManifests, K8sError> {
    let names = ReplicatorNames::new(&spec.tenant_id, spec.replicator_id)?;
    validate_spec(spec, settings)?;
    let labels = names.labels(spec.pipeline_id)?;
    let namespace = settings.namespace.as_str();
    let meta = |name: String| ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels.clone()),
        ..ObjectMeta::default()
    };

    let secret = Secret {
        metadata: meta(names.secret()),
        type_: Some("Opaque".to_owned()),
        data: Some(
            spec.secrets
                .iter()
                .map(|(key, value)| (key.clone(), ByteString(value.expose().as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };

    let config_map = ConfigMap {
        metadata: meta(names.config_map()),
        data: Some(BTreeMap::from([(
            format!("{}.yaml", spec.environment),
            spec.config_yaml.clone(),
        )])),
        ..ConfigMap::default()
    };

    let resources = spec.resources.as_ref().unwrap_or(&settings.resources);
    let mut env = vec![
        EnvVar {
            name: "APP_ENVIRONMENT".to_owned(),
            value: Some(spec.environment.to_string()),
            ..EnvVar::default()
        },
        EnvVar {
            name: "APP_CONFIG_DIR".to_owned(),
            value: Some(CONFIG_DIR.to_owned()),
            ..EnvVar::default()
        },
    ];
    env.extend(spec.secrets.keys().map(|key| EnvVar {
        name: key.clone(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: names.secret(),
                key: key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }));

    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(spec.image.clone()),
        args: Some(vec!["replicate".to_owned()]),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".to_owned()),
            container_port: i32::from(settings.metrics_port),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        resources: Some(resource_requirements(resources)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            run_as_non_root: Some(true),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "config".to_owned(),
                mount_path: CONFIG_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "trusted-root-certs".to_owned(),
                mount_path: TRUSTED_ROOT_CERTS_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    };

    let pod_spec = PodSpec {
        service_account_name: Some(SERVICE_ACCOUNT.to_owned()),
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(settings.termination_grace_period_seconds),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_USER),
            run_as_group: Some(RUN_AS_USER),
            fs_group: Some(RUN_AS_USER),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..PodSecurityContext::default()
        }),
        containers: vec![container],
        volumes: Some(vec![
            Volume {
                name: "config".to_owned(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names.config_map(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "trusted-root-certs".to_owned(),
                config_map: Some(ConfigMapVolumeSource {
                    name: TRUSTED_ROOT_CERTS_CONFIG_MAP.to_owned(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    };

    let stateful_set = StatefulSet {
        metadata: meta(names.stateful_set().to_owned()),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            // With the default `OrderedReady`, a rolling update waits for every pod to be ready
            // first, so a crash-looping pod would never be replaced by a fixed template (the
            // documented "broken state"). With `Parallel` the controller replaces an outdated pod
            // whatever its health; with one replica there is no ordering to lose.
            pod_management_policy: Some("Parallel".to_owned()),
            selector: LabelSelector {
                match_labels: Some(names.selector_labels()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: Some(BTreeMap::from([(
                        RESTART_ANNOTATION.to_owned(),
                        restart_token.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    };

    Ok(ReplicatorManifests {
        names,
        secret,
        config_map,
        stateful_set,
    })
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        ..SeccompProfile::default()
    }
}

fn resource_requirements(resources: &ResourceSettings) -> ResourceRequirements {
    let pair = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])
    };
    ResourceRequirements {
        requests: Some(pair(&resources.cpu_request, &resources.memory_request)),
        limits: Some(pair(&resources.cpu_limit, &resources.memory_limit)),
        ..ResourceRequirements::default()
    }
}

/// Rejects what Kubernetes would reject (or silently misread) before anything is applied.
fn validate_spec(spec: &ReplicatorSpec, settings: &KubernetesConfig) -> Result<(), K8sError> {
    settings.validate().map_err(|error| K8sError::InvalidSpec {
        field: format!("kubernetes.{}", error.key()),
        message: error.problem().to_string(),
    })?;
    if let Some(resources) = &spec.resources {
        resources
            .validate()
            .map_err(|error| K8sError::InvalidSpec {
                field: format!("pipeline resources `{}`", error.key()),
                message: error.problem().to_string(),
            })?;
    }
    match serde_yaml::from_str::<serde_yaml::Value>(&spec.config_yaml) {
        Ok(serde_yaml::Value::Mapping(_)) => {}
        Ok(_) => {
            return Err(K8sError::InvalidSpec {
                field: "config_yaml".into(),
                message: "must be a YAML mapping of configuration sections".into(),
            });
        }
        Err(e) => {
            return Err(K8sError::InvalidSpec {
                field: "config_yaml".into(),
                message: format!("is not valid YAML: {e}"),
            });
        }
    }
    if spec.image.trim().is_empty() || spec.image.chars().any(char::is_whitespace) {
        return Err(K8sError::InvalidSpec {
            field: "image".into(),
            message: format!("`{}` is not a container image reference", spec.image),
        });
    }
    for key in spec.secrets.keys() {
        let mut chars = key.chars();
        let identifier = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier {
            return Err(K8sError::InvalidSpec {
                field: format!("secret variable `{key}`"),
                message: "must be letters, digits and `_`, not starting with a digit".into(),
            });
        }
        if RESERVED_VARIABLES.contains(&key.as_str()) {
            return Err(K8sError::InvalidSpec {
                field: format!("secret variable `{key}`"),
                message: "is set by the StatefulSet itself".into(),
            });
        }
    }
    Ok(())
}
