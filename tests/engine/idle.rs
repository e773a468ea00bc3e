//! An idle publication never pins WAL: the apply slot's confirmed position follows the server
//! while other databases write.

use std::sync::Arc;
use std::time::Duration;

use etl::destinations::memory::MemoryDestination;

use crate::common::TestDatabase;
use crate::helpers::{Source, wait_for};

#[tokio::test]
async fn the_slot_advances_while_another_database_writes() {
    let source = Source::create("eng_idle", "pub_idle").await;
    source
        .exec(
            "create table quiet (id int primary key); \
               create publication pub_idle for table quiet",
        )
        .await;
    let dest = Arc::new(MemoryDestination::new());
    let running = source.start(dest.clone());
    source.wait_ready(1).await;

    let other = TestDatabase::create("eng_idle_other").await;
    let other_pool = other.pool().await;
    sqlx::raw_sql("create table noise (v text); insert into noise select repeat('n', 100) from generate_series(1, 10000)")
        .execute(&other_pool)
        .await
        .unwrap();
    let target = source.current_lsn().await;
    wait_for(
        "confirmed_flush_lsn passes the other database's writes",
        Duration::from_secs(30),
        || async {
            // Keep WAL moving so the walsender has something to report.
            let _ = sqlx::raw_sql("insert into noise values ('more')")
                .execute(&other_pool)
                .await;
            source
                .confirmed_flush()
                .await
                .is_some_and(|lsn| lsn >= target)
        },
    )
    .await;
    running.stop().await;
    other_pool.close().await;
    other.drop_database().await;
    source.drop().await;
}
