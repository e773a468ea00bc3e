//! The typed top-level sections of the configuration file.
//!
//! Each subcommand reads only the sections it needs: `database` (control plane and
//! `migrate api`), `pipeline` + `destination` (`replicate`, `migrate replicator`), `kubernetes`
//! (`k8s bootstrap` and the control plane's `kubernetes` runtime). Other
//! sections are added by the parts that own them; [`SECTION_NAMES`] is the list of
//! every known top-level key, anything else is rejected as a typo.

use serde::{Deserialize, Serialize};

use super::destination::{
    JsonlDestinationConfig, PostgresDestinationConfig, SqliteDestinationConfig,
};
use super::postgres::PgConnectionConfig;

/// Every top-level key the configuration accepts.
pub const SECTION_NAMES: &[&str] = &[
    "database",
    "pipeline",
    "destination",
    "kubernetes",
    "api", // the control plane (`etl serve-api`): listen, keys, runtime; see config/api.rs
    "network_policy", // written by the control plane for its replicators; see netpolicy.rs
];

/// The control-plane database (schema `app`), used by `serve-api` and `migrate api`.
pub type DatabaseConfig = PgConnectionConfig;

/// The replicator's pipeline: source, publication, batching and workers.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Isolates the slot names and state rows of this pipeline.
    pub id: u64,
    /// The publication whose tables are replicated.
    pub publication_name: String,
    /// The source database (which also holds the `etl` state schema).
    pub pg_connection: PgConnectionConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    /// How many tables are copied at once.
    #[serde(default = "default_table_sync_workers")]
    pub max_table_sync_workers: u16,
    /// Parallel COPY connections (CTID ranges) for one large table.
    #[serde(default = "default_copy_connections")]
    pub max_copy_connections_per_table: u16,
    /// Whether `etl replicate` applies the `etl` schema migrations before starting.
    #[serde(default = "default_true")]
    pub run_migrations: bool,
    /// Milliseconds between standby status updates when nothing else triggers one (an update
    /// is also sent right after every durable write and whenever the server asks).
    #[serde(default = "default_status_update_interval_ms")]
    pub status_update_interval_ms: u64,
    /// Seconds between checks for tables added to or removed from the publication.
    #[serde(default = "default_publication_refresh_secs")]
    pub publication_refresh_secs: u64,
    /// Where Prometheus metrics are served (`host:port`); `null` turns the endpoint off.
    #[serde(default = "default_metrics_address")]
    pub metrics_address: Option<std::net::SocketAddr>,
    /// What to do when the apply slot was invalidated (`wal_status = lost`): `error` stops
    /// with a clear error, `recreate` drops it and copies every table again.
    #[serde(default)]
    pub invalidated_slot_behavior: InvalidatedSlotBehavior,
    /// Backoff of retries after transient failures (connection lost, source restarting,
    /// destination unavailable).
    #[serde(default)]
    pub retry: RetryConfig,
}

/// What `etl replicate` does when its apply slot has been invalidated.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InvalidatedSlotBehavior {
    /// Stop with an error saying how to recover.
    #[default]
    Error,
    /// Drop the slot, forget every table's state and copy everything again.
    Recreate,
}

/// Exponential backoff with jitter: the first retry waits about `initial_ms`, each next one
/// twice as long, never more than `max_ms`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_retry_initial_ms")]
    pub initial_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    pub max_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_ms: default_retry_initial_ms(),
            max_ms: default_retry_max_ms(),
        }
    }
}

/// When a batch of changes is written to the destination.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Rows (or change events) after which a batch is written.
    #[serde(default = "default_batch_size")]
    pub max_size: usize,
    /// Milliseconds after which a partial batch is written anyway.
    #[serde(default = "default_fill_ms")]
    pub max_fill_ms: u64,
    /// Approximate bytes of column values after which a batch is written, whatever its size
    /// in events (bounds memory for wide rows).
    #[serde(default = "default_batch_bytes")]
    pub max_bytes: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_size: default_batch_size(),
            max_fill_ms: default_fill_ms(),
            max_bytes: default_batch_bytes(),
        }
    }
}

/// Where the replicator writes. Exactly one kind is given, e.g. `destination: {memory: {}}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DestinationConfig {
    /// Keeps everything in memory and discards it at exit (tests, benchmarks).
    Memory {},
    /// Accepts and drops everything (measures the engine alone).
    Discard {},
    /// A local SQLite file mirroring every table (the embedded default).
    Sqlite(#[serde(default)] SqliteDestinationConfig),
    /// A mirror in another Postgres database.
    Postgres(PostgresDestinationConfig),
    /// Change events as JSON lines, to stdout or a rotated file.
    Jsonl(#[serde(default)] JsonlDestinationConfig),
}

impl DestinationConfig {
    /// Checks what serde cannot; errors name the key below `destination` (`sqlite.path`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        match self {
            DestinationConfig::Memory {} | DestinationConfig::Discard {} => Ok(()),
            DestinationConfig::Sqlite(sqlite) => sqlite.validate(),
            DestinationConfig::Postgres(postgres) => postgres.validate(),
            DestinationConfig::Jsonl(jsonl) => jsonl.validate(),
        }
    }
}

fn default_table_sync_workers() -> u16 {
    4
}

fn default_copy_connections() -> u16 {
    2
}

fn default_true() -> bool {
    true
}

fn default_batch_size() -> usize {
    10_000
}

fn default_fill_ms() -> u64 {
    1_000
}

fn default_batch_bytes() -> usize {
    32 * 1024 * 1024
}

fn default_status_update_interval_ms() -> u64 {
    10_000
}

fn default_publication_refresh_secs() -> u64 {
    10
}

fn default_metrics_address() -> Option<std::net::SocketAddr> {
    Some(std::net::SocketAddr::from(([0, 0, 0, 0], 9000)))
}

fn default_retry_initial_ms() -> u64 {
    500
}

fn default_retry_max_ms() -> u64 {
    30_000
}

impl PipelineConfig {
    /// Checks value ranges serde cannot express; errors name the key below `pipeline`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.publication_name.trim().is_empty() {
            return Err(("publication_name", "must not be empty".into()));
        }
        if self.batch.max_size == 0 {
            return Err(("batch.max_size", "must be at least 1".into()));
        }
        if self.max_table_sync_workers == 0 {
            return Err(("max_table_sync_workers", "must be at least 1".into()));
        }
        if self.max_copy_connections_per_table == 0 {
            return Err((
                "max_copy_connections_per_table",
                "must be at least 1".into(),
            ));
        }
        if self.batch.max_bytes == 0 {
            return Err(("batch.max_bytes", "must be at least 1".into()));
        }
        if self.status_update_interval_ms == 0 {
            return Err(("status_update_interval_ms", "must be at least 1".into()));
        }
        if self.publication_refresh_secs == 0 {
            return Err(("publication_refresh_secs", "must be at least 1".into()));
        }
        if self.retry.initial_ms == 0 || self.retry.max_ms < self.retry.initial_ms {
            return Err((
                "retry",
                "initial_ms must be at least 1 and max_ms at least initial_ms".into(),
            ));
        }
        Ok(())
    }
}

/// The Kubernetes data plane: where replicators run and what each gets (`etl k8s bootstrap`,
/// the control plane's `kubernetes` runtime). Every key has a default.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Namespace holding the service account, the trusted root certs and every replicator.
    #[serde(default = "default_k8s_namespace")]
    pub namespace: String,
    /// PEM bundle of trusted root certificates that `etl k8s bootstrap` puts into the
    /// `trusted-root-certs-config` ConfigMap (overridden by `--ca-file`).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// CPU and memory of a replicator container, unless its pipeline overrides them.
    #[serde(default)]
    pub resources: ResourceSettings,
    /// Seconds a replicator gets after SIGTERM to flush and acknowledge before it is killed.
    #[serde(default = "default_grace_period")]
    pub termination_grace_period_seconds: i64,
    /// Container port of the replicator's Prometheus metrics.
    #[serde(default = "default_metrics_port")]
    pub metrics_port: u16,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            namespace: default_k8s_namespace(),
            ca_file: None,
            resources: ResourceSettings::default(),
            termination_grace_period_seconds: default_grace_period(),
            metrics_port: default_metrics_port(),
        }
    }
}

/// CPU and memory requests and limits of a container, as Kubernetes quantities
/// (`250m`, `1`, `512Mi`, `2Gi`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResourceSettings {
    #[serde(default = "default_cpu_request")]
    pub cpu_request: String,
    #[serde(default = "default_cpu_limit")]
    pub cpu_limit: String,
    #[serde(default = "default_memory_request")]
    pub memory_request: String,
    #[serde(default = "default_memory_limit")]
    pub memory_limit: String,
}

impl Default for ResourceSettings {
    fn default() -> Self {
        Self {
            cpu_request: default_cpu_request(),
            cpu_limit: default_cpu_limit(),
            memory_request: default_memory_request(),
            memory_limit: default_memory_limit(),
        }
    }
}

fn default_k8s_namespace() -> String {
    "etl-data-plane".to_owned()
}

fn default_grace_period() -> i64 {
    300
}

fn default_metrics_port() -> u16 {
    9000
}

fn default_cpu_request() -> String {
    "250m".to_owned()
}

fn default_cpu_limit() -> String {
    "1".to_owned()
}

fn default_memory_request() -> String {
    "256Mi".to_owned()
}

fn default_memory_limit() -> String {
    "1Gi".to_owned()
}

impl KubernetesConfig {
    /// Checks what serde cannot; errors name the key below `kubernetes`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !is_dns1123_label(&self.namespace) {
            return Err((
                "namespace".into(),
                format!(
                    "`{}` is not a valid namespace name (lowercase letters, digits and `-`, \
                     starting and ending with a letter or digit, at most 63 characters)",
                    self.namespace
                ),
            ));
        }
        if self.termination_grace_period_seconds < 1 {
            return Err((
                "termination_grace_period_seconds".into(),
                "must be at least 1".into(),
            ));
        }
        if self.metrics_port == 0 {
            return Err(("metrics_port".into(), "must be between 1 and 65535".into()));
        }
        self.resources
            .validate()
            .map_err(|(key, message)| (format!("resources.{key}"), message))
    }
}

impl ResourceSettings {
    /// Checks every value is a Kubernetes quantity; errors name the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, value) in [
            ("cpu_request", &self.cpu_request),
            ("cpu_limit", &self.cpu_limit),
            ("memory_request", &self.memory_request),
            ("memory_limit", &self.memory_limit),
        ] {
            if !is_quantity(value) {
                return Err((
                    key,
                    format!(
                        "`{value}` is not a Kubernetes quantity (e.g. `250m`, `1`, `512Mi`, `2Gi`)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A DNS-1123 label: 1 to 63 lowercase letters, digits or `-`, starting and ending alphanumeric.
pub fn is_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A Kubernetes resource quantity: a non-negative decimal number followed by an optional
/// binary (`Ki`…`Ei`), decimal (`n`, `u`, `m`, `k`, `M`…`E`) or exponent (`e3`) suffix.
pub fn is_quantity(value: &str) -> bool {
    let value = value.strip_prefix('+').unwrap_or(value);
    let number_end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(number_end);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let dots = number.chars().filter(|c| *c == '.').count();
    if digits == 0 || dots > 1 {
        return false;
    }
    const SUFFIXES: &[&str] = &[
        "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E",
    ];
    if SUFFIXES.contains(&suffix) {
        return true;
    }
    let Some(exponent) = suffix.strip_prefix(['e', 'E']) else {
        return false;
    };
    let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    !exponent.is_empty() && exponent.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod kubernetes_tests {
    use super::*;

    #[test]
    fn kubernetes_quantities_are_recognised() {
        for ok in [
            "1", "250m", "0.5", "1.5Gi", "512Mi", "2G", "1e3", "100k", "+1",
        ] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "m", "1.2.3", "lots", "1GB", "-1", "1e", "Gi1", " 1"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn kubernetes_settings_are_validated_with_the_key_at_fault() {
        assert_eq!(KubernetesConfig::default().validate(), Ok(()));
        let mut settings = KubernetesConfig {
            namespace: "Data_Plane".into(),
            ..KubernetesConfig::default()
        };
        assert_eq!(settings.validate().unwrap_err().0, "namespace");
        settings.namespace = "etl".into();
        settings.resources.cpu_limit = "two".into();
        assert_eq!(settings.validate().unwrap_err().0, "resources.cpu_limit");
        settings.resources.cpu_limit = "2".into();
        settings.termination_grace_period_seconds = 0;
        assert_eq!(
            settings.validate().unwrap_err().0,
            "termination_grace_period_seconds"
        );
    }

    #[test]
    fn a_partial_kubernetes_section_keeps_the_other_defaults() {
        let settings: KubernetesConfig =
            serde_yaml::from_str("namespace: etl-test\nresources: {memory_limit: 2Gi}\n").unwrap();
        assert_eq!(settings.namespace, "etl-test");
        assert_eq!(settings.resources.memory_limit, "2Gi");
        assert_eq!(settings.resources.cpu_request, "250m");
        assert_eq!(settings.termination_grace_period_seconds, 300);
        assert!(serde_yaml::from_str::<KubernetesConfig>("namespce: x\n").is_err());
    }
}
