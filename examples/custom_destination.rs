//! A destination of your own, run by the engine: it counts the rows each table received and
//! prints every change. Run it against a source with a publication:
//!
//! ```sh
//! cargo run --example custom_destination -- postgres://postgres@127.0.0.1/shop my_pub
//! ```
//!
//! Ctrl-C stops it (flushing and acknowledging what was printed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use etl::base::event::{ChangeEvent, CopyChunk};
use etl::base::schema::{TableId, TableName, TableSchema};
use etl::config::PipelineConfig;
use etl::engine::destination::{Destination, Error, PipelineIdentity, Result};
use etl::engine::{self, RunOptions};

/// Counts copied rows per table and prints each change.
#[derive(Clone, Default)]
struct Printer {
    copied: Arc<Mutex<BTreeMap<TableName, u64>>>,
}

impl Destination for Printer {
    fn kind(&self) -> &'static str {
        "printer"
    }

    // It keeps nothing, so it cannot tell which pipeline's copy it holds: only its description
    // is compared with the one the pipeline's state records.
    fn describe(&self) -> String {
        "printer".into()
    }

    fn keeps_identity(&self) -> bool {
        false
    }

    async fn read_identity(&self) -> Result<Option<PipelineIdentity>> {
        Ok(None)
    }

    async fn write_identity(&self, _identity: &PipelineIdentity) -> Result<()> {
        Ok(())
    }

    async fn copied_tables(&self) -> Result<Option<BTreeSet<TableId>>> {
        Ok(None)
    }

    async fn prepare_table(&self, schema: &TableSchema) -> Result<()> {
        println!("table {} ({} columns)", schema.name, schema.columns.len());
        Ok(())
    }

    async fn begin_copy(&self, schema: &TableSchema) -> Result<()> {
        self.copied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(schema.name.clone(), 0);
        Ok(())
    }

    async fn write_copy_rows(&self, schema: &TableSchema, chunk: CopyChunk) -> Result<()> {
        // Rows arrive as COPY text; `rows` splits them into cells (a malformed chunk is an
        // error of this table only).
        let rows = chunk
            .rows(schema.columns.len())
            .map_err(|e| Error::table(schema, e.to_string()))?;
        *self
            .copied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(schema.name.clone())
            .or_default() += rows.len() as u64;
        Ok(())
    }

    async fn finish_copy(&self, schema: &TableSchema) -> Result<()> {
        let copied = self.copied.lock().unwrap_or_else(PoisonError::into_inner);
        println!(
            "copied {} rows of {}",
            copied.get(&schema.name).unwrap_or(&0),
            schema.name
        );
        Ok(())
    }

    async fn alter_table(&self, _old: &TableSchema, new: &TableSchema) -> Result<()> {
        println!("table {} now has {} columns", new.name, new.columns.len());
        Ok(())
    }

    async fn write_events(&self, events: Vec<ChangeEvent>) -> Result<()> {
        // `Ok` means durable: only then does the engine acknowledge these changes to Postgres.
        for event in events {
            println!(
                "{} {:?} {:?}",
                event.table.name,
                event.position(),
                event.change
            );
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(publication)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: custom_destination <source url> <publication>");
    };
    let config: PipelineConfig = serde_yaml::from_str(&format!(
        "id: 42\npublication_name: '{publication}'\npg_connection: {{url: '{url}'}}\nmetrics_address: null\n"
    ))?;
    let (trigger, shutdown) = etl::shutdown::channel();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        trigger.trigger();
    });
    let connection = config.source()?;
    engine::run(
        &config,
        &connection,
        Printer::default(),
        shutdown,
        RunOptions::default(),
    )
    .await?;
    Ok(())
}
