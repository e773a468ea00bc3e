//! `etl pipeline reset [--yes]`: drops what a pipeline keeps on its source (replication slots,
//! table states, stored position, schemas, pipeline identity), read with the same configuration
//! as `etl replicate`, so that the next start copies every table again into whatever destination
//! it is given. The engine does the work ([`crate::engine::identity::footprint`] shows it,
//! [`crate::engine::cleanup`] drops it); this module asks for confirmation and reports.
//!
//! The destination is left alone: at the next start the engine finds its identity of the same
//! pipeline and source, records a new one and copies every table afresh (each copy empties its
//! table first).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use sqlx::postgres::PgPoolOptions;

use crate::config::{Config, PipelineConfig};
use crate::engine::{cleanup, identity};
use crate::exit::UsageError;

/// Runs `etl pipeline reset`; `yes` skips the question (required when stdin is no terminal).
pub async fn run(config: Config, yes: bool) -> anyhow::Result<()> {
    let pipeline: PipelineConfig = config.section("pipeline")?;
    let id = pipeline.id;
    let connection = pipeline
        .pg_connection
        .resolve()
        .map_err(|e| config.invalid("pipeline.pg_connection", e.to_string()))?;
    let source = connection.describe();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(connection.sqlx_options())
        .await
        .with_context(|| format!("cannot connect to the source {source}"))?;
    let found = identity::footprint(&pool, id)
        .await
        .with_context(|| format!("cannot read the state of pipeline {id} on {source}"))?;
    if found.is_empty() {
        println!("pipeline {id} has no state on {source}: nothing to reset");
        return Ok(());
    }
    if let Some((slot, pid)) = found.active_slot() {
        return Err(anyhow!(
            "pipeline {id} is running: its slot `{slot}` streams to process {pid} on {source}; \
             stop that replicator first, then reset"
        ));
    }
    println!("pipeline {id} on {source}: {found}");
    if !yes {
        confirm(id)?;
    }
    cleanup::delete_pipeline_state(&pool, id)
        .await
        .with_context(|| format!("cannot reset pipeline {id} on {source}"))?;
    println!(
        "pipeline {id} reset: its slots and state are gone; the next `etl replicate` copies \
         every table again"
    );
    Ok(())
}

/// Asks on the terminal; refuses without one (scripts pass `--yes`).
fn confirm(id: u64) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(UsageError(anyhow!(
            "not resetting pipeline {id}: stdin is not a terminal to confirm on; pass --yes"
        ))
        .into());
    }
    eprint!(
        "Drop these? The pipeline's destination will be copied into again from scratch. [y/N] "
    );
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(anyhow!(
            "reset of pipeline {id} cancelled: nothing was changed"
        ))
    }
}
