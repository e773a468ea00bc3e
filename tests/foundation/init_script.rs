//! `scripts/init.sh` end to end with `SKIP_DOCKER=1`: it starts a private local cluster, migrates,
//! seeds the default image and the demo publication, and can run again safely.

use std::path::Path;
use std::process::Command;

use sqlx::Connection;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_init(port: u16, data: &Path, image: &str) -> std::process::Output {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new("bash")
        .arg(repo.join("scripts/init.sh"))
        .env("SKIP_DOCKER", "1")
        .env("POSTGRES_PORT", port.to_string())
        .env("POSTGRES_PASSWORD", "initpw")
        .env("POSTGRES_DB", "etl_init")
        .env("POSTGRES_DATA_VOLUME", data)
        .env("REPLICATOR_IMAGE", image)
        .env("ETL_BIN", env!("CARGO_BIN_EXE_etl"))
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .expect("run init.sh")
}

struct StopCluster<'a>(&'a Path);

impl Drop for StopCluster<'_> {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg("-c")
            .arg(format!(
                ". {}/scripts/lib.sh && stop_local_cluster {}",
                env!("CARGO_MANIFEST_DIR"),
                self.0.display()
            ))
            .status();
    }
}

#[tokio::test]
async fn init_script_sets_up_a_local_cluster_and_can_run_twice() {
    let work = tempfile::tempdir().unwrap();
    // The `postgres` user must be able to reach the data directory.
    Command::new("chmod")
        .arg("755")
        .arg(work.path())
        .status()
        .unwrap();
    let data = work.path().join("pgdata");
    let _stop = StopCluster(&data);
    let port = free_port();

    let first = run_init(port, &data, "example/replicator:1");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(first.status.success(), "init.sh failed:\n{log}");
    assert!(log.contains("skipping 'etl k8s bootstrap'"), "{log}");

    let url = format!("postgres://postgres:initpw@127.0.0.1:{port}/etl_init");
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let wal_level: String = sqlx::query_scalar("show wal_level")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(wal_level, "logical");
    let images: Vec<(String, bool)> =
        sqlx::query_as("select name, is_default from app.images order by name")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(images, vec![("example/replicator:1".to_owned(), true)]);
    let demo_tables: Vec<String> = sqlx::query_scalar(
        "select tablename::text from pg_publication_tables where pubname = 'etl_demo'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(demo_tables, vec!["demo_orders".to_owned()]);
    let demo_rows: i64 = sqlx::query_scalar("select count(*) from public.demo_orders")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(demo_rows, 5);

    // Second run with a new image: still succeeds, one default, no duplicated demo rows.
    let second = run_init(port, &data, "example/replicator:2");
    assert!(
        second.status.success(),
        "second run failed:\n{}{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    let defaults: Vec<String> = sqlx::query_scalar("select name from app.images where is_default")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(defaults, vec!["example/replicator:2".to_owned()]);
    let demo_rows: i64 = sqlx::query_scalar("select count(*) from public.demo_orders")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(demo_rows, 5);
}

/// issue 10: `init.sh` built a debug binary and the quick start then a release one (two cold
/// builds). Both must use the same profile.
#[test]
fn init_script_builds_the_profile_the_quick_start_runs() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(repo.join("scripts/init.sh")).unwrap();
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let quick_start = readme
        .split("## Quick start")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Quick start section");
    let runs_release = quick_start.contains("cargo run --release");
    let runs_debug = quick_start.contains("cargo run -- ");
    assert!(runs_release != runs_debug, "one profile in the quick start");
    let (build, binary) = if runs_release {
        ("cargo build --release", "/release/etl")
    } else {
        ("cargo build --quiet", "/debug/etl")
    };
    assert!(
        script.contains(build) && script.contains(binary),
        "init.sh must build and run what the quick start runs ({build}, {binary})"
    );
}
