//! `/v1/pipelines`: CRUD, conflicts, replication status, rollback and the cleanup of the
//! source on delete (also when the source is unreachable).

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestSource, assert_error, spawn_app};

struct Fixture {
    app: TestApp,
    source: TestSource,
    source_id: i64,
    destination_id: i64,
}

async fn fixture() -> Fixture {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let source = TestSource::create().await;
    let source_id = app.create_source("acme", "shop", &source).await;
    let destination_id = app
        .create_destination("acme", "mem", json!({"memory": {}}))
        .await;
    Fixture {
        app,
        source,
        source_id,
        destination_id,
    }
}

impl Fixture {
    async fn finish(self) {
        self.app.shutdown().await;
        self.source.drop().await;
    }
}

#[tokio::test]
async fn a_pipeline_needs_a_default_image_and_the_tenants_own_objects() {
    let f = fixture().await;
    let app = &f.app;
    let body = json!({"source_id": f.source_id, "destination_id": f.destination_id, "publication_name": "pub"});
    let no_image = app
        .post("/v1/pipelines", Some("acme"), body.clone())
        .await
        .expect(409);
    assert!(no_image["message"].as_str().unwrap().contains("image"));
    app.create_image().await;
    app.post("/v1/pipelines", Some("globex"), body.clone())
        .await
        .expect(404);
    let created = app
        .create_pipeline("acme", f.source_id, f.destination_id, "pub")
        .await;
    assert_eq!(created["desired_state"], json!("stopped"));
    assert_eq!(created["config"]["batch"]["max_size"], json!(100));
    assert_eq!(created["config"]["max_table_sync_workers"], json!(4));
    assert_eq!(
        created["config"]["table_errors"],
        json!({"max_attempts": 3, "retry_delay_secs": 60})
    );
    app.post("/v1/pipelines", Some("acme"), body)
        .await
        .expect(409);

    for (config, field) in [
        (json!({"batch": {"max_size": 0}}), "batch.max_size"),
        (
            json!({"max_table_sync_workers": 0}),
            "max_table_sync_workers",
        ),
        (json!({"resources": {"cpu_limit": "lots"}}), "cpu_limit"),
        (json!({"surprise": true}), "surprise"),
        (json!({"table_errors": {"attempts": 1}}), "attempts"),
    ] {
        let reply = app
            .post(
                "/v1/pipelines",
                Some("acme"),
                json!({"source_id": f.source_id, "destination_id": f.destination_id,
                       "publication_name": "other", "config": config}),
            )
            .await
            .expect(422);
        assert!(
            reply["message"].as_str().unwrap().contains(field),
            "{field}: {reply}"
        );
    }

    let id = created["id"].as_i64().unwrap();
    let path = format!("/v1/pipelines/{id}");
    app.get(&path, Some("globex")).await.expect(404);
    let updated = app
        .patch(&path, Some("acme"), json!({"publication_name": "pub2"}))
        .await
        .expect(200);
    assert_eq!(updated["publication_name"], json!("pub2"));
    assert_eq!(
        updated["config"]["batch"]["max_size"],
        json!(100),
        "settings kept"
    );
    let list = app.get("/v1/pipelines", Some("acme")).await.expect(200);
    assert_eq!(list["pipelines"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get(&format!("{path}/status"), Some("acme"))
            .await
            .expect(200),
        json!({"pipeline_id": id, "status": "stopped"})
    );

    // Sources and destinations in use cannot be deleted.
    let busy = app
        .delete(&format!("/v1/sources/{}", f.source_id), Some("acme"))
        .await
        .expect(409);
    assert_error(&busy, "conflict");
    app.delete(
        &format!("/v1/destinations/{}", f.destination_id),
        Some("acme"),
    )
    .await
    .expect(409);
    f.finish().await;
}

async fn etl_schema(source: &TestSource) -> sqlx::PgPool {
    etl::migrate::run(
        etl::migrate::MigrationSet::Replicator,
        &source.db.options(),
        false,
        |_| {},
    )
    .await
    .unwrap();
    source.db.pool().await
}

async fn set_state(
    pool: &sqlx::PgPool,
    pipeline: i64,
    table: i64,
    state: &str,
    error: Option<Value>,
) {
    let prev: Option<i64> = sqlx::query_scalar(
        "update etl.replication_state set is_current = false \
         where pipeline_id = $1 and table_id = $2::int8::oid and is_current returning id",
    )
    .bind(pipeline)
    .bind(table)
    .fetch_optional(pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into etl.replication_state (pipeline_id, table_id, state, sync_done_lsn, error, prev_id) \
         values ($1, $2::int8::oid, $3, case when $3 = 'sync_done' then '0/16'::pg_lsn end, $4, $5)",
    )
    .bind(pipeline)
    .bind(table)
    .bind(state)
    .bind(error)
    .bind(prev)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn replication_status_and_rollback_read_and_write_the_sources_etl_state() {
    let f = fixture().await;
    let app = &f.app;
    app.create_image().await;
    let id = app
        .create_pipeline("acme", f.source_id, f.destination_id, "pub")
        .await["id"]
        .as_i64()
        .unwrap();
    let base = format!("/v1/pipelines/{id}");

    // Before the replicator ever ran: no `etl` schema, no slot.
    let fresh = app
        .get(&format!("{base}/replication-status"), Some("acme"))
        .await
        .expect(200);
    assert_eq!(fresh["tables"], json!([]));
    assert_eq!(fresh["slot"]["exists"], json!(false));
    assert_eq!(fresh["slot"]["name"], json!(format!("etl_apply_{id}")));

    let pool = etl_schema(&f.source).await;
    sqlx::raw_sql("create table public.orders (id int primary key); create table public.items (id int primary key)")
        .execute(&pool)
        .await
        .unwrap();
    let orders: i64 = sqlx::query_scalar("select 'public.orders'::regclass::oid::int8")
        .fetch_one(&pool)
        .await
        .unwrap();
    let items: i64 = sqlx::query_scalar("select 'public.items'::regclass::oid::int8")
        .fetch_one(&pool)
        .await
        .unwrap();
    for state in ["init", "data_sync", "finished_copy", "sync_done", "ready"] {
        set_state(&pool, id, orders, state, None).await;
    }
    set_state(&pool, id, items, "init", None).await;
    set_state(
        &pool,
        id,
        items,
        "errored",
        Some(json!({"reason": "boom", "hint": "fix it"})),
    )
    .await;
    sqlx::query("select pg_create_logical_replication_slot($1, 'pgoutput')")
        .bind(format!("etl_apply_{id}"))
        .execute(&pool)
        .await
        .unwrap();

    let status = app
        .get(&format!("{base}/replication-status"), Some("acme"))
        .await
        .expect(200);
    let tables = status["tables"].as_array().unwrap();
    let by_name = |name: &str| {
        tables
            .iter()
            .find(|t| t["table_name"] == json!(name))
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("public.orders")["state"], json!("ready"));
    assert_eq!(by_name("public.items")["state"], json!("errored"));
    assert_eq!(by_name("public.items")["error"]["reason"], json!("boom"));
    assert_eq!(status["slot"]["exists"], json!(true));
    assert!(status["slot"]["lag_bytes"].as_i64().is_some(), "{status}");

    // Roll the errored table back to its previous state, then every table to init.
    let rolled = app
        .post(
            &format!("{base}/rollback-tables"),
            Some("acme"),
            json!({"tables": "errored", "target": "previous"}),
        )
        .await
        .expect(200);
    assert_eq!(
        rolled,
        json!({"tables": [{"table_id": items, "from": "errored", "to": "init"}]})
    );
    let again = app
        .post(
            &format!("{base}/rollback-tables"),
            Some("acme"),
            json!({"tables": {"table": items}, "target": "previous"}),
        )
        .await
        .expect(409);
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("no previous state")
    );
    // A table that errored while streaming cannot go back to `ready`: the changes skipped
    // since would be lost. `init` (a new copy) is the way back.
    set_state(
        &pool,
        id,
        orders,
        "errored",
        Some(json!({"reason": "rejected", "hint": "fix it"})),
    )
    .await;
    let refused = app
        .post(
            &format!("{base}/rollback-tables"),
            Some("acme"),
            json!({"tables": "errored", "target": "previous"}),
        )
        .await
        .expect(409);
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("table {orders} errored while")) && message.contains("`init`"),
        "{message}"
    );
    let still: String = sqlx::query_scalar(
        "select state from etl.replication_state \
         where pipeline_id = $1 and table_id = $2::int8::oid and is_current",
    )
    .bind(id)
    .bind(orders)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(still, "errored", "a refused rollback changes nothing");
    let all = app
        .post(
            &format!("{base}/rollback-tables"),
            Some("acme"),
            json!({"tables": "all", "target": "init"}),
        )
        .await
        .expect(200);
    assert_eq!(all["tables"].as_array().unwrap().len(), 2);
    let current: Vec<String> = sqlx::query_scalar(
        "select state from etl.replication_state where pipeline_id = $1 and is_current order by table_id")
        .bind(id).fetch_all(&pool).await.unwrap();
    assert_eq!(current, vec!["init", "init"]);
    app.post(
        &format!("{base}/rollback-tables"),
        Some("acme"),
        json!({"tables": {"table": 1}, "target": "init"}),
    )
    .await
    .expect(404);
    app.post(
        &format!("{base}/rollback-tables"),
        Some("acme"),
        json!({"tables": "some", "target": "init"}),
    )
    .await
    .expect(422);

    // Delete drops the slot and every `etl` row of this pipeline, and only of this one.
    set_state(&pool, id + 1000, orders, "ready", None).await;
    let deleted = app.delete(&base, Some("acme")).await.expect(200);
    assert_eq!(deleted, json!({"id": id, "source_cleaned": true}));
    let slots: i64 =
        sqlx::query_scalar("select count(*) from pg_replication_slots where slot_name = $1")
            .bind(format!("etl_apply_{id}"))
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(slots, 0);
    let rows: Vec<i64> =
        sqlx::query_scalar("select distinct pipeline_id from etl.replication_state")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows, vec![id + 1000]);
    app.get(&base, Some("acme")).await.expect(404);
    pool.close().await;
    f.finish().await;
}

#[tokio::test]
async fn deleting_a_pipeline_tolerates_an_unreachable_source() {
    let f = fixture().await;
    let app = &f.app;
    app.create_image().await;
    let id = app
        .create_pipeline("acme", f.source_id, f.destination_id, "pub")
        .await["id"]
        .as_i64()
        .unwrap();
    let mut config = f.source.config();
    config["port"] = json!(1);
    app.patch(
        &format!("/v1/sources/{}", f.source_id),
        Some("acme"),
        json!({"config": config}),
    )
    .await
    .expect(200);
    app.get(
        &format!("/v1/pipelines/{id}/replication-status"),
        Some("acme"),
    )
    .await
    .expect(422);
    let deleted = app
        .delete(&format!("/v1/pipelines/{id}"), Some("acme"))
        .await
        .expect(200);
    assert_eq!(deleted["source_cleaned"], json!(false));
    assert!(
        deleted["source_cleanup_error"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{deleted}"
    );
    app.get(&format!("/v1/pipelines/{id}"), Some("acme"))
        .await
        .expect(404);
    // With the pipeline gone the source can go too, and then the tenant.
    app.delete(&format!("/v1/sources/{}", f.source_id), Some("acme"))
        .await
        .expect(204);
    app.delete("/v1/tenants/acme", None).await.expect(204);
    f.finish().await;
}
