//! A `nats` destination through the control plane, against a real `nats-server`: its secrets
//! are sealed and never returned, and `validate` checks that the server answers and the stream
//! can be written.

use serde_json::json;

use crate::helpers::spawn_app;
use crate::servers::NatsServer;

#[tokio::test]
async fn nats_destination_secrets_are_sealed_and_validate_reaches_the_server() {
    let Some(server) = NatsServer::nats("api") else {
        return;
    };
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let config = json!({"nats": {
        "url": server.address, "subject_prefix": "shop", "token": "t0ken-s3cret"
    }});
    let id = app.create_destination("acme", "stream", config).await;
    let got = app
        .get(&format!("/v1/destinations/{id}"), Some("acme"))
        .await
        .expect(200);
    assert_eq!(got["config"]["nats"]["token_set"], json!(true));
    assert_eq!(got["config"]["nats"]["url_set"], json!(true));
    assert_eq!(got["config"]["nats"]["subject_prefix"], json!("shop"));
    assert!(!got.to_string().contains("t0ken-s3cret"), "{got}");

    let validate = |config| {
        let app = &app;
        async move {
            app.post(
                "/v1/destinations/validate",
                Some("acme"),
                json!({ "config": config }),
            )
            .await
            .expect(200)
        }
    };
    let ok = validate(json!({"nats": {"url": server.address, "subject_prefix": "shop"}})).await;
    assert_eq!(ok, json!({"findings": []}));

    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("nats://{}", dead.local_addr().unwrap());
    drop(dead);
    let down = validate(json!({"nats": {"url": dead_url}})).await;
    assert_eq!(
        down["findings"][0]["code"],
        json!("destination_unreachable"),
        "{down}"
    );

    let bad = validate(json!({"nats": {"url": server.address, "subject_prefix": "a..b"}})).await;
    assert_eq!(bad["findings"][0]["code"], json!("invalid_config"));
    assert!(
        bad["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("config.nats.subject_prefix"),
        "{bad}"
    );
    app.shutdown().await;
}
