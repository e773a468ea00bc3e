//! `etl k8s bootstrap` as a library call against the fake API server, and CA bundle validation.

use std::path::Path;

use etl::k8s::K8sError;
use etl::k8s::bootstrap::{self, Applied, BootstrapPlan, Outcome};
use serde_json::json;

use crate::fake_api::FakeApi;
use crate::helpers::{NAMESPACE, test_ca};

fn plan(ca_bundle: String) -> BootstrapPlan {
    BootstrapPlan {
        namespace: NAMESPACE.into(),
        ca_bundle,
    }
}

fn outcomes(applied: &[Applied]) -> Vec<String> {
    applied.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn bootstrap_twice_is_idempotent() {
    let fake = FakeApi::new();
    let client = fake.client();
    let first = bootstrap::apply(&client, &plan(test_ca())).await.unwrap();
    assert_eq!(
        outcomes(&first),
        vec![
            "namespace/etl-data-plane created",
            "serviceaccount/etl-replicator created",
            "configmap/trusted-root-certs-config created",
        ]
    );
    let snapshot = (
        fake.get("namespaces", None, NAMESPACE).unwrap(),
        fake.get("serviceaccounts", Some(NAMESPACE), "etl-replicator")
            .unwrap(),
        fake.get("configmaps", Some(NAMESPACE), "trusted-root-certs-config")
            .unwrap(),
    );

    let second = bootstrap::apply(&client, &plan(test_ca())).await.unwrap();
    assert!(
        second.iter().all(|a| a.outcome == Outcome::Unchanged),
        "{second:?}"
    );
    let again = (
        fake.get("namespaces", None, NAMESPACE).unwrap(),
        fake.get("serviceaccounts", Some(NAMESPACE), "etl-replicator")
            .unwrap(),
        fake.get("configmaps", Some(NAMESPACE), "trusted-root-certs-config")
            .unwrap(),
    );
    assert_eq!(
        again, snapshot,
        "nothing changed, not even a resourceVersion"
    );

    // What is stored is what the manifests say.
    assert_eq!(
        snapshot.0["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        json!("restricted")
    );
    assert_eq!(snapshot.1["automountServiceAccountToken"], json!(false));
    assert_eq!(snapshot.2["data"]["ca-certificates.crt"], json!(test_ca()));
}

#[tokio::test]
async fn a_new_ca_bundle_reconfigures_only_the_config_map() {
    let fake = FakeApi::new();
    let client = fake.client();
    bootstrap::apply(&client, &plan(test_ca())).await.unwrap();
    let bundle = format!(
        "{}{}",
        test_ca(),
        std::fs::read_to_string(crate::helpers::repo().join("scripts/trusted-root-certs.pem"),)
            .unwrap()
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .unwrap()
    );
    bootstrap::validate_pem_bundle(&bundle).unwrap();
    let applied = bootstrap::apply(&client, &plan(bundle.clone()))
        .await
        .unwrap();
    assert_eq!(
        applied.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        vec![Outcome::Unchanged, Outcome::Unchanged, Outcome::Configured]
    );
    let stored = fake
        .get("configmaps", Some(NAMESPACE), "trusted-root-certs-config")
        .unwrap();
    assert_eq!(stored["data"]["ca-certificates.crt"], json!(bundle));
}

#[tokio::test]
async fn missing_permission_names_the_resource_and_the_verb() {
    let fake = FakeApi::new();
    fake.deny("patch", "namespaces");
    let err = bootstrap::apply(&fake.client(), &plan(test_ca()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            K8sError::Forbidden {
                verb: "patch",
                resource: "namespaces",
                namespace: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("permission denied: cannot patch namespaces `etl-data-plane`: "),
        "{err}"
    );

    let fake = FakeApi::new();
    fake.deny("get", "configmaps");
    let err = bootstrap::apply(&fake.client(), &plan(test_ca()))
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "permission denied: cannot get configmaps `trusted-root-certs-config` in namespace `etl-data-plane`"
        ),
        "{err}"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn ca_bundles_that_are_not_pem_certificates_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let good = write(dir.path(), "good.pem", &format!("# our root\n{ca}"));
    assert_eq!(
        bootstrap::load_ca_bundle(&good).unwrap(),
        format!("# our root\n{ca}")
    );

    let body: String = ca.lines().filter(|l| !l.starts_with("-----")).collect();
    let cases = [
        ("empty.pem", String::new(), "no PEM certificate"),
        ("text.pem", "hello\n".to_owned(), "no PEM certificate"),
        (
            "key.pem",
            format!("{ca}-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"),
            "PEM block 2 is a PrivateKey, not a CERTIFICATE",
        ),
        (
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n".to_owned(),
            "certificate 1 is not a valid X.509 certificate",
        ),
        (
            "truncated.pem",
            ca.replace("-----END CERTIFICATE-----\n", ""),
            "PEM block 1 is malformed",
        ),
    ];
    for (name, text, expected) in cases {
        let path = write(dir.path(), name, &text);
        let err = bootstrap::load_ca_bundle(&path).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(expected) && message.contains(name),
            "{name}: {message}"
        );
    }
    let err = bootstrap::load_ca_bundle(&dir.path().join("missing.pem")).unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
}
