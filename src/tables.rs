//! `etl tables resync --table schema.name [--yes]`: copies one table of a pipeline again,
//! online. It reads the same configuration as `etl replicate` and acts only through the
//! pipeline's `etl` state on the source ([`PgStateStore::resync_tables`]): the table goes back
//! to `init` (its history kept). A running replicator notices on its next refresh tick
//! (`pipeline.publication_refresh_secs`), stops applying the table, copies it under a fresh
//! snapshot and hands it back to streaming; a stopped one does the same when it starts. This
//! module resolves the name, asks for confirmation and reports.

use anyhow::anyhow;

use crate::base::schema::TableId;
use crate::config::Config;
use crate::engine::state::postgres::PgStateStore;
use crate::engine::state::{self, RollbackSelection};
use crate::exit::UsageError;
use crate::operator::{self, PipelineSource};

/// Runs `etl tables resync`; `yes` skips the question (required when stdin is no terminal).
pub async fn resync(config: Config, table: &str, yes: bool) -> anyhow::Result<()> {
    let PipelineSource {
        pipeline,
        pool,
        description: source,
    } = operator::connect(&config).await?;
    let id = pipeline.id;
    // Postgres parses the name: quoting, case folding and the search path work as in SQL.
    let oid: Option<i64> = sqlx::query_scalar("select to_regclass($1)::oid::int8")
        .bind(table)
        .fetch_one(&pool)
        .await
        .map_err(|e| UsageError(anyhow!("--table `{table}`: {e}")))?;
    let oid = oid
        .and_then(|oid| u32::try_from(oid).ok())
        .ok_or_else(|| UsageError(anyhow!("--table `{table}`: no such table on {source}")))?;
    if !yes {
        operator::confirm(
            &format!("resyncing {table}"),
            &format!("Copy {table} again? Its destination table is emptied first."),
        )?;
    }
    let store = PgStateStore::new(pool.clone(), id);
    let moved = store
        .resync_tables(RollbackSelection::Table(TableId(oid)))
        .await
        .map_err(|error| match error {
            state::Error::UnknownTable { .. } => anyhow!(
                "table {table} is not replicated by pipeline {id} on {source} (not in its state)"
            ),
            other => anyhow::Error::new(other).context(format!("cannot resync table {table}")),
        })?;
    pool.close().await;
    for rolled in moved {
        println!(
            "table {table} of pipeline {id}: {} -> {}; a running replicator copies it again \
             at its next refresh (pipeline.publication_refresh_secs), a stopped one when it starts",
            rolled.from, rolled.to
        );
    }
    Ok(())
}
