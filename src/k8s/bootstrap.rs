//! `etl k8s bootstrap`: the cluster objects the control plane expects before it starts any
//! replicator: the data-plane Namespace, the `etl-replicator` ServiceAccount and the
//! `trusted-root-certs-config` ConfigMap. Each is applied with server-side apply, so running it
//! again changes nothing. `--dry-run` prints the same manifests instead;
//! `deploy/base/etl-data-plane.yaml` and `deploy/base/trusted-root-certs-config.yaml` are that
//! output for the repository's defaults, part of the kustomize base (tests keep them equal).

use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::{PemObject, SectionKind};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::Operation;
use super::resources::{self, SERVICE_ACCOUNT, TRUSTED_ROOT_CERTS_CONFIG_MAP};
use super::{FIELD_MANAGER, K8sError};
use crate::cli::BootstrapArgs;
use crate::config::KubernetesConfig;
use crate::exit::UsageError;

/// What bootstrap creates: the namespace and the trusted root certificates (a PEM bundle that
/// [`load_ca_bundle`] validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapPlan {
    pub namespace: String,
    pub ca_bundle: String,
}

/// The manifests as YAML, one string per bootstrap file under `deploy/base/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapYaml {
    /// `deploy/base/etl-data-plane.yaml`: the Namespace and the ServiceAccount.
    pub data_plane: String,
    /// `deploy/base/trusted-root-certs-config.yaml`: the trusted root certificates ConfigMap.
    pub trusted_root_certs: String,
}

impl BootstrapYaml {
    /// Everything as one multi-document YAML stream (what `--dry-run` prints).
    pub fn combined(&self) -> String {
        format!("{}---\n{}", self.data_plane, self.trusted_root_certs)
    }
}

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        })
    }
}

/// One applied object, printed as `namespace/etl-data-plane created`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub kind: &'static str,
    pub name: String,
    pub outcome: Outcome,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} {}", self.kind, self.name, self.outcome)
    }
}

/// Reads a PEM bundle and checks it holds at least one certificate, every certificate parses,
/// and nothing else (a private key must never end up in a ConfigMap).
pub fn load_ca_bundle(path: &Path) -> Result<String, K8sError> {
    let invalid = |reason: String| K8sError::InvalidCaBundle {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read: {e}")))?;
    validate_pem_bundle(&text).map_err(invalid)?;
    Ok(text)
}

/// The number of certificates in `text`, or why it is not a bundle of PEM certificates.
pub fn validate_pem_bundle(text: &str) -> Result<usize, String> {
    let mut count = 0;
    for (index, section) in <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes()).enumerate() {
        let (kind, der) =
            section.map_err(|e| format!("PEM block {} is malformed: {e:?}", index + 1))?;
        if kind != SectionKind::Certificate {
            return Err(format!(
                "PEM block {} is a {kind:?}, not a CERTIFICATE",
                index + 1
            ));
        }
        let mut store = rustls::RootCertStore::empty();
        store.add(CertificateDer::from(der)).map_err(|e| {
            format!(
                "certificate {} is not a valid X.509 certificate: {e}",
                index + 1
            )
        })?;
        count += 1;
    }
    if count == 0 {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) found".into());
    }
    Ok(count)
}

/// The three manifests of `plan`.
pub fn manifests(plan: &BootstrapPlan) -> (Namespace, ServiceAccount, ConfigMap) {
    (
        resources::namespace(&plan.namespace),
        resources::service_account(&plan.namespace),
        resources::trusted_root_certs_config_map(&plan.namespace, &plan.ca_bundle),
    )
}

/// The manifests of `plan` as the YAML files `deploy/base/` holds.
pub fn render(plan: &BootstrapPlan) -> Result<BootstrapYaml, K8sError> {
    let (namespace, service_account, config_map) = manifests(plan);
    Ok(BootstrapYaml {
        data_plane: format!(
            "{}---\n{}",
            resources::to_yaml(&namespace)?,
            resources::to_yaml(&service_account)?
        ),
        trusted_root_certs: resources::to_yaml(&config_map)?,
    })
}

/// Applies the manifests of `plan` in order (namespace first) and says what each apply did.
#[tracing::instrument(name = "k8s_bootstrap", skip_all, fields(namespace = %plan.namespace))]
pub async fn apply(client: &kube::Client, plan: &BootstrapPlan) -> Result<Vec<Applied>, K8sError> {
    let (namespace, service_account, config_map) = manifests(plan);
    let ns = plan.namespace.as_str();
    Ok(vec![
        apply_one(
            Api::<Namespace>::all(client.clone()),
            "namespace",
            "namespaces",
            ns,
            None,
            &namespace,
        )
        .await?,
        apply_one(
            Api::<ServiceAccount>::namespaced(client.clone(), ns),
            "serviceaccount",
            "serviceaccounts",
            SERVICE_ACCOUNT,
            Some(ns),
            &service_account,
        )
        .await?,
        apply_one(
            Api::<ConfigMap>::namespaced(client.clone(), ns),
            "configmap",
            "configmaps",
            TRUSTED_ROOT_CERTS_CONFIG_MAP,
            Some(ns),
            &config_map,
        )
        .await?,
    ])
}

async fn apply_one<K>(
    api: Api<K>,
    kind: &'static str,
    resource: &'static str,
    name: &str,
    namespace: Option<&str>,
    object: &K,
) -> Result<Applied, K8sError>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let before = api
        .get_opt(name)
        .await
        .map_err(|e| Operation::new("get", resource, name, namespace).error(e))?;
    let after = api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .map_err(|e| Operation::new("patch", resource, name, namespace).error(e))?;
    let outcome = match before {
        None => Outcome::Created,
        Some(before) if before.meta().resource_version == after.meta().resource_version => {
            Outcome::Unchanged
        }
        Some(_) => Outcome::Configured,
    };
    Ok(Applied {
        kind,
        name: name.to_owned(),
        outcome,
    })
}

/// `etl k8s bootstrap`: validates the settings and the CA bundle, then prints the manifests
/// (`--dry-run`) or applies them and prints one line per object. Bad input (settings, CA bundle,
/// unknown context) is a [`UsageError`].
pub async fn run(args: BootstrapArgs, settings: KubernetesConfig) -> anyhow::Result<()> {
    settings.validate().map_err(|error| {
        let error = error.within("kubernetes");
        UsageError(anyhow::anyhow!(
            "config key `{}`: {}",
            error.key(),
            error.problem()
        ))
    })?;
    let ca_file = args.ca_file.or(settings.ca_file).ok_or_else(|| {
        UsageError(anyhow::anyhow!(
            "no trusted root certificates: pass --ca-file or set kubernetes.ca_file"
        ))
    })?;
    let plan = BootstrapPlan {
        namespace: settings.namespace,
        ca_bundle: load_ca_bundle(&ca_file).map_err(UsageError::from_std)?,
    };
    if args.dry_run {
        print!("{}", render(&plan)?.combined());
        return Ok(());
    }
    let connection = super::connect(args.context.as_deref())
        .await
        .map_err(|e| match e {
            K8sError::UnknownContext { .. } => UsageError::from_std(e).into(),
            e => anyhow::Error::from(e),
        })?;
    super::check_reachable(&connection).await?;
    for applied in apply(&connection.client, &plan).await? {
        println!("{applied}");
    }
    Ok(())
}
