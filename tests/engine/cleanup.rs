//! `delete_pipeline_state`: a deleted pipeline leaves no slot and no `etl` row behind, even
//! while its replicator is still streaming.

use std::time::Duration;

use crate::helpers::{Source, wait_for};

#[tokio::test]
async fn deleting_a_pipeline_drops_its_slots_and_state_rows() {
    let source = Source::create("eng_cleanup", "pub_cleanup").await;
    source
        .exec(
            "create table t (id int primary key); insert into t values (1); \
               create publication pub_cleanup for table t",
        )
        .await;
    let (_dest, running) = source.start_ready(1).await;
    let id = source.config.id;
    wait_for("apply slot active", Duration::from_secs(10), || async {
        sqlx::query_scalar::<_, bool>(
            "select active from pg_replication_slots where slot_name = $1",
        )
        .bind(etl::engine::apply_slot_name(id))
        .fetch_optional(&source.pool)
        .await
        .unwrap()
        .unwrap_or(false)
    })
    .await;

    etl::engine::delete_pipeline_state(&source.pool, id)
        .await
        .expect("delete pipeline state");
    running.kill().await;
    let slots: i64 = sqlx::query_scalar(
        "select count(*) from pg_replication_slots where slot_name like 'etl\\_%\\_' || $1 || '%'",
    )
    .bind(id.to_string())
    .fetch_one(&source.pool)
    .await
    .unwrap();
    assert_eq!(slots, 0);
    for table in [
        "replication_state",
        "table_schemas",
        "table_mappings",
        "replication_progress",
    ] {
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select count(*) from etl.{table} where pipeline_id = $1"
        )))
        .bind(id as i64)
        .fetch_one(&source.pool)
        .await
        .unwrap();
        assert_eq!(rows, 0, "etl.{table}");
    }
    // Idempotent.
    etl::engine::delete_pipeline_state(&source.pool, id)
        .await
        .expect("second delete");
    source.drop().await;
}
