//! `etl::engine::visibility::wait_visible`: the wait the engine does before reading the
//! catalog about a schema change the stream delivered. A transaction still in the process
//! array (running, or between its commit record and leaving the array) holds the wait; its end
//! lets it go.

use std::time::Duration;

use etl::engine::visibility::wait_visible;
use sqlx::Connection;

use crate::common::TestDatabase;

/// The current transaction's xid as pgoutput gives it (without the epoch).
const XID: &str = "select (pg_current_xact_id()::text::numeric % 4294967296)::bigint";

async fn xid<'c>(executor: impl sqlx::PgExecutor<'c>) -> u32 {
    let xid: i64 = sqlx::query_scalar(XID)
        .fetch_one(executor)
        .await
        .expect("an xid");
    u32::try_from(xid).expect("a 32-bit xid")
}

#[tokio::test]
async fn the_wait_lasts_until_the_transaction_is_visible() {
    let database = TestDatabase::create("visibility").await;
    let pool = database.pool().await;
    let mut writer = sqlx::PgConnection::connect(&database.url)
        .await
        .expect("connect the writer");
    let mut tx = writer.begin().await.expect("begin");
    let running = xid(&mut *tx).await;

    // A transaction that ended (after the running one began) is visible at once.
    let ended = xid(&pool).await;
    tokio::time::timeout(Duration::from_secs(5), wait_visible(&pool, ended))
        .await
        .expect("no wait for a transaction that ended")
        .expect("the check");

    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move { wait_visible(&pool, running).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "the wait ended while the transaction ran"
    );
    tx.commit().await.expect("commit");
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the wait ends once the transaction committed")
        .expect("the task")
        .expect("the check");

    drop(writer);
    pool.close().await;
    database.drop_database().await;
}
