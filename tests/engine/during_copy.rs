//! Changes committed while a large table is being copied (over parallel CTID ranges) are
//! neither lost nor applied twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etl::base::event::Change;

use crate::helpers::{Source, assert_each_event_once, public, wait_equal, wait_for};

#[tokio::test]
async fn changes_during_a_parallel_copy_are_applied_exactly_once() {
    let source = Source::create("eng_during", "pub_during").await;
    source
        .exec(
            "create table big (id bigint primary key, n int not null, pad text); \
               insert into big select g, 0, repeat('x', 100) from generate_series(1, 200000) g; \
               create table small (id int primary key, v text); \
               create publication pub_during for table big, small",
        )
        .await;
    let mut config = source.config.clone();
    config.max_copy_connections_per_table = 3;
    let source = crate::helpers::Source { config, ..source };

    // A writer inserting and updating in small transactions, before, during and after the copy.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let pool = source.pool.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut next = 1_000_000i64;
            while !stop.load(Ordering::Relaxed) {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "begin; insert into big values ({next}, 1, 'new'), ({}, 1, 'new'); \
                     update big set n = n + 1 where id = {}; \
                     insert into small values ({next}, 's'); commit;",
                    next + 1,
                    next % 200_000 + 1
                )))
                .execute(&pool)
                .await
                .expect("writer");
                next += 2;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            next
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (dest, running) = source.start_ready(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer task");

    wait_equal(&source, &dest, &public("big"), &["id", "n", "pad"]).await;
    wait_equal(&source, &dest, &public("small"), &["id", "v"]).await;

    // No event twice, and every row came either from the copy or from one insert event.
    let events = dest.events();
    assert_each_event_once(&dest);
    let big = public("big");
    let inserts = events
        .iter()
        .filter(|e| e.table.name == big && matches!(e.change, Change::Insert { .. }))
        .count() as u64;
    let rows: i64 = sqlx::query_scalar("select count(*) from big")
        .fetch_one(&source.pool)
        .await
        .unwrap();
    assert!(inserts > 0, "the writer's inserts were streamed");
    assert_eq!(dest.copied_rows(&big) + inserts, rows as u64);
    wait_for("slot confirmed", Duration::from_secs(10), || async {
        source.confirmed_flush().await.is_some()
    })
    .await;
    running.stop().await;
    source.drop().await;
}
