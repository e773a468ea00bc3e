//! Key rotation: old rows still decrypt with several keys configured, and `rotate` moves every
//! secret to the newest key so the old one can be removed.

use etl::api::crypto::Encryptor;
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
        secrets::open(stored().await, &both).unwrap()["password"],
        json!(password)
    );

    let report = rotate::rotate(&app.pool, &both).await.unwrap();
    assert_eq!((report.rows, report.values, report.key_id), (1, 1, 2));
    let rotated = stored().await;
    assert_eq!(rotated["password"]["key_id"], json!(2));
    let only_new = Encryptor::new(&[new]).unwrap();
    assert_eq!(
        secrets::open(rotated, &only_new).unwrap()["password"],
        json!(password)
    );
    assert!(secrets::open(stored().await, &Encryptor::new(&[old]).unwrap()).is_err());
    // Nothing left to do the second time.
    assert_eq!(rotate::rotate(&app.pool, &both).await.unwrap().values, 0);

    app.shutdown().await;
    source.drop().await;
}
