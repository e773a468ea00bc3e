//! The typed top-level sections of the configuration file.
//!
//! Each subcommand reads only the sections it needs: `database` (control plane and
//! `migrate api`), `pipeline` + `destination` (`replicate`, `migrate replicator`), `kubernetes`
//! (`k8s bootstrap` and the control plane's `kubernetes` runtime). Other
//! sections are added by the parts that own them; [`SECTION_NAMES`] is the list of
//! every known top-level key, anything else is rejected as a typo.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::destination::{
    JsonlDestinationConfig, PostgresDestinationConfig, SqliteDestinationConfig,
};
use super::invalid::{InvalidSetting, Problem, at_least_one};
use super::nats::NatsDestinationConfig;
use super::postgres::{PgConnection, PgConnectionConfig};

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
    /// Isolates the slot names and state rows of this pipeline; at most [`MAX_PIPELINE_ID`].
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
    /// While a backlog streams, the apply worker is woken only once this many bytes are queued
    /// on its socket (an adaptive `SO_RCVLOWAT`, back to 1 byte as soon as the stream goes
    /// quiet); saves the sending walsender a wake-up per message. 0 turns it off.
    #[serde(default = "default_read_low_water_bytes")]
    pub read_low_water_bytes: usize,
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
    /// `auto`: on PostgreSQL 14 and later, ask for pgoutput protocol 2 with `streaming 'on'`,
    /// so a large transaction arrives while it runs (spilled locally until it commits);
    /// `off`: protocol 1, the server sends each transaction once it has committed.
    #[serde(default)]
    pub streaming: StreamingMode,
    /// Where and how much the changes of in-progress (streamed) transactions are spilled.
    #[serde(default)]
    pub spill: SpillConfig,
    /// Automatic retries of a table that ended `errored` (each one copies it again).
    #[serde(default)]
    pub table_errors: TableErrorsConfig,
    /// What start-up does with a table the state streams (`sync_done`, `ready`) but whose
    /// copy the destination no longer holds (dropped, truncated, file replaced): `recopy` it,
    /// or `refuse` to start with an error naming the tables.
    #[serde(default)]
    pub lost_copy: LostCopyBehavior,
    /// Create (or alter) the apply slot with `FAILOVER` (PostgreSQL 17+), so a standby with
    /// `sync_replication_slots = on` keeps a copy of it and the pipeline can continue on the
    /// standby after a failover. The preconditions check says what the source lacks for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failover_slot: bool,
}

/// What start-up does with a table whose copy the destination lost.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LostCopyBehavior {
    /// Copy the table again (its state goes back to `init`).
    #[default]
    Recopy,
    /// Stop with an error naming the tables; the operator decides (`etl tables resync`,
    /// `etl pipeline reset`).
    Refuse,
}

/// Whether in-progress transactions are streamed (pgoutput protocol 2).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StreamingMode {
    /// Protocol 2 with streaming on servers that have it (14+), protocol 1 on older ones.
    #[default]
    Auto,
    /// Always protocol 1.
    Off,
}

/// The local files holding the changes of streamed transactions until their commit.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SpillConfig {
    /// Directory of the spill files; `null`: `etl-spill/pipeline-<id>` in the system's
    /// temporary directory. Its files are deleted at start (the server sends unfinished
    /// transactions again).
    #[serde(default)]
    pub dir: Option<std::path::PathBuf>,
    /// Bytes all spill files may hold together. A streamed transaction that would go past it
    /// makes the apply worker reconnect with protocol 1 (the server then keeps the transaction
    /// until it commits and sends it whole): nothing is lost, and it stays on protocol 1 until
    /// the replicator restarts.
    #[serde(default = "default_spill_max_bytes")]
    pub max_bytes: u64,
}

impl Default for SpillConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_bytes: default_spill_max_bytes(),
        }
    }
}

/// `pipeline.table_errors`: an errored table is sent back to `init` (copied again) after
/// `retry_delay_secs`, up to `max_attempts` times in a row; then it stays `errored` for the
/// operator. `max_attempts: 0` turns automatic retries off. The count restarts when the table
/// becomes `ready` or an operator resyncs it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableErrorsConfig {
    #[serde(default = "default_table_error_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_table_error_delay_secs")]
    pub retry_delay_secs: u64,
}

impl Default for TableErrorsConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_table_error_attempts(),
            retry_delay_secs: default_table_error_delay_secs(),
        }
    }
}

impl SpillConfig {
    /// The spill directory of pipeline `id`.
    pub fn dir_for(&self, id: u64) -> std::path::PathBuf {
        match &self.dir {
            Some(dir) => dir.clone(),
            None => std::env::temp_dir()
                .join("etl-spill")
                .join(format!("pipeline-{id}")),
        }
    }
}

fn default_spill_max_bytes() -> u64 {
    10 * 1024 * 1024 * 1024
}

fn default_table_error_attempts() -> u32 {
    3
}

fn default_table_error_delay_secs() -> u64 {
    60
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
    /// With `etl replicate --once`: give up (exit 1) after this many failed attempts in a row
    /// to start or to stream, instead of retrying forever.
    #[serde(default = "default_retry_once_attempts")]
    pub once_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_ms: default_retry_initial_ms(),
            max_ms: default_retry_max_ms(),
            once_attempts: default_retry_once_attempts(),
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

/// Where the replicator writes. Exactly one kind is given, e.g. `destination: {memory: {}}`;
/// a section naming two kinds is an error naming both (serde's own enum support would read the
/// first and silently drop the other).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
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
    /// Change messages in a NATS JetStream stream (Debezium's format by default).
    Nats(NatsDestinationConfig),
    /// Change messages in Kafka topics, one per table, written in transactions.
    Kafka(Box<super::KafkaDestinationConfig>),
    /// Apache Iceberg tables in a SQL catalog and a warehouse directory.
    Iceberg(Box<super::IcebergDestinationConfig>),
}

/// The destination kinds as written in the configuration, in [`DestinationConfig`]'s order.
pub const DESTINATION_KINDS: &[&str] = &[
    "memory", "discard", "sqlite", "postgres", "jsonl", "nats", "kafka", "iceberg",
];

impl DestinationConfig {
    /// Checks what serde cannot; errors name the key below `destination` (`sqlite.path`).
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        match self {
            DestinationConfig::Memory {} | DestinationConfig::Discard {} => Ok(()),
            DestinationConfig::Sqlite(sqlite) => sqlite.validate(),
            DestinationConfig::Postgres(postgres) => postgres.validate().map(drop),
            DestinationConfig::Jsonl(jsonl) => jsonl.validate(),
            DestinationConfig::Nats(nats) => nats.validate(),
            DestinationConfig::Kafka(kafka) => kafka.validate(),
            DestinationConfig::Iceberg(iceberg) => iceberg.validate(),
        }
    }

    /// The kind's name, as written in the configuration.
    pub fn kind(&self) -> &'static str {
        match self {
            DestinationConfig::Memory {} => "memory",
            DestinationConfig::Discard {} => "discard",
            DestinationConfig::Sqlite(_) => "sqlite",
            DestinationConfig::Postgres(_) => "postgres",
            DestinationConfig::Jsonl(_) => "jsonl",
            DestinationConfig::Nats(_) => "nats",
            DestinationConfig::Kafka(_) => "kafka",
            DestinationConfig::Iceberg(_) => "iceberg",
        }
    }
}

impl<'de> Deserialize<'de> for DestinationConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OneKind)
    }
}

/// Reads `{kind: settings}` and refuses a second kind.
struct OneKind;

/// The settings of `memory` and `discard`: none.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

impl<'de> Visitor<'de> for OneKind {
    type Value = DestinationConfig;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "exactly one destination kind ({})",
            DESTINATION_KINDS.join(", ")
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some(kind) = map.next_key::<String>()? else {
            return Err(de::Error::invalid_length(0, &self));
        };
        let config = match kind.as_str() {
            "memory" => map
                .next_value::<NoSettings>()
                .map(|_| DestinationConfig::Memory {})?,
            "discard" => map
                .next_value::<NoSettings>()
                .map(|_| DestinationConfig::Discard {})?,
            "sqlite" => DestinationConfig::Sqlite(map.next_value()?),
            "postgres" => DestinationConfig::Postgres(map.next_value()?),
            "jsonl" => DestinationConfig::Jsonl(map.next_value()?),
            "nats" => DestinationConfig::Nats(map.next_value()?),
            "kafka" => DestinationConfig::Kafka(map.next_value()?),
            "iceberg" => DestinationConfig::Iceberg(map.next_value()?),
            other => return Err(de::Error::unknown_variant(other, DESTINATION_KINDS)),
        };
        if let Some(second) = map.next_key::<String>()? {
            return Err(de::Error::custom(format_args!(
                "two destination kinds given, `{kind}` and `{second}`: give exactly one \
                 (files and APP_ variables are merged, so a kind in base.yaml and another in \
                 {{env}}.yaml are two)"
            )));
        }
        Ok(config)
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

/// 256 KiB: on an idle machine the backlog drain ran 1.5× faster than with the mark off and
/// the live lag fell (README, Performance: the low-water curve).
fn default_read_low_water_bytes() -> usize {
    256 * 1024
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

fn default_retry_once_attempts() -> u32 {
    5
}

fn default_retry_max_ms() -> u64 {
    30_000
}

/// The largest `pipeline.id`: the `etl` state tables store it as a `bigint`.
pub const MAX_PIPELINE_ID: u64 = i64::MAX as u64;

impl PipelineConfig {
    /// A pipeline with every optional key at its default (what an absent key deserializes to).
    pub fn new(id: u64, publication_name: String, pg_connection: PgConnectionConfig) -> Self {
        Self {
            id,
            publication_name,
            pg_connection,
            batch: BatchConfig::default(),
            max_table_sync_workers: default_table_sync_workers(),
            max_copy_connections_per_table: default_copy_connections(),
            run_migrations: default_true(),
            status_update_interval_ms: default_status_update_interval_ms(),
            read_low_water_bytes: default_read_low_water_bytes(),
            publication_refresh_secs: default_publication_refresh_secs(),
            metrics_address: default_metrics_address(),
            invalidated_slot_behavior: InvalidatedSlotBehavior::default(),
            retry: RetryConfig::default(),
            streaming: StreamingMode::default(),
            spill: SpillConfig::default(),
            table_errors: TableErrorsConfig::default(),
            lost_copy: LostCopyBehavior::default(),
            failover_slot: false,
        }
    }

    /// Checks value ranges serde cannot express; errors name the key below `pipeline`. The
    /// source connection is checked by [`PipelineConfig::source`].
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.id > MAX_PIPELINE_ID {
            return Err(InvalidSetting::new(
                "id",
                Problem::TooLarge {
                    value: self.id,
                    max: MAX_PIPELINE_ID,
                    reason: "the state tables store it as a bigint",
                },
            ));
        }
        if self.publication_name.trim().is_empty() {
            return Err(InvalidSetting::new("publication_name", Problem::Empty));
        }
        at_least_one("batch.max_size", self.batch.max_size as u64)?;
        at_least_one("max_table_sync_workers", self.max_table_sync_workers.into())?;
        at_least_one(
            "max_copy_connections_per_table",
            self.max_copy_connections_per_table.into(),
        )?;
        at_least_one("batch.max_bytes", self.batch.max_bytes as u64)?;
        at_least_one("status_update_interval_ms", self.status_update_interval_ms)?;
        at_least_one("publication_refresh_secs", self.publication_refresh_secs)?;
        if self.retry.initial_ms == 0 || self.retry.max_ms < self.retry.initial_ms {
            return Err(InvalidSetting::new("retry", Problem::RetryBounds));
        }
        Ok(())
    }

    /// The source connection, resolved from `pg_connection`'s URL and fields.
    pub fn source(&self) -> Result<PgConnection, InvalidSetting> {
        self.pg_connection
            .resolve()
            .map_err(|e| InvalidSetting::new("pg_connection", e.into()))
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
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if !is_dns1123_label(&self.namespace) {
            return Err(InvalidSetting::new(
                "namespace",
                Problem::NotDns1123Label(self.namespace.clone()),
            ));
        }
        if self.termination_grace_period_seconds < 1 {
            return Err(InvalidSetting::new(
                "termination_grace_period_seconds",
                Problem::Zero,
            ));
        }
        if self.metrics_port == 0 {
            return Err(InvalidSetting::new("metrics_port", Problem::PortZero));
        }
        self.resources.validate().map_err(|e| e.within("resources"))
    }
}

impl ResourceSettings {
    /// Checks every value is a Kubernetes quantity; errors name the key.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        for (key, value) in [
            ("cpu_request", &self.cpu_request),
            ("cpu_limit", &self.cpu_limit),
            ("memory_request", &self.memory_request),
            ("memory_limit", &self.memory_limit),
        ] {
            if !is_quantity(value) {
                return Err(InvalidSetting::new(
                    key,
                    Problem::NotQuantity(value.clone()),
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
        assert_eq!(settings.validate().unwrap_err().key(), "namespace");
        settings.namespace = "etl".into();
        settings.resources.cpu_limit = "two".into();
        assert_eq!(
            settings.validate().unwrap_err().key(),
            "resources.cpu_limit"
        );
        settings.resources.cpu_limit = "2".into();
        settings.termination_grace_period_seconds = 0;
        assert_eq!(
            settings.validate().unwrap_err().key(),
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
