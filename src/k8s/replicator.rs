//! [`ReplicatorManager`]: runs one replicator per pipeline as a StatefulSet in the data-plane
//! namespace. `start` applies its Secret, ConfigMap and StatefulSet with server-side apply
//! (field manager `etl`, forced), `stop` deletes them, `status` reads pod `…-0`.
//!
//! The manifests come from [`super::resources`]; this module only talks to the API server.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret as K8sSecret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::Operation;
use super::names::ReplicatorNames;
use super::resources::{self, ReplicatorManifests};
use super::status::{self, ReplicatorStatus};
use super::{FIELD_MANAGER, K8sError};
use crate::config::{Environment, KubernetesConfig, ResourceSettings, Secret};

/// Everything needed to run one pipeline's replicator.
#[derive(Debug, Clone)]
pub struct ReplicatorSpec {
    pub tenant_id: String,
    pub replicator_id: i64,
    pub pipeline_id: i64,
    pub image: String,
    pub environment: Environment,
    /// The replicator's `{env}.yaml` (no secrets), mounted as the config dir.
    pub config_yaml: String,
    /// Secret environment variables, e.g. "APP_PIPELINE__PG_CONNECTION__PASSWORD" → value.
    pub secrets: BTreeMap<String, Secret>,
    /// Per-pipeline override of the configured default resources (None = defaults).
    pub resources: Option<ResourceSettings>,
}

/// Starts, stops and reports replicators in the configured namespace.
#[derive(Clone)]
pub struct ReplicatorManager {
    client: kube::Client,
    settings: KubernetesConfig,
}

impl std::fmt::Debug for ReplicatorManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatorManager")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ReplicatorManager {
    pub fn new(client: kube::Client, settings: KubernetesConfig) -> Self {
        Self { client, settings }
    }

    /// The namespace replicators run in.
    pub fn namespace(&self) -> &str {
        &self.settings.namespace
    }

    /// Applies the replicator's Secret, ConfigMap and StatefulSet. Applying again converges to
    /// the new spec (a secret dropped from the spec disappears from the Secret) and rolls the pod,
    /// because the pod template carries a new restart annotation every time.
    pub async fn start(&self, spec: &ReplicatorSpec) -> Result<(), K8sError> {
        self.start_with_restart_token(spec, &restart_token()).await
    }

    /// [`ReplicatorManager::start`] with a given restart annotation value (tests use fixed ones).
    #[tracing::instrument(
        name = "replicator_start",
        skip_all,
        fields(tenant_id = %spec.tenant_id, replicator_id = spec.replicator_id, pipeline_id = spec.pipeline_id)
    )]
    pub async fn start_with_restart_token(
        &self,
        spec: &ReplicatorSpec,
        restart_token: &str,
    ) -> Result<(), K8sError> {
        let ReplicatorManifests {
            names,
            secret,
            config_map,
            stateful_set,
        } = resources::replicator_manifests(spec, &self.settings, restart_token)?;
        self.apply::<K8sSecret>("secrets", &names.secret(), &secret)
            .await?;
        self.apply::<ConfigMap>("configmaps", &names.config_map(), &config_map)
            .await?;
        self.apply::<StatefulSet>("statefulsets.apps", names.stateful_set(), &stateful_set)
            .await?;
        tracing::info!(stateful_set = names.stateful_set(), "replicator applied");
        Ok(())
    }

    /// Deletes the StatefulSet (its pod gets the termination grace period to flush), then the
    /// ConfigMap and the Secret. Objects that do not exist are skipped.
    #[tracing::instrument(name = "replicator_stop", skip(self))]
    pub async fn stop(&self, tenant_id: &str, replicator_id: i64) -> Result<(), K8sError> {
        let names = ReplicatorNames::new(tenant_id, replicator_id)?;
        self.delete::<StatefulSet>("statefulsets.apps", names.stateful_set())
            .await?;
        self.delete::<ConfigMap>("configmaps", &names.config_map())
            .await?;
        self.delete::<K8sSecret>("secrets", &names.secret()).await?;
        Ok(())
    }

    /// The replicator's status, from its StatefulSet and pod `…-0`.
    pub async fn status(
        &self,
        tenant_id: &str,
        replicator_id: i64,
    ) -> Result<ReplicatorStatus, K8sError> {
        let names = ReplicatorNames::new(tenant_id, replicator_id)?;
        let stateful_set = self
            .get::<StatefulSet>("statefulsets.apps", names.stateful_set())
            .await?;
        let pod = self.get::<Pod>("pods", &names.pod()).await?;
        Ok(status::replicator_status(
            stateful_set.as_ref(),
            pod.as_ref(),
        ))
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    fn operation(&self, verb: &'static str, resource: &'static str, name: &str) -> Operation {
        Operation::new(verb, resource, name, Some(&self.settings.namespace))
    }

    async fn apply<K>(&self, resource: &'static str, name: &str, object: &K) -> Result<(), K8sError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api::<K>()
            .patch(name, &params, &Patch::Apply(object))
            .await
            .map(drop)
            .map_err(|e| self.operation("patch", resource, name).error(e))
    }

    async fn delete<K>(&self, resource: &'static str, name: &str) -> Result<(), K8sError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        match self
            .api::<K>()
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(self.operation("delete", resource, name).error(e)),
        }
    }

    async fn get<K>(&self, resource: &'static str, name: &str) -> Result<Option<K>, K8sError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        self.api::<K>()
            .get_opt(name)
            .await
            .map_err(|e| self.operation("get", resource, name).error(e))
    }
}

/// A value that differs on every start: the current time with nanoseconds.
fn restart_token() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}
