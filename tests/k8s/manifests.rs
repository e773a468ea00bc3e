//! Reading the manifests under `deploy/`: the files a kustomization lists, and (with a
//! `kubectl` named by `ETL_KUBECTL`, which `scripts/test.sh` installs and sets) what
//! `kubectl kustomize` renders from them. Objects are compared as JSON values, so formatting
//! and key order do not matter and a changed value does.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use crate::helpers::repo;

/// One Kubernetes object from a YAML stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub value: Value,
}

impl Object {
    fn text(&self, pointer: &str) -> Option<&str> {
        self.value.pointer(pointer).and_then(Value::as_str)
    }

    pub fn kind(&self) -> &str {
        self.text("/kind").unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.text("/metadata/name").unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.text("/metadata/namespace")
    }

    /// `Kind namespace/name`, for messages and lookups.
    pub fn key(&self) -> String {
        format!(
            "{} {}/{}",
            self.kind(),
            self.namespace().unwrap_or("-"),
            self.name()
        )
    }
}

/// The objects of a multi-document YAML stream (empty documents skipped).
pub fn parse(yaml: &str, origin: &str) -> Vec<Object> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|document| {
            Value::deserialize(document).unwrap_or_else(|e| panic!("{origin}: invalid YAML: {e}"))
        })
        .filter(|value| !value.is_null())
        .map(|value| Object { value })
        .collect()
}

/// `deploy/{path}`.
pub fn deploy(path: &str) -> PathBuf {
    repo().join("deploy").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The objects of `deploy/base/{file}`.
pub fn base_file(file: &str) -> Vec<Object> {
    let path = deploy("base").join(file);
    parse(&read(&path), &path.display().to_string())
}

/// The `resources` of `deploy/base/kustomization.yaml`, in order.
pub fn base_resources() -> Vec<String> {
    let path = deploy("base/kustomization.yaml");
    let kustomization: Value = serde_yaml::from_str(&read(&path)).unwrap();
    kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a file name").to_owned())
        .collect()
}

/// Every object of the base, read from the files its kustomization lists.
pub fn base_objects() -> Vec<Object> {
    base_resources().iter().flat_map(|f| base_file(f)).collect()
}

/// The one object of `kind` named `name` among `objects`.
pub fn find<'a>(objects: &'a [Object], kind: &str, name: &str) -> &'a Object {
    let found: Vec<&Object> = objects
        .iter()
        .filter(|o| o.kind() == kind && o.name() == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} `{name}`, found {}",
        found.len()
    );
    found[0]
}

/// The `kubectl` to render kustomizations with: `ETL_KUBECTL`. Without it (a developer's
/// `cargo test` with no kubectl installed), `None` and a note on stderr; under CI (`CI` set)
/// a missing kubectl fails instead, so the rendering checks never go quietly missing.
pub fn kubectl() -> Option<PathBuf> {
    match std::env::var_os("ETL_KUBECTL") {
        Some(path) => Some(PathBuf::from(path)),
        None if std::env::var_os("CI").is_some() => {
            panic!("ETL_KUBECTL is not set; scripts/test.sh installs kubectl and sets it")
        }
        None => {
            eprintln!(
                "note: ETL_KUBECTL is not set, so `kubectl kustomize` output is not checked \
                 (scripts/test.sh installs kubectl and sets it)"
            );
            None
        }
    }
}

/// `kubectl kustomize deploy/{dir}`.
pub fn render(kubectl: &Path, dir: &str) -> Vec<Object> {
    let output = Command::new(kubectl)
        .arg("kustomize")
        .arg(deploy(dir))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", kubectl.display()));
    assert!(
        output.status.success(),
        "kubectl kustomize deploy/{dir} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse(
        &String::from_utf8_lossy(&output.stdout),
        &format!("kubectl kustomize deploy/{dir}"),
    )
}
