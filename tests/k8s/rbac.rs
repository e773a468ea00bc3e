//! The control plane's Role in `deploy/base/control-plane.yaml` against what the `kubernetes`
//! runtime really calls: the runtime is driven through a replicator's whole life against the
//! fake API server, each recorded request is turned into the RBAC check the API server would
//! make, and the Role must allow every one of them and grant nothing else.

use std::collections::BTreeSet;

use etl::api::runtime::kubernetes::KubernetesRuntime;
use etl::api::runtime::{LaunchSpec, PipelineRuntime, ReplicatorTarget};
use etl::config::Environment;
use http::Method;
use serde_json::{Value, json};

use crate::fake_api::Recorded;
use crate::helpers::{NAMESPACE, bootstrapped, manager, put_pod, spec};
use crate::manifests::{self, Object};

/// One RBAC authorization: `verb` on `resource` of `group` in `namespace`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Access {
    group: String,
    resource: String,
    verb: String,
    namespace: Option<String>,
}

/// The authorizations the API server checks for one request. A server-side apply is a `patch`,
/// and also a `create` when the object does not exist yet (the API server checks `create` for
/// the name before it creates it), so an apply needs both.
fn accesses(request: &Recorded) -> Vec<Access> {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    // /api/v1/… or /apis/{group}/{version}/…
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!(
            "the runtime called a non-resource URL {}; a Role cannot grant it",
            request.path
        ),
    };
    let (namespace, resource, name) = match rest {
        ["namespaces", namespace, resource, name @ ..] => {
            (Some((*namespace).to_owned()), *resource, name.first())
        }
        [resource, name @ ..] => (None, *resource, name.first()),
        [] => panic!("no resource in {}", request.path),
    };
    let apply = request.content_type.as_deref() == Some("application/apply-patch+yaml");
    let verbs: &[&str] = match (&request.method, name.is_some()) {
        (&Method::GET, true) => &["get"],
        (&Method::GET, false) if request.query.get("watch").is_some_and(|w| w == "true") => {
            &["watch"]
        }
        (&Method::GET, false) => &["list"],
        (&Method::POST, false) => &["create"],
        (&Method::PUT, true) => &["update"],
        (&Method::PATCH, true) if apply => &["patch", "create"],
        (&Method::PATCH, true) => &["patch"],
        (&Method::DELETE, true) => &["delete"],
        (&Method::DELETE, false) => &["deletecollection"],
        (method, _) => panic!("unexpected request {method} {}", request.path),
    };
    verbs
        .iter()
        .map(|verb| Access {
            group: group.to_owned(),
            resource: resource.to_owned(),
            verb: (*verb).to_owned(),
            namespace: namespace.clone(),
        })
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every (group, resource, verb) a Role's rules grant, in the Role's namespace. Rules with
/// wildcards, `resourceNames` or `nonResourceURLs` are refused outright: the Role is meant to be
/// read at a glance.
fn granted(role: &Object) -> BTreeSet<Access> {
    let namespace = role.namespace().map(str::to_owned);
    let mut granted = BTreeSet::new();
    for rule in role.value["rules"].as_array().expect("rules") {
        for key in ["resourceNames", "nonResourceURLs"] {
            assert!(rule.get(key).is_none(), "the Role uses {key}: {rule}");
        }
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    assert!(
                        ![&group, &resource, &verb].contains(&&"*".to_owned()),
                        "the Role uses a wildcard: {rule}"
                    );
                    granted.insert(Access {
                        group: group.clone(),
                        resource: resource.clone(),
                        verb,
                        namespace: namespace.clone(),
                    });
                }
            }
        }
    }
    granted
}

fn target() -> ReplicatorTarget {
    let spec = spec();
    ReplicatorTarget {
        tenant_id: spec.tenant_id,
        replicator_id: spec.replicator_id,
        pipeline_id: spec.pipeline_id,
    }
}

fn launch() -> LaunchSpec {
    let spec = spec();
    LaunchSpec {
        target: target(),
        image: spec.image,
        config_yaml: spec.config_yaml,
        secrets: spec.secrets,
        resources: spec.resources,
    }
}

/// Everything the runtime asks of the API server over a replicator's life: status before it
/// exists, start, status while starting and once running, a restart, stop while the pod is
/// still terminating, stop again once everything is gone, status after.
async fn runtime_accesses() -> BTreeSet<Access> {
    let fake = bootstrapped().await;
    let before = fake.requests().len();
    let runtime = KubernetesRuntime::new(manager(&fake), Environment::Prod, 9000);
    let (launch, target) = (launch(), target());

    runtime.status(&target).await.unwrap();
    runtime.start(&launch).await.unwrap();
    runtime.status(&target).await.unwrap();
    put_pod(
        &fake,
        "replicator-acme-17",
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
    );
    runtime.status(&target).await.unwrap();
    runtime.start(&launch).await.unwrap();
    runtime.stop(&target).await.unwrap();
    runtime.status(&target).await.unwrap();
    fake.remove("pods", Some(NAMESPACE), "replicator-acme-17-0");
    runtime.stop(&target).await.unwrap();
    runtime.status(&target).await.unwrap();
    runtime.forget(&target).await.unwrap();

    let requests = fake.requests();
    assert!(
        requests.len() > before,
        "the runtime made no request at all"
    );
    requests[before..].iter().flat_map(accesses).collect()
}

#[tokio::test]
async fn the_control_plane_role_allows_every_runtime_call_and_nothing_more() {
    let role = manifests::base_file("control-plane.yaml")
        .into_iter()
        .find(|o| o.kind() == "Role")
        .expect("a Role in deploy/base/control-plane.yaml");
    assert_eq!(
        role.namespace(),
        Some(NAMESPACE),
        "the Role lives in the data-plane namespace"
    );
    let granted = granted(&role);
    let needed = runtime_accesses().await;

    let missing: Vec<_> = needed.difference(&granted).collect();
    assert!(
        missing.is_empty(),
        "the runtime makes calls the Role does not allow: {missing:#?}"
    );
    let unused: Vec<_> = granted.difference(&needed).collect();
    assert!(
        unused.is_empty(),
        "the Role grants what the runtime never uses: {unused:#?}"
    );
}

#[test]
fn an_apply_needs_patch_and_create_and_a_plain_get_only_get() {
    let request = |method: Method, path: &str, content_type: Option<&str>| Recorded {
        method,
        path: path.to_owned(),
        query: Default::default(),
        content_type: content_type.map(str::to_owned),
    };
    let verbs = |r: &Recorded| -> Vec<String> { accesses(r).into_iter().map(|a| a.verb).collect() };
    let apply = request(
        Method::PATCH,
        "/apis/apps/v1/namespaces/etl-data-plane/statefulsets/replicator-acme-17",
        Some("application/apply-patch+yaml"),
    );
    assert_eq!(verbs(&apply), ["patch", "create"]);
    assert_eq!(accesses(&apply)[0].group, "apps");
    assert_eq!(accesses(&apply)[0].resource, "statefulsets");
    let get = request(
        Method::GET,
        "/api/v1/namespaces/etl-data-plane/pods/replicator-acme-17-0",
        None,
    );
    assert_eq!(verbs(&get), ["get"]);
    assert_eq!(accesses(&get)[0].group, "");
    let list = request(Method::GET, "/api/v1/namespaces/etl-data-plane/pods", None);
    assert_eq!(verbs(&list), ["list"]);
}
