//! `etl pipeline reset [--yes]`: drops what a pipeline keeps on its source (replication slots,
//! table states, stored position, schemas, pipeline identity), read with the same configuration
//! as `etl replicate`, so that the next start copies every table again into whatever destination
//! it is given. The engine does the work ([`crate::engine::identity::footprint`] shows it,
//! [`crate::engine::cleanup`] drops it); this module asks for confirmation and reports.
//!
//! The destination is left alone: at the next start the engine finds its identity of the same
//! pipeline and source, records a new one and copies every table afresh (each copy empties its
//! table first).

use anyhow::{Context as _, anyhow};

use crate::config::Config;
use crate::engine::{cleanup, identity};
use crate::operator::{self, PipelineSource};

/// Runs `etl pipeline reset`; `yes` skips the question (required when stdin is no terminal).
pub async fn run(config: Config, yes: bool) -> anyhow::Result<()> {
    let PipelineSource {
        pipeline,
        pool,
        description: source,
    } = operator::connect(&config).await?;
    let id = pipeline.id;
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
        operator::confirm(
            &format!("resetting pipeline {id}"),
            "Drop these? The pipeline's destination will be copied into again from scratch.",
        )?;
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
