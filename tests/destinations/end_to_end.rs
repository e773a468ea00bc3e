//! The real `etl replicate` binary into each destination: every type, changes during the copy,
//! SIGKILL during the copy and during streaming followed by a restart, truncate, schema changes,
//! unchanged TOAST values, weird identifiers, a `REPLICA IDENTITY FULL` table without a key.
//! The run ends with the destination equal to the source (`postgres`: `EXCEPT ALL` both ways;
//! `jsonl`: the state a consumer deduplicating by `(commit_lsn, ordinal)` reaches), and for
//! `sqlite` and `postgres` with every change of the `counted` table applied exactly once
//! (counted by triggers in the destination, installed after the copy); for `jsonl` with every
//! change of `counted` in the log at least once, and exactly once after deduplication.
//!
//! Every wait has a deadline and fails naming what it waited for; a whole scenario fails after
//! [`SCENARIO_LIMIT`], so a hang never stalls CI.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::process::{Child, Command};

use crate::common::TestDatabase;
use crate::helpers::{ALL_TYPES, exec, source_pool};
use crate::targets::Target;

static PIPELINES: AtomicU64 = AtomicU64::new(0);

/// Source tables of the scenario: `(sql name, key column or "" for keyless)`.
pub const TABLES: &[(&str, &str)] = &[
    ("public.all_types", "id"),
    ("public.big", "id"),
    ("\"Weird \"\"Schema\"\"\".\"Ta ble ü\"", "\"Id\""),
    ("public.full_log", ""),
    ("public.toasty", "id"),
    ("public.counted", "id"),
    ("public.shape", "id"),
];

/// Rows of `big`: enough for the copy to take a few seconds into a debug build.
const BIG_ROWS: u32 = 200_000;

const SCHEMA: &str = r#"
create table big (id int primary key, pad text, n numeric);
insert into big select g, repeat('p', 80), g * 1.5 from generate_series(1, 200000) g;
create schema "Weird ""Schema""";
create table "Weird ""Schema"""."Ta ble ü" ("Id" int primary key, "we ird" text, "CamelCase" int);
insert into "Weird ""Schema"""."Ta ble ü" select g, 'w' || g, g from generate_series(1, 20) g;
create table full_log (kind text, payload jsonb, at timestamptz);
alter table full_log replica identity full;
insert into full_log values ('a', '{"x": 1}', '2024-01-01 00:00+00'), ('a', '{"x": 1}', '2024-01-01 00:00+00'),
                            ('b', null, null);
create table toasty (id int primary key, small int, doc text);
insert into toasty select g, 0, (select string_agg(md5(g::text || i::text), '') from generate_series(1, 300) i)
  from generate_series(1, 20) g;
create table counted (id int primary key, v int);
insert into counted select g, 0 from generate_series(1, 3000) g;
create table shape (id int primary key, a text, b int, c text);
insert into shape select g, 'a' || g, g, 'c' || g from generate_series(1, 50) g;
"#;

/// The source database, its config directory and the running replicator.
pub struct Scenario {
    pub db: TestDatabase,
    pub pool: PgPool,
    pub pipeline_id: u64,
    config_dir: tempfile::TempDir,
    child: Option<Child>,
    /// How many times etl was started (names its log files in start order).
    starts: u32,
}

impl Scenario {
    pub async fn create(prefix: &str) -> Scenario {
        let db = TestDatabase::create(prefix).await;
        let pool = source_pool(&db).await;
        exec(&pool, ALL_TYPES).await;
        exec(&pool, SCHEMA).await;
        let publication: Vec<&str> = TABLES.iter().map(|(t, _)| *t).collect();
        exec(
            &pool,
            &format!(
                "create publication scenario for table {}",
                publication.join(", ")
            ),
        )
        .await;
        Scenario {
            db,
            pool,
            pipeline_id: u64::from(std::process::id()) * 1000
                + 500
                + PIPELINES.fetch_add(1, Ordering::Relaxed),
            config_dir: tempfile::tempdir().unwrap(),
            child: None,
            starts: 0,
        }
    }

    /// Writes `dev.yaml` with the pipeline and `destination` (YAML below the key).
    pub fn configure(&self, destination: &str) {
        std::fs::write(
            self.config_dir.path().join("dev.yaml"),
            format!(
                "pipeline:\n  id: {}\n  publication_name: scenario\n  pg_connection: {{url: '{}'}}\n  \
                 batch: {{max_size: 500, max_fill_ms: 100}}\n  status_update_interval_ms: 200\n  \
                 publication_refresh_secs: 1\n  metrics_address: null\n  \
                 retry: {{initial_ms: 100, max_ms: 1000}}\ndestination:\n{destination}\n",
                self.pipeline_id, self.db.url
            ),
        )
        .unwrap();
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
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

    /// SIGKILL: nothing is flushed or acknowledged.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        self.within(
            "etl to exit after SIGKILL",
            Duration::from_secs(30),
            child.kill(),
        )
        .await
        .expect("SIGKILL etl");
    }

    /// SIGTERM and a clean exit.
    pub async fn stop(&mut self) {
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

    /// Everything the replicator runs wrote to stderr, for failure messages.
    pub fn logs(&self) -> String {
        let mut logs = String::new();
        if let Ok(entries) = std::fs::read_dir(self.config_dir.path()) {
            let mut paths: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for path in paths
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
            {
                logs.push_str(&std::fs::read_to_string(path).unwrap_or_default());
            }
        }
        let tail: Vec<&str> = logs.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    pub async fn states(&self) -> Vec<(String, String)> {
        sqlx::query_as(
            "select c.relname::text, s.state from etl.replication_state s \
             join pg_class c on c.oid = s.table_id where s.pipeline_id = $1 and s.is_current order by 1",
        )
        .bind(self.pipeline_id as i64)
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default()
    }

    /// Fails the test with `what`, the table states and etl's log.
    async fn fail(&self, what: &str) -> ! {
        let states = tokio::time::timeout(Duration::from_secs(5), self.states()).await;
        panic!("{what}; states {states:?}\n{}", self.logs())
    }

    /// Awaits `future`, failing the test (naming `what`) if it takes longer than `limit`.
    pub async fn within<T>(
        &self,
        what: &str,
        limit: Duration,
        future: impl Future<Output = T>,
    ) -> T {
        match tokio::time::timeout(limit, future).await {
            Ok(value) => value,
            Err(_) => {
                self.fail(&format!("timed out after {limit:?} waiting for {what}"))
                    .await
            }
        }
    }

    /// Polls `pending` (which describes what is still missing, `None` when done) until it
    /// returns `None`; fails the test after `limit`, also when a check itself hangs.
    pub async fn wait_for<F, Fut>(&self, what: &str, limit: Duration, mut pending: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<String>>,
    {
        let deadline = Instant::now() + limit;
        let mut last = "no check finished".to_owned();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, pending()).await {
                Ok(None) => return,
                Ok(Some(missing)) => last = missing,
                Err(_) => {
                    last = format!("a check was still running at the deadline; before: {last}")
                }
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "timed out after {limit:?} waiting for {what}: {last}"
                ))
                .await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn wait_until<F, Fut>(&self, what: &str, limit: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        self.wait_for(what, limit, || {
            let check = check();
            async move { (!check.await).then(|| "not yet".to_owned()) }
        })
        .await;
    }

    pub async fn wait_ready(&self) {
        self.wait_for("every table ready", Duration::from_secs(180), || async {
            let states = self.states().await;
            let ready = states.len() == TABLES.len() && states.iter().all(|(_, s)| s == "ready");
            (!ready).then(|| format!("states {states:?}"))
        })
        .await;
    }

    pub async fn drop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), child.kill()).await;
        }
        let Scenario { db, pool, .. } = self;
        tokio::time::timeout(Duration::from_secs(60), async {
            pool.close().await;
            db.drop_database().await;
        })
        .await
        .expect("dropping the source database within 60 s");
    }
}

/// Writes small transactions into `big`, `all_types`, `toasty` and the weird table until
/// stopped (changes during the copy and during streaming).
pub fn background_writer(
    pool: PgPool,
    stop: Arc<AtomicBool>,
    first: i64,
) -> tokio::task::JoinHandle<i64> {
    tokio::spawn(async move {
        let mut next = first;
        while !stop.load(Ordering::Relaxed) {
            let sql = format!(
                "begin;
                 insert into big values ({next}, 'new', {next}.25);
                 update big set n = n + 1 where id = {updated};
                 delete from big where id = {deleted};
                 insert into all_types select id + {next}, b, i2, i8, f4, f8, n, n2, t, vc, c, nm, ch, by, u,
                   j, jb, d, tm, ttz, ts, tstz, iv, ip, cd, mac, mac8, o, m, e, dom, x, ai, at, a2, af, an, ab, aj
                   from all_types where id <= 4;
                 update toasty set small = small + 1 where id = {toasted};
                 update \"Weird \"\"Schema\"\"\".\"Ta ble ü\" set \"CamelCase\" = \"CamelCase\" + 1 where \"Id\" = {toasted};
                 commit;",
                updated = next % i64::from(BIG_ROWS) + 1,
                deleted = (next * 7) % i64::from(BIG_ROWS) + 1,
                toasted = next % 20 + 1,
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .expect("background writer");
            next += 10;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        next
    })
}

/// Changes of `counted` on distinct keys (so no two can be merged): `rounds` inserts, updates
/// of copied rows and deletes of other copied rows. Returns how many of each.
pub async fn counted_changes(pool: &PgPool, from: i64, rounds: i64) -> i64 {
    for k in from..from + rounds {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "begin; insert into counted values ({}, 1); update counted set v = 2 where id = {};
             delete from counted where id = {}; commit;",
            100_000 + k,
            k + 1,
            1500 + k + 1
        )))
        .execute(pool)
        .await
        .expect("counted change");
    }
    rounds
}

/// Deadline of single steps (a statement, a kill, installing triggers).
const STEP: Duration = Duration::from_secs(60);

/// The whole scenario against `target`, failing (never hanging) after `limit`.
pub async fn run(prefix: &str, target: &mut Target, limit: Duration) {
    let started = Instant::now();
    tokio::time::timeout(limit, scenario(prefix, target))
        .await
        .unwrap_or_else(|_| panic!("the {prefix} scenario did not finish within {limit:?}"));
    eprintln!("{prefix}: scenario took {:?}", started.elapsed());
}

async fn scenario(prefix: &str, target: &mut Target) {
    let mut scenario = tokio::time::timeout(Duration::from_secs(120), Scenario::create(prefix))
        .await
        .expect("the source database created within 120 s");
    let destination = scenario
        .within(
            "the destination to be set up",
            STEP,
            target.destination_yaml(&scenario),
        )
        .await;
    scenario.configure(&destination);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = background_writer(scenario.pool.clone(), Arc::clone(&stop), 1_000_000);

    // 1. Start, and SIGKILL while `big` is being copied.
    scenario.start();
    scenario
        .wait_until(
            "the copy of big to start",
            Duration::from_secs(60),
            || async {
                scenario
                    .states()
                    .await
                    .iter()
                    .any(|(t, s)| t == "big" && s == "data_sync")
            },
        )
        .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let states = scenario.states().await;
    assert!(
        states.iter().any(|(t, s)| t == "big" && s == "data_sync"),
        "big should still be copying when killed: {states:?}"
    );
    scenario.kill().await;

    // 2. Restart: the copy is redone and every table becomes ready.
    scenario.start();
    scenario.wait_ready().await;
    scenario
        .within(
            "the audit triggers to be installed",
            STEP,
            target.install_audit(&scenario),
        )
        .await;

    // 3. Streaming, with a SIGKILL in the middle.
    let pool = scenario.pool.clone();
    let what = "changes of counted to be committed in the source";
    let mut counted = scenario
        .within(what, STEP, counted_changes(&pool, 0, 150))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    scenario.kill().await;
    counted += scenario
        .within(what, STEP, counted_changes(&pool, 150, 100))
        .await;
    scenario.start();
    counted += scenario
        .within(what, STEP, counted_changes(&pool, 250, 150))
        .await;
    stop.store(true, Ordering::Relaxed);
    scenario
        .within("the background writer to stop", STEP, writer)
        .await
        .expect("background writer");

    // 4. TOAST, REPLICA IDENTITY FULL, truncate, and schema changes while running.
    let changes = exec(
        &scenario.pool,
        "update toasty set small = small + 100 where id <= 10;
         update full_log set kind = 'c' where ctid = (select ctid from full_log where kind = 'a' limit 1);
         delete from full_log where kind = 'b';
         truncate \"Weird \"\"Schema\"\"\".\"Ta ble ü\";
         insert into \"Weird \"\"Schema\"\"\".\"Ta ble ü\" values (1, 'after truncate', 1);
         alter table shape add column d int;
         update shape set d = id where id <= 25;
         alter table shape rename column a to \"A two\";
         update shape set b = -b where id <= 5;
         alter table shape drop column c;
         update shape set \"A two\" = 'renamed' where id = 50;",
    );
    scenario
        .within("truncate and schema changes in the source", STEP, changes)
        .await;

    if target.is_change_log() {
        // A change log cannot rename the columns of rows it already delivered: a consumer
        // sees the new shape of a row from its next change on. Touch every row. This is the
        // last change: once its transaction is in the log, everything before it is too.
        let touch = async {
            let mut tx = scenario.pool.begin().await.unwrap();
            sqlx::query("update shape set b = b")
                .execute(&mut *tx)
                .await
                .unwrap();
            let xid: i64 = sqlx::query_scalar("select txid_current() % 4294967296")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            xid
        };
        let xid = scenario
            .within("the update of every shape row", STEP, touch)
            .await;
        target.expect_last_transaction(xid);
    }

    // 5. The destination converges to the source (read by this process while etl runs);
    //    then a clean stop.
    scenario
        .wait_for(
            "the destination to equal the source",
            target.convergence_limit(),
            || target.differences(&scenario),
        )
        .await;
    scenario.stop().await;
    let counts = scenario
        .within(
            "counting the applications of counted's changes",
            STEP,
            target.audit_counts(&scenario),
        )
        .await;
    if let Some(counts) = counts {
        assert_eq!(
            counts,
            vec![
                ("D".to_owned(), counted),
                ("I".to_owned(), counted),
                ("U".to_owned(), counted)
            ],
            "each change of `counted` applied exactly once across two SIGKILLs"
        );
    }
    scenario.drop().await;
}

/// Limit of one whole scenario: a hang fails the test instead of stalling CI.
const SCENARIO_LIMIT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ends_equal_to_the_source_with_each_change_applied_once() {
    let mut target = Target::sqlite();
    run("dest_e2e_sqlite", &mut target, SCENARIO_LIMIT).await;
    target.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ends_equal_to_the_source_with_each_change_applied_once() {
    let mut target = Target::postgres();
    run("dest_e2e_postgres", &mut target, SCENARIO_LIMIT).await;
    target.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_replayed_by_a_deduplicating_consumer_ends_equal_to_the_source() {
    let mut target = Target::jsonl();
    run("dest_e2e_jsonl", &mut target, SCENARIO_LIMIT).await;
    target.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_rebuilt_by_a_consumer_ends_equal_to_the_source_with_each_change_once() {
    let Some(mut target) = Target::nats("e2e") else {
        return;
    };
    run("dest_e2e_nats", &mut target, SCENARIO_LIMIT).await;
    target.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_rebuilt_by_a_read_committed_consumer_ends_equal_to_the_source() {
    let Some(mut target) = Target::kafka("e2e") else {
        return;
    };
    run("dest_e2e_kafka", &mut target, SCENARIO_LIMIT * 2).await;
    target.drop().await;
}
