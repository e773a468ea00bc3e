//! [`AnyDestination`]: the destination chosen by the configuration, dispatching the
//! [`Destination`] trait to the configured kind. Adding a kind means one variant, one arm in
//! [`AnyDestination::from_config`] and one arm per method in the `dispatch!` macro's list.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::discard::DiscardDestination;
use super::iceberg::IcebergDestination;
use super::jsonl::JsonlDestination;
use super::kafka::KafkaDestination;
use super::memory::MemoryDestination;
use super::nats::NatsDestination;
use super::postgres::PostgresDestination;
use super::sqlite::SqliteDestination;
use crate::base::event::{ChangeEvent, CopyChunk};
use crate::base::schema::{TableId, TableSchema};
use crate::config::DestinationConfig;
use crate::engine::destination::{Destination, PipelineIdentity, Result};

/// One of the configured destinations. Cheap to clone (each kind is shared).
#[derive(Debug, Clone)]
pub enum AnyDestination {
    Memory(Arc<MemoryDestination>),
    Discard(Arc<DiscardDestination>),
    Sqlite(Arc<SqliteDestination>),
    Postgres(Arc<PostgresDestination>),
    Jsonl(Arc<JsonlDestination>),
    Nats(Arc<NatsDestination>),
    Kafka(Arc<KafkaDestination>),
    Iceberg(Arc<IcebergDestination>),
}

/// Why a destination could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("destination.{kind}: {message}")]
pub struct BuildError {
    pub kind: &'static str,
    pub message: String,
}

impl BuildError {
    /// `error` with its causes, as one line.
    fn new(kind: &'static str, error: crate::engine::destination::Error) -> Self {
        BuildError {
            kind,
            message: crate::base::error_chain(&error),
        }
    }
}

impl AnyDestination {
    /// Builds (opens, connects) the destination described by `config`.
    pub async fn from_config(config: &DestinationConfig) -> std::result::Result<Self, BuildError> {
        Ok(match config {
            DestinationConfig::Memory {} => {
                AnyDestination::Memory(Arc::new(MemoryDestination::new()))
            }
            DestinationConfig::Discard {} => {
                AnyDestination::Discard(Arc::new(DiscardDestination::new()))
            }
            DestinationConfig::Sqlite(sqlite) => {
                let destination = SqliteDestination::open(&sqlite.path)
                    .map_err(|e| BuildError::new("sqlite", e))?;
                AnyDestination::Sqlite(Arc::new(destination))
            }
            DestinationConfig::Postgres(postgres) => {
                let destination =
                    PostgresDestination::connect(&postgres.connection, postgres.schema.clone())
                        .await
                        .map_err(|e| BuildError::new("postgres", e))?;
                AnyDestination::Postgres(Arc::new(destination))
            }
            DestinationConfig::Jsonl(jsonl) => {
                let destination = match &jsonl.path {
                    Some(path) => JsonlDestination::file(path, jsonl.max_file_bytes)
                        .map_err(|e| BuildError::new("jsonl", e))?,
                    None => JsonlDestination::stdout(),
                };
                AnyDestination::Jsonl(Arc::new(destination))
            }
            DestinationConfig::Nats(nats) => {
                let database = nats.database.clone().unwrap_or_default();
                let destination = NatsDestination::connect(nats, &database)
                    .await
                    .map_err(|e| BuildError::new("nats", e))?;
                AnyDestination::Nats(Arc::new(destination))
            }
            DestinationConfig::Kafka(kafka) => {
                let database = kafka.database.clone().unwrap_or_default();
                AnyDestination::Kafka(Arc::new(KafkaDestination::new(kafka, &database)))
            }
            DestinationConfig::Iceberg(iceberg) => {
                let destination = IcebergDestination::open(iceberg)
                    .await
                    .map_err(|e| BuildError::new("iceberg", e))?;
                AnyDestination::Iceberg(Arc::new(destination))
            }
        })
    }
}

/// What [`Destination::describe`] will say of the destination `config` describes, computed
/// without opening it (the control plane compares it with a pipeline's stored identity).
pub fn describe_config(config: &DestinationConfig) -> std::result::Result<String, BuildError> {
    Ok(match config {
        DestinationConfig::Memory {} => super::memory::DESCRIPTION.to_owned(),
        DestinationConfig::Discard {} => super::discard::DESCRIPTION.to_owned(),
        DestinationConfig::Sqlite(sqlite) => super::sqlite::describe(&sqlite.path),
        DestinationConfig::Postgres(postgres) => {
            let connection = postgres.connection.resolve().map_err(|e| BuildError {
                kind: "postgres",
                message: e.to_string(),
            })?;
            super::postgres::describe(&connection, postgres.schema.as_deref())
        }
        DestinationConfig::Jsonl(jsonl) => super::jsonl::describe(jsonl.path.as_deref()),
        DestinationConfig::Nats(nats) => super::nats::describe(nats),
        DestinationConfig::Kafka(kafka) => super::kafka::describe(kafka),
        DestinationConfig::Iceberg(iceberg) => super::iceberg::describe(iceberg),
    })
}

/// Calls `$call` on whichever destination `$self` holds.
macro_rules! dispatch {
    ($self:ident, $d:ident => $call:expr) => {
        match $self {
            AnyDestination::Memory($d) => $call,
            AnyDestination::Discard($d) => $call,
            AnyDestination::Sqlite($d) => $call,
            AnyDestination::Postgres($d) => $call,
            AnyDestination::Jsonl($d) => $call,
            AnyDestination::Nats($d) => $call,
            AnyDestination::Kafka($d) => $call,
            AnyDestination::Iceberg($d) => $call,
        }
    };
}

impl Destination for AnyDestination {
    fn kind(&self) -> &'static str {
        dispatch!(self, d => d.kind())
    }

    fn describe(&self) -> String {
        dispatch!(self, d => d.describe())
    }

    fn keeps_identity(&self) -> bool {
        dispatch!(self, d => d.keeps_identity())
    }

    async fn read_identity(&self) -> Result<Option<PipelineIdentity>> {
        dispatch!(self, d => d.read_identity().await)
    }

    async fn write_identity(&self, identity: &PipelineIdentity) -> Result<()> {
        dispatch!(self, d => d.write_identity(identity).await)
    }

    async fn copied_tables(&self) -> Result<Option<BTreeSet<TableId>>> {
        dispatch!(self, d => d.copied_tables().await)
    }

    async fn prepare_table(&self, schema: &TableSchema) -> Result<()> {
        dispatch!(self, d => d.prepare_table(schema).await)
    }

    async fn begin_copy(&self, schema: &TableSchema) -> Result<()> {
        dispatch!(self, d => d.begin_copy(schema).await)
    }

    async fn write_copy_rows(&self, schema: &TableSchema, chunk: CopyChunk) -> Result<()> {
        dispatch!(self, d => d.write_copy_rows(schema, chunk).await)
    }

    async fn finish_copy(&self, schema: &TableSchema) -> Result<()> {
        dispatch!(self, d => d.finish_copy(schema).await)
    }

    async fn alter_table(&self, old: &TableSchema, new: &TableSchema) -> Result<()> {
        dispatch!(self, d => d.alter_table(old, new).await)
    }

    async fn write_events(&self, events: Vec<ChangeEvent>) -> Result<()> {
        dispatch!(self, d => d.write_events(events).await)
    }
}
