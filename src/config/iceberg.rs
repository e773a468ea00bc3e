//! Settings of the `iceberg` destination (`destination: {iceberg: …}`) and their checks; errors
//! name the key below `destination` (e.g. `iceberg.warehouse`).

use serde::{Deserialize, Serialize};

use super::invalid::{InvalidSetting, Problem};
use super::postgres::PgConnectionConfig;

/// `destination: {iceberg: {catalog: {sql: {url}}, warehouse: file:///…, namespace, mode}}`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IcebergDestinationConfig {
    pub catalog: IcebergCatalogConfig,
    /// Where tables' data and metadata files go: `file:///absolute/dir` (a local or mounted
    /// directory).
    pub warehouse: String,
    /// The Iceberg namespace every table is created in.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The catalog name in the SQL catalog's rows (`catalog_name`), as readers configure it.
    #[serde(default = "default_catalog_name")]
    pub catalog_name: String,
    #[serde(default)]
    pub mode: IcebergMode,
    /// Size at which a Parquet data file is closed and the next one started (bytes written).
    #[serde(default = "default_target_file_bytes")]
    pub target_file_bytes: u64,
    /// Mirror mode: once a table's commit leaves more live files (data and position deletes)
    /// than this, its live rows are rewritten into fresh data files (`0`: never).
    #[serde(default = "default_compact_files")]
    pub compact_files: u32,
}

/// `catalog: {sql: {url: postgres://…}}`: the catalog that holds each table's current metadata.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum IcebergCatalogConfig {
    /// Iceberg's SQL (JDBC-style) catalog in a Postgres database: tables `iceberg_tables` and
    /// `iceberg_namespace_properties`, created if missing. The connection is written as any
    /// other (`url` and/or `host`, `port`, `name`, `username`, `password`, `tls`).
    Sql(PgConnectionConfig),
}

/// What the Iceberg tables hold.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IcebergMode {
    /// Append-only: every copied row and every change is one row with `_etl_*` columns.
    #[default]
    Changelog,
    /// Tables that read as the source's current rows (merge-on-read: position deletes).
    Mirror,
}

fn default_namespace() -> String {
    "etl".to_owned()
}

fn default_catalog_name() -> String {
    "etl".to_owned()
}

fn default_compact_files() -> u32 {
    100
}

fn default_target_file_bytes() -> u64 {
    128 * 1024 * 1024
}

impl IcebergDestinationConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let IcebergCatalogConfig::Sql(sql) = &self.catalog;
        sql.resolve()
            .map_err(|e| InvalidSetting::new("iceberg.catalog.sql", e.into()))?;
        let Some(path) = self.warehouse.strip_prefix("file://") else {
            return Err(InvalidSetting::new(
                "iceberg.warehouse",
                Problem::Invalid(
                    "must be a file:///absolute/dir URL (only local or mounted directories are \
                     supported)"
                        .into(),
                ),
            ));
        };
        if !path.starts_with('/') || path.len() < 2 {
            return Err(InvalidSetting::new(
                "iceberg.warehouse",
                Problem::Invalid("must name an absolute directory: file:///absolute/dir".into()),
            ));
        }
        for (key, value) in [
            ("iceberg.namespace", &self.namespace),
            ("iceberg.catalog_name", &self.catalog_name),
        ] {
            if value.trim().is_empty() {
                return Err(InvalidSetting::new(key, Problem::Empty));
            }
            if value.contains('.') || value.len() > 255 {
                return Err(InvalidSetting::new(
                    key,
                    Problem::Invalid("must hold no `.` and at most 255 bytes".into()),
                ));
            }
        }
        if self.target_file_bytes < 1024 * 1024 {
            return Err(InvalidSetting::new(
                "iceberg.target_file_bytes",
                Problem::Invalid("must be at least 1048576 (1 MiB)".into()),
            ));
        }
        if self.compact_files == 1 {
            return Err(InvalidSetting::new(
                "iceberg.compact_files",
                Problem::Invalid(
                    "must be 0 (never compact) or at least 2 (a compacted table has one file)"
                        .into(),
                ),
            ));
        }
        Ok(())
    }

    /// The directory of `warehouse` (without `file://`).
    pub fn warehouse_dir(&self) -> &str {
        self.warehouse
            .strip_prefix("file://")
            .unwrap_or(&self.warehouse)
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Yaml};

    use super::super::DestinationConfig;

    fn parse(yaml: &str) -> Result<DestinationConfig, String> {
        Figment::from(Yaml::string(yaml))
            .extract()
            .map_err(|e| e.to_string())
    }

    const GOOD: &str = "iceberg: {catalog: {sql: {url: 'postgres://u:p@h/lake'}}, warehouse: 'file:///var/lake', namespace: shop}";

    #[test]
    fn parses_with_defaults() {
        let Ok(DestinationConfig::Iceberg(config)) = parse(GOOD) else {
            panic!("not iceberg")
        };
        assert_eq!(config.namespace, "shop");
        assert_eq!(config.catalog_name, "etl");
        assert_eq!(config.mode, super::IcebergMode::Changelog);
        assert_eq!(config.warehouse_dir(), "/var/lake");
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn bad_settings_name_the_key() {
        let bad = |yaml: &str| {
            parse(yaml)
                .unwrap()
                .validate()
                .unwrap_err()
                .key()
                .to_owned()
        };
        assert_eq!(
            bad(&GOOD.replace("file:///var/lake", "s3://b/p")),
            "iceberg.warehouse"
        );
        assert_eq!(
            bad(&GOOD.replace("file:///var/lake", "file://rel")),
            "iceberg.warehouse"
        );
        assert_eq!(
            bad(&GOOD.replace("{url: 'postgres://u:p@h/lake'}", "{port: 5}")),
            "iceberg.catalog.sql"
        );
        assert_eq!(bad(&GOOD.replace("shop", "a.b")), "iceberg.namespace");
        let mirror = parse(&GOOD.replace("namespace: shop", "mode: mirror"));
        assert!(
            matches!(&mirror, Ok(DestinationConfig::Iceberg(c)) if c.mode == super::IcebergMode::Mirror && c.validate().is_ok()),
            "{mirror:?}"
        );
        assert!(parse(&GOOD.replace("namespace: shop", "mode: mirrored")).is_err());
        assert_eq!(
            bad(&GOOD.replace("namespace: shop", "target_file_bytes: 10")),
            "iceberg.target_file_bytes"
        );
        assert_eq!(
            bad(&GOOD.replace("namespace: shop", "compact_files: 1")),
            "iceberg.compact_files"
        );
        let unknown = parse(&GOOD.replace("namespace:", "namespaces:")).unwrap_err();
        assert!(unknown.contains("namespaces"), "{unknown}");
        assert!(parse("iceberg: {catalog: {rest: {uri: x}}, warehouse: 'file:///x'}").is_err());
    }
}
