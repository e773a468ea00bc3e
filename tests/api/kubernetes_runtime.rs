//! The `kubernetes` runtime through the API, against the in-process fake Kubernetes API server
//! of `tests/k8s/fake_api.rs` (a real `kube::Client`): start applies the Secret (holding the
//! secrets), the ConfigMap (the replicator config without them) and the StatefulSet; status
//! follows the pod; stop deletes them.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use etl::api::runtime::kubernetes::KubernetesRuntime;
use etl::config::{Environment, KubernetesConfig};
use etl::k8s::ReplicatorManager;
use etl::k8s::bootstrap::{self, BootstrapPlan};
use serde_json::{Value, json};

use crate::common::TestDatabase;
use crate::fake_api::FakeApi;
use crate::helpers::{TestApp, TestSource, api_config, start_with_runtime};

const NAMESPACE: &str = "etl-data-plane";

async fn app_on(fake: &FakeApi) -> TestApp {
    let plan = BootstrapPlan {
        namespace: NAMESPACE.into(),
        ca_bundle: std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/k8s/data/test-ca.pem"
        ))
        .unwrap(),
    };
    bootstrap::apply(&fake.client(), &plan).await.unwrap();
    let settings = KubernetesConfig::default();
    let metrics_port = settings.metrics_port;
    let runtime = KubernetesRuntime::new(
        ReplicatorManager::new(fake.client(), settings),
        Environment::Prod,
        metrics_port,
    );
    let db = TestDatabase::create("api").await;
    etl::migrate::run(
        etl::migrate::MigrationSet::Api,
        &db.options(),
        false,
        |_| {},
    )
    .await
    .unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let config = api_config(state_dir.path().to_owned(), None);
    start_with_runtime(db, config, state_dir, Arc::new(runtime)).await
}

fn decoded(secret: &Value) -> BTreeMap<String, String> {
    secret["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap();
            (k.clone(), String::from_utf8(bytes).unwrap())
        })
        .collect()
}

/// Pod `…-0` as the StatefulSet controller and kubelet would report it.
fn put_pod(fake: &FakeApi, set_name: &str, status: Value) {
    let set = fake.get("statefulsets", Some(NAMESPACE), set_name).unwrap();
    fake.put(
        "pods",
        json!({
            "metadata": {
                "name": format!("{set_name}-0"), "namespace": NAMESPACE,
                "labels": set["spec"]["template"]["metadata"]["labels"],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "name": set_name, "uid": set["metadata"]["uid"], "controller": true}]
            },
            "spec": set["spec"]["template"]["spec"],
            "status": status,
        }),
    );
}

#[tokio::test]
async fn pipelines_run_as_stateful_sets_with_secrets_only_in_the_secret() {
    let fake = FakeApi::new();
    let app = app_on(&fake).await;
    let source = TestSource::create().await;
    app.create_tenant("acme").await;
    app.create_image().await;
    let source_id = app.create_source("acme", "shop", &source).await;
    let destination_id = app
        .create_destination("acme", "mem", json!({"memory": {}}))
        .await;
    let pipeline = app
        .create_pipeline("acme", source_id, destination_id, "orders_pub")
        .await;
    let (id, replicator) = (
        pipeline["id"].as_i64().unwrap(),
        pipeline["replicator_id"].as_i64().unwrap(),
    );
    let set = format!("replicator-acme-{replicator}");
    let status = |app: &TestApp| {
        let path = format!("/v1/pipelines/{id}/status");
        let app_url = app.url(&path);
        let key = app.api_key.clone();
        async move {
            let reply = reqwest::Client::new()
                .get(app_url)
                .bearer_auth(key)
                .header("tenant_id", "acme")
                .send()
                .await
                .unwrap();
            reply.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(status(&app).await["status"], json!("stopped"));

    let started = app
        .post(
            &format!("/v1/pipelines/{id}/start"),
            Some("acme"),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(started["status"], json!("starting"), "no pod yet");
    let secret = fake
        .get("secrets", Some(NAMESPACE), &format!("{set}-secrets"))
        .unwrap();
    assert_eq!(
        decoded(&secret),
        BTreeMap::from([(
            "APP_PIPELINE__PG_CONNECTION__PASSWORD".to_owned(),
            source.password.clone()
        )])
    );
    let config_map = fake
        .get("configmaps", Some(NAMESPACE), &format!("{set}-config"))
        .unwrap();
    let yaml = config_map["data"]["prod.yaml"].as_str().unwrap();
    assert!(!yaml.contains(&source.password), "{yaml}");
    assert!(yaml.contains("publication_name: orders_pub"), "{yaml}");
    assert!(yaml.contains("metrics_address: 0.0.0.0:9000"), "{yaml}");
    let stateful_set = fake.get("statefulsets", Some(NAMESPACE), &set).unwrap();
    assert_eq!(
        stateful_set["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("ramsup/etl-replicator:test")
    );
    assert_eq!(
        stateful_set["metadata"]["labels"]["etl/pipeline-id"],
        json!(id.to_string())
    );

    put_pod(
        &fake,
        &set,
        json!({"phase": "Running", "containerStatuses": [{"name": "replicator", "ready": true,
            "restartCount": 0, "image": "", "imageID": "",
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}),
    );
    assert_eq!(status(&app).await["status"], json!("started"));
    put_pod(
        &fake,
        &set,
        json!({"phase": "Running", "containerStatuses": [{"name": "replicator", "ready": false,
            "restartCount": 4, "image": "", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                "message": "cannot connect to the source"}}}]}),
    );
    let failed = status(&app).await;
    assert_eq!(failed["status"], json!("failed"));
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("cannot connect to the source"),
        "{failed}"
    );

    let stopped = app
        .post(&format!("/v1/pipelines/{id}/stop"), Some("acme"), json!({}))
        .await
        .expect(200);
    // The pod is being deleted gracefully (it flushes), everything else is gone.
    assert_eq!(stopped["status"], json!("stopping"), "{stopped}");
    assert!(fake.get("statefulsets", Some(NAMESPACE), &set).is_none());
    assert!(
        fake.get("secrets", Some(NAMESPACE), &format!("{set}-secrets"))
            .is_none()
    );
    app.shutdown().await;
    source.drop().await;
}
