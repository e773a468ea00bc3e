//! Settings of the `iceberg` destination (`destination: {iceberg: …}`) and their checks; errors
//! name the key below `destination` (e.g. `iceberg.warehouse`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::invalid::{InvalidSetting, Problem};
use super::postgres::PgConnectionConfig;
use super::secret::Secret;

/// `destination: {iceberg: {catalog: {sql: {url}}, warehouse: file:///…, namespace, mode}}`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IcebergDestinationConfig {
    pub catalog: IcebergCatalogConfig,
    /// Where tables' data and metadata files go: `file:///absolute/dir` (a local or mounted
    /// directory) or `s3://bucket/prefix` (see [`IcebergS3Config`]).
    pub warehouse: String,
    /// How to reach an `s3://` warehouse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<IcebergS3Config>,
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
    /// How tables are partitioned, per source table (`schema.table`): one partition expression
    /// (`day(placed)`) or a list of them, applied when etl creates (or recopies) the table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub partition_by: BTreeMap<String, PartitionExprs>,
}

/// One partition expression or a list of them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum PartitionExprs {
    One(String),
    Many(Vec<String>),
}

impl PartitionExprs {
    fn texts(&self) -> &[String] {
        match self {
            PartitionExprs::One(one) => std::slice::from_ref(one),
            PartitionExprs::Many(many) => many,
        }
    }
}

/// A parsed partition expression: an Iceberg partition transform of one source column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionExpr {
    pub column: String,
    pub transform: PartitionTransform,
}

/// The Iceberg partition transforms, as written in `partition_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionTransform {
    /// `column`: the value itself.
    Identity,
    /// `year(column)`, `month(column)`, `day(column)`, `hour(column)` of a date or timestamp.
    Year,
    Month,
    Day,
    Hour,
    /// `bucket(N, column)`: a hash of the value modulo N.
    Bucket(u32),
    /// `truncate(W, column)`: the value truncated to width W.
    Truncate(u32),
}

impl PartitionExpr {
    /// Parses `column`, `day(column)` or `bucket(16, column)`; a column name may be written in
    /// double quotes (`day("Placed At")`).
    pub fn parse(text: &str) -> Result<PartitionExpr, String> {
        let text = text.trim();
        let Some(open) = text.find('(').filter(|_| !text.starts_with('"')) else {
            return Ok(PartitionExpr {
                column: column_name(text)?,
                transform: PartitionTransform::Identity,
            });
        };
        let name = text[..open].trim().to_ascii_lowercase();
        let inner = text[open + 1..].strip_suffix(')').ok_or_else(|| {
            format!(
                "`{text}` does not end with `)` (in a YAML [list], quote an expression \
                     that holds a comma: ['bucket(16, id)'])"
            )
        })?;
        let numbered =
            |inner: &str| -> Result<(u32, String), String> {
                let (n, column) = inner.split_once(',').ok_or_else(|| {
                    format!("`{text}`: {name} takes a number and a column, e.g. {name}(16, id)")
                })?;
                let n: u32 =
                    n.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("`{text}`: `{}` is not a positive number", n.trim())
                    })?;
                Ok((n, column_name(column)?))
            };
        let (transform, column) = match name.as_str() {
            "identity" => (PartitionTransform::Identity, column_name(inner)?),
            "year" | "years" => (PartitionTransform::Year, column_name(inner)?),
            "month" | "months" => (PartitionTransform::Month, column_name(inner)?),
            "day" | "days" => (PartitionTransform::Day, column_name(inner)?),
            "hour" | "hours" => (PartitionTransform::Hour, column_name(inner)?),
            "bucket" => {
                let (n, column) = numbered(inner)?;
                (PartitionTransform::Bucket(n), column)
            }
            "truncate" => {
                let (n, column) = numbered(inner)?;
                (PartitionTransform::Truncate(n), column)
            }
            other => {
                return Err(format!(
                    "`{text}`: unknown transform `{other}` (expected identity, year, month, day, \
                     hour, bucket or truncate)"
                ));
            }
        };
        Ok(PartitionExpr { column, transform })
    }
}

impl std::fmt::Display for PartitionExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.column;
        match self.transform {
            PartitionTransform::Identity => write!(f, "{c}"),
            PartitionTransform::Year => write!(f, "year({c})"),
            PartitionTransform::Month => write!(f, "month({c})"),
            PartitionTransform::Day => write!(f, "day({c})"),
            PartitionTransform::Hour => write!(f, "hour({c})"),
            PartitionTransform::Bucket(n) => write!(f, "bucket({n}, {c})"),
            PartitionTransform::Truncate(w) => write!(f, "truncate({w}, {c})"),
        }
    }
}

/// A column name as written: bare, or in double quotes (`""` inside stands for `"`).
fn column_name(text: &str) -> Result<String, String> {
    let text = text.trim();
    let name = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None if text.contains(['(', ')', ',', '"']) => {
            return Err(format!("`{text}` is not a column name"));
        }
        None => text.to_owned(),
    };
    if name.is_empty() {
        return Err("a partition expression names no column".to_owned());
    }
    Ok(name)
}

/// `s3: {endpoint, region, access_key_id, secret_access_key, path_style}`: an `s3://`
/// warehouse on AWS S3 or an S3-compatible store. Without keys, the AWS SDK's usual sources are
/// read (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `~/.aws`, web identity, instance metadata).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IcebergS3Config {
    /// `http(s)://host:port` of an S3-compatible store; AWS's endpoint of `region` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret>,
    /// Path-style requests (`endpoint/bucket/key`), as most S3-compatible stores want, instead
    /// of virtual-hosted ones (`bucket.endpoint/key`).
    #[serde(default)]
    pub path_style: bool,
}

/// Where a warehouse lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarehouseKind {
    /// `file:///dir`
    Local,
    /// `s3://bucket/prefix`
    S3,
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
        match self.warehouse_kind()? {
            WarehouseKind::Local => {
                if self.s3.is_some() {
                    return Err(InvalidSetting::new(
                        "iceberg.s3",
                        Problem::Invalid(
                            "is for an s3:// warehouse; iceberg.warehouse is a file:// one".into(),
                        ),
                    ));
                }
            }
            WarehouseKind::S3 => self.validate_s3()?,
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
        self.partitioning()?;
        Ok(())
    }

    /// What `warehouse` names, or why it is not a warehouse.
    pub fn warehouse_kind(&self) -> Result<WarehouseKind, InvalidSetting> {
        let invalid = |message: &str| {
            Err(InvalidSetting::new(
                "iceberg.warehouse",
                Problem::Invalid(message.into()),
            ))
        };
        if let Some(path) = self.warehouse.strip_prefix("file://") {
            if !path.starts_with('/') || path.len() < 2 {
                return invalid("must name an absolute directory: file:///absolute/dir");
            }
            return Ok(WarehouseKind::Local);
        }
        if let Some(place) = self.warehouse.strip_prefix("s3://") {
            let bucket = place.split('/').next().unwrap_or_default();
            if bucket.is_empty() || place.contains("//") {
                return invalid("must be s3://bucket or s3://bucket/prefix");
            }
            return Ok(WarehouseKind::S3);
        }
        invalid(
            "must be a file:///absolute/dir URL (a local or mounted directory) or an \
             s3://bucket/prefix URL",
        )
    }

    fn validate_s3(&self) -> Result<(), InvalidSetting> {
        let Some(s3) = &self.s3 else {
            return Ok(());
        };
        if s3.endpoint.is_some() && self.s3_endpoint().is_none() {
            return Err(InvalidSetting::new(
                "iceberg.s3.endpoint",
                Problem::Invalid("must be http://host[:port] or https://host[:port]".into()),
            ));
        }
        if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
            return Err(InvalidSetting::new(
                "iceberg.s3",
                Problem::Invalid(
                    "give both access_key_id and secret_access_key, or neither (the AWS \
                     environment's credentials are used then)"
                        .into(),
                ),
            ));
        }
        for (key, value) in [
            ("iceberg.s3.region", s3.region.as_deref()),
            (
                "iceberg.s3.access_key_id",
                s3.access_key_id.as_ref().map(Secret::expose),
            ),
        ] {
            if value.is_some_and(|v| v.trim().is_empty()) {
                return Err(InvalidSetting::new(key, Problem::Empty));
            }
        }
        Ok(())
    }

    /// The host and port of the S3 endpoint, if one is set and is an `http(s)://host[:port]`
    /// URL (the control plane checks it against its network policy).
    pub fn s3_endpoint(&self) -> Option<(String, u16)> {
        let endpoint = self.s3.as_ref()?.endpoint.as_deref()?;
        let url = url::Url::parse(endpoint).ok()?;
        if !matches!(url.scheme(), "http" | "https") || url.path().len() > 1 {
            return None;
        }
        let host = url.host_str()?.trim_matches(['[', ']']).to_owned();
        Some((host, url.port_or_known_default()?))
    }

    /// `partition_by`, parsed: source table (`schema.table`) → its partition expressions.
    pub fn partitioning(&self) -> Result<BTreeMap<String, Vec<PartitionExpr>>, InvalidSetting> {
        let mut parsed = BTreeMap::new();
        for (table, exprs) in &self.partition_by {
            let key = format!("iceberg.partition_by.{table}");
            let invalid = |message: String| InvalidSetting::new(&key, Problem::Invalid(message));
            if table.split('.').count() != 2 || table.split('.').any(str::is_empty) {
                return Err(invalid(format!(
                    "`{table}` is not a source table: write schema.table, e.g. public.orders"
                )));
            }
            if exprs.texts().is_empty() {
                return Err(InvalidSetting::new(&key, Problem::Empty));
            }
            let exprs = exprs
                .texts()
                .iter()
                .map(|text| PartitionExpr::parse(text))
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid)?;
            parsed.insert(table.clone(), exprs);
        }
        Ok(parsed)
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
            bad(&GOOD.replace("file:///var/lake", "gs://b/p")),
            "iceberg.warehouse"
        );
        assert_eq!(
            bad(&GOOD.replace("file:///var/lake", "s3:///p")),
            "iceberg.warehouse"
        );
        let s3 = GOOD.replace("file:///var/lake", "s3://lake/tables");
        assert!(parse(&s3).unwrap().validate().is_ok());
        let with = |settings: &str| s3.replace("namespace: shop", &format!("s3: {settings}"));
        assert!(
            parse(&with(
                "{endpoint: 'http://127.0.0.1:9000', region: r, access_key_id: a, \
                 secret_access_key: s, path_style: true}"
            ))
            .unwrap()
            .validate()
            .is_ok()
        );
        assert_eq!(
            bad(&with("{endpoint: '127.0.0.1:9000'}")),
            "iceberg.s3.endpoint"
        );
        assert_eq!(
            bad(&with("{endpoint: 'http://h:9/x'}")),
            "iceberg.s3.endpoint"
        );
        let DestinationConfig::Iceberg(endpoint) =
            parse(&with("{endpoint: 'https://[::1]'}")).unwrap()
        else {
            panic!("not iceberg")
        };
        assert_eq!(endpoint.s3_endpoint(), Some(("::1".to_owned(), 443)));
        assert_eq!(bad(&with("{access_key_id: a}")), "iceberg.s3");
        assert_eq!(
            bad(&GOOD.replace("namespace: shop", "s3: {region: r}")),
            "iceberg.s3"
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
        assert_eq!(
            bad(&GOOD.replace("namespace: shop", "partition_by: {orders: day(placed)}")),
            "iceberg.partition_by.orders"
        );
        assert_eq!(
            bad(&GOOD.replace(
                "namespace: shop",
                "partition_by: {public.orders: [id, 'week(placed)']}"
            )),
            "iceberg.partition_by.public.orders"
        );
        let unknown = parse(&GOOD.replace("namespace:", "namespaces:")).unwrap_err();
        assert!(unknown.contains("namespaces"), "{unknown}");
        assert!(parse("iceberg: {catalog: {rest: {uri: x}}, warehouse: 'file:///x'}").is_err());
    }

    #[test]
    fn partition_expressions_parse_and_print() {
        use super::{PartitionExpr, PartitionTransform as T};
        let parsed =
            |text: &str| PartitionExpr::parse(text).map(|e| (e.column.clone(), e.transform));
        assert_eq!(parsed("placed"), Ok(("placed".into(), T::Identity)));
        assert_eq!(parsed(" DAY( placed ) "), Ok(("placed".into(), T::Day)));
        assert_eq!(parsed("bucket(16, id)"), Ok(("id".into(), T::Bucket(16))));
        assert_eq!(
            parsed("truncate(4,name)"),
            Ok(("name".into(), T::Truncate(4)))
        );
        assert_eq!(
            parsed(r#"month("Placed ""At")"#),
            Ok((r#"Placed "At"#.into(), T::Month))
        );
        assert_eq!(parsed(r#""a(b)""#), Ok(("a(b)".into(), T::Identity)));
        for bad in [
            "week(placed)",
            "bucket(id)",
            "bucket(0, id)",
            "day(placed",
            "day()",
            "a,b",
        ] {
            assert!(parsed(bad).is_err(), "{bad} parsed");
        }
        let config = parse(&GOOD.replace(
            "namespace: shop",
            "partition_by: {public.orders: 'day(placed)', public.counted: ['bucket(4, id)', v]}",
        ))
        .unwrap();
        let DestinationConfig::Iceberg(config) = config else {
            panic!("not iceberg")
        };
        let parts = config.partitioning().unwrap();
        let unquoted = parse(&GOOD.replace(
            "namespace: shop",
            "partition_by: {public.counted: [bucket(4, id)]}",
        ))
        .unwrap();
        let DestinationConfig::Iceberg(unquoted) = unquoted else {
            panic!("not iceberg")
        };
        let error = unquoted.validate().unwrap_err().to_string();
        assert!(error.contains("quote an expression"), "{error}");
        let shown: Vec<String> = parts["public.counted"]
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(shown, ["bucket(4, id)", "v"]);
        assert_eq!(parts["public.orders"][0].transform, T::Day);
    }
}
