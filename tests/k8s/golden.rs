//! Golden files of every manifest `etl` applies: a change to a manifest shows up as a diff of
//! `tests/k8s/golden/*.yaml` (or `deploy/base/*.yaml`) to review.

use etl::config::{Environment, ResourceSettings};
use etl::k8s::bootstrap::{self, BootstrapPlan};
use etl::k8s::resources::{self, replicator_manifests, to_yaml};

use crate::helpers::{NAMESPACE, assert_file, assert_golden, repo, settings, spec, test_ca};

const TOKEN: &str = "2026-01-01T00:00:00.000000001Z";

#[test]
fn replicator_secret_matches_golden_file() {
    let manifests = replicator_manifests(&spec(), &settings(), TOKEN).unwrap();
    assert_golden(
        "replicator-secret.yaml",
        &to_yaml(&manifests.secret).unwrap(),
    );
}

#[test]
fn replicator_config_map_matches_golden_file() {
    let manifests = replicator_manifests(&spec(), &settings(), TOKEN).unwrap();
    assert_golden(
        "replicator-configmap.yaml",
        &to_yaml(&manifests.config_map).unwrap(),
    );
}

#[test]
fn replicator_stateful_set_matches_golden_file() {
    let manifests = replicator_manifests(&spec(), &settings(), TOKEN).unwrap();
    assert_golden(
        "replicator-statefulset.yaml",
        &to_yaml(&manifests.stateful_set).unwrap(),
    );
}

#[test]
fn per_pipeline_resources_and_environment_override_the_defaults() {
    let mut spec = spec();
    spec.environment = Environment::Staging;
    spec.resources = Some(ResourceSettings {
        cpu_request: "500m".into(),
        cpu_limit: "2".into(),
        memory_request: "1Gi".into(),
        memory_limit: "4Gi".into(),
    });
    let manifests = replicator_manifests(&spec, &settings(), TOKEN).unwrap();
    assert_golden(
        "replicator-statefulset-overrides.yaml",
        &to_yaml(&manifests.stateful_set).unwrap(),
    );
    assert_golden(
        "replicator-configmap-staging.yaml",
        &to_yaml(&manifests.config_map).unwrap(),
    );
}

#[test]
fn the_restart_token_is_the_only_difference_between_two_starts() {
    let first = replicator_manifests(&spec(), &settings(), "one").unwrap();
    let second = replicator_manifests(&spec(), &settings(), "two").unwrap();
    let first = to_yaml(&first.stateful_set).unwrap();
    let second = to_yaml(&second.stateful_set).unwrap();
    let diff: Vec<(&str, &str)> = first
        .lines()
        .zip(second.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        diff,
        vec![(
            "        etl/restarted-at: one",
            "        etl/restarted-at: two"
        )]
    );
}

/// A YAML 1.1 reader (kubectl's) takes an unquoted `2026-01-01T00:00:00Z` for a timestamp, not
/// the string an annotation must be.
#[test]
fn the_restart_annotation_is_a_quoted_string_for_yaml_1_1_readers() {
    let manifests = replicator_manifests(&spec(), &settings(), TOKEN).unwrap();
    let yaml = to_yaml(&manifests.stateful_set).unwrap();
    assert!(
        yaml.contains(&format!(
            "        {}: '{TOKEN}'\n",
            resources::RESTART_ANNOTATION
        )),
        "{yaml}"
    );
}

#[test]
fn bootstrap_manifests_match_golden_files() {
    let plan = BootstrapPlan {
        namespace: NAMESPACE.into(),
        ca_bundle: test_ca(),
    };
    let (namespace, service_account, config_map) = bootstrap::manifests(&plan);
    assert_golden("namespace.yaml", &to_yaml(&namespace).unwrap());
    assert_golden("serviceaccount.yaml", &to_yaml(&service_account).unwrap());
    assert_golden(
        "trusted-root-certs-config.yaml",
        &to_yaml(&config_map).unwrap(),
    );
    assert_eq!(
        config_map.data.unwrap()[resources::TRUSTED_ROOT_CERTS_KEY],
        test_ca(),
        "the PEM bundle is stored byte for byte"
    );
}

#[test]
fn deploy_base_bootstrap_files_are_what_bootstrap_applies_with_the_repository_defaults() {
    let plan = BootstrapPlan {
        namespace: NAMESPACE.into(),
        ca_bundle: bootstrap::load_ca_bundle(&repo().join("scripts/trusted-root-certs.pem"))
            .unwrap(),
    };
    let yaml = bootstrap::render(&plan).unwrap();
    assert_file(
        &repo().join("deploy/base/etl-data-plane.yaml"),
        &yaml.data_plane,
    );
    assert_file(
        &repo().join("deploy/base/trusted-root-certs-config.yaml"),
        &yaml.trusted_root_certs,
    );
}

#[test]
fn the_dockerfile_runs_as_the_user_the_stateful_set_expects() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let uid = resources::RUN_AS_USER;
    assert!(dockerfile.contains(&format!("USER {uid}:{uid}")));
    assert!(dockerfile.contains(&format!("--uid {uid}")));
    assert!(dockerfile.contains("FROM rust:1.95"));
    assert!(dockerfile.contains("FROM debian:bookworm-slim"));
    assert!(dockerfile.contains("ENTRYPOINT [\"etl\"]"));
}
