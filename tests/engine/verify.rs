//! `etl verify` (issue 18) against real sqlite and postgres destinations fed by a running
//! pipeline: equal tables are reported equal; a row changed, deleted or added in the
//! destination behind etl's back is reported with its key and bucket; `--repair` resyncs the
//! table and a new verification finds it equal; writes running during a verification are
//! never reported as drift. The binary's exit codes (0 equal, 3 drift) are checked too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etl::config::{DestinationConfig, PostgresDestinationConfig, SqliteDestinationConfig};
use etl::verify::{self, DiffKind, Options, Report, TableStatus};

use etl::engine::Destination;

use crate::feature_destinations::Mirror;
use crate::helpers::{Source, wait_for};

const SETUP: &str = "\
    create table items (id int primary key, name text, price numeric(10,2), f float8, \
      r real, flag bool, data bytea, at timestamptz, tags text[], doc jsonb, d date, \
      iv interval, code char(6), addr inet); \
    insert into items select g, 'item ' || g, g * 1.25, \
      case g % 5 when 0 then 'NaN' when 1 then '-0' when 2 then 'Infinity' else g / 3.0 end, \
      g / 7.0, g % 2 = 0, decode(md5(g::text), 'hex'), \
      timestamptz '2024-02-29 08:15:06.5+02' + g * interval '1 minute', \
      array['a', null, 'c' || g], jsonb_build_object('g', g), date '2000-01-01' + g, \
      g * interval '1 day 2 hours', 'c' || (g % 7), ('10.0.' || (g % 256) || '.1')::inet \
      from generate_series(1, 3000) g; \
    update items set name = null, doc = null where id % 11 = 0; \
    create table \"Mixed Case\" (\"K\" text, n int, v real, primary key (\"K\", n)); \
    insert into \"Mixed Case\" select 'k' || (g % 10), g, g / 3.0 from generate_series(1, 500) g; \
    create table logs (a int, b text); alter table logs replica identity full; \
    insert into logs select g % 50, 'x' from generate_series(1, 200) g; \
    create publication pub_verify for table items, \"Mixed Case\", logs";

fn destination_config(mirror: &Mirror) -> DestinationConfig {
    match mirror {
        Mirror::Sqlite { path, .. } => {
            DestinationConfig::Sqlite(SqliteDestinationConfig { path: path.clone() })
        }
        Mirror::Postgres { target } => {
            let yaml = format!("url: '{}'\n", target.url);
            DestinationConfig::Postgres(
                serde_yaml::from_str::<PostgresDestinationConfig>(&yaml).expect("config"),
            )
        }
        Mirror::Memory(_) => DestinationConfig::Memory {},
    }
}

async fn run_verify(source: &Source, mirror: &Mirror, tables: &[&str], repair: bool) -> Report {
    let options = Options {
        tables: tables.iter().map(|t| t.to_string()).collect(),
        repair,
        wait: Duration::from_secs(60),
    };
    verify::verify(
        source.config.id,
        &source.config.publication_name,
        &source.config.source().expect("source"),
        &verify::Target::from_config(&destination_config(mirror)).expect("verifiable"),
        &options,
    )
    .await
    .expect("verify runs")
}

fn status(report: &Report, table: &str) -> TableStatus {
    report
        .tables
        .iter()
        .find(|t| t.table == table)
        .unwrap_or_else(|| panic!("{table} in {report}"))
        .status
        .clone()
}

/// Runs `sql` in the destination, behind etl's back.
async fn tamper(mirror: &Mirror, sqlite_sql: &str, postgres_sql: &str) {
    match mirror {
        Mirror::Sqlite { path, .. } => {
            let conn = rusqlite::Connection::open(path).expect("open the sqlite file");
            conn.busy_timeout(Duration::from_secs(30)).unwrap();
            conn.execute_batch(sqlite_sql).expect("tamper with sqlite");
        }
        Mirror::Postgres { target } => target.exec(postgres_sql).await,
        Mirror::Memory(_) => unreachable!("memory is not verifiable"),
    }
}

async fn drift_is_found_with_its_keys_and_repair_makes_it_equal<D: Destination + Clone>(
    prefix: &str,
    mirror: Mirror,
    destination: D,
) {
    let source = Source::create(prefix, "pub_verify").await;
    source.exec(SETUP).await;
    let running = source.start_with(destination, false);
    source.wait_ready(3).await;
    // Changes streamed after the copy are part of what is compared.
    source
        .exec(
            "update items set name = 'renamed' where id = 5; delete from items where id = 6; \
               insert into items (id, name) values (3001, 'new'); insert into logs values (1, 'x')",
        )
        .await;

    let report = run_verify(&source, &mirror, &[], false).await;
    println!("{report}");
    for table in ["public.items", "public.Mixed Case", "public.logs"] {
        assert_eq!(status(&report, table), TableStatus::Equal, "{report}");
    }
    let items = report
        .tables
        .iter()
        .find(|t| t.table == "public.items")
        .unwrap();
    assert_eq!(items.source_rows, 3000);
    assert_eq!(items.destination_rows, 3000);

    tamper(
        &mirror,
        "update \"public.items\" set name = 'tampered' where id = 17; \
         delete from \"public.items\" where id = 42; \
         insert into \"public.items\" (id, name) values (99999, 'ghost'); \
         update \"public.Mixed Case\" set v = 0.5 where \"K\" = 'k3' and n = 3;",
        "update public.items set name = 'tampered' where id = 17; \
         delete from public.items where id = 42; \
         insert into public.items (id, name) values (99999, 'ghost'); \
         update public.\"Mixed Case\" set v = 0.5 where \"K\" = 'k3' and n = 3;",
    )
    .await;
    let report = run_verify(&source, &mirror, &[], false).await;
    println!("{report}");
    assert_eq!(
        status(&report, "public.logs"),
        TableStatus::Equal,
        "{report}"
    );
    let items = report
        .tables
        .iter()
        .find(|t| t.table == "public.items")
        .unwrap();
    assert_eq!(items.status, TableStatus::Drift, "{report}");
    assert_eq!((items.source_rows, items.destination_rows), (3000, 3000));
    let mut rows: Vec<(String, DiffKind)> =
        items.rows.iter().map(|r| (r.key.clone(), r.kind)).collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        rows,
        [
            ("id=17".to_string(), DiffKind::Changed),
            ("id=42".to_string(), DiffKind::Missing),
            ("id=99999".to_string(), DiffKind::Extra),
        ],
        "{report}"
    );
    // Every differing key lies in a reported bucket, with the bucket's row counts.
    assert!(!items.ranges.is_empty() && items.ranges.len() <= 3);
    let missing_bucket = &etl::verify::canonical::md5_hex("'42'")[..items.ranges[0].bucket.len()];
    let range = items
        .ranges
        .iter()
        .find(|r| r.bucket == missing_bucket)
        .expect("the missing key's bucket is reported");
    assert_eq!(range.source_rows, range.destination_rows + 1, "{report}");
    let mixed = report
        .tables
        .iter()
        .find(|t| t.table == "public.Mixed Case")
        .unwrap();
    assert_eq!(mixed.status, TableStatus::Drift);
    assert_eq!(mixed.rows.len(), 1);
    assert_eq!(mixed.rows[0].key, "(K=k3, n=3)");
    assert_eq!(mixed.rows[0].kind, DiffKind::Changed);

    // Only the named table is verified (and repaired).
    let report = run_verify(&source, &mirror, &["public.items"], true).await;
    assert_eq!(report.tables.len(), 1);
    assert!(report.tables[0].repaired, "{report}");
    wait_for("items copied again", Duration::from_secs(120), || async {
        let report = run_verify(&source, &mirror, &["public.items"], false).await;
        status(&report, "public.items") == TableStatus::Equal
    })
    .await;
    let report = run_verify(&source, &mirror, &[], false).await;
    assert_eq!(status(&report, "public.Mixed Case"), TableStatus::Drift);

    running.stop().await;
    source.drop().await;
    mirror.drop().await;
}

#[tokio::test]
async fn sqlite_drift_is_found_with_its_keys_and_repair_makes_it_equal() {
    let (mirror, destination) = Mirror::sqlite();
    drift_is_found_with_its_keys_and_repair_makes_it_equal(
        "eng_verify_sqlite",
        mirror,
        destination,
    )
    .await;
}

#[tokio::test]
async fn postgres_drift_is_found_with_its_keys_and_repair_makes_it_equal() {
    let (mirror, destination) = Mirror::postgres("eng_verify_pg_target").await;
    drift_is_found_with_its_keys_and_repair_makes_it_equal("eng_verify_pg", mirror, destination)
        .await;
}

/// Keeps updating, inserting and deleting rows of `items` until `stop`.
fn write_load(source: &Source, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let pool = source.pool.clone();
    tokio::spawn(async move {
        let mut round = 0u64;
        while !stop.load(Ordering::Relaxed) {
            round += 1;
            let sql = format!(
                "begin; update items set price = price + 1, name = 'round {round}' \
                 where id % 50 = {m}; insert into items (id, name) values ({new}, 'new'); \
                 delete from items where id = {old}; commit;",
                m = round % 50,
                new = 100_000 + round,
                old = 100_000 + round.saturating_sub(3),
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .expect("write load");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        round
    })
}

async fn writes_during_a_verification_are_not_drift<D: Destination + Clone>(
    prefix: &str,
    mirror: Mirror,
    destination: D,
) {
    let source = Source::create(prefix, "pub_verify").await;
    source.exec(SETUP).await;
    let running = source.start_with(destination, false);
    source.wait_ready(3).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(&source, stop.clone());
    let mut rechecks = 0;
    for _ in 0..3 {
        let report = run_verify(&source, &mirror, &["public.items"], false).await;
        println!("{report}");
        assert_eq!(
            status(&report, "public.items"),
            TableStatus::Equal,
            "{report}"
        );
        rechecks += report.tables[0].rechecks;
    }
    // The destination moved on after the snapshot: differences were seen and re-checked.
    assert!(
        rechecks > 0,
        "the writes were in flight during the comparisons"
    );
    stop.store(true, Ordering::Relaxed);
    let rounds = load.await.expect("write load");
    assert!(
        rounds > 20,
        "the load ran during the verifications ({rounds} rounds)"
    );
    // Let the replicator apply the load's last changes first: an update of row 7 applied after
    // the tamper would put the row back.
    let written = source.current_lsn().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while source.confirmed_flush().await.unwrap_or(0) < written {
        assert!(
            std::time::Instant::now() < deadline,
            "the replicator confirms the load's last commit within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same check still sees a real difference made under the same load.
    tamper(
        &mirror,
        "delete from \"public.items\" where id = 7",
        "delete from public.items where id = 7",
    )
    .await;
    let report = run_verify(&source, &mirror, &["public.items"], false).await;
    let items = &report.tables[0];
    assert_eq!(items.status, TableStatus::Drift, "{report}");
    assert_eq!(items.rows.len(), 1, "{report}");
    assert_eq!(items.rows[0].key, "id=7");
    running.stop().await;
    source.drop().await;
    mirror.drop().await;
}

#[tokio::test]
async fn sqlite_writes_during_a_verification_are_not_drift() {
    let (mirror, destination) = Mirror::sqlite();
    writes_during_a_verification_are_not_drift("eng_verify_load_sqlite", mirror, destination).await;
}

#[tokio::test]
async fn postgres_writes_during_a_verification_are_not_drift() {
    let (mirror, destination) = Mirror::postgres("eng_verify_load_pg_target").await;
    writes_during_a_verification_are_not_drift("eng_verify_load_pg", mirror, destination).await;
}

/// `etl verify` as a cron job or CI step sees it: its exit code and one line.
async fn verify_binary(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_etl"))
        .arg("--config-dir")
        .arg(dir)
        .args(["--env", "dev", "verify"])
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .await
        .expect("run etl verify");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_binary_exits_0_when_equal_3_on_drift_2_on_a_bad_table_1_when_not_streaming() {
    let source = Source::create("eng_verify_cli", "pub_verify_cli").await;
    source
        .exec(
            "create table t (id int primary key, v text); \
             insert into t select g, 'v' || g from generate_series(1, 1000) g; \
             create publication pub_verify_cli for table t",
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    crate::cli::write_config(dir.path(), &source);
    let mut replicator = crate::cli::replicate(dir.path(), false);
    source.wait_ready(1).await;

    let (code, stdout, stderr) = verify_binary(dir.path(), &[]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("public.t: equal (1000 rows)"), "{stdout}");

    let conn = rusqlite::Connection::open(dir.path().join("out.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    conn.execute("delete from \"public.t\" where id = 500", [])
        .unwrap();
    let (code, stdout, stderr) = verify_binary(dir.path(), &["--table", "public.t"]).await;
    assert_eq!(code, Some(3), "{stdout}{stderr}");
    assert!(
        stdout.contains("id=500: missing in the destination"),
        "{stdout}"
    );
    assert!(
        stderr.contains("error: drift found in 1 table(s): public.t"),
        "{stderr}"
    );

    let (code, _, stderr) = verify_binary(dir.path(), &["--table", "public.nosuch"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("table `public.nosuch` does not exist"),
        "{stderr}"
    );

    replicator.kill().await.unwrap();
    let (code, _, stderr) = verify_binary(dir.path(), &["--wait-secs", "2"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("replicator must be running"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    source.drop().await;
}
