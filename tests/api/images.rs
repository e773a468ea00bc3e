//! `/v1/images`: exactly one default.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn exactly_one_image_is_the_default() {
    let app = spawn_app().await;
    let first = app
        .post("/v1/images", None, json!({"name": "etl:1"}))
        .await
        .expect(201);
    assert_eq!(
        first["is_default"],
        json!(true),
        "the first image is the default"
    );
    let second = app
        .post("/v1/images", None, json!({"name": "etl:2"}))
        .await
        .expect(201);
    assert_eq!(second["is_default"], json!(false));
    app.post("/v1/images", None, json!({"name": "etl:2"}))
        .await
        .expect(409);

    let (first_id, second_id) = (
        first["id"].as_i64().unwrap(),
        second["id"].as_i64().unwrap(),
    );
    app.patch(
        &format!("/v1/images/{first_id}"),
        None,
        json!({"is_default": false}),
    )
    .await
    .expect(409);
    app.delete(&format!("/v1/images/{first_id}"), None)
        .await
        .expect(409);
    let promoted = app
        .patch(
            &format!("/v1/images/{second_id}"),
            None,
            json!({"is_default": true, "name": "etl:2.1"}),
        )
        .await
        .expect(200);
    assert_eq!(
        promoted,
        json!({"id": second_id, "name": "etl:2.1", "is_default": true})
    );
    let list = app.get("/v1/images", None).await.expect(200);
    let defaults: Vec<_> = list["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["is_default"] == json!(true))
        .collect();
    assert_eq!(defaults.len(), 1);
    assert_eq!(
        app.get(&format!("/v1/images/{first_id}"), None)
            .await
            .expect(200)["is_default"],
        json!(false)
    );
    app.delete(&format!("/v1/images/{first_id}"), None)
        .await
        .expect(204);
    app.get(&format!("/v1/images/{first_id}"), None)
        .await
        .expect(404);
    app.shutdown().await;
}
