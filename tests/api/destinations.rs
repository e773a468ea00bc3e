//! `/v1/destinations`: configs validated against the replicator's destination kinds.

use serde_json::json;

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn destinations_are_validated_and_scoped_to_their_tenant() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let id = app
        .create_destination("acme", "mem", json!({"memory": {}}))
        .await;
    let got = app
        .get(&format!("/v1/destinations/{id}"), Some("acme"))
        .await
        .expect(200);
    assert_eq!(
        got,
        json!({"id": id, "tenant_id": "acme", "name": "mem", "config": {"memory": {}}})
    );
    app.get(&format!("/v1/destinations/{id}"), Some("globex"))
        .await
        .expect(404);
    app.post(
        "/v1/destinations",
        Some("acme"),
        json!({"name": "mem", "config": {"memory": {}}}),
    )
    .await
    .expect(409);

    for config in [
        json!({"carrier_pigeon": {}}),
        json!({}),
        json!("memory"),
        json!({"memory": {"unexpected": 1}}),
    ] {
        let body = app
            .post(
                "/v1/destinations",
                Some("acme"),
                json!({"name": "bad", "config": config}),
            )
            .await
            .expect(422);
        assert_error(&body, "invalid");
    }

    let renamed = app
        .patch(
            &format!("/v1/destinations/{id}"),
            Some("acme"),
            json!({"name": "memory"}),
        )
        .await
        .expect(200);
    assert_eq!(renamed["name"], json!("memory"));
    assert_eq!(
        app.get("/v1/destinations", Some("acme")).await.expect(200)["destinations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let ok = app
        .post(
            "/v1/destinations/validate",
            Some("acme"),
            json!({"config": {"memory": {}}}),
        )
        .await
        .expect(200);
    assert_eq!(ok, json!({"findings": []}));
    let bad = app
        .post(
            "/v1/destinations/validate",
            Some("acme"),
            json!({"config": {"nope": {}}}),
        )
        .await
        .expect(200);
    assert_eq!(bad["findings"][0]["code"], json!("invalid_config"));

    app.delete(&format!("/v1/destinations/{id}"), Some("globex"))
        .await
        .expect(404);
    app.delete(&format!("/v1/destinations/{id}"), Some("acme"))
        .await
        .expect(204);
    app.shutdown().await;
}

#[tokio::test]
async fn get_destination_never_returns_the_password() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let config = json!({"postgres": {
        "host": "mirror.internal", "port": 5432, "name": "analytics",
        "username": "etl", "password": "s3cret-mirror", "schema": "mirror"
    }});
    let id = app.create_destination("acme", "mirror", config).await;
    let got = app
        .get(&format!("/v1/destinations/{id}"), Some("acme"))
        .await
        .expect(200);
    assert_eq!(got["config"]["postgres"]["password_set"], json!(true));
    assert_eq!(got["config"]["postgres"]["schema"], json!("mirror"));
    assert!(!got.to_string().contains("s3cret-mirror"), "{got}");
    let (stored,): (serde_json::Value,) =
        sqlx::query_as("select config from app.destinations where id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(!stored.to_string().contains("s3cret-mirror"), "{stored}");
    assert_eq!(stored["postgres"]["password"]["key_id"], json!(1));

    // A config the replicator would refuse is refused here, naming the field.
    let bad = app
        .post(
            "/v1/destinations",
            Some("acme"),
            json!({"name": "x", "config": {"postgres": {"host": "h", "colour": "red"}}}),
        )
        .await
        .expect(422);
    assert!(bad["message"].as_str().unwrap().contains("colour"), "{bad}");
    app.shutdown().await;
}

/// `validate` of an `iceberg` destination connects to its catalog database: the test server
/// answers, a closed port is an `unreachable` finding naming the field; the warehouse stays in
/// the tenant's directory.
#[tokio::test]
async fn iceberg_validate_reaches_the_catalog() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let url = crate::common::admin_url();
    let config = |url: &str, warehouse: &str| json!({"config": {"iceberg": {"catalog": {"sql": {"url": url}}, "warehouse": warehouse}}});
    let ok = app
        .post(
            "/v1/destinations/validate",
            Some("acme"),
            config(&url, "file:///lake"),
        )
        .await
        .expect(200);
    assert_eq!(ok, json!({"findings": []}));
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unreachable = app
        .post(
            "/v1/destinations/validate",
            Some("acme"),
            config(
                &format!("postgres://postgres:x@127.0.0.1:{closed}/lake"),
                "file:///lake",
            ),
        )
        .await
        .expect(200);
    assert_eq!(unreachable["findings"][0]["code"], json!("unreachable"));
    assert!(
        unreachable["findings"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("config.iceberg.catalog.sql"),
        "{unreachable}"
    );
    let escaping = app
        .post(
            "/v1/destinations/validate",
            Some("acme"),
            config(&url, "file:///../other"),
        )
        .await
        .expect(200);
    assert_eq!(escaping["findings"][0]["code"], json!("invalid_config"));
    // An s3:// warehouse needs the tenant's own keys, and its endpoint must answer.
    let s3 = |settings: serde_json::Value| {
        json!({"config": {"iceberg": {"catalog": {"sql": {"url": url}}, "warehouse": "s3://lake/w",
                                      "s3": settings}}})
    };
    let keyless = app
        .post(
            "/v1/destinations/validate",
            Some("acme"),
            s3(json!({"endpoint": format!("http://127.0.0.1:{closed}")})),
        )
        .await
        .expect(200);
    assert_eq!(keyless["findings"][0]["code"], json!("invalid_config"));
    assert!(
        keyless["findings"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("config.iceberg.s3.access_key_id"),
        "{keyless}"
    );
    let down = app
        .post(
            "/v1/destinations/validate",
            Some("acme"),
            s3(
                json!({"endpoint": format!("http://127.0.0.1:{closed}"), "access_key_id": "a",
                      "secret_access_key": "s", "path_style": true}),
            ),
        )
        .await
        .expect(200);
    assert_eq!(down["findings"][0]["code"], json!("unreachable"), "{down}");
    assert!(
        down["findings"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("cannot write to the warehouse s3://lake/w"),
        "{down}"
    );
    app.shutdown().await;
}
