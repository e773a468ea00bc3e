//! Pipelines: one publication of a source replicated into one destination by one replicator;
//! their settings (the replicator's batch and worker settings, reused from
//! [`crate::config::PipelineConfig`] and validated by it), status and replication state.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::api::lag::forecast::WalForecast;
use crate::config::{
    BatchConfig, PgConnectionConfig, PipelineConfig, ResourceSettings, TableErrorsConfig,
};
use crate::engine::state::StateName;

/// Settings of a pipeline's replicator.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    /// `{max_size, max_fill_ms}`: a batch is written at this many events or this age.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub batch: BatchConfig,
    #[serde(default = "default_table_sync_workers")]
    pub max_table_sync_workers: u16,
    #[serde(default = "default_copy_connections")]
    pub max_copy_connections_per_table: u16,
    /// `{max_attempts, retry_delay_secs}` (default 3, 60): an `errored` table is copied again
    /// after the delay, up to that many errors in a row (`pipeline.table_errors`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub table_errors: TableErrorsConfig,
    /// `kubernetes` runtime only: `{cpu_request, cpu_limit, memory_request, memory_limit}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub resources: Option<ResourceSettings>,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            batch: BatchConfig::default(),
            max_table_sync_workers: default_table_sync_workers(),
            max_copy_connections_per_table: default_copy_connections(),
            table_errors: TableErrorsConfig::default(),
            resources: None,
        }
    }
}

fn default_table_sync_workers() -> u16 {
    4
}

fn default_copy_connections() -> u16 {
    2
}

impl PipelineSettings {
    /// The replicator's `pipeline` section with these settings; every key the API does not set
    /// keeps the replicator's default.
    pub fn pipeline_config(
        &self,
        id: u64,
        publication_name: &str,
        pg_connection: PgConnectionConfig,
    ) -> PipelineConfig {
        PipelineConfig {
            batch: self.batch.clone(),
            max_table_sync_workers: self.max_table_sync_workers,
            max_copy_connections_per_table: self.max_copy_connections_per_table,
            table_errors: self.table_errors.clone(),
            ..PipelineConfig::new(id, publication_name.to_owned(), pg_connection)
        }
    }

    /// Checks the settings with the replicator's own rules; errors name the field.
    pub fn validate(&self, publication_name: &str) -> Result<(), String> {
        validate_publication_name(publication_name)?;
        self.pipeline_config(0, publication_name, PgConnectionConfig::default())
            .validate()
            .map_err(|error| {
                let error = error.within("config");
                format!("`{}` {}", error.key(), error.problem())
            })?;
        if let Some(resources) = &self.resources {
            resources
                .validate()
                .map_err(|error| error.within("config.resources").to_string())?;
        }
        Ok(())
    }
}

/// Publication names are Postgres identifiers (quoted wherever used).
pub fn validate_publication_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("`publication_name` must not be empty".into());
    }
    if name.len() > 63 {
        return Err("`publication_name` must be at most 63 bytes (a Postgres identifier)".into());
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("`publication_name` must not contain control characters".into());
    }
    Ok(())
}

/// What the user last asked for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    Stopped,
    Started,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Pipeline {
    pub id: i64,
    pub tenant_id: String,
    pub source_id: i64,
    pub destination_id: i64,
    pub replicator_id: i64,
    pub publication_name: String,
    pub config: PipelineSettings,
    pub desired_state: DesiredState,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePipeline {
    pub source_id: i64,
    pub destination_id: i64,
    pub publication_name: String,
    #[serde(default)]
    pub config: Option<PipelineSettings>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePipeline {
    #[serde(default)]
    pub publication_name: Option<String>,
    #[serde(default)]
    pub config: Option<PipelineSettings>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Pipelines {
    pub pipelines: Vec<Pipeline>,
}

/// A replicator's state as the runtime reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PipelineState {
    Stopped,
    Starting,
    Started,
    Stopping,
    Failed,
    Unknown,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct PipelineStatus {
    pub pipeline_id: i64,
    pub status: PipelineState,
    /// Why it failed, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A table's replication state (the engine's `StateName`, as the API shows it).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TableStateName {
    Init,
    DataSync,
    FinishedCopy,
    SyncDone,
    Ready,
    Errored,
}

impl From<StateName> for TableStateName {
    fn from(name: StateName) -> Self {
        match name {
            StateName::Init => TableStateName::Init,
            StateName::DataSync => TableStateName::DataSync,
            StateName::FinishedCopy => TableStateName::FinishedCopy,
            StateName::SyncDone => TableStateName::SyncDone,
            StateName::Ready => TableStateName::Ready,
            StateName::Errored => TableStateName::Errored,
        }
    }
}

/// One table's replication state, from the source's `etl.replication_state`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TableReplicationState {
    pub table_id: i64,
    /// `schema.name`, when the table still exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_name: Option<String>,
    pub state: TableStateName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_done_lsn: Option<String>,
    /// For `errored`: `{reason, hint, retry}` as the replicator wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// Errors in a row since the table was last `ready` (`pipeline.table_errors`).
    #[serde(default)]
    pub attempts: i32,
    /// The reason of the latest of those errors, kept while the table is copied again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When an `errored` table with retries left goes back to `init` (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
}

/// The pipeline's apply slot on the source.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SlotStatus {
    pub name: String,
    pub exists: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Bytes of WAL between the server's current position and what the pipeline confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// Bytes that can still be written before the slot is lost (`max_slot_wal_keep_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_wal_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_status: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReplicationStatus {
    pub pipeline_id: i64,
    pub tables: Vec<TableReplicationState>,
    pub slot: SlotStatus,
    /// The slot's WAL budget and when it runs out, from the slot now and the lag history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_forecast: Option<WalForecast>,
}

/// Which tables a rollback touches.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RollbackTables {
    /// One table, by oid.
    Table(i64),
    /// Every table in state `errored`.
    Errored,
    /// Every table of the pipeline.
    All,
}

/// Where a rollback takes a table.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RollbackTarget {
    /// The state before the current one.
    Previous,
    /// `init`: the table is copied again from scratch.
    Init,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// `{"table": 16384}`, `"errored"` or `"all"`.
    pub tables: RollbackTables,
    pub target: RollbackTarget,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RolledBackTable {
    pub table_id: i64,
    pub from: TableStateName,
    pub to: TableStateName,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RollbackResult {
    pub tables: Vec<RolledBackTable>,
}

/// What deleting a pipeline did on its source.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeletedPipeline {
    pub id: i64,
    /// Whether the pipeline's slots and `etl` rows were removed from the source.
    pub source_cleaned: bool,
    /// Why the source could not be cleaned (unreachable, …); clean up later by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_cleanup_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_error_retries_are_a_pipeline_setting_the_replicator_receives() {
        let settings: PipelineSettings = serde_json::from_value(serde_json::json!({
            "table_errors": {"max_attempts": 0, "retry_delay_secs": 5}
        }))
        .unwrap();
        let config = settings.pipeline_config(1, "pub", PgConnectionConfig::default());
        assert_eq!(config.table_errors.max_attempts, 0);
        assert_eq!(config.table_errors.retry_delay_secs, 5);
        let shown = serde_json::to_value(PipelineSettings::default()).unwrap();
        assert_eq!(
            shown["table_errors"],
            serde_json::json!({"max_attempts": 3, "retry_delay_secs": 60})
        );
        let unknown = serde_json::from_value::<PipelineSettings>(serde_json::json!({
            "table_errors": {"max_attempt": 1}
        }));
        assert!(unknown.unwrap_err().to_string().contains("max_attempt"));
    }
}
