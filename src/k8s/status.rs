//! A replicator's status, read from its StatefulSet and the StatefulSet's pod `…-0`: a pure
//! mapping from what Kubernetes reports (pod phase, container states, deletion timestamps) to
//! the few states the control plane shows.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde::Serialize;

use super::resources::CONTAINER_NAME;

/// What a replicator is doing, as the control plane reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReplicatorStatus {
    /// Nothing runs: no StatefulSet and no pod.
    Stopped,
    /// The StatefulSet exists and its pod is being scheduled, pulled or started.
    Starting,
    /// The pod runs and is ready.
    Started,
    /// The pod or StatefulSet is being deleted (the replicator is flushing).
    Stopping,
    /// The replicator cannot run: crash loop, image pull error, non-zero exit, bad config.
    Failed { reason: String },
    /// Kubernetes reports something none of the above describes.
    Unknown,
}

/// Container waiting reasons that will not go away by waiting.
const FAILED_WAITING_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Maps the StatefulSet and its pod (each `None` when absent) to a status.
pub fn replicator_status(
    stateful_set: Option<&StatefulSet>,
    pod: Option<&Pod>,
) -> ReplicatorStatus {
    let deleting = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.deletion_timestamp.is_some()
    };
    match (stateful_set, pod) {
        (None, None) => ReplicatorStatus::Stopped,
        // The StatefulSet is gone but its pod is still shutting down (garbage collection).
        (None, Some(_)) => ReplicatorStatus::Stopping,
        (Some(set), _) if deleting(&set.metadata) => ReplicatorStatus::Stopping,
        (Some(_), None) => ReplicatorStatus::Starting,
        (Some(_), Some(pod)) => pod_status(pod),
    }
}

/// The status of a replicator pod that belongs to a live StatefulSet.
pub fn pod_status(pod: &Pod) -> ReplicatorStatus {
    if pod.metadata.deletion_timestamp.is_some() {
        return ReplicatorStatus::Stopping;
    }
    let Some(status) = &pod.status else {
        return ReplicatorStatus::Starting;
    };
    let container = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CONTAINER_NAME)
        .or_else(|| status.container_statuses.iter().flatten().next());

    if let Some(reason) = container.and_then(failure) {
        return ReplicatorStatus::Failed { reason };
    }
    match status.phase.as_deref() {
        Some("Pending") | None => ReplicatorStatus::Starting,
        Some("Running") => match container {
            Some(c) if c.ready => ReplicatorStatus::Started,
            // Running but not yet ready (or no container status yet): still coming up.
            _ => ReplicatorStatus::Starting,
        },
        Some("Failed") => {
            let parts: Vec<&str> = [status.reason.as_deref(), status.message.as_deref()]
                .into_iter()
                .flatten()
                .filter(|p| !p.is_empty())
                .collect();
            ReplicatorStatus::Failed {
                reason: if parts.is_empty() {
                    "the pod failed".to_owned()
                } else {
                    parts.join(": ")
                },
            }
        }
        _ => ReplicatorStatus::Unknown,
    }
}

/// Why the container cannot run, if it cannot: a hopeless waiting reason, or a last or current
/// termination with a non-zero exit code.
fn failure(container: &ContainerStatus) -> Option<String> {
    let state = container.state.as_ref()?;
    if let Some(waiting) = &state.waiting {
        let reason = waiting.reason.as_deref().unwrap_or_default();
        if FAILED_WAITING_REASONS.contains(&reason) {
            let mut text = reason.to_owned();
            // A crash loop's own message is generic; the last exit says what went wrong.
            if let Some(last) = container
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
            {
                text.push_str(&format!(": {}", describe_exit(last)));
            } else if let Some(message) = waiting.message.as_deref().filter(|m| !m.is_empty()) {
                text.push_str(&format!(": {message}"));
            }
            return Some(text);
        }
    }
    let terminated = state.terminated.as_ref()?;
    (terminated.exit_code != 0).then(|| describe_exit(terminated))
}

fn describe_exit(terminated: &k8s_openapi::api::core::v1::ContainerStateTerminated) -> String {
    let mut text = format!("exited with code {}", terminated.exit_code);
    if let Some(reason) = terminated.reason.as_deref().filter(|r| !r.is_empty()) {
        text.push_str(&format!(" ({reason})"));
    }
    if let Some(message) = terminated.message.as_deref().filter(|m| !m.is_empty()) {
        text.push_str(&format!(": {}", message.trim()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn deleting() -> ObjectMeta {
        ObjectMeta {
            deletion_timestamp: Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn stateful_set_presence_and_deletion_decide_before_the_pod() {
        let set = StatefulSet::default();
        let pod = Pod::default();
        assert_eq!(replicator_status(None, None), ReplicatorStatus::Stopped);
        assert_eq!(
            replicator_status(None, Some(&pod)),
            ReplicatorStatus::Stopping,
            "an orphaned pod is still shutting down"
        );
        assert_eq!(
            replicator_status(Some(&set), None),
            ReplicatorStatus::Starting
        );
        let going = StatefulSet {
            metadata: deleting(),
            ..StatefulSet::default()
        };
        assert_eq!(
            replicator_status(Some(&going), Some(&pod)),
            ReplicatorStatus::Stopping
        );
        let terminating = Pod {
            metadata: deleting(),
            ..Pod::default()
        };
        assert_eq!(
            replicator_status(Some(&set), Some(&terminating)),
            ReplicatorStatus::Stopping
        );
        assert_eq!(
            replicator_status(Some(&set), Some(&pod)),
            ReplicatorStatus::Starting,
            "a pod without status has not started"
        );
    }
}
