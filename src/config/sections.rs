//! The typed top-level sections of the configuration file.
//!
//! Each subcommand reads only the sections it needs: `database` (control plane and
//! `migrate api`), `pipeline` + `destination` (`replicate`, `migrate replicator`). Other
//! sections are added by the parts that own them; [`SECTION_NAMES`] is the list of
//! every known top-level key, anything else is rejected as a typo.

use serde::{Deserialize, Serialize};

use super::postgres::PgConnectionConfig;

/// Every top-level key the configuration accepts.
pub const SECTION_NAMES: &[&str] = &["database", "pipeline", "destination"];

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
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_size: default_batch_size(),
            max_fill_ms: default_fill_ms(),
        }
    }
}

/// Where the replicator writes. Exactly one kind is given, e.g. `destination: {memory: {}}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DestinationConfig {
    /// Keeps everything in memory and discards it at exit (tests, benchmarks).
    Memory {},
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
        Ok(())
    }
}
