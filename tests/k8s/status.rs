//! `ReplicatorManager::status` for each pod state, read through the fake API server.

use etl::k8s::{K8sError, ReplicatorStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};

use crate::helpers::{NAMESPACE, bootstrapped, manager, put_pod, spec};

const SET: &str = "replicator-acme-17";

fn container(ready: bool, state: Value, last_state: Value) -> Value {
    json!({
        "name": "replicator", "ready": ready, "restartCount": 3,
        "image": "ghcr.io/example/etl:1.2.3", "imageID": "",
        "state": state, "lastState": last_state
    })
}

fn failed(reason: &str) -> ReplicatorStatus {
    ReplicatorStatus::Failed {
        reason: reason.to_owned(),
    }
}

#[tokio::test]
async fn status_follows_the_pod_through_each_state() {
    let cases: Vec<(&str, Value, ReplicatorStatus)> = vec![
        (
            "scheduled, no container status yet",
            json!({"phase": "Pending"}),
            ReplicatorStatus::Starting,
        ),
        (
            "container being created",
            json!({"phase": "Pending", "containerStatuses": [container(false,
                json!({"waiting": {"reason": "ContainerCreating"}}), json!({}))]}),
            ReplicatorStatus::Starting,
        ),
        (
            "running and ready",
            json!({"phase": "Running", "containerStatuses": [container(true,
                json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}), json!({}))]}),
            ReplicatorStatus::Started,
        ),
        (
            "running, not ready yet",
            json!({"phase": "Running", "containerStatuses": [container(false,
                json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}), json!({}))]}),
            ReplicatorStatus::Starting,
        ),
        (
            "crash loop: the last exit says why",
            json!({"phase": "Running", "containerStatuses": [container(false,
                json!({"waiting": {"reason": "CrashLoopBackOff",
                    "message": "back-off 40s restarting failed container"}}),
                json!({"terminated": {"exitCode": 2, "reason": "Error",
                    "message": "config key `pipeline.id`: missing\n"}}))]}),
            failed(
                "CrashLoopBackOff: exited with code 2 (Error): config key `pipeline.id`: missing",
            ),
        ),
        (
            "image pull back-off",
            json!({"phase": "Pending", "containerStatuses": [container(false,
                json!({"waiting": {"reason": "ImagePullBackOff",
                    "message": "Back-off pulling image \"ghcr.io/example/etl:1.2.3\""}}),
                json!({}))]}),
            failed("ImagePullBackOff: Back-off pulling image \"ghcr.io/example/etl:1.2.3\""),
        ),
        (
            "image pull error",
            json!({"phase": "Pending", "containerStatuses": [container(false,
                json!({"waiting": {"reason": "ErrImagePull", "message": "not found"}}),
                json!({}))]}),
            failed("ErrImagePull: not found"),
        ),
        (
            "missing secret key",
            json!({"phase": "Pending", "containerStatuses": [container(false,
                json!({"waiting": {"reason": "CreateContainerConfigError",
                    "message": "secret \"x\" not found"}}), json!({}))]}),
            failed("CreateContainerConfigError: secret \"x\" not found"),
        ),
        (
            "terminated with a non-zero exit",
            json!({"phase": "Running", "containerStatuses": [container(false,
                json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}), json!({}))]}),
            failed("exited with code 137 (OOMKilled)"),
        ),
        (
            "terminated cleanly, about to restart",
            json!({"phase": "Running", "containerStatuses": [container(false,
                json!({"terminated": {"exitCode": 0, "reason": "Completed"}}), json!({}))]}),
            ReplicatorStatus::Starting,
        ),
        (
            "evicted",
            json!({"phase": "Failed", "reason": "Evicted",
                "message": "The node was low on resource: memory."}),
            failed("Evicted: The node was low on resource: memory."),
        ),
        (
            "node lost",
            json!({"phase": "Unknown"}),
            ReplicatorStatus::Unknown,
        ),
    ];
    let fake = bootstrapped().await;
    let manager = manager(&fake);
    manager.start(&spec()).await.unwrap();
    assert_eq!(
        manager.status("acme", 17).await.unwrap(),
        ReplicatorStatus::Starting,
        "StatefulSet without its pod yet"
    );
    for (description, pod_status, expected) in cases {
        put_pod(&fake, SET, pod_status);
        assert_eq!(
            manager.status("acme", 17).await.unwrap(),
            expected,
            "{description}"
        );
    }
}

#[tokio::test]
async fn a_pod_being_deleted_is_stopping_and_no_stateful_set_is_stopped() {
    let fake = bootstrapped().await;
    let manager = manager(&fake);
    assert_eq!(
        manager.status("acme", 17).await.unwrap(),
        ReplicatorStatus::Stopped
    );
    manager.start(&spec()).await.unwrap();
    put_pod(&fake, SET, json!({"phase": "Running"}));
    // Deleting a pod is graceful: the API server marks it and the kubelet stops it.
    let pods: Api<Pod> = Api::namespaced(fake.client(), NAMESPACE);
    pods.delete("replicator-acme-17-0", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        manager.status("acme", 17).await.unwrap(),
        ReplicatorStatus::Stopping
    );
}

#[tokio::test]
async fn status_without_permission_to_read_pods_names_the_verb_and_resource() {
    let fake = bootstrapped().await;
    let manager = manager(&fake);
    manager.start(&spec()).await.unwrap();
    fake.deny("get", "pods");
    let err = manager.status("acme", 17).await.unwrap_err();
    assert!(
        matches!(&err, K8sError::Forbidden { verb: "get", resource: "pods", name, .. }
            if name == "replicator-acme-17-0"),
        "{err:?}"
    );
}
