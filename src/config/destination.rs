//! Settings of the `sqlite`, `postgres` and `jsonl` destinations (the `destination` section's
//! kinds, see [`super::DestinationConfig`]) and their checks; errors name the key below
//! `destination` (e.g. `sqlite.path`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::invalid::{InvalidSetting, Problem};
use super::postgres::{PgConnection, PgConnectionConfig};

/// `destination: {sqlite: {path: data/etl.db}}`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqliteDestinationConfig {
    /// The SQLite file (created with its directories); relative paths start at the working
    /// directory.
    #[serde(default = "default_sqlite_path")]
    pub path: PathBuf,
}

impl Default for SqliteDestinationConfig {
    fn default() -> Self {
        Self {
            path: default_sqlite_path(),
        }
    }
}

fn default_sqlite_path() -> PathBuf {
    PathBuf::from("data/etl.db")
}

/// `destination: {postgres: {url: postgres://…, schema: null}}`: the target connection (a URL
/// and/or discrete fields, as for `pipeline.pg_connection`) and where mirrors go.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct PostgresDestinationConfig {
    #[serde(flatten)]
    pub connection: PgConnectionConfig,
    /// Every mirror goes into this schema; `null` keeps each source table's schema name.
    #[serde(default)]
    pub schema: Option<String>,
    /// Keys that are neither connection fields nor `schema` (reported by `validate`, since
    /// `deny_unknown_fields` does not work beside `flatten`).
    #[serde(flatten, skip_serializing)]
    pub unknown: BTreeMap<String, IgnoredAny>,
}

/// `destination: {jsonl: {path: null, max_file_bytes: 104857600}}`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JsonlDestinationConfig {
    /// The file to append to; `null` writes to standard output.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Size after which the file is rotated to `<path>.NNNNNN`; `null` or 0: never.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: Option<u64>,
}

impl Default for JsonlDestinationConfig {
    fn default() -> Self {
        Self {
            path: None,
            max_file_bytes: default_max_file_bytes(),
        }
    }
}

fn default_max_file_bytes() -> Option<u64> {
    Some(100 * 1024 * 1024)
}

impl SqliteDestinationConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        check_file_path("sqlite.path", &self.path, Problem::Empty)
    }
}

impl PostgresDestinationConfig {
    /// Checks the keys and the schema, and returns the resolved target connection.
    pub fn validate(&self) -> Result<PgConnection, InvalidSetting> {
        if let Some(key) = self.unknown.keys().next() {
            return Err(InvalidSetting::new(
                format!("postgres.{key}"),
                Problem::UnknownKey("url, host, port, name, username, password, tls or schema"),
            ));
        }
        let connection = self
            .connection
            .resolve()
            .map_err(|e| InvalidSetting::new("postgres", e.into()))?;
        if let Some(schema) = &self.schema
            && schema.trim().is_empty()
        {
            return Err(InvalidSetting::new(
                "postgres.schema",
                Problem::EmptyUseNull("to keep the source schema names"),
            ));
        }
        Ok(connection)
    }
}

impl JsonlDestinationConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        match &self.path {
            Some(path) => check_file_path(
                "jsonl.path",
                path,
                Problem::EmptyUseNull("for standard output"),
            ),
            None => Ok(()),
        }
    }
}

/// A path a destination creates or appends to: not empty (`if_empty` says why), not a directory.
fn check_file_path(key: &str, path: &Path, if_empty: Problem) -> Result<(), InvalidSetting> {
    if path.as_os_str().is_empty() {
        return Err(InvalidSetting::new(key, if_empty));
    }
    if path.is_dir() {
        return Err(InvalidSetting::new(
            key,
            Problem::IsDirectory(path.to_owned()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Yaml};

    use super::super::DestinationConfig;

    /// As the config loader reads it (figment, not serde_yaml's tagged enums).
    fn load(yaml: &str) -> Result<DestinationConfig, String> {
        Figment::from(Yaml::string(yaml))
            .extract()
            .map_err(|e| e.to_string())
    }

    fn parse(yaml: &str) -> DestinationConfig {
        load(yaml).unwrap()
    }

    #[test]
    fn each_kind_parses_with_its_defaults() {
        let DestinationConfig::Sqlite(sqlite) = parse("sqlite: {}") else {
            panic!("not sqlite")
        };
        assert_eq!(sqlite.path, std::path::PathBuf::from("data/etl.db"));
        let DestinationConfig::Jsonl(jsonl) = parse("jsonl: {path: out/changes.jsonl}") else {
            panic!("not jsonl")
        };
        assert_eq!(jsonl.max_file_bytes, Some(104_857_600));
        let DestinationConfig::Postgres(postgres) =
            parse("postgres: {url: 'postgres://u:p@h:5433/db', schema: mirror}")
        else {
            panic!("not postgres")
        };
        assert_eq!(postgres.schema.as_deref(), Some("mirror"));
        let connection = postgres.connection.resolve().unwrap();
        assert_eq!((connection.port, connection.name.as_str()), (5433, "db"));
        assert_eq!(postgres.validate().map(|c| c.port), Ok(5433));
    }

    #[test]
    fn bad_settings_name_the_key() {
        let bad = |yaml: &str| parse(yaml).validate().unwrap_err().key().to_owned();
        assert_eq!(bad("sqlite: {path: ''}"), "sqlite.path");
        assert_eq!(bad("sqlite: {path: /tmp}"), "sqlite.path");
        assert_eq!(bad("jsonl: {path: ''}"), "jsonl.path");
        assert_eq!(
            bad("postgres: {url: 'postgres://h/db', sechma: x}"),
            "postgres.sechma"
        );
        assert_eq!(bad("postgres: {schema: x}"), "postgres");
        assert_eq!(bad("postgres: {host: h, schema: ' '}"), "postgres.schema");
        assert!(load("sqlite: {pth: x}").is_err());
        assert!(load("duckdb: {}").is_err());
    }
}
