//! Protocol 2: transactions streamed while they run (the test cluster's
//! `logical_decoding_work_mem` is lowered to 64 kB, so a few thousand rows stream). Interleaved
//! streamed transactions, subtransaction and top-level aborts, a schema change and a TRUNCATE
//! inside one, and the real binary killed with SIGKILL while one is streaming and while one is
//! applied: the destination ends equal to the source, each change applied once.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Postgres, Transaction};
use tokio::process::Child;

use crate::cli::{finish, replicate, write_config};
use crate::helpers::{Source, assert_each_event_once, public, wait_equal, wait_for};

/// A source whose cluster streams any transaction past 64 kB of changes.
async fn streaming_source(prefix: &str, publication: &str) -> Source {
    let source = Source::create(prefix, publication).await;
    // ALTER SYSTEM cannot run in the implicit transaction of a multi-statement query.
    source
        .exec("alter system set logical_decoding_work_mem = '64kB'")
        .await;
    source.exec("select pg_reload_conf()").await;
    source
}

/// Transactions the server streamed on the apply slot so far.
async fn streamed_transactions(source: &Source) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "select coalesce(sum(stream_txns), 0)::bigint from pg_stat_replication_slots \
         where slot_name = $1",
    )
    .bind(etl::engine::apply_slot_name(source.config.id))
    .fetch_one(&source.pool)
    .await
    .expect("read pg_stat_replication_slots")
}

async fn run(tx: &mut Transaction<'static, Postgres>, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut **tx)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn insert(table: &str, from: u32, to: u32, pad: &str) -> String {
    format!(
        "insert into {table} select g, repeat('{pad}', 100) from generate_series({from}, {to}) g"
    )
}

#[tokio::test]
async fn interleaved_streamed_transactions_with_aborts_match_the_source_once() {
    let source = streaming_source("eng_stream_mix", "pub_stream_mix").await;
    source
        .exec(
            "create table t (id int primary key, v text); \
             insert into t select g, 'x' from generate_series(1, 10) g; \
             create publication pub_stream_mix for table t",
        )
        .await;
    let (dest, running) = source.start_ready(1).await;
    let before = streamed_transactions(&source).await;

    let mut a = source.pool.begin().await.unwrap();
    let mut b = source.pool.begin().await.unwrap();
    let mut d = source.pool.begin().await.unwrap();
    run(&mut a, &insert("t", 1_000, 2_999, "a")).await;
    run(&mut b, &insert("t", 100_000, 101_999, "b")).await;
    // A subtransaction rolled back (with a child), one released.
    run(&mut a, "savepoint s1").await;
    run(&mut a, &insert("t", 3_000, 4_999, "r")).await;
    run(&mut a, "savepoint s1a").await;
    run(&mut a, &insert("t", 5_000, 5_999, "r")).await;
    run(&mut a, "rollback to savepoint s1").await;
    run(&mut a, "savepoint s2").await;
    run(&mut a, &insert("t", 6_000, 6_999, "s")).await;
    run(&mut a, "release savepoint s2").await;
    run(&mut a, "update t set v = 'a2' where id between 1 and 5").await;
    // A small transaction commits while the big ones run: it does not wait for them.
    source
        .exec("insert into t values (9000000, 'small'); delete from t where id = 10")
        .await;
    wait_equal(&source, &dest, &public("t"), &["id", "v"]).await;
    // A big transaction rolled back as a whole.
    run(&mut d, &insert("t", 200_000, 202_999, "d")).await;
    d.rollback().await.unwrap();
    run(
        &mut b,
        "update t set v = 'b2' where id between 100000 and 100499; \
         delete from t where id > 101900 and id < 102000",
    )
    .await;
    b.commit().await.unwrap();
    run(&mut a, &insert("t", 7_000, 8_999, "a")).await;
    a.commit().await.unwrap();

    wait_equal(&source, &dest, &public("t"), &["id", "v"]).await;
    assert_each_event_once(&dest);
    wait_for(
        "the server streamed the big transactions",
        Duration::from_secs(30),
        // a and b at least (PostgreSQL 18 does not count the rolled-back d).
        || async { streamed_transactions(&source).await >= before + 2 },
    )
    .await;
    let after = source.current_lsn().await;
    wait_for(
        "everything acknowledged",
        Duration::from_secs(30),
        || async { source.confirmed_flush().await.is_some_and(|l| l >= after) },
    )
    .await;
    running.stop().await;
    source.drop().await;
}

#[tokio::test]
async fn a_streamed_transaction_with_a_schema_change_and_a_truncate_applies_in_order() {
    let source = streaming_source("eng_stream_ddl", "pub_stream_ddl").await;
    source
        .exec(
            "create table s (id int primary key, v text); \
             create table u (id int primary key, v text); \
             insert into s select g, 'x' from generate_series(1, 100) g; \
             insert into u select g, 'x' from generate_series(1, 100) g; \
             create publication pub_stream_ddl for table s, u",
        )
        .await;
    let (dest, running) = source.start_ready(2).await;
    let before = streamed_transactions(&source).await;
    let mut tx = source.pool.begin().await.unwrap();
    run(&mut tx, &insert("s", 1_000, 2_999, "a")).await;
    run(&mut tx, "alter table s add column w text").await;
    run(
        &mut tx,
        "insert into s select g, 'b', repeat('w', 100) from generate_series(4000, 5999) g",
    )
    .await;
    run(&mut tx, "update s set w = 'old' where id <= 100").await;
    run(&mut tx, "truncate u").await;
    run(&mut tx, &insert("u", 1, 2_000, "u")).await;
    tx.commit().await.unwrap();

    wait_equal(&source, &dest, &public("s"), &["id", "v", "w"]).await;
    wait_equal(&source, &dest, &public("u"), &["id", "v"]).await;
    assert_each_event_once(&dest);
    // PostgreSQL 14 reports slot statistics through its stats collector, a little late.
    wait_for(
        "the transaction counted as streamed",
        Duration::from_secs(20),
        || async { streamed_transactions(&source).await > before },
    )
    .await;
    running.stop().await;
    source.drop().await;
}

#[tokio::test]
async fn streaming_off_replicates_the_same_transactions_on_protocol_1() {
    let mut source = streaming_source("eng_stream_off", "pub_stream_off").await;
    source.config.streaming = etl::config::StreamingMode::Off;
    source
        .exec(
            "create table t (id int primary key, v text); \
             create publication pub_stream_off for table t",
        )
        .await;
    let (dest, running) = source.start_ready(1).await;
    let before = streamed_transactions(&source).await;
    let mut tx = source.pool.begin().await.unwrap();
    run(&mut tx, &insert("t", 1, 3_000, "a")).await;
    run(&mut tx, "savepoint s").await;
    run(&mut tx, &insert("t", 5_000, 6_000, "r")).await;
    run(&mut tx, "rollback to savepoint s").await;
    tx.commit().await.unwrap();
    wait_equal(&source, &dest, &public("t"), &["id", "v"]).await;
    assert_eq!(
        streamed_transactions(&source).await,
        before,
        "nothing streamed"
    );
    running.stop().await;
    source.drop().await;
}

/// A spill bound smaller than one transaction: the worker goes back to protocol 1 and loses
/// nothing.
#[tokio::test]
async fn a_transaction_past_the_spill_bound_arrives_whole_on_protocol_1() {
    let mut source = streaming_source("eng_stream_bound", "pub_stream_bound").await;
    let spill = tempfile::tempdir().unwrap();
    source.config.spill.dir = Some(spill.path().to_owned());
    source.config.spill.max_bytes = 100_000;
    source
        .exec(
            "create table t (id int primary key, v text); \
             create publication pub_stream_bound for table t",
        )
        .await;
    let (dest, running) = source.start_ready(1).await;
    let mut tx = source.pool.begin().await.unwrap();
    run(&mut tx, &insert("t", 1, 5_000, "a")).await;
    tx.commit().await.unwrap();
    source.exec(&insert("t", 10_000, 10_010, "b")).await;
    wait_equal(&source, &dest, &public("t"), &["id", "v"]).await;
    assert_each_event_once(&dest);
    running.stop().await;
    source.drop().await;
}

fn sigkill(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(child.id().expect("pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
}

/// Bytes in the spill files under `dir`.
fn spilled(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "spill"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// (rows, sum of ids, sum of value lengths) of `public.k` in the SQLite file.
fn sqlite_summary(db: &Path) -> (i64, i64, i64) {
    let conn = rusqlite::Connection::open(db).expect("open the SQLite destination");
    conn.query_row(
        "select count(*), coalesce(sum(id), 0), coalesce(sum(length(v)), 0) from \"public.k\"",
        [],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
    .expect("read the SQLite destination")
}

async fn source_summary(source: &Source) -> (i64, i64, i64) {
    sqlx::query_as(
        "select count(*), coalesce(sum(id), 0)::bigint, coalesce(sum(length(v)), 0)::bigint \
         from k",
    )
    .fetch_one(&source.pool)
    .await
    .expect("read the source")
}

#[tokio::test]
async fn sigkill_while_streaming_and_while_applying_a_streamed_commit_loses_and_repeats_nothing() {
    let source = streaming_source("eng_stream_kill", "pub_stream_kill").await;
    source
        .exec(
            "create table k (id int primary key, v text); \
             insert into k select g, 'x' from generate_series(1, 100) g; \
             create publication pub_stream_kill for table k",
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &source);
    let spill = dir.path().join("spill");
    let base = std::fs::read_to_string(dir.path().join("base.yaml")).unwrap();
    std::fs::write(
        dir.path().join("base.yaml"),
        format!("{base}  spill: {{dir: '{}'}}\n", spill.display()),
    )
    .unwrap();
    let db = dir.path().join("out.db");
    let (code, stderr) = finish(replicate(dir.path(), true)).await;
    assert_eq!(code, Some(0), "{stderr}");

    // Killed while a transaction streams: its spill file is discarded, the server sends it
    // again after the restart.
    let child = replicate(dir.path(), false);
    let mut tx = source.pool.begin().await.unwrap();
    run(&mut tx, &insert("k", 1_000, 20_999, "a")).await;
    wait_for(
        "the transaction is spilled",
        Duration::from_secs(30),
        || async { spilled(&spill) > 0 },
    )
    .await;
    sigkill(&child);
    let _ = finish(child).await;
    run(&mut tx, "update k set v = 'u' where id <= 50").await;
    tx.commit().await.unwrap();
    let (code, stderr) = finish(replicate(dir.path(), true)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(sqlite_summary(&db), source_summary(&source).await);
    assert_eq!(spilled(&spill), 0, "no spill file is left behind");

    // Killed while a committed streamed transaction is being applied, then after.
    let child = replicate(dir.path(), false);
    let mut tx = source.pool.begin().await.unwrap();
    run(&mut tx, &insert("k", 30_000, 79_999, "b")).await;
    wait_for(
        "the transaction is spilled",
        Duration::from_secs(30),
        || async { spilled(&spill) > 1_000_000 },
    )
    .await;
    run(&mut tx, "delete from k where id between 1000 and 1999").await;
    tx.commit().await.unwrap();
    wait_for(
        "the commit is being applied",
        Duration::from_secs(30),
        || async {
            rusqlite::Connection::open(&db)
                .and_then(|c| {
                    c.query_row(
                        "select count(*) from \"public.k\" where id >= 30000",
                        [],
                        |r| r.get::<_, i64>(0),
                    )
                })
                .is_ok_and(|n| n > 0)
        },
    )
    .await;
    sigkill(&child);
    let _ = finish(child).await;
    let (code, stderr) = finish(replicate(dir.path(), true)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(sqlite_summary(&db), source_summary(&source).await);
    let (code, stderr) = finish(replicate(dir.path(), true)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(sqlite_summary(&db), source_summary(&source).await);
    source.drop().await;
}

/// The memory destination of a killed in-process pipeline keeps what it had; a restart into
/// it completes the streamed transaction without applying anything twice.
#[tokio::test]
async fn a_pipeline_killed_mid_stream_restarts_into_the_same_destination_exactly_once() {
    let source = streaming_source("eng_stream_crash", "pub_stream_crash").await;
    source
        .exec(
            "create table t (id int primary key, v text); \
             create publication pub_stream_crash for table t",
        )
        .await;
    let (dest, running) = source.start_ready(1).await;
    let mut tx = source.pool.begin().await.unwrap();
    run(&mut tx, &insert("t", 1, 4_000, "a")).await;
    source.exec(&insert("t", 100_000, 100_010, "s")).await;
    wait_equal(&source, &dest, &public("t"), &["id", "v"]).await;
    running.kill().await;
    run(&mut tx, &insert("t", 5_000, 6_000, "a")).await;
    tx.commit().await.unwrap();
    let survivor = Arc::new(dest.clone_contents());
    let running = source.start(survivor.clone());
    wait_equal(&source, &survivor, &public("t"), &["id", "v"]).await;
    assert_each_event_once(&survivor);
    running.stop().await;
    source.drop().await;
}
