//! Tests of configuration loading: layering, errors and secrets.

use std::fs;
use std::path::Path;

use super::*;

fn write(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).unwrap();
}

fn env(vars: &[(&str, &str)]) -> AppEnv {
    AppEnv::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

const BASE: &str = "
pipeline:
  id: 1
  publication_name: base_pub
  pg_connection: {host: localhost, port: 5430, name: postgres, username: postgres}
  batch: {max_size: 100}
destination:
  memory: {}
";

#[test]
fn env_file_overrides_base_and_variables_override_both() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yaml", BASE);
    write(
        dir.path(),
        "dev.yaml",
        "pipeline: {publication_name: dev_pub, batch: {max_size: 200}}\n",
    );
    let config = Config::load_with_env(
        dir.path(),
        Environment::Dev,
        env(&[("APP_PIPELINE__BATCH__MAX_SIZE", "300")]),
    )
    .unwrap();
    let pipeline: PipelineConfig = config.section("pipeline").unwrap();
    assert_eq!(pipeline.id, 1, "from base.yaml");
    assert_eq!(
        pipeline.publication_name, "dev_pub",
        "dev.yaml beats base.yaml"
    );
    assert_eq!(
        pipeline.batch.max_size, 300,
        "the variable beats both files"
    );
    assert_eq!(pipeline.batch.max_fill_ms, 1000, "default");
    assert_eq!(
        config.origin("pipeline.batch.max_size"),
        "from APP_PIPELINE__BATCH__MAX_SIZE"
    );
    assert!(
        config
            .origin("pipeline.publication_name")
            .ends_with("dev.yaml")
    );
    assert_eq!(config.origin("pipeline.batch.max_fill_ms"), "default");
}

#[test]
fn a_numeric_password_from_a_variable_loads_as_the_exact_string() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yaml", BASE);
    write(dir.path(), "prod.yaml", "");
    let config = Config::load_with_env(
        dir.path(),
        Environment::Prod,
        env(&[("APP_PIPELINE__PG_CONNECTION__PASSWORD", "0123456")]),
    )
    .unwrap();
    let pipeline: PipelineConfig = config.section("pipeline").unwrap();
    let password = pipeline.pg_connection.password.unwrap();
    assert_eq!(password.expose(), "0123456");
    assert_eq!(format!("{password:?}"), secret::REDACTED);
}

#[test]
fn a_missing_environment_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yaml", BASE);
    let err = Config::load_with_env(dir.path(), Environment::Staging, env(&[])).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("staging.yaml") && text.contains("does not exist"),
        "{text}"
    );
}

#[test]
fn an_unknown_key_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yaml", BASE);
    write(dir.path(), "dev.yaml", "pipeline: {batch: {max_sise: 5}}\n");
    let config = Config::load_with_env(dir.path(), Environment::Dev, env(&[])).unwrap();
    let text = config
        .section::<PipelineConfig>("pipeline")
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("config key `pipeline.batch.max_sise`"),
        "{text}"
    );
    assert!(text.contains("dev.yaml"), "{text}");
}

#[test]
fn an_unknown_section_is_rejected_at_load() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "dev.yaml", "pipelin: {id: 1}\n");
    let text = Config::load_with_env(dir.path(), Environment::Dev, env(&[]))
        .unwrap_err()
        .to_string();
    assert!(text.contains("pipelin"), "{text}");
}

#[test]
fn a_wrong_type_from_a_variable_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yaml", BASE);
    write(dir.path(), "dev.yaml", "");
    let config = Config::load_with_env(
        dir.path(),
        Environment::Dev,
        env(&[("APP_PIPELINE__ID", "one")]),
    )
    .unwrap();
    let text = config
        .section::<PipelineConfig>("pipeline")
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("pipeline.id") && text.contains("APP_PIPELINE__ID"),
        "{text}"
    );
}

#[test]
fn a_missing_section_says_where_to_add_it() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "dev.yaml", "");
    let config = Config::load_with_env(dir.path(), Environment::Dev, env(&[])).unwrap();
    let text = config
        .section::<PipelineConfig>("pipeline")
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("`pipeline`") && text.contains("APP_PIPELINE__"),
        "{text}"
    );
}

#[test]
fn show_redacts_secrets_and_names_origins() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yaml", BASE);
    write(
        dir.path(),
        "dev.yaml",
        "database: {url: 'postgres://app:topsecret@db:5432/app'}\n",
    );
    let config = Config::load_with_env(
        dir.path(),
        Environment::Dev,
        env(&[("APP_PIPELINE__PG_CONNECTION__PASSWORD", "hunter2")]),
    )
    .unwrap();
    let rendered = show::render(&config);
    assert!(rendered.errors.is_empty(), "{:?}", rendered.errors);
    let text = rendered.text;
    assert!(
        !text.contains("topsecret") && !text.contains("hunter2"),
        "{text}"
    );
    assert!(
        text.contains("postgres://app:[redacted]@db:5432/app"),
        "{text}"
    );
    assert!(
        text.contains("password: '[redacted]'   # from APP_PIPELINE__PG_CONNECTION__PASSWORD"),
        "{text}"
    );
    assert!(text.contains("max_fill_ms: 1000   # default"), "{text}");
    let parsed: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(
        parsed["pipeline"]["batch"]["max_size"],
        serde_yaml::Value::from(100)
    );
}

#[test]
fn show_reports_validation_failures_with_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yaml", BASE);
    write(dir.path(), "dev.yaml", "pipeline: {batch: {max_size: 0}}\n");
    let config = Config::load_with_env(dir.path(), Environment::Dev, env(&[])).unwrap();
    let rendered = show::render(&config);
    let error = rendered.errors[0].to_string();
    assert!(
        error.contains("pipeline.batch.max_size") && error.contains("dev.yaml"),
        "{error}"
    );
    // The invalid section is still shown, as given, under the error.
    let text = rendered.text;
    assert!(
        text.contains("# error: config key `pipeline.batch.max_size`"),
        "{text}"
    );
    assert!(text.contains("max_size: 0   # from"), "{text}");
}

#[test]
fn show_prints_an_incomplete_section_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yaml", "destination: {memory: {}}\n");
    // No pipeline id (a pod would set APP_PIPELINE__ID): the rest is still shown.
    write(
        dir.path(),
        "dev.yaml",
        "pipeline:\n  publication_name: p\n  pg_connection: {url: 'postgres://u:s3cret@h/db', \
         password: hunter2}\n",
    );
    let config = Config::load_with_env(dir.path(), Environment::Dev, env(&[])).unwrap();
    let rendered = show::render(&config);
    assert_eq!(rendered.errors.len(), 1, "{:?}", rendered.errors);
    assert!(rendered.errors[0].to_string().contains("`id`"));
    let text = rendered.text;
    assert!(
        !text.contains("s3cret") && !text.contains("hunter2"),
        "{text}"
    );
    assert!(text.contains("publication_name: p   # from"), "{text}");
    assert!(text.contains("postgres://u:[redacted]@h/db"), "{text}");
}

/// The destination named in `dev.yaml`, with `base.yaml` = `base`.
fn destination_error(base: &str, dev: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yaml", base);
    write(dir.path(), "dev.yaml", dev);
    let config = Config::load_with_env(dir.path(), Environment::Dev, env(&[])).unwrap();
    config
        .section::<DestinationConfig>("destination")
        .unwrap_err()
        .to_string()
}

#[test]
fn two_destination_kinds_are_an_error_naming_both() {
    // issue 11: `{sqlite: …, discard: {}}` used to load as one kind, the other silently dropped.
    let text = destination_error("", "destination: {sqlite: {path: x.db}, discard: {}}\n");
    assert!(
        text.contains("config key `destination`") && text.contains("dev.yaml"),
        "{text}"
    );
    assert!(
        text.contains("`discard` and `sqlite`") && text.contains("exactly one"),
        "{text}"
    );
    // The layers are merged: a kind in base.yaml and another in dev.yaml are two kinds.
    let text = destination_error(BASE, "destination: {sqlite: {path: x.db}}\n");
    assert!(text.contains("`memory` and `sqlite`"), "{text}");
}

#[test]
fn a_destination_kind_keeps_its_errors_key_and_origin() {
    let text = destination_error("", "destination: {sqlite: {pth: x.db}}\n");
    assert!(
        text.contains("config key `destination.sqlite.pth`") && text.contains("dev.yaml"),
        "{text}"
    );
    let text = destination_error("", "destination: {duckdb: {}}\n");
    assert!(
        text.contains("`duckdb`") && text.contains("`jsonl`"),
        "{text}"
    );
    let text = destination_error("", "destination: {}\n");
    assert!(text.contains("exactly one destination kind"), "{text}");
}

#[test]
fn a_pipeline_id_beyond_bigint_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yaml", BASE);
    write(dir.path(), "dev.yaml", "");
    // issue 11: 2^64-1 was accepted and stored as -1 in the state tables.
    for (id, fits) in [
        (u64::MAX, false),
        (i64::MAX as u64 + 1, false),
        (i64::MAX as u64, true),
    ] {
        let config = Config::load_with_env(
            dir.path(),
            Environment::Dev,
            env(&[("APP_PIPELINE__ID", &id.to_string())]),
        )
        .unwrap();
        let pipeline: PipelineConfig = config.section("pipeline").unwrap();
        let outcome = config.checked("pipeline", pipeline.validate());
        match (outcome, fits) {
            (Ok(()), true) => {}
            (Err(error), false) => {
                let text = error.to_string();
                assert!(
                    text.contains("pipeline.id") && text.contains("APP_PIPELINE__ID"),
                    "{text}"
                );
                assert!(text.contains(&MAX_PIPELINE_ID.to_string()), "{text}");
            }
            (outcome, _) => panic!("id {id}: {outcome:?}"),
        }
    }
}

#[test]
fn a_new_pipeline_config_has_the_defaults_of_absent_keys() {
    let loaded: PipelineConfig = figment::Figment::from(Yaml::string(
        "id: 3\npublication_name: p\npg_connection: {host: h}\n",
    ))
    .extract()
    .unwrap();
    let built = PipelineConfig::new(
        3,
        "p".into(),
        PgConnectionConfig {
            host: Some("h".into()),
            ..PgConnectionConfig::default()
        },
    );
    assert_eq!(built, loaded);
}
