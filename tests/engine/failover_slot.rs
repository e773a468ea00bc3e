//! `pipeline.failover_slot`: on PostgreSQL 17+ the apply slot is created with `FAILOVER` and its
//! flag follows the setting across restarts; before 17 the preconditions refuse the setting
//! with `failover_slot_unsupported` before any slot is made. (A `synchronized_standby_slots`
//! naming a missing slot would stall every walsender of the shared cluster, so that finding is
//! unit-tested in `preconditions`.)

use std::time::Duration;

use etl::destinations::memory::MemoryDestination;
use std::sync::Arc;

use crate::helpers::{Source, wait_for};
use crate::versions::server_major;

async fn apply_slot_failover(source: &Source) -> Option<bool> {
    sqlx::query_scalar(
        "select (to_jsonb(s) ->> 'failover')::bool from pg_replication_slots s \
         where slot_name = $1",
    )
    .bind(etl::engine::apply_slot_name(source.config.id))
    .fetch_optional(&source.pool)
    .await
    .expect("read the apply slot")
    .flatten()
}

#[tokio::test]
async fn failover_slot_makes_a_failover_apply_slot_on_17_and_is_refused_before() {
    let mut source = Source::create("failover_slot", "pub_failover").await;
    source
        .exec(
            "create table f (id int primary key);
             insert into f select generate_series(1, 10);
             create publication pub_failover for table f",
        )
        .await;
    source.config.failover_slot = true;
    let major = server_major(&source).await;
    if major < 17 {
        let running = source.start_with(Arc::new(MemoryDestination::new()), false);
        let ended = tokio::time::timeout(Duration::from_secs(30), running.handle)
            .await
            .expect("the pipeline stops at once")
            .expect("pipeline task");
        let error = ended.expect_err("failover_slot is refused before 17");
        assert!(
            error.to_string().contains("failover_slot_unsupported")
                || format!("{error:?}").contains("failover_slot_unsupported"),
            "{error:?}"
        );
        assert_eq!(apply_slot_failover(&source).await, None, "no slot was made");
        source.drop().await;
        return;
    }
    let (dest, running) = source.start_ready(1).await;
    assert_eq!(apply_slot_failover(&source).await, Some(true));
    running.stop().await;
    // Restarted with the other setting (into the same destination, which holds the copy), the
    // existing slot's flag follows it.
    for failover in [false, true] {
        source.config.failover_slot = failover;
        let running = source.start_with(dest.clone(), false);
        wait_for(
            "the slot's failover flag",
            Duration::from_secs(30),
            || async { apply_slot_failover(&source).await == Some(failover) },
        )
        .await;
        source.wait_ready(1).await;
        running.stop().await;
    }
    source.drop().await;
}
