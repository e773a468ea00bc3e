//! `/v1/tenants`.

use serde_json::json;

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn tenants_are_created_listed_updated_and_deleted() {
    let app = spawn_app().await;
    let created = app
        .post("/v1/tenants", None, json!({"id": "acme", "name": "Acme"}))
        .await
        .expect(201);
    assert_eq!(created, json!({"id": "acme", "name": "Acme"}));
    let duplicate = app
        .post("/v1/tenants", None, json!({"id": "acme", "name": "Again"}))
        .await
        .expect(409);
    assert_error(&duplicate, "conflict");

    let renamed = app
        .patch("/v1/tenants/acme", None, json!({"name": "Acme Corp"}))
        .await
        .expect(200);
    assert_eq!(renamed["name"], json!("Acme Corp"));
    app.patch("/v1/tenants/nobody", None, json!({"name": "x"}))
        .await
        .expect(404);

    // PUT creates, then updates.
    app.call(
        reqwest::Method::PUT,
        "/v1/tenants/globex",
        None,
        Some(json!({"name": "Globex"})),
    )
    .await
    .expect(201);
    let updated = app
        .call(
            reqwest::Method::PUT,
            "/v1/tenants/globex",
            None,
            Some(json!({"name": "Globex 2"})),
        )
        .await
        .expect(200);
    assert_eq!(updated["name"], json!("Globex 2"));

    let list = app.get("/v1/tenants", None).await.expect(200);
    assert_eq!(
        list,
        json!({"tenants": [{"id": "acme", "name": "Acme Corp"}, {"id": "globex", "name": "Globex 2"}]})
    );
    assert_eq!(
        app.get("/v1/tenants/globex", None).await.expect(200)["name"],
        json!("Globex 2")
    );
    app.delete("/v1/tenants/globex", None).await.expect(204);
    app.get("/v1/tenants/globex", None).await.expect(404);
    app.delete("/v1/tenants/globex", None).await.expect(404);
    app.shutdown().await;
}

#[tokio::test]
async fn invalid_tenant_ids_and_names_are_refused_with_422() {
    let app = spawn_app().await;
    for (body, what) in [
        (json!({"id": "Upper", "name": "x"}), "capital letters"),
        (json!({"id": "a_b", "name": "x"}), "underscore"),
        (json!({"id": "a".repeat(33), "name": "x"}), "too long"),
        (json!({"id": "ok", "name": "  "}), "blank name"),
        (
            json!({"id": "ok", "name": "x", "extra": 1}),
            "unknown field",
        ),
    ] {
        let reply = app.post("/v1/tenants", None, body).await;
        assert_eq!(reply.status.as_u16(), 422, "{what}: {}", reply.body);
    }
    app.shutdown().await;
}
