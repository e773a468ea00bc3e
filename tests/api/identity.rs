//! The README's order as a new user follows it (issue 19), end to end with the real `etl`: the
//! quick start's `etl replicate` runs pipeline N into one SQLite file; the control plane, asked
//! for a pipeline that would get the same id on the same source, refuses (409, nothing created)
//! and the next one gets a new id. Then the start check (409 for state recorded for another
//! destination), `POST …/reset` and a start that copies everything again. Both SQLite files end
//! equal to the source, and the quick start's pipeline is never disturbed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::process::{Child, Command};

use crate::helpers::{TestApp, TestSource, assert_error, spawn_app};

/// A pipeline run from its own configuration, as in the quick start.
struct CliPipeline {
    dir: tempfile::TempDir,
    database: PathBuf,
}

impl CliPipeline {
    fn new(id: i64, source: &TestSource, database: &Path) -> CliPipeline {
        let dir = tempfile::tempdir().unwrap();
        let connection = source.config();
        std::fs::write(
            dir.path().join("dev.yaml"),
            format!(
                "pipeline:\n  id: {id}\n  publication_name: etl_demo\n  pg_connection: {}\n  \
                 batch: {{max_size: 100, max_fill_ms: 100}}\n  metrics_address: null\n\
                 destination:\n  sqlite: {{path: '{}'}}\n",
                connection,
                database.display()
            ),
        )
        .unwrap();
        CliPipeline {
            dir,
            database: database.to_owned(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_etl"));
        command
            .arg("--config-dir")
            .arg(self.dir.path())
            .args(["--env", "dev"])
            .args(args)
            .stdin(Stdio::null())
            .env_remove("RUST_BACKTRACE")
            .kill_on_drop(true);
        command
    }

    /// Runs `etl <args>` to its end: exit code and stderr.
    async fn run(&self, args: &[&str]) -> (Option<i32>, String) {
        let output = tokio::time::timeout(Duration::from_secs(120), self.command(args).output())
            .await
            .expect("etl exits within 120 s")
            .expect("run etl");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn spawn(&self) -> Child {
        self.command(&["replicate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etl replicate")
    }
}

async fn source_rows(pool: &PgPool) -> Vec<(i64, String, String)> {
    sqlx::query_as("select id, customer, amount::text from demo_orders order by id")
        .fetch_all(pool)
        .await
        .expect("read demo_orders")
}

fn sqlite_rows(path: &Path) -> Option<Vec<(i64, String, String)>> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    let mut statement = conn
        .prepare(r#"select id, customer, amount from "public.demo_orders" order by id"#)
        .ok()?;
    let rows = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .ok()?;
    rows.collect::<Result<_, _>>().ok()
}

/// Waits until the SQLite file holds exactly the source's rows.
async fn wait_equal(pool: &PgPool, file: &Path, what: &str) {
    let mut last = None;
    for _ in 0..600 {
        let expected = source_rows(pool).await;
        last = sqlite_rows(file);
        if last.as_ref() == Some(&expected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{what}: {} never equalled the source {:?}: {last:?}",
        file.display(),
        source_rows(pool).await
    );
}

async fn post(app: &TestApp, path: &str, body: Value) -> crate::helpers::Reply {
    app.post(path, Some("acme"), body).await
}

async fn create_pipeline(
    app: &TestApp,
    source_id: i64,
    destination_id: i64,
) -> crate::helpers::Reply {
    post(
        app,
        "/v1/pipelines",
        json!({"source_id": source_id, "destination_id": destination_id,
               "publication_name": "etl_demo",
               "config": {"batch": {"max_size": 100, "max_fill_ms": 100}}}),
    )
    .await
}

async fn wait_stopped(app: &TestApp, id: i64) {
    for _ in 0..300 {
        let status = app
            .get(&format!("/v1/pipelines/{id}/status"), Some("acme"))
            .await
            .expect(200);
        if status["status"] == json!("stopped") || status["status"] == json!("failed") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("pipeline {id} did not stop");
}

#[tokio::test]
async fn a_second_pipeline_with_the_same_id_is_refused_and_both_destinations_equal_the_source() {
    let app = spawn_app().await;
    let source = TestSource::create().await;
    let pool = source.db.pool().await;
    sqlx::raw_sql(
        "create table public.demo_orders (id bigint generated always as identity primary key, \
           customer text not null, amount numeric(10,2) not null); \
         insert into demo_orders (customer, amount) select 'customer ' || g, g * 1.25 \
           from generate_series(1, 7) g; \
         create publication etl_demo for table demo_orders",
    )
    .execute(&pool)
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    // Pipeline ids name slots, which are global to the cluster: one of our own per process.
    let id = i64::from(std::process::id()) * 1000 + 900;

    // The quick start: `etl replicate` with pipeline id N into etl.db.
    let quick_start = CliPipeline::new(id, &source, &data.path().join("etl.db"));
    let mut replicator = quick_start.spawn();
    wait_equal(&pool, &quick_start.database, "the quick start's copy").await;

    // The control-plane walkthrough, whose first pipeline would get the same id N.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter table app.pipelines alter column id restart with {id}"
    )))
    .execute(&app.pool)
    .await
    .unwrap();
    app.create_tenant("acme").await;
    app.create_image().await;
    let source_id = app.create_source("acme", "demo", &source).await;
    // A tenant's file lives in its directory under the local runtime's `data_dir`.
    let demo = app.config.local.data_dir.join("acme").join("demo.db");
    let destination_id = app
        .create_destination("acme", "file", json!({"sqlite": {"path": "demo.db"}}))
        .await;
    let refused = create_pipeline(&app, source_id, destination_id)
        .await
        .expect(409);
    assert_error(&refused, "conflict");
    let message = refused["message"].as_str().unwrap();
    for part in [
        format!("pipeline id {id}"),
        format!("etl_apply_{id}"),
        "etl pipeline reset".to_owned(),
        "new id".to_owned(),
    ] {
        assert!(message.contains(&part), "`{part}` missing from: {message}");
    }
    let listed = app.get("/v1/pipelines", Some("acme")).await.expect(200);
    assert_eq!(listed["pipelines"], json!([]), "nothing was created");

    // Created again, the pipeline gets a new id and replicates into demo.db.
    let api_id = create_pipeline(&app, source_id, destination_id)
        .await
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    assert_ne!(api_id, id);
    post(&app, &format!("/v1/pipelines/{api_id}/start"), json!({}))
        .await
        .expect(200);
    wait_equal(&pool, &demo, "the API pipeline's copy").await;
    let running = post(&app, &format!("/v1/pipelines/{api_id}/reset"), json!({}))
        .await
        .expect(409);
    assert!(
        running["message"].as_str().unwrap().contains("running"),
        "{running}"
    );
    sqlx::query("insert into demo_orders (customer, amount) values ('bob', 7)")
        .execute(&pool)
        .await
        .unwrap();
    wait_equal(&pool, &quick_start.database, "the quick start after bob").await;
    wait_equal(&pool, &demo, "the API pipeline after bob").await;
    post(&app, &format!("/v1/pipelines/{api_id}/stop"), json!({}))
        .await
        .expect(200);
    wait_stopped(&app, api_id).await;

    // A replicator with the API pipeline's id, run from a config with another file, is
    // refused by the engine itself; reset and run, its state belongs to that other file...
    let intruder = CliPipeline::new(api_id, &source, &data.path().join("other.db"));
    let (code, stderr) = intruder.run(&["replicate", "--once"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("`sqlite {}`", demo.display())),
        "{stderr}"
    );
    let (code, stderr) = intruder.run(&["pipeline", "reset", "--yes"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = intruder.run(&["replicate", "--once"]).await;
    assert_eq!(code, Some(0), "{stderr}");

    // ... so the control plane refuses to start its pipeline on it, until a reset.
    let conflict = post(&app, &format!("/v1/pipelines/{api_id}/start"), json!({}))
        .await
        .expect(409);
    let message = conflict["message"].as_str().unwrap();
    assert!(message.contains("other.db"), "{message}");
    assert!(
        message.contains(&format!("/v1/pipelines/{api_id}/reset")),
        "{message}"
    );
    let reset = post(&app, &format!("/v1/pipelines/{api_id}/reset"), json!({}))
        .await
        .expect(200);
    assert!(
        reset["dropped"].as_str().unwrap().contains("other.db"),
        "{reset}"
    );
    sqlx::query("insert into demo_orders (customer, amount) values ('carol', 8)")
        .execute(&pool)
        .await
        .unwrap();
    post(&app, &format!("/v1/pipelines/{api_id}/start"), json!({}))
        .await
        .expect(200);
    wait_equal(&pool, &demo, "the API pipeline after its reset").await;
    wait_equal(&pool, &quick_start.database, "the quick start after carol").await;
    let replication = app
        .get(
            &format!("/v1/pipelines/{api_id}/replication-status"),
            Some("acme"),
        )
        .await
        .expect(200);
    assert_eq!(replication["slot"]["exists"], json!(true), "{replication}");

    post(&app, &format!("/v1/pipelines/{api_id}/stop"), json!({}))
        .await
        .expect(200);
    wait_stopped(&app, api_id).await;
    let _ = replicator.kill().await;
    let _ = replicator.wait().await;
    pool.close().await;
    app.shutdown().await;
    source.drop().await;
}
