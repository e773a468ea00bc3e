//! The `etl k8s bootstrap` binary: dry-run output, and applying to the fake API server served
//! over HTTP through a kubeconfig, plus its one-line errors (no kubeconfig, unknown context,
//! unreachable server, missing permission, bad CA bundle).

use std::path::Path;
use std::process::Output;

use serde_json::json;

use crate::fake_api::FakeApi;
use crate::helpers::{NAMESPACE, repo};

/// Runs `etl` in the repository root (so `config/` and `scripts/` resolve) with `KUBECONFIG`.
async fn etl(args: &[&str], kubeconfig: &Path) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_etl"))
        .args(args)
        .current_dir(repo())
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_BACKTRACE", "0")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("APP_ENVIRONMENT")
        .env_remove("APP_CONFIG_DIR")
        .output()
        .await
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// A kubeconfig with contexts `fake` (current) and `other`, both pointing at `server`.
fn kubeconfig(dir: &Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server}
users:
- name: tester
  user:
    token: test-token
contexts:
- name: fake
  context: {{cluster: fake, user: tester}}
- name: other
  context: {{cluster: fake, user: tester}}
current-context: fake
"
        ),
    )
    .unwrap();
    path
}

/// Asserts a failure printed exactly one line starting with `prefix` and exited with `code`.
fn assert_one_line_error(output: &Output, code: i32, prefix: &str) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {text}");
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    assert!(
        text.starts_with(prefix),
        "expected `{prefix}…`, got: {text}"
    );
}

#[tokio::test]
async fn dry_run_prints_exactly_the_deploy_base_files_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-kubeconfig");
    let output = etl(&["k8s", "bootstrap", "--dry-run", "--env", "dev"], &missing).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let expected = format!(
        "{}---\n{}",
        std::fs::read_to_string(repo().join("deploy/base/etl-data-plane.yaml")).unwrap(),
        std::fs::read_to_string(repo().join("deploy/base/trusted-root-certs-config.yaml")).unwrap()
    );
    assert!(
        stdout(&output) == expected,
        "dry-run output differs from the bootstrap files in deploy/base/"
    );

    let output = etl(
        &[
            "k8s",
            "bootstrap",
            "--dry-run",
            "--env",
            "dev",
            "--ca-file",
            "tests/k8s/data/test-ca.pem",
        ],
        &missing,
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let printed: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&stdout(&output))
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(printed.len(), 3);
    assert_eq!(
        printed[2]["data"]["ca-certificates.crt"].as_str().unwrap(),
        crate::helpers::test_ca()
    );
}

#[tokio::test]
async fn without_a_kubeconfig_bootstrap_fails_with_one_readable_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-kubeconfig");
    let output = etl(&["k8s", "bootstrap", "--env", "dev"], &missing).await;
    assert_one_line_error(
        &output,
        1,
        &format!(
            "error: no Kubernetes cluster configured: cannot read kubeconfig {}",
            missing.display()
        ),
    );
}

#[tokio::test]
async fn an_unknown_context_is_a_usage_error_listing_the_contexts() {
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), "http://127.0.0.1:9");
    let output = etl(
        &["k8s", "bootstrap", "--env", "dev", "--context", "prod-eu"],
        &config,
    )
    .await;
    assert_one_line_error(
        &output,
        2,
        "error: kubeconfig context `prod-eu` does not exist (available: fake, other)",
    );
}

#[tokio::test]
async fn an_unreachable_cluster_is_reported_with_its_address() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = kubeconfig(dir.path(), &format!("http://127.0.0.1:{port}"));
    let output = etl(&["k8s", "bootstrap", "--env", "dev"], &config).await;
    assert_one_line_error(
        &output,
        1,
        &format!("error: cannot reach the Kubernetes API server at http://127.0.0.1:{port}/"),
    );
}

#[tokio::test]
async fn an_invalid_ca_file_is_rejected_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    let output = etl(
        &[
            "k8s",
            "bootstrap",
            "--env",
            "dev",
            "--ca-file",
            bad.to_str().unwrap(),
        ],
        &dir.path().join("missing"),
    )
    .await;
    assert_one_line_error(
        &output,
        2,
        &format!(
            "error: trusted root certificates {}: no PEM certificate",
            bad.display()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_applies_through_the_kubeconfig_and_is_idempotent() {
    let fake = FakeApi::new();
    // Every request must carry the kubeconfig user's token.
    fake.require_token("test-token");
    let address = fake.listen().await;
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &format!("http://{address}"));

    let output = etl(
        &["k8s", "bootstrap", "--env", "dev", "--context", "other"],
        &config,
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "namespace/etl-data-plane created\n\
         serviceaccount/etl-replicator created\n\
         configmap/trusted-root-certs-config created\n"
    );
    let stored = fake
        .get("configmaps", Some(NAMESPACE), "trusted-root-certs-config")
        .unwrap();
    assert_eq!(
        stored["data"]["ca-certificates.crt"],
        json!(std::fs::read_to_string(repo().join("scripts/trusted-root-certs.pem")).unwrap())
    );

    let output = etl(&["k8s", "bootstrap", "--env", "dev"], &config).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "namespace/etl-data-plane unchanged\n\
         serviceaccount/etl-replicator unchanged\n\
         configmap/trusted-root-certs-config unchanged\n"
    );
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.query.get("fieldManager").map(String::as_str) == Some("etl"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_are_reported_as_a_kubeconfig_problem() {
    let fake = FakeApi::new();
    fake.require_token("another-token");
    let address = fake.listen().await;
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &format!("http://{address}"));
    let output = etl(&["k8s", "bootstrap", "--env", "dev"], &config).await;
    assert_one_line_error(
        &output,
        1,
        &format!(
            "error: invalid kubeconfig: the API server at http://{address}/ rejected the credentials"
        ),
    );
    assert!(fake.names("namespaces", None).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_permission_is_one_line_naming_resource_and_verb() {
    let fake = FakeApi::new();
    fake.deny("patch", "serviceaccounts");
    let address = fake.listen().await;
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &format!("http://{address}"));
    let output = etl(&["k8s", "bootstrap", "--env", "dev"], &config).await;
    assert_one_line_error(
        &output,
        1,
        "error: permission denied: cannot patch serviceaccounts `etl-replicator` in namespace `etl-data-plane`: \
         serviceaccounts \"etl-replicator\" is forbidden: User \"test-user\" cannot patch resource \"serviceaccounts\"",
    );
    assert_eq!(stdout(&output), "", "nothing is reported applied");
}

#[tokio::test]
async fn bootstrap_needs_no_config_dir_and_checks_the_kubernetes_section() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let output = etl(
        &[
            "k8s",
            "bootstrap",
            "--dry-run",
            "--config-dir",
            missing.to_str().unwrap(),
            "--ca-file",
            "tests/k8s/data/test-ca.pem",
        ],
        &missing,
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("name: etl-data-plane\n"));

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_etl"))
        .args(["k8s", "bootstrap", "--dry-run", "--env", "dev"])
        .current_dir(repo())
        .env("APP_KUBERNETES__NAMESPACE", "Data_Plane")
        .env("RUST_BACKTRACE", "0")
        .output()
        .await
        .unwrap();
    assert_one_line_error(
        &output,
        2,
        "error: config key `kubernetes.namespace` (from APP_KUBERNETES__NAMESPACE): `Data_Plane` is not a valid namespace name",
    );
}
