//! The replicator's configuration for one pipeline, built from the decrypted source and
//! destination configs: a `{env}.yaml` with top-level `pipeline:` and `destination:` (what
//! `etl replicate` reads) and, separately, every secret as an `APP_…` variable
//! (`APP_PIPELINE__PG_CONNECTION__PASSWORD`, `APP_DESTINATION__POSTGRES__PASSWORD`, …), so a
//! written file or a ConfigMap never holds one.
//!
//! The file is the serde serialization of the same [`PipelineConfig`] and [`DestinationConfig`]
//! that `etl replicate` loads: the secrets are taken out of those values before they are
//! serialized, and a secret left in one (which would serialize as `[redacted]`) is an error.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;
use serde_json::Value;

use crate::api::domain::pipeline::PipelineSettings;
use crate::config::secret::REDACTED;
use crate::config::{AppEnv, DestinationConfig, PgConnectionConfig, PipelineConfig, Secret};

/// A replicator config split into its file and its secrets.
#[derive(Debug, Clone)]
pub struct ReplicatorConfig {
    pub yaml: String,
    pub secrets: BTreeMap<String, Secret>,
}

/// What goes into one replicator's config.
pub struct ReplicatorInputs<'a> {
    pub pipeline_id: i64,
    pub publication_name: &'a str,
    pub settings: &'a PipelineSettings,
    /// The decrypted source connection (`pipeline.pg_connection`).
    pub source: PgConnectionConfig,
    /// The decrypted destination config (`destination`).
    pub destination: DestinationConfig,
    /// `pipeline.metrics_address` (`None`: no metrics endpoint).
    pub metrics_address: Option<SocketAddr>,
}

/// Why a replicator config cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("pipeline id {0} is negative")]
    NegativePipelineId(i64),
    #[error("`{0}` holds a secret that would be written to the file")]
    SecretInFile(String),
    #[error("cannot serialize the config: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot write the config as YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// The replicator's config file: the sections `etl replicate` reads.
#[derive(Serialize)]
struct ReplicatorFile {
    pipeline: PipelineConfig,
    destination: DestinationConfig,
}

/// Builds the replicator config of one pipeline.
pub fn build(inputs: ReplicatorInputs<'_>) -> Result<ReplicatorConfig, BuildError> {
    let ReplicatorInputs {
        pipeline_id,
        publication_name,
        settings,
        mut source,
        mut destination,
        metrics_address,
    } = inputs;
    let id = u64::try_from(pipeline_id).map_err(|_| BuildError::NegativePipelineId(pipeline_id))?;
    let mut secrets = BTreeMap::new();
    take_secrets(&mut source, &["pipeline", "pg_connection"], &mut secrets);
    if let DestinationConfig::Postgres(postgres) = &mut destination {
        take_secrets(
            &mut postgres.connection,
            &["destination", "postgres"],
            &mut secrets,
        );
    }
    if let DestinationConfig::Iceberg(iceberg) = &mut destination {
        let crate::config::iceberg::IcebergCatalogConfig::Sql(catalog) = &mut iceberg.catalog;
        take_secrets(
            catalog,
            &["destination", "iceberg", "catalog", "sql"],
            &mut secrets,
        );
    }
    let taken = secret_fields(&destination);
    let file = ReplicatorFile {
        pipeline: PipelineConfig {
            metrics_address,
            ..settings.pipeline_config(id, publication_name, source)
        },
        destination,
    };
    let mut document = serde_json::to_value(&file)?;
    // The other secret fields leave the file for their variables (a required one, such as a
    // `nats` URL, is then given by its variable alone).
    for (path, secret) in taken {
        let mut at = &mut document;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        if let Some(object) = at.as_object_mut() {
            object.remove(path[path.len() - 1]);
        }
        secrets.insert(AppEnv::variable_name(&path), secret);
    }
    if let Some(path) = redacted_leaf(&document, &mut Vec::new()) {
        return Err(BuildError::SecretInFile(path));
    }
    let yaml = format!(
        "# Written by `etl serve-api` for pipeline {pipeline_id}; secrets come from APP_ variables.\n{}",
        serde_yaml::to_string(&document)?
    );
    Ok(ReplicatorConfig { yaml, secrets })
}

/// Moves the URL (which may carry a password) and the password of `connection` into `secrets`,
/// as the `APP_` variables of their keys below `prefix`.
fn take_secrets(
    connection: &mut PgConnectionConfig,
    prefix: &[&str],
    secrets: &mut BTreeMap<String, Secret>,
) {
    let mut put = |key: &str, secret: Secret| {
        let path: Vec<&str> = prefix.iter().copied().chain([key]).collect();
        secrets.insert(AppEnv::variable_name(&path), secret);
    };
    if let Some(url) = connection.url.take() {
        put("url", Secret::new(url.expose()));
    }
    if let Some(password) = connection.password.take() {
        put("password", password);
    }
}

/// The secret fields of `destination` other than its Postgres connections (which
/// [`take_secrets`] moves): each one's path in the file and its value.
fn secret_fields(destination: &DestinationConfig) -> Vec<(Vec<&'static str>, Secret)> {
    let mut fields = Vec::new();
    let mut put = |path: &[&'static str], secret: Option<&Secret>| {
        if let Some(secret) = secret {
            let path = std::iter::once("destination").chain(path.iter().copied());
            fields.push((path.collect(), secret.clone()));
        }
    };
    match destination {
        DestinationConfig::Nats(nats) => {
            put(&["nats", "url"], Some(&nats.url));
            put(&["nats", "token"], nats.token.as_ref());
            put(&["nats", "password"], nats.password.as_ref());
            put(&["nats", "nkey_seed"], nats.nkey_seed.as_ref());
        }
        DestinationConfig::Kafka(kafka) => {
            put(&["kafka", "sasl_password"], kafka.sasl_password.as_ref());
        }
        DestinationConfig::Iceberg(iceberg) => {
            if let Some(s3) = &iceberg.s3 {
                put(
                    &["iceberg", "s3", "access_key_id"],
                    s3.access_key_id.as_ref(),
                );
                put(
                    &["iceberg", "s3", "secret_access_key"],
                    s3.secret_access_key.as_ref(),
                );
            }
        }
        _ => {}
    }
    fields
}

/// The dotted path of a value that serialized as a redacted secret, if any.
fn redacted_leaf(value: &Value, path: &mut Vec<String>) -> Option<String> {
    match value {
        Value::String(text) if text == REDACTED => Some(path.join(".")),
        Value::Object(map) => map.iter().find_map(|(key, child)| {
            path.push(key.clone());
            let found = redacted_leaf(child, path);
            path.pop();
            found
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Environment, PostgresDestinationConfig, SecretUrl};

    fn load(config: &ReplicatorConfig) -> Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prod.yaml"), &config.yaml).unwrap();
        let vars = config
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()));
        Config::load_with_env(dir.path(), Environment::Prod, AppEnv::from_vars(vars)).unwrap()
    }

    #[test]
    fn the_replicator_loads_the_built_config_with_its_secret_variables() {
        let source = PgConnectionConfig {
            host: Some("db".into()),
            port: Some(5433),
            name: Some("shop".into()),
            username: Some("rep".into()),
            password: Some(Secret::new("0123")),
            ..PgConnectionConfig::default()
        };
        let config = build(ReplicatorInputs {
            pipeline_id: 7,
            publication_name: "orders pub",
            settings: &PipelineSettings::default(),
            source,
            destination: DestinationConfig::Memory {},
            metrics_address: None,
        })
        .unwrap();
        assert!(!config.yaml.contains("0123"), "{}", config.yaml);
        let loaded = load(&config);
        let pipeline: PipelineConfig = loaded.section("pipeline").unwrap();
        assert_eq!(pipeline.id, 7);
        assert_eq!(pipeline.publication_name, "orders pub");
        assert_eq!(pipeline.metrics_address, None);
        let connection = pipeline.pg_connection.resolve().unwrap();
        assert_eq!(connection.port, 5433);
        assert_eq!(connection.password.unwrap().expose(), "0123");
        let destination: DestinationConfig = loaded.section("destination").unwrap();
        assert_eq!(destination, DestinationConfig::Memory {});
    }

    #[test]
    fn destination_urls_and_passwords_go_out_as_variables_only() {
        let destination: DestinationConfig = serde_json::from_value(serde_json::json!({
            "postgres": {"url": "postgres://u:url-pw@mirror/db", "password": "pw-9", "schema": "m"}
        }))
        .unwrap();
        let config = build(ReplicatorInputs {
            pipeline_id: 8,
            publication_name: "p",
            settings: &PipelineSettings::default(),
            source: PgConnectionConfig::from_url("postgres://rep:src-pw@db/shop"),
            destination,
            metrics_address: Some(SocketAddr::from(([0, 0, 0, 0], 9100))),
        })
        .unwrap();
        for secret in ["url-pw", "pw-9", "src-pw", REDACTED] {
            assert!(!config.yaml.contains(secret), "{secret}: {}", config.yaml);
        }
        assert_eq!(
            config.secrets.keys().collect::<Vec<_>>(),
            [
                "APP_DESTINATION__POSTGRES__PASSWORD",
                "APP_DESTINATION__POSTGRES__URL",
                "APP_PIPELINE__PG_CONNECTION__URL",
            ]
        );
        let loaded = load(&config);
        let pipeline: PipelineConfig = loaded.section("pipeline").unwrap();
        assert_eq!(
            pipeline.metrics_address,
            Some("0.0.0.0:9100".parse().unwrap())
        );
        assert_eq!(
            pipeline.source().unwrap().password.unwrap().expose(),
            "src-pw"
        );
        let DestinationConfig::Postgres(PostgresDestinationConfig {
            connection, schema, ..
        }) = loaded.section("destination").unwrap()
        else {
            panic!("not a postgres destination")
        };
        assert_eq!(schema.as_deref(), Some("m"));
        assert_eq!(
            connection.url,
            Some(SecretUrl::new("postgres://u:url-pw@mirror/db"))
        );
        assert_eq!(connection.password.unwrap().expose(), "pw-9");
    }

    #[test]
    fn iceberg_catalog_secrets_go_out_as_variables_only() {
        let destination: DestinationConfig = serde_json::from_value(serde_json::json!({
            "iceberg": {"catalog": {"sql": {"url": "postgres://u:cat-pw@lake/db", "password": "pw-7"}},
                        "warehouse": "file:///lake", "namespace": "shop"}
        }))
        .unwrap();
        let config = build(ReplicatorInputs {
            pipeline_id: 9,
            publication_name: "p",
            settings: &PipelineSettings::default(),
            source: PgConnectionConfig::from_url("postgres://rep@db/shop"),
            destination,
            metrics_address: None,
        })
        .unwrap();
        for secret in ["cat-pw", "pw-7", REDACTED] {
            assert!(!config.yaml.contains(secret), "{secret}: {}", config.yaml);
        }
        assert!(
            config
                .secrets
                .contains_key("APP_DESTINATION__ICEBERG__CATALOG__SQL__URL")
                && config
                    .secrets
                    .contains_key("APP_DESTINATION__ICEBERG__CATALOG__SQL__PASSWORD"),
            "{:?}",
            config.secrets.keys()
        );
        let DestinationConfig::Iceberg(iceberg) = load(&config).section("destination").unwrap()
        else {
            panic!("not an iceberg destination")
        };
        let crate::config::iceberg::IcebergCatalogConfig::Sql(catalog) = iceberg.catalog;
        assert_eq!(catalog.password.unwrap().expose(), "pw-7");
        assert_eq!(iceberg.namespace, "shop");
    }

    /// Every secret field of a message-stream or S3 destination leaves the file for a
    /// variable, and the replicator loads the same config back.
    #[test]
    fn stream_and_object_store_secrets_go_out_as_variables_only() {
        let cases = [
            (
                serde_json::json!({"nats": {"url": "nats://u:nats-pw@n:4222", "token": "tok-1",
                                            "nkey_seed": "SU-seed"}}),
                vec!["nats-pw", "tok-1", "SU-seed"],
            ),
            (
                serde_json::json!({"kafka": {"brokers": ["k:9092"], "security_protocol": "sasl_ssl",
                                             "sasl_mechanism": "PLAIN", "sasl_username": "u",
                                             "sasl_password": "kafka-pw"}}),
                vec!["kafka-pw"],
            ),
            (
                serde_json::json!({"iceberg": {"catalog": {"sql": {"url": "postgres://lake/db"}},
                                               "warehouse": "s3://b/w",
                                               "s3": {"endpoint": "http://s3:9000",
                                                      "access_key_id": "AKID-1",
                                                      "secret_access_key": "s3-secret"}}}),
                vec!["AKID-1", "s3-secret"],
            ),
        ];
        for (json, hidden) in cases {
            let destination: DestinationConfig = serde_json::from_value(json.clone()).unwrap();
            let config = build(ReplicatorInputs {
                pipeline_id: 9,
                publication_name: "p",
                settings: &PipelineSettings::default(),
                source: PgConnectionConfig::from_url("postgres://rep@db/shop"),
                destination: destination.clone(),
                metrics_address: None,
            })
            .unwrap_or_else(|e| panic!("{json}: {e}"));
            for secret in hidden.iter().copied().chain([REDACTED]) {
                assert!(!config.yaml.contains(secret), "{secret}: {}", config.yaml);
            }
            let loaded: DestinationConfig = load(&config).section("destination").unwrap();
            assert_eq!(loaded, destination, "{json}");
        }
    }

    #[test]
    fn a_negative_pipeline_id_is_refused() {
        let error = build(ReplicatorInputs {
            pipeline_id: -1,
            publication_name: "p",
            settings: &PipelineSettings::default(),
            source: PgConnectionConfig::from_url("postgres://db/shop"),
            destination: DestinationConfig::Discard {},
            metrics_address: None,
        })
        .unwrap_err();
        assert!(
            matches!(error, BuildError::NegativePipelineId(-1)),
            "{error}"
        );
    }
}
