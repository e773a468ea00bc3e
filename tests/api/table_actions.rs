//! Table actions safe while a pipeline runs (issue 18), and the retry bookkeeping in
//! `replication-status`: `POST /v1/pipelines/{id}/tables/{table_id}/resync`
//! and `rollback-tables` with target `init` while the pipeline runs. Both only write the
//! source's `etl` state (what the engine does with it is tested in `tests/engine/resync.rs`):
//! here the "replicator" the local runtime starts is a script that just stays up.

use std::os::unix::fs::PermissionsExt as _;

use serde_json::json;

use crate::helpers::{TestSource, spawn_app_with};

async fn set_state(pool: &sqlx::PgPool, pipeline: i64, table: i64, state: &str) {
    let error = (state == "errored")
        .then(|| json!({"reason": "boom", "hint": "fix it", "retry": {"policy": "manual"}}));
    sqlx::query(
        "update etl.replication_state set is_current = false \
         where pipeline_id = $1 and table_id = $2::int8::oid and is_current",
    )
    .bind(pipeline)
    .bind(table)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into etl.replication_state (pipeline_id, table_id, state, error) \
         values ($1, $2::int8::oid, $3, $4)",
    )
    .bind(pipeline)
    .bind(table)
    .bind(state)
    .bind(error)
    .execute(pool)
    .await
    .unwrap();
}

async fn current(pool: &sqlx::PgPool, pipeline: i64, table: i64) -> String {
    sqlx::query_scalar(
        "select state from etl.replication_state \
         where pipeline_id = $1 and table_id = $2::int8::oid and is_current",
    )
    .bind(pipeline)
    .bind(table)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_table_is_resynced_through_the_state_and_refused_while_it_is_copied() {
    let scripts = tempfile::tempdir().unwrap();
    let replicator = scripts.path().join("stays-up");
    std::fs::write(
        &replicator,
        "#!/bin/sh\n# stays up with its arguments (the runtime knows its replicator by them)\n\
         trap 'exit 0' TERM INT\nwhile :; do /usr/bin/sleep 1; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&replicator, std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = spawn_app_with(Some(replicator)).await;
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    app.create_image().await;
    let source = TestSource::create().await;
    let source_id = app.create_source("acme", "shop", &source).await;
    let destination_id = app
        .create_destination("acme", "mem", json!({"memory": {}}))
        .await;
    let id = app
        .create_pipeline("acme", source_id, destination_id, "pub")
        .await["id"]
        .as_i64()
        .unwrap();
    let base = format!("/v1/pipelines/{id}");
    etl::migrate::run(
        etl::migrate::MigrationSet::Replicator,
        &source.db.options(),
        false,
        |_| {},
    )
    .await
    .unwrap();
    let pool = source.db.pool().await;
    sqlx::raw_sql(
        "create table orders (id int primary key); create table items (id int primary key)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let oid = |name: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("select $1::regclass::oid::int8")
                .bind(name)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (orders, items) = (oid("orders").await, oid("items").await);
    set_state(&pool, id, orders, "ready").await;
    set_state(&pool, id, items, "data_sync").await;

    // Stopped: the resync route works as well (the next start copies the table).
    let resynced = app
        .post(
            &format!("{base}/tables/{orders}/resync"),
            Some("acme"),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(
        resynced,
        json!({"tables": [{"table_id": orders, "from": "ready", "to": "init"}]})
    );
    assert_eq!(current(&pool, id, orders).await, "init");
    let history: i64 = sqlx::query_scalar(
        "select count(*) from etl.replication_state where pipeline_id = $1 and table_id = $2::int8::oid",
    )
    .bind(id)
    .bind(orders)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(history, 2, "the history is kept");
    // Being copied (or waiting for its copy): refused, nothing changes.
    for table in [items, orders] {
        let refused = app
            .post(
                &format!("{base}/tables/{table}/resync"),
                Some("acme"),
                json!({}),
            )
            .await
            .expect(409);
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .contains("is being copied"),
            "{refused}"
        );
    }
    assert_eq!(current(&pool, id, items).await, "data_sync");
    app.post(
        &format!("{base}/tables/12345/resync"),
        Some("acme"),
        json!({}),
    )
    .await
    .expect(404);
    app.post(
        &format!("{base}/tables/{orders}/resync"),
        Some("globex"),
        json!({}),
    )
    .await
    .expect(404);

    // Running: rollback to `init` is a resync (an errored table goes back to `init`, a table
    // being copied is skipped); rollback to the previous state is still refused.
    let started = app
        .post(&format!("{base}/start"), Some("acme"), json!({}))
        .await
        .expect(200);
    assert!(
        started["status"] == json!("starting") || started["status"] == json!("running"),
        "{started}"
    );
    set_state(&pool, id, orders, "errored").await;
    let rolled = app
        .post(
            &format!("{base}/rollback-tables"),
            Some("acme"),
            json!({"tables": "all", "target": "init"}),
        )
        .await
        .expect(200);
    assert_eq!(
        rolled,
        json!({"tables": [{"table_id": orders, "from": "errored", "to": "init"}]})
    );
    assert_eq!(current(&pool, id, items).await, "data_sync");
    let refused = app
        .post(
            &format!("{base}/rollback-tables"),
            Some("acme"),
            json!({"tables": "errored", "target": "previous"}),
        )
        .await
        .expect(409);
    assert!(
        refused["message"].as_str().unwrap().contains("is running"),
        "{refused}"
    );
    // replication-status shows the retry bookkeeping of `pipeline.table_errors`.
    sqlx::query(
        "update etl.replication_state set attempts = 2, last_error = 'boom', \
         next_attempt_at = '2030-01-01T00:00:00Z' \
         where pipeline_id = $1 and table_id = $2::int8::oid and is_current",
    )
    .bind(id)
    .bind(items)
    .execute(&pool)
    .await
    .unwrap();
    let status = app
        .get(&format!("{base}/replication-status"), Some("acme"))
        .await
        .expect(200);
    let tables = status["tables"].as_array().unwrap();
    let of = |table: i64| {
        tables
            .iter()
            .find(|t| t["table_id"] == json!(table))
            .unwrap()
    };
    assert_eq!(of(items)["attempts"], json!(2), "{status}");
    assert_eq!(of(items)["last_error"], json!("boom"), "{status}");
    assert!(
        of(items)["next_attempt_at"]
            .as_str()
            .is_some_and(|at| at.starts_with("2030-01-01T00:00:00")),
        "{status}"
    );
    assert_eq!(of(orders)["attempts"], json!(0), "{status}");
    assert!(of(orders).get("next_attempt_at").is_none(), "{status}");
    app.post(&format!("{base}/stop"), Some("acme"), json!({}))
        .await
        .expect(200);
    pool.close().await;
    app.shutdown().await;
    source.drop().await;
}
