//! `ReplicatorManager::start` / `stop` against the fake API server: what ends up stored, how
//! re-applies converge, and how failures are reported.

use std::collections::BTreeMap;

use base64::Engine as _;
use etl::config::Secret;
use etl::k8s::{K8sError, ReplicatorStatus};
use http::Method;
use serde_json::{Value, json};

use crate::fake_api::FakeApi;
use crate::helpers::{NAMESPACE, bootstrapped, manager, put_pod, spec};

const SET: &str = "replicator-acme-17";
const SECRET: &str = "replicator-acme-17-secrets";
const CONFIG: &str = "replicator-acme-17-config";

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

fn version(fake: &FakeApi, resource: &str, name: &str) -> String {
    fake.get(resource, Some(NAMESPACE), name).unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn start_applies_secret_config_map_and_stateful_set_with_server_side_apply() {
    let fake = bootstrapped().await;
    let before = fake.requests().len();
    manager(&fake).start(&spec()).await.unwrap();

    let secret = fake.get("secrets", Some(NAMESPACE), SECRET).unwrap();
    assert_eq!(
        decoded(&secret),
        BTreeMap::from([
            (
                "APP_DESTINATION__BIGQUERY__SERVICE_ACCOUNT_KEY".to_owned(),
                "{\"type\":\"service_account\"}".to_owned()
            ),
            (
                "APP_PIPELINE__PG_CONNECTION__PASSWORD".to_owned(),
                "s3cret-pg".to_owned()
            ),
        ])
    );
    let config = fake.get("configmaps", Some(NAMESPACE), CONFIG).unwrap();
    assert_eq!(config["data"]["prod.yaml"], json!(spec().config_yaml));
    let set = fake.get("statefulsets", Some(NAMESPACE), SET).unwrap();
    assert_eq!(set["spec"]["replicas"], json!(1));
    assert_eq!(
        set["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("ghcr.io/example/etl:1.2.3")
    );
    assert_eq!(set["metadata"]["labels"]["etl/pipeline-id"], json!("42"));

    // Exactly three server-side applies, in order, by field manager `etl`, forced.
    let applies: Vec<_> = fake.requests()[before..]
        .iter()
        .filter(|r| r.method == Method::PATCH)
        .cloned()
        .collect();
    let paths: Vec<&str> = applies.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/api/v1/namespaces/etl-data-plane/secrets/replicator-acme-17-secrets",
            "/api/v1/namespaces/etl-data-plane/configmaps/replicator-acme-17-config",
            "/apis/apps/v1/namespaces/etl-data-plane/statefulsets/replicator-acme-17",
        ]
    );
    for request in &applies {
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        assert_eq!(
            request.query.get("fieldManager").map(String::as_str),
            Some("etl")
        );
        assert_eq!(request.query.get("force").map(String::as_str), Some("true"));
    }
    assert_eq!(
        fake.managers("statefulsets", Some(NAMESPACE), SET),
        vec!["etl"]
    );
}

#[tokio::test]
async fn starting_twice_is_idempotent_and_a_new_start_only_rolls_the_pod() {
    let fake = bootstrapped().await;
    let manager = manager(&fake);
    manager
        .start_with_restart_token(&spec(), "first")
        .await
        .unwrap();
    let versions = |fake: &FakeApi| {
        (
            version(fake, "secrets", SECRET),
            version(fake, "configmaps", CONFIG),
            version(fake, "statefulsets", SET),
        )
    };
    let first = versions(&fake);
    let first_set = fake.get("statefulsets", Some(NAMESPACE), SET).unwrap();

    manager
        .start_with_restart_token(&spec(), "first")
        .await
        .unwrap();
    assert_eq!(versions(&fake), first, "the same apply changes nothing");

    manager
        .start_with_restart_token(&spec(), "second")
        .await
        .unwrap();
    let third = versions(&fake);
    assert_eq!((&third.0, &third.1), (&first.0, &first.1));
    assert_ne!(third.2, first.2, "the StatefulSet changed");
    let set = fake.get("statefulsets", Some(NAMESPACE), SET).unwrap();
    assert_eq!(
        set["spec"]["template"]["metadata"]["annotations"]["etl/restarted-at"],
        json!("second")
    );
    assert_eq!(set["metadata"]["generation"], json!(2));
    let mut expected = first_set["spec"].clone();
    expected["template"]["metadata"]["annotations"]["etl/restarted-at"] = json!("second");
    assert_eq!(set["spec"], expected, "nothing else in the spec changed");

    // `start` itself picks a new token every time.
    manager.start(&spec()).await.unwrap();
    let set = fake.get("statefulsets", Some(NAMESPACE), SET).unwrap();
    let token = set["spec"]["template"]["metadata"]["annotations"]["etl/restarted-at"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(token, "second");
    manager.start(&spec()).await.unwrap();
    let set = fake.get("statefulsets", Some(NAMESPACE), SET).unwrap();
    assert_ne!(
        set["spec"]["template"]["metadata"]["annotations"]["etl/restarted-at"],
        json!(token)
    );
}

#[tokio::test]
async fn a_changed_secret_set_leaves_no_stale_keys() {
    let fake = bootstrapped().await;
    let manager = manager(&fake);
    manager.start(&spec()).await.unwrap();

    // The pipeline's destination changes from BigQuery to Postgres.
    let mut changed = spec();
    changed.secrets = BTreeMap::from([
        (
            "APP_PIPELINE__PG_CONNECTION__PASSWORD".to_owned(),
            Secret::new("rotated"),
        ),
        (
            "APP_DESTINATION__POSTGRES__PASSWORD".to_owned(),
            Secret::new("dest-pw"),
        ),
    ]);
    manager.start(&changed).await.unwrap();

    let secret = fake.get("secrets", Some(NAMESPACE), SECRET).unwrap();
    assert_eq!(
        decoded(&secret),
        BTreeMap::from([
            (
                "APP_DESTINATION__POSTGRES__PASSWORD".to_owned(),
                "dest-pw".to_owned()
            ),
            (
                "APP_PIPELINE__PG_CONNECTION__PASSWORD".to_owned(),
                "rotated".to_owned()
            ),
        ])
    );
    let set = fake.get("statefulsets", Some(NAMESPACE), SET).unwrap();
    let env: Vec<&str> = set["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        env,
        vec![
            "APP_ENVIRONMENT",
            "APP_CONFIG_DIR",
            "APP_DESTINATION__POSTGRES__PASSWORD",
            "APP_PIPELINE__PG_CONNECTION__PASSWORD",
        ]
    );
}

#[tokio::test]
async fn fields_set_by_someone_else_survive_a_restart() {
    let fake = bootstrapped().await;
    let manager = manager(&fake);
    manager.start(&spec()).await.unwrap();
    // An operator annotates the Secret with kubectl (another field manager).
    let client = fake.client();
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client, NAMESPACE);
    secrets
        .patch(
            SECRET,
            &kube::api::PatchParams::apply("kubectl"),
            &kube::api::Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": SECRET, "annotations": {"team": "data"}}
            })),
        )
        .await
        .unwrap();
    manager.start(&spec()).await.unwrap();
    let secret = fake.get("secrets", Some(NAMESPACE), SECRET).unwrap();
    assert_eq!(secret["metadata"]["annotations"]["team"], json!("data"));
    assert_eq!(
        fake.managers("secrets", Some(NAMESPACE), SECRET),
        vec!["etl", "kubectl"]
    );
}

#[tokio::test]
async fn stop_deletes_everything_and_reports_stopping_until_the_pod_is_gone() {
    let fake = bootstrapped().await;
    let manager = manager(&fake);
    manager.start(&spec()).await.unwrap();
    put_pod(
        &fake,
        SET,
        json!({"phase": "Running", "containerStatuses": [{
            "name": "replicator", "ready": true, "restartCount": 0, "image": "x", "imageID": "",
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
        }]}),
    );
    assert_eq!(
        manager.status("acme", 17).await.unwrap(),
        ReplicatorStatus::Started
    );

    manager.stop("acme", 17).await.unwrap();
    assert!(fake.get("statefulsets", Some(NAMESPACE), SET).is_none());
    assert!(fake.get("configmaps", Some(NAMESPACE), CONFIG).is_none());
    assert!(fake.get("secrets", Some(NAMESPACE), SECRET).is_none());
    // The garbage collector deleted the pod gracefully: it is flushing.
    let pod = fake
        .get("pods", Some(NAMESPACE), "replicator-acme-17-0")
        .unwrap();
    assert!(!pod["metadata"]["deletionTimestamp"].is_null());
    assert_eq!(
        manager.status("acme", 17).await.unwrap(),
        ReplicatorStatus::Stopping
    );
    // The kubelet finishes the pod.
    assert!(fake.remove("pods", Some(NAMESPACE), "replicator-acme-17-0"));
    assert_eq!(
        manager.status("acme", 17).await.unwrap(),
        ReplicatorStatus::Stopped
    );
    // Deletion uses background propagation.
    let delete = fake
        .requests()
        .into_iter()
        .find(|r| r.method == Method::DELETE)
        .unwrap();
    assert_eq!(
        delete.path,
        "/apis/apps/v1/namespaces/etl-data-plane/statefulsets/replicator-acme-17"
    );
}

#[tokio::test]
async fn stop_after_a_partial_start_removes_what_was_created() {
    let fake = bootstrapped().await;
    fake.deny("patch", "statefulsets");
    let manager = manager(&fake);
    let err = manager.start(&spec()).await.unwrap_err();
    assert!(
        matches!(
            &err,
            K8sError::Forbidden { verb: "patch", resource: "statefulsets.apps", name, .. }
                if name == SET
        ),
        "{err:?}"
    );
    assert!(fake.get("secrets", Some(NAMESPACE), SECRET).is_some());
    assert!(fake.get("configmaps", Some(NAMESPACE), CONFIG).is_some());
    assert!(fake.get("statefulsets", Some(NAMESPACE), SET).is_none());

    manager.stop("acme", 17).await.unwrap();
    assert!(fake.names("secrets", Some(NAMESPACE)).is_empty());
    assert_eq!(
        fake.names("configmaps", Some(NAMESPACE)),
        vec!["trusted-root-certs-config"]
    );
}

#[tokio::test]
async fn stop_when_nothing_exists_succeeds() {
    let fake = bootstrapped().await;
    let manager = manager(&fake);
    manager.stop("acme", 17).await.unwrap();
    let deletes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::DELETE)
        .collect();
    assert_eq!(deletes.len(), 3, "each object was tried and was missing");
    assert_eq!(
        manager.status("acme", 17).await.unwrap(),
        ReplicatorStatus::Stopped
    );
}

#[tokio::test]
async fn a_forbidden_answer_names_the_resource_and_the_verb() {
    let fake = bootstrapped().await;
    fake.deny("patch", "secrets");
    let err = manager(&fake).start(&spec()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "permission denied: cannot patch secrets `replicator-acme-17-secrets` in namespace \
         `etl-data-plane`: secrets \"replicator-acme-17-secrets\" is forbidden: User \
         \"test-user\" cannot patch resource \"secrets\" in API group \"\" in the namespace \
         \"etl-data-plane\""
    );
    assert!(fake.names("secrets", Some(NAMESPACE)).is_empty());

    fake.deny("delete", "statefulsets");
    let err = manager(&fake).stop("acme", 17).await.unwrap_err();
    assert!(
        matches!(
            err,
            K8sError::Forbidden {
                verb: "delete",
                resource: "statefulsets.apps",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn starting_in_a_namespace_that_was_never_bootstrapped_fails_clearly() {
    let fake = FakeApi::new();
    let err = manager(&fake).start(&spec()).await.unwrap_err();
    assert!(
        matches!(
            &err,
            K8sError::Api {
                code: 404,
                verb: "patch",
                resource: "secrets",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("namespaces \"etl-data-plane\" not found"),
        "{err}"
    );
}

#[tokio::test]
async fn invalid_input_is_rejected_before_any_request() {
    let fake = bootstrapped().await;
    let before = fake.requests().len();
    let manager = manager(&fake);

    let mut bad_tenant = spec();
    bad_tenant.tenant_id = "Acme_Corp".into();
    let err = manager.start(&bad_tenant).await.unwrap_err();
    assert!(
        matches!(
            err,
            K8sError::InvalidName {
                input: "tenant id",
                ..
            }
        ),
        "{err:?}"
    );

    let mut bad_secret = spec();
    bad_secret
        .secrets
        .insert("APP_ENVIRONMENT".into(), Secret::new("dev"));
    let err = manager.start(&bad_secret).await.unwrap_err();
    assert!(err.to_string().contains("APP_ENVIRONMENT"), "{err}");

    let mut bad_resources = spec();
    bad_resources.resources = Some(etl::config::ResourceSettings {
        memory_limit: "lots".into(),
        ..Default::default()
    });
    let err = manager.start(&bad_resources).await.unwrap_err();
    assert!(err.to_string().contains("memory_limit"), "{err}");
    assert!(err.to_string().contains("`lots`"), "{err}");

    let mut bad_config = spec();
    bad_config.config_yaml = "pipeline: [unclosed".into();
    let err = manager.start(&bad_config).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid config_yaml: is not valid YAML"),
        "{err}"
    );

    let err = manager.stop("UPPER", 1).await.unwrap_err();
    assert!(matches!(err, K8sError::InvalidName { .. }));
    assert_eq!(fake.requests().len(), before, "nothing was sent");
}
