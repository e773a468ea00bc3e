//! End to end with the `local` runtime and the real `etl replicate`: tenant, source, sqlite
//! destination and pipeline created through the API; rows written on the source arrive in the
//! SQLite file; the tables reach `ready`; stop ends the replicator.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestApp, TestSource, spawn_app};

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(value) = probe().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn sqlite_count(path: &std::path::Path, table: &str) -> Option<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.query_row(&format!("select count(*) from \"{table}\""), [], |row| {
        row.get(0)
    })
    .ok()
}

async fn status(app: &TestApp, id: i64) -> serde_json::Value {
    app.get(&format!("/v1/pipelines/{id}/status"), Some("acme"))
        .await
        .expect(200)
}

#[tokio::test]
async fn a_pipeline_created_through_the_api_replicates_into_sqlite() {
    let app = spawn_app().await;
    let source = TestSource::create().await;
    let pool = source.db.pool().await;
    sqlx::raw_sql(
        "create table public.orders (id int primary key, item text not null); \
         insert into public.orders values (1, 'apple'), (2, 'pear');",
    )
    .execute(&pool)
    .await
    .unwrap();

    app.create_tenant("acme").await;
    app.create_image().await;
    let source_id = app.create_source("acme", "shop", &source).await;
    app.post(
        &format!("/v1/sources/{source_id}/publications"),
        Some("acme"),
        json!({"name": "orders_pub", "tables": [{"schema": "public", "name": "orders"}]}),
    )
    .await
    .expect(201);
    // A file destination's path is relative to the tenant's directory.
    let db_path = app.config.local.data_dir.join("acme/mirror.db");
    let destination_id = app
        .create_destination("acme", "mirror", json!({"sqlite": {"path": "mirror.db"}}))
        .await;
    let id = app
        .create_pipeline("acme", source_id, destination_id, "orders_pub")
        .await["id"]
        .as_i64()
        .unwrap();

    let started = app
        .post(
            &format!("/v1/pipelines/{id}/start"),
            Some("acme"),
            json!({}),
        )
        .await
        .expect(200);
    // `starting` until the replicator's session is up (migrations, checks, slot), then `started`.
    assert!(
        started["status"] == json!("starting") || started["status"] == json!("started"),
        "{started}"
    );
    let log = app
        .state_dir
        .path()
        .join(format!("pipeline-{id}/replicator.log"));
    let show_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // The initial copy, then streamed changes.
    wait_for("the initial copy", async || {
        (sqlite_count(&db_path, "public.orders") == Some(2)).then_some(())
    })
    .await;
    sqlx::query("insert into public.orders select g, 'item ' || g from generate_series(3, 50) g")
        .execute(&pool)
        .await
        .unwrap();
    wait_for("streamed inserts", async || {
        (sqlite_count(&db_path, "public.orders") == Some(50)).then_some(())
    })
    .await;
    assert_eq!(
        status(&app, id).await["status"],
        json!("started"),
        "{}",
        show_log()
    );

    let replication = wait_for("the table to be ready", async || {
        let body = app
            .get(
                &format!("/v1/pipelines/{id}/replication-status"),
                Some("acme"),
            )
            .await
            .expect(200);
        (body["tables"][0]["state"] == json!("ready")).then_some(body)
    })
    .await;
    assert_eq!(
        replication["tables"][0]["table_name"],
        json!("public.orders")
    );
    assert_eq!(replication["slot"]["exists"], json!(true));

    let stopped = app
        .post(&format!("/v1/pipelines/{id}/stop"), Some("acme"), json!({}))
        .await
        .expect(200);
    assert_eq!(stopped["status"], json!("stopped"), "{}", show_log());

    // Deleting the pipeline removes its slots from the source.
    let deleted = app
        .delete(&format!("/v1/pipelines/{id}"), Some("acme"))
        .await
        .expect(200);
    assert_eq!(deleted["source_cleaned"], json!(true), "{deleted}");
    let slots: i64 = sqlx::query_scalar(
        "select count(*) from pg_replication_slots where slot_name like 'etl\\_%' \
         and database = current_database()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(slots, 0);
    pool.close().await;
    app.shutdown().await;
    source.drop().await;
}
