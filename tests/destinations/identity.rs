//! Pipeline identity and the "destination checkpoint is the truth" rule (issue 19), through the
//! real `etl replicate --once` and `etl pipeline reset` binaries: a wiped SQLite file under a
//! ready pipeline is refused (nothing streamed into it, the slot untouched) until a reset copies
//! everything again; a SQLite mirror dropped by hand and a Postgres mirror truncated by hand are
//! copied again, never streamed with a gap; a truncate replicated from the source is not taken
//! for one done by hand.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use tokio::process::Command;

use crate::common::TestDatabase;
use crate::compare::{mirror_differences, sqlite_differences};
use crate::helpers::{exec, source_pool};

static PIPELINES: AtomicU64 = AtomicU64::new(0);

/// A source with two published tables and a config directory for `etl`.
struct Pipeline {
    db: TestDatabase,
    pool: PgPool,
    id: u64,
    dir: tempfile::TempDir,
}

/// What one `etl` run printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Pipeline {
    async fn create(prefix: &str) -> Pipeline {
        let db = TestDatabase::create(prefix).await;
        let pool = source_pool(&db).await;
        exec(
            &pool,
            "create table t (id int primary key, v text); \
             insert into t select g, 'row ' || g from generate_series(1, 100) g; \
             create table u (id int primary key); insert into u select generate_series(1, 10); \
             create publication p for table t, u",
        )
        .await;
        Pipeline {
            db,
            pool,
            id: u64::from(std::process::id()) * 1000
                + 700
                + PIPELINES.fetch_add(1, Ordering::Relaxed),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes `dev.yaml` with `destination` (YAML under the key).
    fn configure(&self, destination: &str) {
        std::fs::write(
            self.dir.path().join("dev.yaml"),
            format!(
                "pipeline:\n  id: {}\n  publication_name: p\n  pg_connection: {{url: '{}'}}\n  \
                 batch: {{max_size: 500, max_fill_ms: 100}}\n  status_update_interval_ms: 200\n  \
                 metrics_address: null\ndestination:\n  {destination}\n",
                self.id, self.db.url
            ),
        )
        .unwrap();
    }

    fn sqlite_file(&self) -> PathBuf {
        self.dir.path().join("data/etl.db")
    }

    async fn etl(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_etl"))
            .arg("--config-dir")
            .arg(self.dir.path())
            .args(["--env", "dev"])
            .args(args)
            .stdin(Stdio::null())
            .env_remove("RUST_BACKTRACE")
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(120), output)
            .await
            .unwrap_or_else(|_| panic!("etl {args:?} exits within 120 s"))
            .expect("run etl");
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `etl replicate --once`, which must succeed; returns its log.
    async fn once(&self) -> String {
        let run = self.etl(&["replicate", "--once"]).await;
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        run.stderr
    }

    async fn confirmed_flush(&self) -> Option<String> {
        sqlx::query_scalar(
            "select confirmed_flush_lsn::text from pg_replication_slots where slot_name = $1",
        )
        .bind(etl::engine::apply_slot_name(self.id))
        .fetch_optional(&self.pool)
        .await
        .expect("read the apply slot")
        .flatten()
    }

    async fn state_rows(&self) -> i64 {
        sqlx::query_scalar("select count(*) from etl.replication_state where pipeline_id = $1")
            .bind(self.id as i64)
            .fetch_one(&self.pool)
            .await
            .expect("count state rows")
    }

    async fn assert_sqlite_equal(&self) {
        for table in ["public.t", "public.u"] {
            let difference = sqlite_differences(&self.pool, &self.sqlite_file(), table).await;
            assert_eq!(difference, None, "{table}");
        }
    }

    async fn drop(self) {
        self.pool.close().await;
        self.db.drop_database().await;
    }
}

fn remove_sqlite_file(file: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

#[tokio::test]
async fn a_wiped_sqlite_file_under_a_ready_pipeline_is_refused_until_a_reset_copies_it_again() {
    let pipeline = Pipeline::create("dst_id_wiped").await;
    let file = pipeline.sqlite_file();
    pipeline.configure(&format!("sqlite: {{path: '{}'}}", file.display()));
    pipeline.once().await;
    pipeline.assert_sqlite_equal().await;

    remove_sqlite_file(&file);
    exec(
        &pipeline.pool,
        "insert into t select g, 'later' from generate_series(101, 150) g",
    )
    .await;
    let acknowledged = pipeline.confirmed_flush().await;
    let refused = pipeline.etl(&["replicate", "--once"]).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    let line = refused.stderr.lines().last().unwrap_or_default();
    for part in [
        format!("pipeline {}", pipeline.id),
        format!("`sqlite {}`", file.display()),
        "holds no copy".to_owned(),
        "etl pipeline reset".to_owned(),
        "pipeline.id".to_owned(),
    ] {
        assert!(line.contains(&part), "`{part}` missing from: {line}");
    }
    assert_eq!(
        pipeline.confirmed_flush().await,
        acknowledged,
        "a refused start must not stream"
    );

    // A reset needs a confirmation: without a terminal, only --yes gives it.
    let unconfirmed = pipeline.etl(&["pipeline", "reset"]).await;
    assert_eq!(unconfirmed.code, Some(2), "{}", unconfirmed.stderr);
    assert!(
        unconfirmed.stderr.contains("--yes"),
        "{}",
        unconfirmed.stderr
    );
    assert!(
        pipeline.state_rows().await > 0,
        "nothing is dropped unconfirmed"
    );
    let reset = pipeline.etl(&["pipeline", "reset", "--yes"]).await;
    assert_eq!(reset.code, Some(0), "{}", reset.stderr);
    let slot = etl::engine::apply_slot_name(pipeline.id);
    assert!(reset.stdout.contains(&slot), "{}", reset.stdout);
    assert!(reset.stdout.contains("2 ready"), "{}", reset.stdout);
    assert_eq!(
        pipeline.confirmed_flush().await,
        None,
        "the slot is dropped"
    );
    assert_eq!(pipeline.state_rows().await, 0);
    let again = pipeline.etl(&["pipeline", "reset", "--yes"]).await;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(
        again.stdout.contains("nothing to reset"),
        "{}",
        again.stdout
    );

    // Reset, then start: a full copy, equal to the source.
    let log = pipeline.once().await;
    assert!(log.contains("copy started"), "{log}");
    pipeline.assert_sqlite_equal().await;
    pipeline.drop().await;
}

#[tokio::test]
async fn a_sqlite_mirror_dropped_by_hand_is_copied_again() {
    let pipeline = Pipeline::create("dst_id_dropped").await;
    let file = pipeline.sqlite_file();
    pipeline.configure(&format!("sqlite: {{path: '{}'}}", file.display()));
    pipeline.once().await;
    {
        let conn = rusqlite::Connection::open(&file).unwrap();
        conn.execute_batch(r#"DROP TABLE "public.t""#).unwrap();
    }
    exec(
        &pipeline.pool,
        "update t set v = 'changed' where id <= 10; insert into u values (11)",
    )
    .await;
    let log = pipeline.once().await;
    assert!(log.contains("copying it again"), "{log}");
    pipeline.assert_sqlite_equal().await;
    pipeline.drop().await;
}

#[tokio::test]
async fn a_postgres_mirror_truncated_by_hand_is_copied_again_but_a_replicated_truncate_is_not() {
    let pipeline = Pipeline::create("dst_id_truncated").await;
    let target = TestDatabase::create("dst_id_truncated_mirror").await;
    let target_pool = source_pool(&target).await;
    pipeline.configure(&format!(
        "postgres: {{url: '{}', schema: null}}",
        target.url
    ));
    pipeline.once().await;

    // A truncate on the source is replicated, and is no reason to copy again.
    exec(&pipeline.pool, "truncate u; insert into u values (42)").await;
    let log = pipeline.once().await;
    assert!(!log.contains("copying it again"), "{log}");
    assert!(!log.contains("copy started"), "{log}");

    // A truncate by hand in the mirror loses the copy: the table is copied again.
    exec(&target_pool, "truncate public.t").await;
    exec(
        &pipeline.pool,
        "insert into t values (1000, 'after the truncate')",
    )
    .await;
    let log = pipeline.once().await;
    assert!(log.contains("copying it again"), "{log}");
    for table in ["public.t", "public.u"] {
        let difference = mirror_differences(&pipeline.pool, &target_pool, table, table).await;
        assert_eq!(difference, None, "{table}");
    }
    target_pool.close().await;
    target.drop_database().await;
    pipeline.drop().await;
}

#[tokio::test]
async fn jsonl_keeps_the_identity_beside_its_file_and_stdout_is_compared_by_description() {
    let pipeline = Pipeline::create("dst_id_jsonl").await;
    let path = pipeline.dir.path().join("out/changes.jsonl");
    pipeline.configure(&format!("jsonl: {{path: '{}'}}", path.display()));
    pipeline.once().await;
    let kept = path.with_file_name(".changes.jsonl.etl-identity");
    let identity: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&kept).expect("identity file")).unwrap();
    assert_eq!(identity["pipeline_id"], serde_json::json!(pipeline.id));
    assert_eq!(
        identity["destination"],
        serde_json::json!(format!("jsonl {}", path.display()))
    );
    // Resumes into the same file.
    pipeline.once().await;

    // Standard output keeps no identity: the state's destination is another one, so refused.
    pipeline.configure("jsonl: {path: null}");
    let refused = pipeline.etl(&["replicate", "--once"]).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    let line = refused.stderr.lines().last().unwrap_or_default();
    assert!(line.contains("`jsonl stdout`"), "{line}");
    assert!(
        line.contains(&format!("`jsonl {}`", path.display())),
        "{line}"
    );
    assert!(
        refused.stdout.is_empty(),
        "nothing was written: {}",
        refused.stdout
    );
    pipeline.drop().await;
}

#[tokio::test]
async fn a_lost_copy_refuses_to_start_when_configured_to() {
    let pipeline = Pipeline::create("dst_id_lost_refuse").await;
    let file = pipeline.sqlite_file();
    pipeline.configure(&format!("sqlite: {{path: '{}'}}", file.display()));
    pipeline.once().await;
    {
        let conn = rusqlite::Connection::open(&file).unwrap();
        conn.execute_batch(r#"DROP TABLE "public.t""#).unwrap();
    }
    let config = pipeline.dir.path().join("dev.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        yaml.replace(
            "  metrics_address: null\n",
            "  metrics_address: null\n  lost_copy: refuse\n",
        ),
    )
    .unwrap();
    let before = pipeline.confirmed_flush().await;
    let run = pipeline.etl(&["replicate", "--once"]).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("no longer holds the copy of public.t"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("etl tables resync"), "{}", run.stderr);
    assert_eq!(
        pipeline.confirmed_flush().await,
        before,
        "the slot did not move"
    );
    pipeline.drop().await;
}
