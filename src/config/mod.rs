//! Configuration shared by every subcommand.
//!
//! Layers, later ones winning: `{dir}/base.yaml` (optional), `{dir}/{env}.yaml` (required), then
//! `APP_` environment variables with `__` for nesting ([`env_vars`]). [`Config::load`] merges the
//! layers and checks the top-level sections; each subcommand then takes the typed sections it
//! needs with [`Config::section`], so a replicator pod does not need the API's settings. Every
//! error names the key and where its value came from (a file path or a variable name).

pub mod api;
pub mod destination;
pub mod env_vars;
pub mod environment;
pub mod iceberg;
pub mod invalid;
pub mod kafka;
pub mod nats;
pub mod postgres;
pub mod secret;
pub mod sections;
pub mod show;

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Yaml};
use serde::de::DeserializeOwned;

pub use api::{ApiConfig, EncryptionKeyConfig, LocalRuntimeConfig, RuntimeKind};
pub use destination::{JsonlDestinationConfig, PostgresDestinationConfig, SqliteDestinationConfig};
pub use env_vars::AppEnv;
pub use environment::{Environment, UnknownEnvironment};
pub use iceberg::{IcebergDestinationConfig, IcebergMode};
pub use invalid::{InvalidSetting, Problem};
pub use kafka::KafkaDestinationConfig;
pub use nats::NatsDestinationConfig;
pub use postgres::{PgConnection, PgConnectionConfig, TlsConfig, TlsMode};
pub use secret::{Secret, SecretUrl};
pub use sections::{
    BatchConfig, DatabaseConfig, DestinationConfig, InvalidatedSlotBehavior, KubernetesConfig,
    LostCopyBehavior, MAX_PIPELINE_ID, PipelineConfig, ResourceSettings, RetryConfig, SpillConfig,
    StreamingMode, TableErrorsConfig,
};

/// A configuration problem; `Display` is the one line the user sees.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    UnknownEnvironment(#[from] UnknownEnvironment),
    #[error("configuration directory {} does not exist (set --config-dir or APP_CONFIG_DIR)", .0.display())]
    MissingDirectory(PathBuf),
    #[error("configuration file {} for environment `{env}` does not exist", .path.display())]
    MissingEnvironmentFile { path: PathBuf, env: Environment },
    #[error("{0}")]
    Invalid(String),
    #[error("configuration section `{section}` is missing: add it to {} or set {variable_hint}", .file.display())]
    MissingSection {
        section: &'static str,
        file: PathBuf,
        variable_hint: String,
    },
    #[error("config key `{key}` ({origin}): {message}")]
    Validation {
        key: String,
        origin: String,
        message: String,
    },
}

/// The merged configuration layers of one environment.
#[derive(Debug, Clone)]
pub struct Config {
    figment: Figment,
    environment: Environment,
    dir: PathBuf,
}

impl Config {
    /// Loads `dir/base.yaml`, `dir/{env}.yaml` and the process's `APP_` variables.
    pub fn load(dir: &Path, environment: Environment) -> Result<Self, ConfigError> {
        Self::load_with_env(dir, environment, AppEnv::from_process())
    }

    /// Like [`Config::load`] with the given variables instead of the process's (for tests).
    pub fn load_with_env(
        dir: &Path,
        environment: Environment,
        env: AppEnv,
    ) -> Result<Self, ConfigError> {
        if !dir.is_dir() {
            return Err(ConfigError::MissingDirectory(dir.to_owned()));
        }
        let env_file = dir.join(format!("{environment}.yaml"));
        if !env_file.is_file() {
            return Err(ConfigError::MissingEnvironmentFile {
                path: env_file,
                env: environment,
            });
        }
        let mut figment = Figment::new();
        let base = dir.join("base.yaml");
        if base.is_file() {
            figment = figment.merge(Yaml::file_exact(&base));
        }
        let figment = figment.merge(Yaml::file_exact(&env_file)).merge(env);
        let config = Self {
            figment,
            environment,
            dir: dir.to_owned(),
        };
        config.check_sections()?;
        Ok(config)
    }

    pub fn environment(&self) -> Environment {
        self.environment
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn figment(&self) -> &Figment {
        &self.figment
    }

    /// Reads every layer (so a broken file fails every subcommand) and rejects unknown
    /// top-level sections, which are almost always typos.
    fn check_sections(&self) -> Result<(), ConfigError> {
        let data = figment::Provider::data(&self.figment).map_err(|e| self.describe(e))?;
        for dict in data.values() {
            if let Some(unknown) = dict
                .keys()
                .find(|k| !sections::SECTION_NAMES.contains(&k.as_str()))
            {
                return Err(ConfigError::Validation {
                    key: unknown.clone(),
                    origin: self.origin(unknown),
                    message: format!(
                        "unknown section: expected one of {}",
                        sections::SECTION_NAMES.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    /// A required top-level section, e.g. `config.section::<PipelineConfig>("pipeline")`.
    pub fn section<T: DeserializeOwned>(&self, name: &'static str) -> Result<T, ConfigError> {
        if !self.figment.contains(name) {
            return Err(ConfigError::MissingSection {
                section: name,
                file: self.dir.join(format!("{}.yaml", self.environment)),
                variable_hint: format!("APP_{}__…", name.to_uppercase()),
            });
        }
        self.figment.extract_inner(name).map_err(|error| {
            // figment reports paths under `extract_inner` with the section name last
            // (`batch.max_size.pipeline`); put it back in front.
            let fixed = error.into_iter().map(|mut e| {
                if e.path.len() > 1 && e.path.last().map(String::as_str) == Some(name) {
                    e.path.rotate_right(1);
                }
                e
            });
            let mut iter = fixed.collect::<Vec<_>>().into_iter();
            match iter.next() {
                Some(mut first) => {
                    for e in iter {
                        first = first.chain(e);
                    }
                    self.describe(first)
                }
                None => ConfigError::Invalid(format!("configuration section `{name}` is invalid")),
            }
        })
    }

    /// A section that may be absent.
    pub fn optional_section<T: DeserializeOwned>(
        &self,
        name: &'static str,
    ) -> Result<Option<T>, ConfigError> {
        if self.figment.contains(name) {
            self.section(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Where the value at `key` (dotted path) came from: a file path, a variable, or the default.
    /// A key inside a list (`api.encryption_keys[0].key`) takes the origin of the list.
    pub fn origin(&self, key: &str) -> String {
        let key = key.split('[').next().unwrap_or(key);
        match self.figment.find_metadata(key) {
            Some(metadata) => describe_origin(metadata, &key.split('.').collect::<Vec<_>>()),
            None => "default".to_owned(),
        }
    }

    /// A validation failure of `key`, naming where its value came from.
    pub fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Validation {
            key: key.to_owned(),
            origin: self.origin(key),
            message: message.into(),
        }
    }

    /// The outcome of a section's check: an [`InvalidSetting`] becomes a [`ConfigError`] whose
    /// key is put below `section` and named with where its value came from.
    pub fn checked<T>(
        &self,
        section: &str,
        outcome: Result<T, InvalidSetting>,
    ) -> Result<T, ConfigError> {
        outcome.map_err(|error| {
            let error = error.within(section);
            self.invalid(error.key(), error.problem().to_string())
        })
    }

    fn describe(&self, error: figment::Error) -> ConfigError {
        let lines: Vec<String> = error
            .into_iter()
            .map(|e| {
                let key = e.path.join(".");
                let origin = e
                    .metadata
                    .as_ref()
                    .map(|m| {
                        describe_origin(m, &e.path.iter().map(String::as_str).collect::<Vec<_>>())
                    })
                    .unwrap_or_else(|| "default".to_owned());
                if key.is_empty() {
                    format!("{} ({origin})", e.kind)
                } else {
                    format!("config key `{key}` ({origin}): {}", e.kind)
                }
            })
            .collect();
        ConfigError::Invalid(lines.join("; "))
    }
}

fn describe_origin(metadata: &figment::Metadata, path: &[&str]) -> String {
    match &metadata.source {
        Some(figment::Source::File(path)) => format!("from {}", path.display()),
        _ if metadata.name == "environment variable" => {
            format!("from {}", AppEnv::variable_name(path))
        }
        _ => format!("from {}", metadata.name),
    }
}

#[cfg(test)]
mod tests;
