//! `POST /v1/pipelines/{id}/verify` (issue 18) with the `local` runtime and the real
//! `etl replicate` into a sqlite file in the tenant's directory: equal, then drift made behind
//! etl's back reported with its key; another tenant gets 404; a jsonl destination is answered
//! as not verifiable; the route is in the OpenAPI document.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestSource, spawn_app};

#[tokio::test]
async fn verify_reports_equal_then_drift_and_is_tenant_scoped() {
    let app = spawn_app().await;
    let source = TestSource::create().await;
    let pool = source.db.pool().await;
    sqlx::raw_sql(
        "create table public.orders (id int primary key, item text not null); \
         insert into public.orders select g, 'item ' || g from generate_series(1, 300) g;",
    )
    .execute(&pool)
    .await
    .unwrap();
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    app.create_image().await;
    let source_id = app.create_source("acme", "shop", &source).await;
    app.post(
        &format!("/v1/sources/{source_id}/publications"),
        Some("acme"),
        json!({"name": "orders_pub", "tables": [{"schema": "public", "name": "orders"}]}),
    )
    .await
    .expect(201);
    let db_path = app.config.local.data_dir.join("acme/mirror.db");
    let destination_id = app
        .create_destination("acme", "mirror", json!({"sqlite": {"path": "mirror.db"}}))
        .await;
    // Slot names are per pipeline id and cluster-wide: an id of its own, so this test can run
    // beside another that starts pipeline 1.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter table app.pipelines alter column id restart with {}",
        u64::from(std::process::id()) * 10 + 7
    )))
    .execute(&app.pool)
    .await
    .unwrap();
    let id = app
        .create_pipeline("acme", source_id, destination_id, "orders_pub")
        .await["id"]
        .as_i64()
        .unwrap();
    let verify = format!("/v1/pipelines/{id}/verify");

    // Before it ever ran: there is nothing to compare with.
    let refused = app.post(&verify, Some("acme"), json!({})).await.expect(422);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{refused}"
    );

    app.post(
        &format!("/v1/pipelines/{id}/start"),
        Some("acme"),
        json!({}),
    )
    .await
    .expect(200);
    let mut ready = false;
    for _ in 0..1800 {
        let body = app
            .get(
                &format!("/v1/pipelines/{id}/replication-status"),
                Some("acme"),
            )
            .await
            .expect(200);
        if body["tables"][0]["state"] == json!("ready") {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the table became ready");

    let report = app.post(&verify, Some("acme"), json!({})).await.expect(200);
    assert_eq!(
        report["tables"][0]["table"],
        json!("public.orders"),
        "{report}"
    );
    assert_eq!(report["tables"][0]["status"], json!("equal"), "{report}");
    assert_eq!(report["tables"][0]["source_rows"], json!(300), "{report}");

    // Another tenant cannot see (or verify) the pipeline.
    app.post(&verify, Some("globex"), json!({}))
        .await
        .expect(404);
    // Unknown fields and tables are the caller's to fix.
    app.post(&verify, Some("acme"), json!({"tabels": []}))
        .await
        .expect(422);
    let unknown = app
        .post(&verify, Some("acme"), json!({"tables": ["public.nosuch"]}))
        .await
        .expect(422);
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("public.nosuch")
    );

    let conn = rusqlite::Connection::open(&db_path).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    conn.execute("update \"public.orders\" set item = 'x' where id = 7", [])
        .unwrap();
    let report = app
        .post(&verify, Some("acme"), json!({"tables": ["public.orders"]}))
        .await
        .expect(200);
    let table = &report["tables"][0];
    assert_eq!(table["status"], json!("drift"), "{report}");
    assert_eq!(
        table["rows"],
        json!([{"key": "id=7", "kind": "changed"}]),
        "{report}"
    );
    assert_eq!(table["repaired"], json!(false));

    app.post(&format!("/v1/pipelines/{id}/stop"), Some("acme"), json!({}))
        .await
        .expect(200);
    // Stopped: nothing streams, so the source's position is never reached (409).
    let refused = app
        .post(&verify, Some("acme"), json!({"wait_secs": 1}))
        .await
        .expect(409);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("must be running"),
        "{refused}"
    );
    // Stopped: nothing streams, so the source's position is never reached (409).
    let refused = app
        .post(&verify, Some("acme"), json!({"wait_secs": 1}))
        .await
        .expect(409);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("must be running"),
        "{refused}"
    );

    // A destination that cannot hash its rows in SQL.
    let jsonl = app
        .create_destination("acme", "log", json!({"jsonl": {"path": "changes.jsonl"}}))
        .await;
    let other = app
        .create_pipeline("acme", source_id, jsonl, "orders_pub")
        .await["id"]
        .as_i64()
        .unwrap();
    let refused = app
        .post(
            &format!("/v1/pipelines/{other}/verify"),
            Some("acme"),
            json!({}),
        )
        .await
        .expect(422);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("not verifiable"),
        "{refused}"
    );

    let spec: serde_json::Value = app
        .client
        .get(format!("{}/api-docs/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        spec["paths"]["/v1/pipelines/{pipeline_id}/verify"]["post"].is_object(),
        "documented in OpenAPI"
    );
    assert!(spec["components"]["schemas"]["Report"].is_object());

    // Deleting drops the pipeline's slot (slot names are per pipeline id, cluster-wide).
    let deleted = app
        .delete(&format!("/v1/pipelines/{id}"), Some("acme"))
        .await
        .expect(200);
    assert_eq!(deleted["source_cleaned"], json!(true), "{deleted}");
}
