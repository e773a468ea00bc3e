//! Key rotation: old rows still decrypt with several keys configured, and `rotate` moves every
//! secret to the newest key so the old one can be removed.

use etl::api::crypto::Encryptor;
use etl::api::db::configured::ConfigTable;
use etl::api::{rotate, secrets};
use etl::config::api::generate_key;
use etl::config::{EncryptionKeyConfig, Secret};
use serde_json::{Value, json};

use crate::helpers::{TestSource, spawn_app};

#[tokio::test]
async fn rotation_reencrypts_every_secret_with_the_newest_key() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let source = TestSource::create().await;
    let id = app.create_source("acme", "shop", &source).await;
    let password = source.config()["password"].as_str().unwrap().to_owned();

    let old = app.config.encryption_keys[0].clone();
    let new = EncryptionKeyConfig {
        id: 2,
        key: Secret::new(generate_key()),
    };
    let both = Encryptor::new(&[old.clone(), new.clone()]).unwrap();
    let here = ConfigTable::Sources.seal_context("acme", id);
    let stored = || async {
        let (config,): (Value,) = sqlx::query_as("select config from app.sources where id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        config
    };
    // With both keys configured, the old row still decrypts.
    assert_eq!(
        secrets::open(stored().await, &both, &here).unwrap()["password"],
        json!(password)
    );

    let report = rotate::rotate(&app.pool, &both).await.unwrap();
    assert_eq!((report.rows, report.values, report.key_id), (1, 1, 2));
    let rotated = stored().await;
    assert_eq!(rotated["password"]["key_id"], json!(2));
    let only_new = Encryptor::new(&[new]).unwrap();
    assert_eq!(
        secrets::open(rotated, &only_new, &here).unwrap()["password"],
        json!(password)
    );
    assert!(secrets::open(stored().await, &Encryptor::new(&[old]).unwrap(), &here).is_err());
    // Nothing left to do the second time.
    assert_eq!(rotate::rotate(&app.pool, &both).await.unwrap().values, 0);

    app.shutdown().await;
    source.drop().await;
}

#[tokio::test]
async fn secrets_sealed_before_binding_are_sealed_bound_when_the_api_starts() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let id = app
        .create_destination("acme", "mirror", json!({"memory": {}}))
        .await;
    // A row as written before migration 20261202000001: sealed without associated data.
    let encryptor = Encryptor::new(&app.config.encryption_keys).unwrap();
    let old = encryptor.encrypt("pw-before", b"");
    let config = json!({"postgres": {"host": "h", "username": "u", "password": old}});
    sqlx::query("update app.destinations set config = $2, secrets_bound = false where id = $1")
        .bind(id)
        .bind(&config)
        .execute(&app.pool)
        .await
        .unwrap();
    let here = ConfigTable::Destinations.seal_context("acme", id);
    assert!(secrets::open(config.clone(), &encryptor, &here).is_err());

    let (db, state_dir, settings) = app.stop_serving().await;
    let app = crate::helpers::start(db, settings, state_dir).await;
    let (stored, bound): (Value, bool) =
        sqlx::query_as("select config, secrets_bound from app.destinations where id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(bound);
    assert_ne!(
        stored["postgres"]["password"],
        config["postgres"]["password"]
    );
    assert_eq!(
        secrets::open(stored, &encryptor, &here).unwrap()["postgres"]["password"],
        json!("pw-before")
    );
    app.shutdown().await;
}
