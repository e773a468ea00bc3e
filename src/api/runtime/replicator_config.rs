//! The replicator's configuration for one pipeline, built from the decrypted source and
//! destination configs: a `{env}.yaml` with top-level `pipeline:` and `destination:` (what
//! `etl replicate` reads) and, separately, every secret as an `APP_…` variable
//! (`APP_PIPELINE__PG_CONNECTION__PASSWORD`, `APP_DESTINATION__POSTGRES__PASSWORD`, …), so a
//! written file or a ConfigMap never holds one.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::api::domain::pipeline::PipelineSettings;
use crate::api::secrets;
use crate::config::Secret;

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
    pub source: Value,
    /// The decrypted destination config (`destination`).
    pub destination: Value,
    /// `pipeline.metrics_address` (`None`: no metrics endpoint).
    pub metrics_address: Option<String>,
}

/// Builds the replicator config of one pipeline.
pub fn build(inputs: ReplicatorInputs<'_>) -> Result<ReplicatorConfig, serde_yaml::Error> {
    let ReplicatorInputs {
        pipeline_id,
        publication_name,
        settings,
        source,
        destination,
        metrics_address,
    } = inputs;
    let (pg_connection, mut secrets) = secrets::extract(source, &["pipeline", "pg_connection"]);
    let (destination, destination_secrets) = secrets::extract(destination, &["destination"]);
    secrets.extend(destination_secrets);
    let document = json!({
        "pipeline": {
            "id": pipeline_id,
            "publication_name": publication_name,
            "pg_connection": pg_connection,
            "batch": settings.batch,
            "max_table_sync_workers": settings.max_table_sync_workers,
            "max_copy_connections_per_table": settings.max_copy_connections_per_table,
            "metrics_address": metrics_address,
        },
        "destination": destination,
    });
    let yaml = format!(
        "# Written by `etl serve-api` for pipeline {pipeline_id}; secrets come from APP_ variables.\n{}",
        serde_yaml::to_string(&document)?
    );
    Ok(ReplicatorConfig { yaml, secrets })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AppEnv, Config, DestinationConfig, Environment, PipelineConfig};

    #[test]
    fn the_replicator_loads_the_built_config_with_its_secret_variables() {
        let config = build(ReplicatorInputs {
            pipeline_id: 7,
            publication_name: "orders pub",
            settings: &PipelineSettings::default(),
            source: json!({"host": "db", "port": 5433, "name": "shop", "username": "rep", "password": "0123"}),
            destination: json!({"memory": {}}),
            metrics_address: None,
        })
        .unwrap();
        assert!(!config.yaml.contains("0123"), "{}", config.yaml);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prod.yaml"), &config.yaml).unwrap();
        let vars = config
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()));
        let loaded =
            Config::load_with_env(dir.path(), Environment::Prod, AppEnv::from_vars(vars)).unwrap();
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
}
