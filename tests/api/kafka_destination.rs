//! A `kafka` destination through the control plane, against a real Kafka-protocol broker
//! (`tansu`): its SASL password is sealed and never returned, and `validate` checks that a broker
//! answers and the destination's state topic exists or can be created.

use serde_json::json;

use crate::helpers::spawn_app;
use crate::servers::KafkaServer;

#[tokio::test]
async fn kafka_destination_secrets_are_sealed_and_validate_reaches_the_broker() {
    let Some(server) = KafkaServer::kafka("api") else {
        return;
    };
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let config = json!({"kafka": {
        "brokers": [server.address], "topic_prefix": "shop",
        "sasl_username": "etl", "sasl_password": "pa55-s3cret"
    }});
    let id = app.create_destination("acme", "topics", config).await;
    let got = app
        .get(&format!("/v1/destinations/{id}"), Some("acme"))
        .await
        .expect(200);
    assert_eq!(got["config"]["kafka"]["sasl_password_set"], json!(true));
    assert_eq!(got["config"]["kafka"]["topic_prefix"], json!("shop"));
    assert!(!got.to_string().contains("pa55-s3cret"), "{got}");

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
    let ok =
        validate(json!({"kafka": {"brokers": [server.address], "topic_prefix": "shop"}})).await;
    assert_eq!(ok, json!({"findings": []}));

    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_address = dead.local_addr().unwrap().to_string();
    drop(dead);
    let down = validate(json!({"kafka": {"brokers": [dead_address]}})).await;
    assert_eq!(
        down["findings"][0]["code"],
        json!("destination_unreachable"),
        "{down}"
    );
    assert!(
        down["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("config.kafka"),
        "{down}"
    );

    let bad =
        validate(json!({"kafka": {"brokers": [server.address], "topic_prefix": "a b"}})).await;
    assert_eq!(bad["findings"][0]["code"], json!("invalid_config"));
    assert!(
        bad["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("config.kafka.topic_prefix"),
        "{bad}"
    );
    app.shutdown().await;
}
