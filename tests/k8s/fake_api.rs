//! An in-memory Kubernetes API server for tests, served to a real `kube::Client` through
//! `kube::Client::new(service, …)`: requests go through kube's request building, serialization and
//! error handling exactly as they would over the network.
//!
//! It implements what `etl` uses, with the API server's semantics:
//! - resources: namespaces (cluster-scoped), and namespaced configmaps, secrets, serviceaccounts,
//!   pods (`/api/v1/…`) and statefulsets (`/apis/apps/v1/…`); `GET /version`;
//! - `GET` an object (404 `NotFound` when missing), `GET` a collection (optionally with an
//!   equality `labelSelector`), `POST` (409 `AlreadyExists`), `DELETE` (404 when missing; objects
//!   with finalizers and pods are only marked with a `deletionTimestamp`; dependents whose
//!   `ownerReferences` name the deleted object are deleted too, like the garbage collector);
//! - server-side apply: `PATCH` with `Content-Type: application/apply-patch+yaml` and a required
//!   `fieldManager`. Each manager owns the leaf fields it applied (lists are atomic); a re-apply
//!   removes the fields the manager owned and no longer sets, a field owned by another manager
//!   with a different value is a 409 `Conflict` unless `force=true` (which takes it over);
//!   missing objects are created; a no-op apply keeps the `resourceVersion`;
//! - namespaced objects can only be created in an existing namespace (404 otherwise); names must
//!   be DNS-1123 subdomains and label values at most 63 characters (422 `Invalid`);
//! - [`FakeApi::deny`] makes a verb on a resource answer 403 `Forbidden` like RBAC does, and
//!   [`FakeApi::require_token`] makes requests without that bearer token answer 401.
//!
//! Not simulated: watches, admission, defaulting, status subresources, controllers. Tests play
//! the controllers' part with [`FakeApi::put`] (e.g. the pod a StatefulSet controller would
//! create, with the status a kubelet would report).

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Map, Value, json};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
}

/// The fake API server; clones share the same state.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Stored>,
    resource_version: u64,
    uid: u64,
    requests: Vec<Recorded>,
    denied: BTreeSet<(String, String)>,
    token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    resource: &'static str,
    namespace: Option<String>,
    name: String,
}

#[derive(Debug, Clone)]
struct Stored {
    object: Value,
    /// Leaf field paths owned by each field manager.
    managers: BTreeMap<String, BTreeSet<Vec<String>>>,
}

struct ResourceInfo {
    plural: &'static str,
    group: &'static str,
    api_version: &'static str,
    kind: &'static str,
    namespaced: bool,
}

const RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        plural: "namespaces",
        group: "",
        api_version: "v1",
        kind: "Namespace",
        namespaced: false,
    },
    ResourceInfo {
        plural: "configmaps",
        group: "",
        api_version: "v1",
        kind: "ConfigMap",
        namespaced: true,
    },
    ResourceInfo {
        plural: "secrets",
        group: "",
        api_version: "v1",
        kind: "Secret",
        namespaced: true,
    },
    ResourceInfo {
        plural: "serviceaccounts",
        group: "",
        api_version: "v1",
        kind: "ServiceAccount",
        namespaced: true,
    },
    ResourceInfo {
        plural: "pods",
        group: "",
        api_version: "v1",
        kind: "Pod",
        namespaced: true,
    },
    ResourceInfo {
        plural: "statefulsets",
        group: "apps",
        api_version: "apps/v1",
        kind: "StatefulSet",
        namespaced: true,
    },
];

fn resource_info(plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.plural == plural)
}

/// What a request addresses, parsed from its path.
struct Target {
    info: &'static ResourceInfo,
    namespace: Option<String>,
    name: Option<String>,
}

type Answer = (StatusCode, Value);

impl FakeApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// A real `kube::Client` whose every request is served by this fake.
    pub fn client(&self) -> kube::Client {
        let fake = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let fake = fake.clone();
            async move { Ok::<_, Infallible>(fake.serve(request).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Serves this fake over HTTP on a free local port (for the `etl` binary, which reads a
    /// kubeconfig); returns the address. The server runs until the test's runtime ends.
    pub async fn listen(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let fake = self.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let fake = fake.clone();
            async move {
                let (parts, body) = request.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                let response = fake
                    .serve(Request::from_parts(parts, Body::from(bytes)))
                    .await;
                let (parts, body) = response.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        address
    }

    /// Answers 401 Unauthorized to requests without `Authorization: Bearer {token}`.
    pub fn require_token(&self, token: &str) {
        self.lock().token = Some(token.to_owned());
    }

    /// Makes `verb` (`get`, `list`, `create`, `patch`, `delete`) on `resource` (a plural such as
    /// `secrets`) answer 403 Forbidden.
    pub fn deny(&self, verb: &str, resource: &str) {
        self.lock()
            .denied
            .insert((verb.to_owned(), resource.to_owned()));
    }

    /// The stored object, as the API server would return it.
    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let info = resource_info(resource).expect("known resource");
        self.lock()
            .objects
            .get(&Key {
                resource: info.plural,
                namespace: namespace.map(str::to_owned),
                name: name.to_owned(),
            })
            .map(|s| s.object.clone())
    }

    /// Names of the stored objects of `resource` in `namespace`.
    pub fn names(&self, resource: &str, namespace: Option<&str>) -> Vec<String> {
        self.lock()
            .objects
            .keys()
            .filter(|k| k.resource == resource && k.namespace.as_deref() == namespace)
            .map(|k| k.name.clone())
            .collect()
    }

    /// Stores `object` as a controller or kubelet would (no field manager, no validation of the
    /// namespace), filling in uid, resourceVersion and creationTimestamp when missing.
    pub fn put(&self, resource: &str, mut object: Value) -> Value {
        let info = resource_info(resource).expect("known resource");
        let mut state = self.lock();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
        object["apiVersion"] = json!(info.api_version);
        object["kind"] = json!(info.kind);
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(state.next_uid());
        }
        if object["metadata"]["creationTimestamp"].is_null() {
            object["metadata"]["creationTimestamp"] = json!(now());
        }
        object["metadata"]["resourceVersion"] = json!(state.next_resource_version());
        state.objects.insert(
            Key {
                resource: info.plural,
                namespace,
                name,
            },
            Stored {
                object: object.clone(),
                managers: BTreeMap::new(),
            },
        );
        object
    }

    /// Removes an object outright (e.g. a kubelet finishing a pod's graceful deletion).
    pub fn remove(&self, resource: &str, namespace: Option<&str>, name: &str) -> bool {
        self.lock()
            .objects
            .remove(&Key {
                resource: resource_info(resource).expect("known resource").plural,
                namespace: namespace.map(str::to_owned),
                name: name.to_owned(),
            })
            .is_some()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The field managers that own fields of an object.
    pub fn managers(&self, resource: &str, namespace: Option<&str>, name: &str) -> Vec<String> {
        self.lock()
            .objects
            .get(&Key {
                resource: resource_info(resource).expect("known resource").plural,
                namespace: namespace.map(str::to_owned),
                name: name.to_owned(),
            })
            .map(|s| s.managers.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn serve(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let body = body.collect_bytes().await.unwrap_or_default();
        let query: BTreeMap<String, String> =
            url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let path = parts.uri.path().to_owned();
        let authorization = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (status, value) = {
            let mut state = self.lock();
            let authorized = state
                .token
                .as_ref()
                .is_none_or(|t| authorization.as_deref() == Some(&format!("Bearer {t}")));
            state.requests.push(Recorded {
                method: parts.method.clone(),
                path: path.clone(),
                query: query.clone(),
                content_type: content_type.clone(),
            });
            if authorized {
                state.handle(&parts.method, &path, &query, content_type.as_deref(), &body)
            } else {
                status(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "Unauthorized",
                    None,
                )
            }
        };
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&value).unwrap()))
            .unwrap()
    }
}

impl State {
    fn next_resource_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    fn next_uid(&mut self) -> String {
        self.uid += 1;
        format!("00000000-0000-4000-8000-{:012}", self.uid)
    }

    fn handle(
        &mut self,
        method: &Method,
        path: &str,
        query: &BTreeMap<String, String>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Answer {
        if path == "/version" && method == Method::GET {
            return (
                StatusCode::OK,
                json!({
                    "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake",
                    "gitCommit": "0000000", "gitTreeState": "clean",
                    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
                    "compiler": "gc", "platform": "linux/amd64"
                }),
            );
        }
        let Some(target) = parse_path(path) else {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
                None,
            );
        };
        let verb = match (method, &target.name) {
            (&Method::GET, Some(_)) => "get",
            (&Method::GET, None) => "list",
            (&Method::POST, None) => "create",
            (&Method::PATCH, Some(_)) => "patch",
            (&Method::DELETE, Some(_)) => "delete",
            _ => {
                return status(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    &format!("the server does not allow this method on {path}"),
                    None,
                );
            }
        };
        if self
            .denied
            .contains(&(verb.to_owned(), target.info.plural.to_owned()))
        {
            let object = match &target.name {
                Some(name) => format!("{} \"{name}\"", target.info.plural),
                None => target.info.plural.to_owned(),
            };
            let scope = match &target.namespace {
                Some(ns) => format!(" in the namespace \"{ns}\""),
                None => " at the cluster scope".to_owned(),
            };
            return status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!(
                    "{object} is forbidden: User \"test-user\" cannot {verb} resource \"{}\" in API group \"{}\"{scope}",
                    target.info.plural, target.info.group
                ),
                target.name.as_deref(),
            );
        }
        match verb {
            "get" => self.get(&target),
            "list" => self.list(&target, query),
            "create" => self.create(&target, query, body),
            "patch" => self.apply(&target, query, content_type, body),
            _ => self.delete(&target, body),
        }
    }

    fn key(target: &Target, name: &str) -> Key {
        Key {
            resource: target.info.plural,
            namespace: target.namespace.clone(),
            name: name.to_owned(),
        }
    }

    fn not_found(target: &Target, name: &str) -> Answer {
        status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{} \"{name}\" not found", target.info.plural),
            Some(name),
        )
    }

    fn get(&self, target: &Target) -> Answer {
        let name = target.name.as_deref().unwrap_or_default();
        match self.objects.get(&Self::key(target, name)) {
            Some(stored) => (StatusCode::OK, stored.object.clone()),
            None => Self::not_found(target, name),
        }
    }

    fn list(&self, target: &Target, query: &BTreeMap<String, String>) -> Answer {
        let selector: Vec<(&str, &str)> = query
            .get("labelSelector")
            .map(|s| {
                s.split(',')
                    .filter_map(|term| term.split_once('='))
                    .map(|(k, v)| (k.trim(), v.trim_start_matches('=').trim()))
                    .collect()
            })
            .unwrap_or_default();
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|(k, _)| {
                k.resource == target.info.plural
                    && (target.namespace.is_none() || k.namespace == target.namespace)
            })
            .map(|(_, s)| s.object.clone())
            .filter(|o| {
                selector
                    .iter()
                    .all(|(k, v)| o["metadata"]["labels"][*k].as_str() == Some(*v))
            })
            .collect();
        (
            StatusCode::OK,
            json!({
                "apiVersion": target.info.api_version,
                "kind": format!("{}List", target.info.kind),
                "metadata": {"resourceVersion": self.resource_version.to_string()},
                "items": items,
            }),
        )
    }

    /// Checks the body is an object of the addressed resource, named as the path says (when it
    /// says), in the addressed namespace, with valid names and labels.
    fn check_body(target: &Target, object: &Value) -> Result<String, Answer> {
        let invalid = |message: String| {
            Err(status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                &message,
                target.name.as_deref(),
            ))
        };
        let bad = |message: String| {
            Err(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &message,
                target.name.as_deref(),
            ))
        };
        if object["apiVersion"] != json!(target.info.api_version)
            || object["kind"] != json!(target.info.kind)
        {
            return bad(format!(
                "the body is {}/{}, not {}/{}",
                object["apiVersion"], object["kind"], target.info.api_version, target.info.kind
            ));
        }
        let Some(name) = object["metadata"]["name"].as_str() else {
            return invalid(
                "metadata.name: Required value: name or generateName is required".into(),
            );
        };
        if let Some(expected) = &target.name
            && name != expected
        {
            return bad(format!(
                "the name of the object ({name}) does not match the name on the URL ({expected})"
            ));
        }
        if let Some(ns) = object["metadata"]["namespace"].as_str()
            && Some(ns) != target.namespace.as_deref()
        {
            return bad("the namespace of the provided object does not match the namespace sent on the request".into());
        }
        if !is_dns1123_subdomain(name) {
            return invalid(format!(
                "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
            ));
        }
        for labels in [
            &object["metadata"]["labels"],
            &object["spec"]["template"]["metadata"]["labels"],
        ] {
            if let Some(labels) = labels.as_object() {
                for (key, value) in labels {
                    let value = value.as_str().unwrap_or_default();
                    if value.len() > 63 {
                        return invalid(format!(
                            "metadata.labels: Invalid value: \"{value}\": must be no more than 63 characters (label {key})"
                        ));
                    }
                }
            }
        }
        Ok(name.to_owned())
    }

    fn namespace_exists(&self, target: &Target) -> Result<(), Answer> {
        let Some(ns) = &target.namespace else {
            return Ok(());
        };
        let key = Key {
            resource: "namespaces",
            namespace: None,
            name: ns.clone(),
        };
        if self.objects.contains_key(&key) {
            Ok(())
        } else {
            Err(status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("namespaces \"{ns}\" not found"),
                Some(ns),
            ))
        }
    }

    fn fill_new(&mut self, target: &Target, object: &mut Value) {
        let uid = self.next_uid();
        let meta = &mut object["metadata"];
        meta["uid"] = json!(uid);
        meta["creationTimestamp"] = json!(now());
        if let Some(ns) = &target.namespace {
            meta["namespace"] = json!(ns);
        }
        if !object["spec"].is_null() {
            object["metadata"]["generation"] = json!(1);
        }
        object["metadata"]["resourceVersion"] = json!(self.next_resource_version());
    }

    fn create(&mut self, target: &Target, query: &BTreeMap<String, String>, body: &[u8]) -> Answer {
        let mut object: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string(), None),
        };
        let name = match Self::check_body(target, &object) {
            Ok(name) => name,
            Err(answer) => return answer,
        };
        if let Err(answer) = self.namespace_exists(target) {
            return answer;
        }
        let key = Self::key(target, &name);
        if self.objects.contains_key(&key) {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                &format!("{} \"{name}\" already exists", target.info.plural),
                Some(&name),
            );
        }
        let manager = query
            .get("fieldManager")
            .cloned()
            .unwrap_or_else(|| "unknown".into());
        let fields = leaves(&object);
        self.fill_new(target, &mut object);
        self.objects.insert(
            key,
            Stored {
                object: object.clone(),
                managers: BTreeMap::from([(manager, fields)]),
            },
        );
        (StatusCode::CREATED, object)
    }

    fn apply(
        &mut self,
        target: &Target,
        query: &BTreeMap<String, String>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Answer {
        let name = target.name.clone().unwrap_or_default();
        if content_type != Some("application/apply-patch+yaml") {
            return status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                &format!("the fake API only supports server-side apply, not {content_type:?}"),
                Some(&name),
            );
        }
        let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "PATCH requests with apply-patch content type require a fieldManager",
                Some(&name),
            );
        };
        let force = query.get("force").map(String::as_str) == Some("true");
        // Apply bodies are YAML (JSON is YAML).
        let applied: Value = match serde_yaml::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &e.to_string(),
                    Some(&name),
                );
            }
        };
        if let Err(answer) = Self::check_body(target, &applied) {
            return answer;
        }
        if let Err(answer) = self.namespace_exists(target) {
            return answer;
        }
        let new_fields = leaves(&applied);
        let key = Self::key(target, &name);
        let Some(stored) = self.objects.get(&key).cloned() else {
            let mut object = applied;
            self.fill_new(target, &mut object);
            set_managed_fields(&mut object, [manager.as_str()], target.info.api_version);
            self.objects.insert(
                key,
                Stored {
                    object: object.clone(),
                    managers: BTreeMap::from([(manager.clone(), new_fields)]),
                },
            );
            return (StatusCode::CREATED, object);
        };

        let mut managers = stored.managers.clone();
        // Conflicts: fields another manager owns that this apply sets to a different value.
        let mut conflicts = Vec::new();
        for (other, fields) in &managers {
            if other == manager {
                continue;
            }
            for field in fields.intersection(&new_fields) {
                if lookup(&stored.object, field) != lookup(&applied, field) {
                    conflicts.push((other.clone(), field.clone()));
                }
            }
        }
        if !conflicts.is_empty() {
            if !force {
                let list = conflicts
                    .iter()
                    .map(|(m, f)| format!("conflict with \"{m}\": .{}", f.join(".")))
                    .collect::<Vec<_>>()
                    .join(", ");
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    &format!("Apply failed with {} conflict(s): {list}", conflicts.len()),
                    Some(&name),
                );
            }
            for (other, field) in &conflicts {
                if let Some(owned) = managers.get_mut(other) {
                    owned.remove(field);
                }
            }
        }
        let mut object = stored.object.clone();
        // Fields this manager set before, does not set now, and nobody else owns: removed.
        let previous = managers.get(manager).cloned().unwrap_or_default();
        for field in previous.difference(&new_fields) {
            let owned_elsewhere = managers
                .iter()
                .any(|(m, fields)| m != manager && fields.contains(field));
            if !owned_elsewhere {
                remove_path(&mut object, field);
            }
        }
        merge(&mut object, &applied);
        managers.insert(manager.clone(), new_fields);
        managers.retain(|_, fields| !fields.is_empty());

        let names: Vec<&str> = managers.keys().map(String::as_str).collect();
        set_managed_fields(&mut object, names, target.info.api_version);
        let unchanged = without_version(&object) == without_version(&stored.object);
        if !unchanged {
            if stored.object["spec"] != object["spec"] {
                let generation = stored.object["metadata"]["generation"]
                    .as_i64()
                    .unwrap_or(0);
                object["metadata"]["generation"] = json!(generation + 1);
            }
            object["metadata"]["resourceVersion"] = json!(self.next_resource_version());
        }
        self.objects.insert(
            key,
            Stored {
                object: object.clone(),
                managers,
            },
        );
        (StatusCode::OK, object)
    }

    fn delete(&mut self, target: &Target, body: &[u8]) -> Answer {
        let name = target.name.clone().unwrap_or_default();
        let options: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let key = Self::key(target, &name);
        if !self.objects.contains_key(&key) {
            return Self::not_found(target, &name);
        }
        let immediate = options["gracePeriodSeconds"].as_i64() == Some(0);
        let object = self.delete_key(&key, immediate);
        (StatusCode::OK, object)
    }

    /// Deletes (or marks for deletion) one object and, like the garbage collector with
    /// background propagation, every object whose owner references name it.
    fn delete_key(&mut self, key: &Key, immediate: bool) -> Value {
        let Some(stored) = self.objects.get(key).cloned() else {
            return Value::Null;
        };
        let graceful = key.resource == "pods" && !immediate;
        let has_finalizers = stored.object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let object = if graceful || has_finalizers {
            let mut object = stored.object.clone();
            if object["metadata"]["deletionTimestamp"].is_null() {
                object["metadata"]["deletionTimestamp"] = json!(now());
                object["metadata"]["resourceVersion"] = json!(self.next_resource_version());
            }
            self.objects.insert(
                key.clone(),
                Stored {
                    object: object.clone(),
                    managers: stored.managers,
                },
            );
            object
        } else {
            self.objects.remove(key);
            stored.object.clone()
        };
        if let Some(uid) = stored.object["metadata"]["uid"].as_str() {
            let dependents: Vec<Key> = self
                .objects
                .iter()
                .filter(|(k, s)| {
                    *k != key
                        && s.object["metadata"]["ownerReferences"]
                            .as_array()
                            .is_some_and(|refs| refs.iter().any(|r| r["uid"] == json!(uid)))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for dependent in dependents {
                self.delete_key(&dependent, false);
            }
        }
        object
    }
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group_version, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("v1".to_owned(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        ["namespaces", ns, plural] => (Some(*ns), *plural, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name)),
        [plural] => (None, *plural, None),
        [plural, name] => (None, *plural, Some(*name)),
        _ => return None,
    };
    let info = resource_info(plural)?;
    // Namespaced resources can also be listed across all namespaces.
    let scope_ok = match (info.namespaced, namespace.is_some(), name.is_some()) {
        (false, in_namespace, _) => !in_namespace,
        (true, true, _) => true,
        (true, false, named) => !named,
    };
    if info.api_version != group_version || !scope_ok {
        return None;
    }
    Some(Target {
        info,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
    })
}

/// A `Status` answer like the API server's.
fn status(code: StatusCode, reason: &str, message: &str, name: Option<&str>) -> Answer {
    let mut details = Map::new();
    if let Some(name) = name {
        details.insert("name".into(), json!(name));
    }
    (
        code,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": details,
            "code": code.as_u16(),
        }),
    )
}

/// Fields the API server sets or that identify the object; never owned by a manager.
fn is_identity(path: &[String]) -> bool {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    matches!(
        path.as_slice(),
        ["apiVersion"] | ["kind"] | ["metadata", "name"] | ["metadata", "namespace"]
    ) || matches!(
        path.as_slice(),
        [
            "metadata",
            "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "managedFields"
                | "deletionTimestamp"
        ]
    ) || path.first() == Some(&"status")
}

/// The leaf field paths of an object: scalars, lists (atomic) and empty maps.
fn leaves(value: &Value) -> BTreeSet<Vec<String>> {
    fn walk(value: &Value, path: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    path.push(k.clone());
                    walk(v, path, out);
                    path.pop();
                }
            }
            _ => {
                if !is_identity(path) {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.get(k))
}

/// Removes a leaf and then every map the removal left empty.
fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if let Some(map) = parents
        .iter()
        .try_fold(&mut *value, |v, k| v.get_mut(k))
        .and_then(Value::as_object_mut)
    {
        map.remove(last);
        if map.is_empty() {
            remove_path(value, parents);
        }
    }
}

/// Deep-merges maps; anything else in `patch` replaces what `target` had.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) if !p.is_empty() => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn set_managed_fields<'a>(
    object: &mut Value,
    managers: impl IntoIterator<Item = &'a str>,
    api_version: &str,
) {
    let entries: Vec<Value> = managers
        .into_iter()
        .map(|m| {
            json!({"manager": m, "operation": "Apply", "apiVersion": api_version, "fieldsType": "FieldsV1"})
        })
        .collect();
    object["metadata"]["managedFields"] = json!(entries);
}

fn without_version(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    object
}

fn is_dns1123_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
