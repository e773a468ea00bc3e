//! `/v1/sources`: secrets at rest, tenant isolation, tables, publications and validation
//! against real source databases.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestSource, assert_error, spawn_app};

#[tokio::test]
async fn get_source_never_returns_the_password_and_the_row_holds_ciphertext() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let source = TestSource::create().await;
    let password = source.config()["password"].as_str().unwrap().to_owned();
    let id = app.create_source("acme", "shop", &source).await;

    let got = app
        .get(&format!("/v1/sources/{id}"), Some("acme"))
        .await
        .expect(200);
    assert_eq!(got["config"]["password_set"], json!(true));
    assert!(got["config"].get("password").is_none(), "{got}");
    assert!(!got.to_string().contains(&password));
    let listed = app.get("/v1/sources", Some("acme")).await.expect(200);
    assert!(!listed.to_string().contains(&password));

    let (stored,): (Value,) = sqlx::query_as("select config from app.sources where id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!stored.to_string().contains(&password), "{stored}");
    let sealed = &stored["password"];
    assert_eq!(sealed["key_id"], json!(1));
    assert!(sealed["nonce"].is_string() && sealed["ciphertext"].is_string());

    // An update without a password keeps the stored one: the source still answers.
    let mut config = source.config();
    config.as_object_mut().unwrap().remove("password");
    app.patch(
        &format!("/v1/sources/{id}"),
        Some("acme"),
        json!({"name": "shop2", "config": config}),
    )
    .await
    .expect(200);
    app.get(&format!("/v1/sources/{id}/tables"), Some("acme"))
        .await
        .expect(200);
    app.shutdown().await;
    source.drop().await;
}

#[tokio::test]
async fn another_tenants_source_is_not_found() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let source = TestSource::create().await;
    let id = app.create_source("acme", "shop", &source).await;
    let path = format!("/v1/sources/{id}");
    for reply in [
        app.get(&path, Some("globex")).await,
        app.patch(&path, Some("globex"), json!({"name": "stolen"}))
            .await,
        app.delete(&path, Some("globex")).await,
        app.get(&format!("{path}/tables"), Some("globex")).await,
        app.get(&format!("{path}/publications"), Some("globex"))
            .await,
    ] {
        assert_eq!(reply.status.as_u16(), 404, "{}", reply.body);
        assert_error(&reply.body, "not_found");
    }
    assert_eq!(
        app.get("/v1/sources", Some("globex")).await.expect(200),
        json!({"sources": []})
    );
    // Unknown tenant on create: 404 naming the tenant; duplicate name: 409.
    let unknown = app
        .post(
            "/v1/sources",
            Some("nobody"),
            json!({"name": "x", "config": source.config()}),
        )
        .await
        .expect(404);
    assert!(unknown["message"].as_str().unwrap().contains("nobody"));
    app.post(
        "/v1/sources",
        Some("acme"),
        json!({"name": "shop", "config": source.config()}),
    )
    .await
    .expect(409);
    app.shutdown().await;
    source.drop().await;
}

#[tokio::test]
async fn invalid_source_settings_are_refused_naming_the_field() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    for (config, field) in [
        (json!({"host": "", "name": "d", "username": "u"}), "host"),
        (
            json!({"host": "h", "name": "d", "username": "u", "port": 0}),
            "port",
        ),
        (
            json!({"host": "h", "name": "d", "username": "u", "tls": {"mode": "sometimes"}}),
            "mode",
        ),
        (json!({"host": "h", "name": "d"}), "username"),
    ] {
        let body = json!({"name": "s", "config": config});
        app.refused(Method::POST, "/v1/sources", Some("acme"), body, field)
            .await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn tables_and_publications_of_a_source_are_managed_through_the_api() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let source = TestSource::create().await;
    let pool = source.db.pool().await;
    sqlx::query("create schema \"Sales\"")
        .execute(&pool)
        .await
        .unwrap();
    for table in ["\"Sales\".\"Order \"\"Items\"\"\"", "public.customers"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "create table {table} (id int primary key)"
        )))
        .execute(&pool)
        .await
        .unwrap();
    }
    let id = app.create_source("acme", "shop", &source).await;
    let base = format!("/v1/sources/{id}");

    let tables = app
        .get(&format!("{base}/tables"), Some("acme"))
        .await
        .expect(200);
    let names: Vec<(String, String)> = tables["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["schema"].as_str().unwrap().to_owned(),
                t["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("Sales".into(), "Order \"Items\"".into()),
            ("public".into(), "customers".into())
        ]
    );

    let odd = json!({"schema": "Sales", "name": "Order \"Items\""});
    let created = app
        .post(
            &format!("{base}/publications"),
            Some("acme"),
            json!({"name": "My Pub", "tables": [odd]}),
        )
        .await
        .expect(201);
    assert_eq!(created, json!({"name": "My Pub", "tables": [odd]}));
    app.post(
        &format!("{base}/publications"),
        Some("acme"),
        json!({"name": "My Pub", "tables": []}),
    )
    .await
    .expect(409);
    let missing_table = app
        .post(
            &format!("{base}/publications"),
            Some("acme"),
            json!({"name": "p2", "tables": [{"schema": "public", "name": "nope"}]}),
        )
        .await
        .expect(422);
    assert!(missing_table["message"].as_str().unwrap().contains("nope"));

    let pub_path = format!("{base}/publications/My%20Pub");
    let updated = app
        .call(
            reqwest::Method::PUT,
            &pub_path,
            Some("acme"),
            Some(json!({"tables": [{"schema": "public", "name": "customers"}]})),
        )
        .await
        .expect(200);
    assert_eq!(
        updated["tables"],
        json!([{"schema": "public", "name": "customers"}])
    );
    let emptied = app
        .call(
            reqwest::Method::PUT,
            &pub_path,
            Some("acme"),
            Some(json!({"tables": []})),
        )
        .await
        .expect(200);
    assert_eq!(emptied["tables"], json!([]));
    let list = app
        .get(&format!("{base}/publications"), Some("acme"))
        .await
        .expect(200);
    assert_eq!(
        list,
        json!({"publications": [{"name": "My Pub", "tables": []}]})
    );
    app.delete(&pub_path, Some("acme")).await.expect(204);
    app.get(&pub_path, Some("acme")).await.expect(404);
    app.delete(&pub_path, Some("acme")).await.expect(404);
    pool.close().await;
    app.shutdown().await;
    source.drop().await;
}

#[tokio::test]
async fn validate_reports_prerequisites_and_an_unreachable_source() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let source = TestSource::create().await;
    let report = app
        .post(
            "/v1/sources/validate",
            Some("acme"),
            json!({"config": source.config(), "publication": "missing_pub"}),
        )
        .await
        .expect(200);
    let codes: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    // The test cluster runs wal_level=logical as a superuser: only the publication is missing
    // (and possibly the unlimited max_slot_wal_keep_size warning).
    assert!(codes.contains(&"publication_missing"), "{report}");
    assert!(
        !codes.contains(&"wal_level") && !codes.contains(&"replication_role"),
        "{report}"
    );

    let mut unreachable = source.config();
    unreachable["port"] = json!(1);
    let report = app
        .post(
            "/v1/sources/validate",
            Some("acme"),
            json!({"config": unreachable}),
        )
        .await
        .expect(200);
    assert_eq!(
        report["findings"][0]["code"],
        json!("unreachable"),
        "{report}"
    );
    assert_eq!(report["findings"][0]["level"], json!("critical"));
    app.shutdown().await;
    source.drop().await;
}
