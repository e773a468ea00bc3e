//! `slot_monitor::read_slot` on real slots: lag of a logical slot behind generated WAL, a missing
//! slot, and a slot invalidated by `max_slot_wal_keep_size` on a private cluster.

use etl::base::lsn::Lsn;
use etl::engine::slot_monitor::read_slot;
use sqlx::PgPool;

use crate::common::TestDatabase;
use crate::replica_cluster::ReplicaCluster;

async fn lsn(pool: &PgPool, sql: &str) -> Lsn {
    let text: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    text.parse().unwrap()
}

#[tokio::test]
async fn a_logical_slot_reports_positions_and_lag_behind_new_wal() {
    let db = TestDatabase::create("ops_slot").await;
    let pool = db.pool().await;
    let slot = db.name.clone();
    let created = lsn(
        &pool,
        &format!("select lsn::text from pg_create_logical_replication_slot('{slot}', 'pgoutput')"),
    )
    .await;
    sqlx::raw_sql(
        "create table t (id int primary key, payload text);
         insert into t select g, repeat('x', 100) from generate_series(1, 2000) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    let after_inserts = lsn(&pool, "select pg_current_wal_lsn()::text").await;

    let info = read_slot(&pool, &slot).await.unwrap().expect("slot exists");

    assert_eq!(info.confirmed_flush_lsn, Some(created));
    let restart = info.restart_lsn.expect("restart_lsn");
    assert!(restart <= created, "{restart} > {created}");
    assert!(!info.active);
    assert!(!info.is_invalidated());
    assert_eq!(info.wal_status.as_deref(), Some("reserved"));
    let lag = info.lag_bytes.expect("lag");
    // Other tests write WAL too, so the lag is at least what this test wrote.
    assert!(
        lag >= after_inserts.0 - created.0,
        "lag {lag} < {}",
        after_inserts.0 - created.0
    );
    assert!(lag > 200_000, "2000 rows of 100 bytes: {lag}");
    let limit: String = sqlx::query_scalar("select current_setting('max_slot_wal_keep_size')")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(info.safe_wal_size.is_none(), limit == "-1", "{info:?}");

    let advanced = lsn(
        &pool,
        &format!(
            "select end_lsn::text from pg_replication_slot_advance('{slot}', '{after_inserts}')"
        ),
    )
    .await;
    let info = read_slot(&pool, &slot).await.unwrap().expect("slot exists");
    assert_eq!(info.confirmed_flush_lsn, Some(advanced));
    assert!(advanced >= after_inserts);

    sqlx::query("select pg_drop_replication_slot($1)")
        .bind(&slot)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(read_slot(&pool, &slot).await.unwrap(), None);
    pool.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn a_slot_past_max_slot_wal_keep_size_is_invalidated() {
    let cluster = ReplicaCluster::start();
    let pool = cluster.pool().await;
    sqlx::query("select pg_create_physical_replication_slot('ops_lost', true)")
        .execute(&pool)
        .await
        .unwrap();
    let info = read_slot(&pool, "ops_lost").await.unwrap().expect("slot");
    assert!(!info.is_invalidated(), "{info:?}");
    assert!(info.restart_lsn.is_some());
    assert_eq!(
        info.confirmed_flush_lsn, None,
        "physical slots confirm nothing"
    );
    assert!(info.safe_wal_size.is_some(), "a 1MB limit is set: {info:?}");

    sqlx::raw_sql("create table w (payload text)")
        .execute(&pool)
        .await
        .unwrap();
    for _ in 0..6 {
        sqlx::raw_sql(
            "insert into w select repeat('w', 1000) from generate_series(1, 2000);
             select pg_switch_wal();",
        )
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::raw_sql("checkpoint").execute(&pool).await.unwrap();

    let info = read_slot(&pool, "ops_lost").await.unwrap().expect("slot");
    assert!(info.is_invalidated(), "{info:?}");
    assert_eq!(info.wal_status.as_deref(), Some("lost"));
    pool.close().await;
}
