//! The `local` runtime through the API, with a probe script standing in for `etl replicate`:
//! it records the arguments and `APP_` variables it was started with, then runs until SIGTERM
//! (or crashes on demand). Like the replicator it logs `resuming from LSN` once "streaming",
//! unless a `hold` file next to the pipeline folders keeps it starting. The end-to-end test with the real replicator is in `e2e.rs`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestSource, spawn_app_with, start};

const PROBE: &str = r#"#!/bin/sh
# args: --env ENV --config-dir DIR replicate
out="$4/.."
echo "$@" > "$out/probe-args"
env | grep '^APP_' | sort > "$out/probe-env"
if [ -f "$out/../crash" ]; then
  # The error line, then a backtrace as `etl` prints one when RUST_BACKTRACE is set.
  echo "fatal: probe told to crash"
  echo "   0: etl::main"
  echo "             at ./src/main.rs:31:13"
  exit 3
fi
trap 'echo "probe stopping"; exit 0' TERM
echo "probe running"
while [ -f "$out/../hold" ]; do sleep 0.05; done
echo "resuming from LSN 0/0"
while true; do sleep 0.05; done
"#;

fn probe(dir: &Path) -> PathBuf {
    let path = dir.join("probe.sh");
    std::fs::write(&path, PROBE).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn pipeline(app: &TestApp, source: &TestSource) -> i64 {
    app.create_tenant("acme").await;
    app.create_image().await;
    let source_id = app.create_source("acme", "shop", source).await;
    let destination_id = app
        .create_destination("acme", "mem", json!({"memory": {}}))
        .await;
    app.create_pipeline("acme", source_id, destination_id, "orders_pub")
        .await["id"]
        .as_i64()
        .unwrap()
}

async fn status(app: &TestApp, id: i64) -> Value {
    app.get(&format!("/v1/pipelines/{id}/status"), Some("acme"))
        .await
        .expect(200)
}

/// Polls the status until `wanted` (the probe needs a moment to start or exit).
async fn wait_status(app: &TestApp, id: i64, wanted: &str) -> Value {
    for _ in 0..100 {
        let now = status(app, id).await;
        if now["status"] == json!(wanted) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "pipeline {id} never reached `{wanted}`: {}",
        status(app, id).await
    );
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn start_runs_the_replicator_with_secrets_only_in_its_environment_and_stop_ends_it() {
    let bin = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Some(probe(bin.path()))).await;
    let source = TestSource::create().await;
    let id = pipeline(&app, &source).await;
    let password = source.password.clone();

    // `starting` until the replicator says its session is up, then `started`.
    std::fs::write(app.state_dir.path().join("hold"), "").unwrap();
    let started = app
        .post(
            &format!("/v1/pipelines/{id}/start"),
            Some("acme"),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(started["status"], json!("starting"), "{started}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&app, id).await["status"], json!("starting"));
    std::fs::remove_file(app.state_dir.path().join("hold")).unwrap();
    wait_status(&app, id, "started").await;
    let dir = app.state_dir.path().join(format!("pipeline-{id}"));
    let config = std::fs::read_to_string(dir.join("config/dev.yaml")).unwrap();
    assert!(!config.contains(&password), "{config}");
    assert!(config.contains("publication_name: orders_pub"), "{config}");
    assert!(config.contains(&format!("id: {id}")), "{config}");
    assert!(config.contains("memory: {}"), "{config}");
    // The probe writes what it saw once it runs.
    let mut env = String::new();
    for _ in 0..100 {
        env = std::fs::read_to_string(dir.join("probe-env")).unwrap_or_default();
        if !env.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        env.trim(),
        format!("APP_PIPELINE__PG_CONNECTION__PASSWORD={password}")
    );
    let args = std::fs::read_to_string(dir.join("probe-args")).unwrap();
    assert_eq!(
        args.trim(),
        format!(
            "--env dev --config-dir {} replicate",
            dir.join("config").display()
        )
    );
    let pid: i32 = std::fs::read_to_string(dir.join("replicator.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    assert_eq!(
        app.get(&format!("/v1/pipelines/{id}"), Some("acme"))
            .await
            .expect(200)["desired_state"],
        json!("started")
    );

    // A running pipeline blocks deleting its tenant.
    app.delete("/v1/tenants/acme", None).await.expect(409);

    let stopped = app
        .post(&format!("/v1/pipelines/{id}/stop"), Some("acme"), json!({}))
        .await
        .expect(200);
    assert_eq!(stopped["status"], json!("stopped"), "{stopped}");
    assert!(!alive(pid), "the replicator still runs after stop");
    let log = std::fs::read_to_string(dir.join("replicator.log")).unwrap();
    assert!(
        log.contains("probe stopping"),
        "SIGTERM, not SIGKILL: {log}"
    );

    // Tenant delete now removes the pipeline's local files too.
    app.delete("/v1/tenants/acme", None).await.expect(204);
    assert!(!dir.exists());
    app.shutdown().await;
    source.drop().await;
}

#[tokio::test]
async fn a_restarted_api_finds_its_running_replicators_through_pid_files() {
    let bin = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Some(probe(bin.path()))).await;
    let source = TestSource::create().await;
    let id = pipeline(&app, &source).await;
    app.post(
        &format!("/v1/pipelines/{id}/start"),
        Some("acme"),
        json!({}),
    )
    .await
    .expect(200);
    let pid_file = app
        .state_dir
        .path()
        .join(format!("pipeline-{id}/replicator.pid"));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let (db, state_dir, config) = app.stop_serving().await;
    let app = start(db, config, state_dir).await;
    wait_status(&app, id, "started").await;
    assert!(alive(pid));

    // `restart` replaces the process.
    app.post(
        &format!("/v1/pipelines/{id}/restart"),
        Some("acme"),
        json!({}),
    )
    .await
    .expect(200);
    let new_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(new_pid, pid);
    assert!(!alive(pid) && alive(new_pid));

    // A stale pid file naming some other process is not mistaken for the replicator.
    app.post(&format!("/v1/pipelines/{id}/stop"), Some("acme"), json!({}))
        .await
        .expect(200);
    std::fs::write(&pid_file, std::process::id().to_string()).unwrap();
    let stale = status(&app, id).await;
    assert_eq!(stale["status"], json!("failed"), "{stale}");
    app.post(&format!("/v1/pipelines/{id}/stop"), Some("acme"), json!({}))
        .await
        .expect(200);
    assert_eq!(status(&app, id).await["status"], json!("stopped"));
    app.shutdown().await;
    source.drop().await;
}

#[tokio::test]
async fn a_crashing_replicator_is_reported_failed_and_the_api_keeps_serving() {
    let bin = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Some(probe(bin.path()))).await;
    let source = TestSource::create().await;
    let id = pipeline(&app, &source).await;
    // `crash` next to the state dir's pipeline folders makes the probe exit 3 at once, its
    // error line followed by backtrace frames (issue 11: the reason is the error line).
    std::fs::write(app.state_dir.path().join("crash"), "").unwrap();
    app.post(
        &format!("/v1/pipelines/{id}/start"),
        Some("acme"),
        json!({}),
    )
    .await
    .expect(200);
    let failed = wait_status(&app, id, "failed").await;
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("exited with code 3"), "{reason}");
    assert!(reason.ends_with("fatal: probe told to crash"), "{reason}");
    app.get("/health_check", None).await.expect(200);

    // Killed from outside: failed too, naming the signal.
    std::fs::remove_file(app.state_dir.path().join("crash")).unwrap();
    app.post(
        &format!("/v1/pipelines/{id}/start"),
        Some("acme"),
        json!({}),
    )
    .await
    .expect(200);
    let pid_file = app
        .state_dir
        .path()
        .join(format!("pipeline-{id}/replicator.pid"));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = wait_status(&app, id, "failed").await;
    assert!(
        killed["reason"].as_str().unwrap().contains("SIGKILL"),
        "{killed}"
    );
    // Stopping a failed pipeline clears the failure.
    app.post(&format!("/v1/pipelines/{id}/stop"), Some("acme"), json!({}))
        .await
        .expect(200);
    assert_eq!(status(&app, id).await["status"], json!("stopped"));
    app.shutdown().await;
    source.drop().await;
}
