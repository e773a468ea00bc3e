//! `etl tables resync --table schema.name [--yes]`: copies one table of a pipeline again,
//! online. It reads the same configuration as `etl replicate` and acts only through the
//! pipeline's `etl` state on the source ([`PgStateStore::resync_tables`]): the table goes back
//! to `init` (its history kept). A running replicator notices on its next refresh tick
//! (`pipeline.publication_refresh_secs`), stops applying the table, copies it under a fresh
//! snapshot and hands it back to streaming; a stopped one does the same when it starts. This
//! module resolves the name, asks for confirmation and reports.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use sqlx::postgres::PgPoolOptions;

use crate::base::schema::TableId;
use crate::config::{Config, PipelineConfig};
use crate::engine::state::postgres::PgStateStore;
use crate::engine::state::{self, RollbackSelection};
use crate::exit::UsageError;

/// Runs `etl tables resync`; `yes` skips the question (required when stdin is no terminal).
pub async fn resync(config: Config, table: &str, yes: bool) -> anyhow::Result<()> {
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
        confirm(table)?;
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

/// Asks on the terminal; refuses without one (scripts pass `--yes`).
fn confirm(table: &str) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(UsageError(anyhow!(
            "not resyncing {table}: stdin is not a terminal to confirm on; pass --yes"
        ))
        .into());
    }
    eprint!("Copy {table} again? Its destination table is emptied first. [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(anyhow!("resync of {table} cancelled: nothing was changed"))
    }
}
