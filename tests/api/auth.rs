//! Authentication, the unauthenticated routes, the OpenAPI document and the error format.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_error, reply, spawn_app};

#[tokio::test]
async fn v1_routes_answer_401_json_without_a_valid_key() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    for request in [
        client.get(app.url("/v1/tenants")),
        client.get(app.url("/v1/tenants")).bearer_auth("wrong-key"),
        client
            .get(app.url("/v1/tenants"))
            .header("Authorization", format!("Basic {}", app.api_key)),
        client
            .get(app.url("/v1/pipelines/1"))
            .header("tenant_id", "x"),
    ] {
        let answer = reply(request.send().await.unwrap()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
        assert_error(&answer.body, "unauthorized");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn every_configured_key_is_accepted_for_rotation() {
    let app = spawn_app().await;
    let (db, state_dir, mut config) = app.stop_serving().await;
    let old = config.api_keys[0].clone();
    config
        .api_keys
        .push(etl::config::Secret::new(etl::config::api::generate_key()));
    let new = config.api_keys[1].expose().to_owned();
    let app = crate::helpers::start(db, config, state_dir).await;
    let client = reqwest::Client::new();
    for key in [old.expose(), new.as_str()] {
        let answer = client
            .get(app.url("/v1/tenants"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }
    app.shutdown().await;
}

#[tokio::test]
async fn health_check_metrics_and_openapi_need_no_key() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let health = reply(client.get(app.url("/health_check")).send().await.unwrap()).await;
    assert_eq!(health.body, json!({"status": "ok", "database": true}));

    // A request first, so the metrics have a sample of it.
    app.get("/v1/tenants", None).await.expect(200);
    let metrics = client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "etl_api_http_requests_total{method=\"GET\",route=\"/v1/tenants\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("etl_api_http_request_duration_seconds_bucket"));

    let spec = reply(
        client
            .get(app.url("/api-docs/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(spec.status, StatusCode::OK);
    for path in [
        "/v1/tenants",
        "/v1/sources/validate",
        "/v1/pipelines/{pipeline_id}/rollback-tables",
        "/v1/sources/{source_id}/publications/{publication_name}",
    ] {
        assert!(spec.body["paths"][path].is_object(), "{path} missing");
    }
    assert_eq!(
        spec.body["components"]["securitySchemes"]["api_key"]["scheme"],
        json!("bearer")
    );
    let ui = client.get(app.url("/swagger-ui/")).send().await.unwrap();
    assert_eq!(ui.status(), StatusCode::OK);
    assert!(ui.text().await.unwrap().contains("swagger"));
    app.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_get_json_errors_with_the_right_status() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let key = app.api_key.clone();
    let send = |request: reqwest::RequestBuilder| {
        let key = key.clone();
        async move { reply(request.bearer_auth(key).send().await.unwrap()).await }
    };
    let bad_json = send(
        client
            .post(app.url("/v1/tenants"))
            .header("content-type", "application/json")
            .body("{\"id\": "),
    )
    .await;
    assert_eq!(bad_json.status, StatusCode::BAD_REQUEST);
    assert_error(&bad_json.body, "bad_json");

    let no_type = send(client.post(app.url("/v1/tenants")).body("{}")).await;
    assert_eq!(no_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let wrong_shape = app.post("/v1/tenants", None, json!({"id": "a"})).await;
    assert_eq!(wrong_shape.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        wrong_shape.body["message"]
            .as_str()
            .unwrap()
            .contains("name"),
        "{}",
        wrong_shape.body
    );

    let bad_id = app.get("/v1/images/not-a-number", None).await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);
    assert_error(&bad_id.body, "bad_path");

    let no_tenant = app.get("/v1/sources", None).await;
    assert_eq!(no_tenant.status, StatusCode::BAD_REQUEST);
    assert_error(&no_tenant.body, "missing_tenant_id");

    let unknown = app.get("/v1/nothing-here", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_error(&unknown.body, "not_found");
    app.shutdown().await;
}
