//! The real `etl replicate` binary into the `iceberg` destination: the SQL catalog in a real
//! Postgres database, the warehouse a local directory, two tables partitioned (by day, in
//! buckets), a workload of inserts, updates (also of keys, of partition values and beside
//! unchanged TOAST values), deletes, a truncate and a schema change, while the
//! replicator is SIGKILLed at random points (12 cycles, the first during the copy). The oracle is
//! pyiceberg (`iceberg_oracle.py`, run with `ETL_PYICEBERG`, the Python of a virtualenv with
//! pyiceberg that `scripts/pyiceberg.sh` installs): it opens the catalog, reads every table,
//! replays each changelog and compares it with the source (md5 of the ordered rows), finds no
//! change twice and checks that every snapshot holds exactly the log up to its position.
//!
//! Without `ETL_PYICEBERG` the test is skipped with a message, except under `CI=true`, where
//! it fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::PgPool;
use tokio::process::{Child, Command};

use crate::common::TestDatabase;
use crate::helpers::{exec, source_pool};
use crate::servers::{S3_ACCESS_KEY, S3_SECRET_KEY, Server};

const SCHEMA: &str = r#"
create table orders (id int primary key, customer text, amount numeric(12,2), placed timestamptz,
  paid bool, tags text[], doc jsonb, uid uuid, d date, raw bytea, f float8, big numeric, t time,
  ts timestamp);
insert into orders select g, 'c' || g, g * 1.25, '2024-01-01 00:00+00'::timestamptz + g * interval '1 minute',
  g % 2 = 0, array['a', 'b' || g], jsonb_build_object('g', g, 'nested', jsonb_build_array(g, 'x')),
  md5(g::text)::uuid, '2024-01-01'::date + g % 400, decode(md5(g::text), 'hex'), g / 7.0,
  g * 10000000000000000000.5, '12:00'::time + g * interval '1 second', '2024-01-01'::timestamp + g * interval '1 second'
  from generate_series(1, 5000) g;
create table counted (id int primary key, v int);
insert into counted select g, 0 from generate_series(1, 200) g;
create table toasty (id int primary key, small int, doc text);
insert into toasty select g, 0, (select string_agg(md5(g::text || i::text), '') from generate_series(1, 300) i)
  from generate_series(1, 20) g;
create table scratch (id int primary key, v text);
insert into scratch select g, 'v' || g from generate_series(1, 30) g;
create publication lake for table orders, counted, toasty, scratch;
"#;

/// `iceberg.compact_files` of the tests: a mirror table is compacted after a dozen commits.
const COMPACT_FILES: u64 = 12;

/// `iceberg.partition_by` of the tests.
const PARTITION_BY: &str = "{public.orders: 'day(placed)', public.counted: ['bucket(4, id)']}";
/// The oracle's pruning checks: a filtered scan of a partitioned table returns exactly the
/// rows that satisfy the filter while planning fewer files.
const PRUNED_ORDERS: &str = "public.orders:placed:ge:2024-01-03T00:00:00+00:00";
const PRUNED_COUNTED: &str = "public.counted:id:eq:7";

const TABLES: &[&str] = &[
    "public.orders:id",
    "public.counted:id",
    "public.toasty:id",
    "public.scratch:id",
];

/// The Python with pyiceberg, or `None` (skip) outside CI.
fn pyiceberg() -> Option<PathBuf> {
    match std::env::var_os("ETL_PYICEBERG") {
        Some(python) => Some(PathBuf::from(python)),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "ETL_PYICEBERG is not set under CI=true: run scripts/test.sh (it installs pyiceberg)"
            )
        }
        None => {
            eprintln!(
                "skipped: set ETL_PYICEBERG (scripts/pyiceberg.sh prints it) to run the iceberg oracle"
            );
            None
        }
    }
}

struct Replicator {
    config_dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

impl Replicator {
    fn start(&mut self) {
        self.starts += 1;
        let log = self
            .config_dir
            .path()
            .join(format!("etl-{:02}.log", self.starts));
        let child = Command::new(env!("CARGO_BIN_EXE_etl"))
            .arg("--config-dir")
            .arg(self.config_dir.path())
            .args(["--env", "dev", "replicate"])
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(log)
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            )
            .kill_on_drop(true)
            .spawn()
            .expect("spawn etl replicate");
        self.child = Some(child);
    }

    async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.expect("SIGKILL etl");
    }

    async fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id().expect("pid") as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("etl stops within 60 s after SIGTERM")
            .unwrap();
        assert!(
            status.success(),
            "etl exited with {status}: {}",
            self.logs()
        );
    }

    /// Every log line of every start, in order.
    fn all_logs(&self) -> String {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.config_dir.path())
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        paths.sort();
        paths
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .map(|path| std::fs::read_to_string(path).unwrap_or_default())
            .collect()
    }

    fn logs(&self) -> String {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.config_dir.path())
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        paths.sort();
        let mut logs = String::new();
        for path in paths
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
        {
            logs.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
        let tail: Vec<&str> = logs.lines().rev().take(60).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// One random transaction of the workload.
async fn change(pool: &PgPool, next_id: &mut i32) -> Result<(), sqlx::Error> {
    let (choice, id, small) = {
        let mut rng = rand::rng();
        (
            rng.random_range(0..10),
            rng.random_range(1..5_000),
            rng.random_range(1..=20),
        )
    };
    let mut tx = pool.begin().await?;
    match choice {
        0 | 1 => {
            // Orders are partitioned by day(placed): today's partition, or the null one.
            *next_id += 1;
            sqlx::query(
                "insert into orders (id, customer, amount, tags, doc, placed) \
                 values ($1, 'new', 1.5, '{x,y}', '{\"k\": [1, 2]}', case when $2 then now() end)",
            )
            .bind(*next_id)
            .bind(choice == 0)
            .execute(&mut *tx)
            .await?;
        }
        2 => {
            sqlx::query(
                "update orders set amount = amount + 1, tags = tags || 'u'::text, paid = not paid \
                 where id between $1 and $1 + 20",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        3 => {
            // Rows move to the next day's partition.
            sqlx::query(
                "update orders set placed = placed + interval '1 day', amount = amount + 1 \
                 where id between $1 and $1 + 20",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        4 => {
            sqlx::query("delete from orders where id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        5 => {
            // A key change: the update carries the old key.
            sqlx::query("update orders set id = id + 1000000 where id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        6 => {
            sqlx::query("update toasty set small = small + 1 where id = $1")
                .bind(small)
                .execute(&mut *tx)
                .await?;
        }
        _ => {
            for _ in 0..20 {
                let row = rand::rng().random_range(1..=200);
                sqlx::query("update counted set v = v + 1 where id = $1")
                    .bind(row)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await
}

async fn run_oracle(
    python: &Path,
    catalog: &TestDatabase,
    warehouse: &str,
    storage: &[String],
    source: &TestDatabase,
    mode: &str,
    tables: &[&str],
) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/destinations/iceberg_oracle.py"
    );
    let catalog_uri = catalog
        .url
        .replacen("postgres://", "postgresql+psycopg2://", 1);
    let mut command = Command::new(python);
    command.arg(script).args([
        "--catalog-uri",
        &catalog_uri,
        "--catalog-name",
        "etl",
        "--warehouse",
        warehouse,
        "--namespace",
        "shop",
        "--source-dsn",
        &source.url,
        "--mode",
        mode,
        "--pruned",
        PRUNED_ORDERS,
        "--pruned",
        PRUNED_COUNTED,
    ]);
    for property in storage {
        command.args(["--property", property]);
    }
    for table in tables {
        command.args(["--table", table]);
    }
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("the oracle finishes within 300 s")
        .expect("run the pyiceberg oracle");
    assert!(
        output.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "oracle output is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

async fn applied_up_to(pool: &PgPool, slot: &str, target: &str) -> bool {
    sqlx::query_scalar::<_, bool>(
        "select coalesce(confirmed_flush_lsn >= $2::pg_lsn, false) from pg_replication_slots \
         where slot_name = $1",
    )
    .bind(slot)
    .bind(target)
    .fetch_optional(pool)
    .await
    .ok()
    .flatten()
    .unwrap_or(false)
}

async fn all_ready(pool: &PgPool, pipeline_id: u64, tables: usize) -> bool {
    let states: Vec<String> = sqlx::query_scalar(
        "select state from etl.replication_state where pipeline_id = $1 and is_current",
    )
    .bind(pipeline_id as i64)
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    states.len() == tables && states.iter().all(|s| s == "ready")
}

/// A source database with `schema` loaded, a catalog database, a warehouse directory and the
/// replicator's config (not started).
struct Lake {
    source: TestDatabase,
    catalog: TestDatabase,
    pool: PgPool,
    warehouse: String,
    _warehouse_dir: tempfile::TempDir,
    /// The S3 store of an `s3://` warehouse (kept running while the lake lives).
    s3: Option<Server>,
    pipeline_id: u64,
    /// `changelog` or `mirror`.
    mode: String,
    etl: Replicator,
}

impl Lake {
    async fn create(schema: &str, pipeline_offset: u64, mode: &str) -> Lake {
        Lake::create_in(schema, pipeline_offset, mode, None).await
    }

    /// A lake whose warehouse is `s3://lake/wh` in `s3` when given.
    async fn create_in(schema: &str, pipeline_offset: u64, mode: &str, s3: Option<Server>) -> Lake {
        let source = TestDatabase::create("ice_src").await;
        let catalog = TestDatabase::create("ice_cat").await;
        let pool = source_pool(&source).await;
        exec(&pool, schema).await;
        let warehouse_dir = tempfile::tempdir().unwrap();
        let (warehouse, storage) = match &s3 {
            None => (
                format!("file://{}", warehouse_dir.path().display()),
                String::new(),
            ),
            Some(server) => (
                "s3://lake/wh".to_owned(),
                format!(
                    "    s3: {{endpoint: '{}', region: us-east-1, access_key_id: {S3_ACCESS_KEY}, \
                     secret_access_key: {S3_SECRET_KEY}, path_style: true}}\n",
                    server.address
                ),
            ),
        };
        let pipeline_id = u64::from(std::process::id()) * 1000 + 900 + pipeline_offset;
        let config_dir = tempfile::tempdir().unwrap();
        std::fs::write(
            config_dir.path().join("dev.yaml"),
            format!(
                "pipeline:\n  id: {pipeline_id}\n  publication_name: lake\n  pg_connection: {{url: '{}'}}\n  \
                 batch: {{max_size: 500, max_fill_ms: 100}}\n  status_update_interval_ms: 200\n  \
                 metrics_address: null\n  retry: {{initial_ms: 100, max_ms: 1000}}\n\
                 destination:\n  iceberg:\n    catalog: {{sql: {{url: '{}'}}}}\n    warehouse: '{warehouse}'\n    \
                 namespace: shop\n    target_file_bytes: 4194304\n    mode: {mode}\n    compact_files: {COMPACT_FILES}\n    \
                 partition_by: {PARTITION_BY}\n{storage}",
                source.url, catalog.url
            ),
        )
        .unwrap();
        Lake {
            source,
            catalog,
            pool,
            warehouse,
            _warehouse_dir: warehouse_dir,
            s3,
            pipeline_id,
            mode: mode.to_owned(),
            etl: Replicator {
                config_dir,
                child: None,
                starts: 0,
            },
        }
    }

    /// Waits until `tables` tables are ready and the apply slot confirmed the source's
    /// current WAL position.
    async fn wait_caught_up(&self, tables: usize) {
        let target: String = sqlx::query_scalar("select pg_current_wal_lsn()::text")
            .fetch_one(&self.pool)
            .await
            .unwrap();
        let slot = format!("etl_apply_{}", self.pipeline_id);
        let deadline = Instant::now() + Duration::from_secs(240);
        while !(all_ready(&self.pool, self.pipeline_id, tables).await
            && applied_up_to(&self.pool, &slot, &target).await)
        {
            assert!(
                Instant::now() < deadline,
                "etl did not catch up to {target}: {}",
                self.etl.logs()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Runs the oracle on `tables` and asserts it found no problem and equal digests.
    async fn check(&self, python: &Path, tables: &[&str]) -> serde_json::Value {
        let report = run_oracle(
            python,
            &self.catalog,
            &self.warehouse,
            &self.storage_properties(),
            &self.source,
            &self.mode,
            tables,
        )
        .await;
        let problems = report["problems"].as_array().cloned().unwrap_or_default();
        assert!(
            problems.is_empty(),
            "oracle found problems: {problems:#?}\n{}",
            self.etl.logs()
        );
        for table in tables {
            let name = table.split(':').next().unwrap().replace('.', "_");
            let result = &report["tables"][&name];
            assert_eq!(
                result["source_md5"], result["replay_md5"],
                "{name}: {result}"
            );
            assert!(
                result["source_rows"].as_u64().unwrap_or(0) > 0,
                "{name}: {result}"
            );
        }
        report
    }

    /// Waits until the source table `relname` is `errored` (at most 120 s) and returns the
    /// reason recorded.
    async fn errored(&self, relname: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let state: Option<(String, String)> = sqlx::query_as(
                "select s.state, coalesce(s.error->>'reason', '') from etl.replication_state s \
                 join pg_class c on c.oid = s.table_id \
                 where s.pipeline_id = $1 and s.is_current and c.relname = $2",
            )
            .bind(self.pipeline_id as i64)
            .bind(relname)
            .fetch_optional(&self.pool)
            .await
            .ok() // the state table is missing until etl's first start has migrated
            .flatten();
            if let Some((state, reason)) = &state
                && state == "errored"
            {
                return reason.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{relname} is {state:?}, not errored: {}",
                self.etl.logs()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// What another engine's maintenance does to every table: a commit whose snapshot carries
    /// no etl position (an empty append by pyiceberg).
    async fn foreign_commit(&self, python: &Path) {
        let uri = self
            .catalog
            .url
            .replacen("postgres://", "postgresql+psycopg2://", 1);
        let script = "import sys, pyarrow as pa\n\
            from pyiceberg.catalog.sql import SqlCatalog\n\
            props = dict(p.split('=', 1) for p in sys.argv[3:])\n\
            c = SqlCatalog('etl', uri=sys.argv[1], warehouse=sys.argv[2], **props)\n\
            for ident in c.list_tables('shop'):\n\
            \x20   t = c.load_table(ident)\n\
            \x20   t.append(pa.Table.from_pylist([], schema=t.schema().as_arrow()))\n";
        let output = Command::new(python)
            .args(["-c", script, &uri, &self.warehouse])
            .args(self.storage_properties())
            .output()
            .await
            .expect("run pyiceberg");
        assert!(
            output.status.success(),
            "foreign commit failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// pyiceberg's catalog properties for the warehouse's store (`key=value`).
    fn storage_properties(&self) -> Vec<String> {
        match &self.s3 {
            None => Vec::new(),
            Some(server) => vec![
                format!("s3.endpoint={}", server.address),
                format!("s3.access-key-id={S3_ACCESS_KEY}"),
                format!("s3.secret-access-key={S3_SECRET_KEY}"),
                "s3.region=us-east-1".to_owned(),
            ],
        }
    }

    /// Replaces `from` with `to` in the replicator's config file.
    fn edit_config(&self, from: &str, to: &str) {
        let config = self.etl.config_dir.path().join("dev.yaml");
        let yaml = std::fs::read_to_string(&config).unwrap();
        assert!(yaml.contains(from), "{from} is not in {yaml}");
        std::fs::write(&config, yaml.replace(from, to)).unwrap();
    }

    /// Runs `etl tables resync --table <table>` (the replicator may be running).
    async fn resync(&self, table: &str) {
        let resync = Command::new(env!("CARGO_BIN_EXE_etl"))
            .arg("--config-dir")
            .arg(self.etl.config_dir.path())
            .args([
                "--env", "dev", "tables", "resync", "--table", table, "--yes",
            ])
            .output()
            .await
            .expect("run etl tables resync");
        assert!(
            resync.status.success(),
            "resync of {table} failed: {}",
            String::from_utf8_lossy(&resync.stderr)
        );
    }

    async fn drop(self) {
        self.source.drop_database().await;
        self.catalog.drop_database().await;
    }
}

/// The workload of the crash tests, until `stop`: random transactions, a column added after
/// 150 of them and a truncate after 300. Returns how many ran.
fn spawn_workload(pool: PgPool, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let mut next_id = 100_000;
        let mut done = 0u32;
        while !stop.load(Ordering::Relaxed) {
            change(&pool, &mut next_id)
                .await
                .expect("workload transaction");
            done += 1;
            if done == 150 {
                exec(
                    &pool,
                    "alter table orders add column note text; \
                     update orders set note = 'noted' where id <= 50",
                )
                .await;
            }
            if done == 300 {
                exec(&pool, "truncate scratch; insert into scratch select g, 'w' || g from generate_series(1, 10) g").await;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        done
    })
}

/// Runs the workload through `cycles` SIGKILLs of the replicator (the first during the copy,
/// a foreign commit half way), lets it catch up and stops it; returns the transactions run.
async fn through_sigkills(lake: &mut Lake, python: &Path, cycles: u32) -> u32 {
    let stop = Arc::new(AtomicBool::new(false));
    let workload = spawn_workload(lake.pool.clone(), stop.clone());
    for cycle in 0..cycles {
        lake.etl.start();
        let wait = if cycle == 0 {
            Duration::from_millis(1500)
        } else {
            Duration::from_millis(rand::rng().random_range(800..4000))
        };
        tokio::time::sleep(wait).await;
        lake.etl.kill().await;
        if cycle == cycles / 2 {
            lake.foreign_commit(python).await;
        }
    }
    lake.etl.start();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let transactions = workload.await.expect("workload");
    assert!(
        transactions > 300,
        "the workload ran only {transactions} transactions"
    );
    lake.wait_caught_up(TABLES.len()).await;
    lake.etl.stop().await;
    transactions
}

/// Orders are partitioned by day and counted in 4 buckets, and a filtered scan of either plans
/// fewer files yet returns every row it should (the oracle checks the rows).
fn assert_partitioned(report: &serde_json::Value) {
    let orders = &report["tables"]["public_orders"];
    assert_eq!(
        orders["partition_spec"],
        serde_json::json!(["placed:day"]),
        "{orders}"
    );
    let counted = &report["tables"]["public_counted"];
    assert_eq!(
        counted["partition_spec"],
        serde_json::json!(["id:bucket[4]"]),
        "{counted}"
    );
    assert!(orders["partitions"].as_u64().unwrap_or(0) >= 3, "{orders}");
    assert_eq!(counted["partitions"].as_u64(), Some(4), "{counted}");
    for table in [orders, counted] {
        assert!(
            table["pruned_rows"].as_u64().unwrap_or(0) > 0
                && table["pruned_files"].as_u64() < table["all_files"].as_u64(),
            "the filtered scan did not prune: {table}"
        );
    }
    let toasty = &report["tables"]["public_toasty"];
    assert_eq!(toasty["partition_spec"], serde_json::json!([]), "{toasty}");
}

/// The sum of `field` over the oracle's tables.
fn total(report: &serde_json::Value, field: &str) -> u64 {
    report["tables"]
        .as_object()
        .map(|tables| tables.values().filter_map(|t| t[field].as_u64()).sum())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changelog_replays_to_the_source_through_sigkills() {
    let Some(python) = pyiceberg() else {
        return;
    };
    let mut lake = Lake::create(SCHEMA, 0, "changelog").await;
    let cycles = 12;
    let transactions = through_sigkills(&mut lake, &python, cycles).await;
    let report = lake.check(&python, TABLES).await;
    assert_partitioned(&report);
    let orders = &report["tables"]["public_orders"];
    assert!(orders["changes"].as_u64().unwrap_or(0) > 100, "{orders}");
    let snapshots = total(&report, "snapshots_checked");
    assert!(
        snapshots > 20,
        "only {snapshots} snapshots checked: {report}"
    );
    eprintln!("iceberg oracle after {cycles} SIGKILLs and {transactions} transactions: {report}");
    lake.drop().await;
}

/// Mirror mode through the same workload and SIGKILLs: every table reads as the source's rows
/// (md5 of the ordered rows, TOAST values kept through updates that did not send them), and no
/// snapshot etl committed shows a key twice (a missed or doubled delete would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_reads_as_the_source_through_sigkills() {
    let Some(python) = pyiceberg() else {
        return;
    };
    let mut lake = Lake::create(SCHEMA, 2, "mirror").await;
    let cycles = 10;
    let transactions = through_sigkills(&mut lake, &python, cycles).await;
    let report = lake.check(&python, TABLES).await;
    assert_partitioned(&report);
    assert!(
        total(&report, "position_deletes") > 100,
        "few rows were ever deleted: {report}"
    );
    let orders = &report["tables"]["public_orders"];
    assert!(
        orders["compactions"].as_u64().unwrap_or(0) > 0,
        "orders was never compacted: {orders}"
    );
    for (name, table) in report["tables"].as_object().into_iter().flatten() {
        let added = table["batch_files"].as_u64().unwrap_or(u64::MAX);
        assert!(
            added <= COMPACT_FILES,
            "{name} has {added} files written by batches, more than compact_files: {table}"
        );
    }
    let snapshots = total(&report, "snapshots_checked");
    assert!(
        snapshots > 20,
        "only {snapshots} snapshots checked: {report}"
    );
    eprintln!(
        "iceberg mirror oracle after {cycles} SIGKILLs and {transactions} transactions: {report}"
    );
    lake.drop().await;
}

/// A table written in changelog mode is refused by the same pipeline configured for mirror mode,
/// with a table error that says how to switch; `etl tables resync` then recopies it as a mirror
/// table that reads as the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_modes_needs_a_resync() {
    let mut lake = Lake::create(EVOLVING, 4, "changelog").await;
    lake.etl.start();
    lake.wait_caught_up(2).await;
    lake.etl.stop().await;
    lake.edit_config("mode: changelog", "mode: mirror");
    lake.mode = "mirror".to_owned();
    lake.etl.start();
    exec(&lake.pool, "update evolving set a = a + 1 where id = 1").await;
    let reason = lake.errored("evolving").await;
    assert!(
        reason.contains("holds a changelog")
            && reason.contains("configured for mirror")
            && reason.contains("etl tables resync"),
        "evolving's error: {reason}"
    );
    lake.resync("public.evolving").await;
    lake.wait_caught_up(2).await;
    lake.etl.stop().await;
    if let Some(python) = pyiceberg() {
        lake.check(&python, &["public.evolving:id"]).await;
    }
    lake.drop().await;
}

const EVOLVING: &str = r#"
create table evolving (id int primary key, a int, b text, c real, d varchar(5), n numeric(8,2));
insert into evolving select g, g, 'b' || g, g / 2.0, 'd', g * 1.5 from generate_series(1, 100) g;
create table fragile (id int primary key, t text);
insert into fragile select g, 't' || g from generate_series(1, 10) g;
create publication lake for table evolving, fragile;
"#;

/// Schema changes as Iceberg schema evolution: a rename keeps the field (old rows read under the
/// new name), int → bigint, real → double and numeric(8,2) → numeric(12,2) widen, a dropped
/// column leaves the schema, an added one starts null; text → int cannot be expressed and
/// errors only that table, naming the column; a renamed table renames its Iceberg table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_evolve_the_iceberg_schema() {
    schema_changes_evolve("changelog", 1).await;
}

/// The same schema changes on a mirror table (no `_etl_*` columns; the key index is read again
/// after each change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_evolve_a_mirror_table() {
    schema_changes_evolve("mirror", 3).await;
}

async fn schema_changes_evolve(mode: &str, pipeline_offset: u64) {
    let Some(python) = pyiceberg() else {
        return;
    };
    let mut lake = Lake::create(EVOLVING, pipeline_offset, mode).await;
    lake.etl.start();
    lake.wait_caught_up(2).await;
    exec(
        &lake.pool,
        "alter table evolving rename column b to b2;
         alter table evolving alter column a type bigint;
         alter table evolving alter column c type double precision;
         alter table evolving alter column n type numeric(12,2);
         alter table evolving drop column d;
         alter table evolving add column e text;
         update evolving set a = a + 5000000000, c = c + 0.25, e = 'e' || id where id <= 30;
         insert into evolving (id, a, b2, c, n, e) values (1000, 1, 'new', 1.5, 1234567890.12, 'x');
         delete from evolving where id = 99;
         alter table evolving rename to evolved;
         update evolved set b2 = 'renamed' where id = 2;
         alter table fragile alter column t type int using length(t);
         insert into fragile values (100, 7);",
    )
    .await;
    let reason = lake.errored("fragile").await;
    assert!(
        reason.contains("`t`") && reason.contains("cannot become"),
        "fragile's error: {reason}"
    );
    // The other table goes on.
    let target: String = sqlx::query_scalar("select pg_current_wal_lsn()::text")
        .fetch_one(&lake.pool)
        .await
        .unwrap();
    let slot = format!("etl_apply_{}", lake.pipeline_id);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !applied_up_to(&lake.pool, &slot, &target).await {
        assert!(
            Instant::now() < deadline,
            "etl did not catch up: {}",
            lake.etl.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    lake.etl.stop().await;
    let report = lake.check(&python, &["public.evolved:id"]).await;
    assert_eq!(
        report["listed"],
        serde_json::json!(["shop.public_evolved", "shop.public_fragile"]),
        "{report}"
    );
    eprintln!("iceberg oracle after schema changes ({mode}): {report}");
    lake.drop().await;
}

/// Partitioning errors name what is wrong and are mended by a config change and a resync: a
/// transform the column's type lacks errors that table at its creation, naming the setting; a
/// dropped partition column errors its table, naming the column; after `partition_by` is
/// corrected, `etl tables resync` recreates each table with the configured partitioning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioning_errors_name_the_setting_and_a_resync_applies_it() {
    let Some(python) = pyiceberg() else {
        return;
    };
    let mut lake = Lake::create(EVOLVING, 5, "mirror").await;
    lake.edit_config(
        PARTITION_BY,
        "{public.evolving: ['bucket(4, id)', 'truncate(10, a)'], public.fragile: 'day(t)'}",
    );
    lake.etl.start();
    let reason = lake.errored("fragile").await;
    assert!(
        reason.contains("destination.iceberg.partition_by.public.fragile")
            && reason.contains("`day(t)`")
            && reason.contains("does not apply"),
        "fragile's error: {reason}"
    );
    // Evolving's copy is done before its partition column goes.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state: Option<String> = sqlx::query_scalar(
            "select s.state from etl.replication_state s join pg_class c on c.oid = s.table_id \
             where s.pipeline_id = $1 and s.is_current and c.relname = 'evolving'",
        )
        .bind(lake.pipeline_id as i64)
        .fetch_optional(&lake.pool)
        .await
        .ok()
        .flatten();
        if state.as_deref() == Some("ready") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "evolving is {state:?}: {}",
            lake.etl.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    exec(
        &lake.pool,
        "alter table evolving drop column a; update evolving set b = 'x' where id = 1",
    )
    .await;
    let reason = lake.errored("evolving").await;
    assert!(
        reason.contains("column `a` was dropped") && reason.contains("truncate[10](a)"),
        "evolving's error: {reason}"
    );
    lake.etl.stop().await;
    lake.edit_config(
        "['bucket(4, id)', 'truncate(10, a)'], public.fragile: 'day(t)'",
        "'bucket(4, id)', public.fragile: t",
    );
    lake.resync("public.evolving").await;
    lake.resync("public.fragile").await;
    lake.etl.start();
    exec(
        &lake.pool,
        "update evolving set b = 'y' where id <= 10; delete from fragile where id = 3",
    )
    .await;
    lake.wait_caught_up(2).await;
    lake.etl.stop().await;
    let report = lake
        .check(&python, &["public.evolving:id", "public.fragile:id"])
        .await;
    let evolving = &report["tables"]["public_evolving"];
    assert_eq!(
        evolving["partition_spec"],
        serde_json::json!(["id:bucket[4]"]),
        "{evolving}"
    );
    assert_eq!(evolving["partitions"].as_u64(), Some(4), "{evolving}");
    let fragile = &report["tables"]["public_fragile"];
    assert_eq!(
        fragile["partition_spec"],
        serde_json::json!(["t:identity"]),
        "{fragile}"
    );
    assert_eq!(fragile["partitions"].as_u64(), Some(9), "{fragile}");
    lake.drop().await;
}

/// Mirror mode on an `s3://` warehouse in a real S3-compatible server (`s3s-fs`, which checks
/// each request's SigV4 signature): a wrong secret key is reported at start, naming the
/// warehouse; with the right one the workload runs through SIGKILLs and pyiceberg, reading the
/// files through its own S3 client, finds every table equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_on_s3_reads_as_the_source_through_sigkills() {
    let Some(python) = pyiceberg() else {
        return;
    };
    let Some(s3) = Server::s3("iceberg") else {
        return;
    };
    let mut lake = Lake::create_in(SCHEMA, 6, "mirror", Some(s3)).await;
    let right = format!("secret_access_key: {S3_SECRET_KEY}");
    lake.edit_config(&right, "secret_access_key: not-the-secret");
    lake.etl.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    // etl stops at start with that error (its backtrace follows when RUST_BACKTRACE is set).
    while !lake
        .etl
        .all_logs()
        .contains("cannot write to the warehouse s3://lake/wh")
    {
        assert!(
            Instant::now() < deadline,
            "no error about the warehouse: {}",
            lake.etl.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    lake.etl.kill().await;
    lake.edit_config("secret_access_key: not-the-secret", &right);
    let cycles = 6;
    let transactions = through_sigkills(&mut lake, &python, cycles).await;
    let report = lake.check(&python, TABLES).await;
    assert_partitioned(&report);
    assert!(
        total(&report, "position_deletes") > 100,
        "few rows were ever deleted: {report}"
    );
    eprintln!(
        "iceberg mirror on S3 after {cycles} SIGKILLs and {transactions} transactions: {report}"
    );
    lake.drop().await;
}
