//! Crashes and interruptions: the pipeline killed during the copy and during streaming, then
//! restarted with what the destination had durably written; the walsender terminated under a
//! running pipeline. Nothing may be lost.

use std::sync::Arc;
use std::time::Duration;

use etl::destinations::memory::MemoryDestination;

use crate::helpers::{Source, public, wait_equal, wait_for};

#[tokio::test]
async fn a_pipeline_killed_during_streaming_resumes_without_losing_changes() {
    let source = Source::create("eng_crash_stream", "pub_crash").await;
    source
        .exec(
            "create table t (id int primary key, v int); \
               insert into t select g, 0 from generate_series(1, 100) g; \
               create publication pub_crash for table t",
        )
        .await;
    let (dest, running) = source.start_ready(1).await;
    for round in 0..20 {
        source
            .exec(&format!(
                "insert into t values ({}, {round}); update t set v = v + 1 where id = {};",
                1000 + round,
                round + 1
            ))
            .await;
    }
    // Kill it while those changes are (possibly) still being applied.
    running.kill().await;
    source
        .exec(
            "insert into t select g, -1 from generate_series(2000, 2100) g; \
               delete from t where id between 50 and 60;",
        )
        .await;
    let survivor = Arc::new(dest.clone_contents());
    let running = source.start(survivor.clone());
    wait_equal(&source, &survivor, &public("t"), &["id", "v"]).await;
    running.stop().await;
    source.drop().await;
}

#[tokio::test]
async fn a_pipeline_killed_during_the_copy_copies_again_after_restart() {
    let source = Source::create("eng_crash_copy", "pub_crash_copy").await;
    source
        .exec(
            "create table big (id int primary key, pad text); \
               insert into big select g, repeat('p', 200) from generate_series(1, 150000) g; \
               create publication pub_crash_copy for table big",
        )
        .await;
    let dest = Arc::new(MemoryDestination::with_event_log());
    let running = source.start(dest.clone());
    wait_for("copy started", Duration::from_secs(30), || async {
        source.states().await.iter().any(|(_, s)| s == "data_sync")
    })
    .await;
    running.kill().await;
    source
        .exec("update big set pad = 'changed' where id <= 10; delete from big where id > 149990;")
        .await;
    let survivor = Arc::new(dest.clone_contents());
    let running = source.start(survivor.clone());
    source.wait_ready(1).await;
    wait_equal(&source, &survivor, &public("big"), &["id", "pad"]).await;
    running.stop().await;
    source.drop().await;
}

#[tokio::test]
async fn a_terminated_walsender_is_reconnected_and_caught_up() {
    let source = Source::create("eng_walsender", "pub_walsender").await;
    source
        .exec(
            "create table t (id int primary key, v text); \
               create publication pub_walsender for table t",
        )
        .await;
    let dest = Arc::new(MemoryDestination::new());
    let running = source.start(dest.clone());
    source.wait_ready(1).await;
    source.exec("insert into t values (1, 'before')").await;
    wait_equal(&source, &dest, &public("t"), &["id", "v"]).await;
    let slot = etl::engine::apply_slot_name(source.config.id);
    let terminated: Vec<bool> = sqlx::query_scalar(
        "select pg_terminate_backend(active_pid) from pg_replication_slots \
         where slot_name = $1 and active_pid is not null",
    )
    .bind(&slot)
    .fetch_all(&source.pool)
    .await
    .unwrap();
    assert_eq!(terminated, [true]);
    source
        .exec("insert into t select g, 'after' from generate_series(2, 500) g")
        .await;
    wait_equal(&source, &dest, &public("t"), &["id", "v"]).await;
    running.stop().await;
    source.drop().await;
}
