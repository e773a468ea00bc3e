//! The crate's layers point one way: no import cycle between top-level modules, the engine
//! never imports a destination implementation, the replication client (`engine::source`) builds
//! on the base module and the configuration alone, and the base module imports nothing of ours.
//! Read from the source files, so a new `use` that breaks a layer fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules each file under `dir` names as `crate::<module>`.
fn imports(dir: &Path) -> BTreeSet<String> {
    let mut files = Vec::new();
    if dir.is_dir() {
        rust_files(dir, &mut files);
    } else {
        files.push(dir.with_extension("rs"));
    }
    let mut found = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn top_level_modules_form_no_cycle() {
    let src = src();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("read src") {
        let path = entry.expect("dir entry").path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if matches!(name, "lib" | "main") {
            continue;
        }
        let name = name.to_owned();
        let mut deps = imports(&src.join(&name));
        deps.remove(&name);
        graph.insert(name, deps);
    }
    assert!(
        graph.contains_key("engine") && graph.contains_key("base"),
        "{graph:?}"
    );
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = path.iter().position(|n| n == node) {
            panic!("import cycle: {} -> {node}", path[at..].join(" -> "));
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(node.to_owned());
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_engine_owns_the_contract_and_imports_no_destination() {
    let engine = imports(&src().join("engine"));
    assert!(!engine.contains("destinations"), "{engine:?}");
    let source = imports(&src().join("engine").join("source"));
    let allowed: BTreeSet<String> = ["base", "config"].map(String::from).into();
    assert!(
        source.is_subset(&allowed),
        "engine::source imports {source:?}"
    );
    let base = imports(&src().join("base"));
    assert_eq!(base, ["base".to_owned()].into(), "base imports {base:?}");
}
