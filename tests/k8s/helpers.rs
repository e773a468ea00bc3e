//! Shared fixtures: a replicator spec, settings, golden-file comparison, pods in given states.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use etl::config::{Environment, KubernetesConfig, Secret};
use etl::k8s::bootstrap::{self, BootstrapPlan};
use etl::k8s::{ReplicatorManager, ReplicatorSpec};
use serde_json::{Value, json};

use crate::fake_api::FakeApi;

pub const NAMESPACE: &str = "etl-data-plane";

/// The repository root (where `scripts/` and `tests/` are).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A replicator of tenant `acme` with two secrets.
pub fn spec() -> ReplicatorSpec {
    ReplicatorSpec {
        tenant_id: "acme".into(),
        replicator_id: 17,
        pipeline_id: 42,
        image: "ghcr.io/example/etl:1.2.3".into(),
        environment: Environment::Prod,
        config_yaml: "pipeline:\n  id: 42\n  publication_name: orders_pub\n  pg_connection:\n    host: db.example.internal\n    port: 5432\n    name: shop\n    username: replicator\n".into(),
        secrets: BTreeMap::from([
            (
                "APP_PIPELINE__PG_CONNECTION__PASSWORD".to_owned(),
                Secret::new("s3cret-pg"),
            ),
            (
                "APP_DESTINATION__BIGQUERY__SERVICE_ACCOUNT_KEY".to_owned(),
                Secret::new("{\"type\":\"service_account\"}"),
            ),
        ]),
        resources: None,
    }
}

pub fn settings() -> KubernetesConfig {
    KubernetesConfig::default()
}

/// Compares `actual` with the golden file `tests/k8s/golden/{name}` exactly, or rewrites it when
/// `ETL_UPDATE_GOLDEN` is set.
pub fn assert_golden(name: &str, actual: &str) {
    assert_file(&repo().join("tests/k8s/golden").join(name), actual);
}

/// Compares `actual` with the file at `path` exactly (or rewrites it, see [`assert_golden`]).
pub fn assert_file(path: &Path, actual: &str) {
    if std::env::var_os("ETL_UPDATE_GOLDEN").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (ETL_UPDATE_GOLDEN=1 creates it)", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map(|i| i + 1)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()) + 1);
        panic!(
            "{} differs from the generated manifest (first difference at line {line}); \
             ETL_UPDATE_GOLDEN=1 rewrites it\n--- generated ---\n{actual}",
            path.display()
        );
    }
}

/// A fake API server with the data plane bootstrapped (namespace, service account, certs).
pub async fn bootstrapped() -> FakeApi {
    let fake = FakeApi::new();
    let plan = BootstrapPlan {
        namespace: NAMESPACE.into(),
        ca_bundle: test_ca(),
    };
    bootstrap::apply(&fake.client(), &plan).await.unwrap();
    fake
}

pub fn manager(fake: &FakeApi) -> ReplicatorManager {
    ReplicatorManager::new(fake.client(), settings())
}

pub fn test_ca() -> String {
    std::fs::read_to_string(repo().join("tests/k8s/data/test-ca.pem")).unwrap()
}

/// Stores pod `…-0` the way the StatefulSet controller and the kubelet would, owned by the
/// StatefulSet, with `status` as the kubelet reports it.
pub fn put_pod(fake: &FakeApi, stateful_set: &str, status: Value) -> Value {
    let set = fake
        .get("statefulsets", Some(NAMESPACE), stateful_set)
        .expect("the StatefulSet exists");
    fake.put(
        "pods",
        json!({
            "metadata": {
                "name": format!("{stateful_set}-0"),
                "namespace": NAMESPACE,
                "labels": set["spec"]["template"]["metadata"]["labels"],
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "StatefulSet", "name": stateful_set,
                    "uid": set["metadata"]["uid"], "controller": true
                }]
            },
            "spec": set["spec"]["template"]["spec"],
            "status": status,
        }),
    )
}
