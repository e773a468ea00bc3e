//! What the operator commands acting on a pipeline's state (`etl pipeline reset`,
//! `etl tables resync`) share: reaching the source of the configured pipeline, and asking for
//! confirmation on a terminal (scripts pass `--yes`).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::config::{Config, PipelineConfig};
use crate::exit::UsageError;

/// The configured pipeline, a small pool to its source, and the source as messages name it.
pub struct PipelineSource {
    pub pipeline: PipelineConfig,
    pub pool: PgPool,
    pub description: String,
}

/// Reads `pipeline` from `config` and connects to its source.
pub async fn connect(config: &Config) -> anyhow::Result<PipelineSource> {
    let pipeline: PipelineConfig = config.section("pipeline")?;
    let connection = pipeline
        .pg_connection
        .resolve()
        .map_err(|e| config.invalid("pipeline.pg_connection", e.to_string()))?;
    let description = connection.describe();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(connection.sqlx_options())
        .await
        .with_context(|| format!("cannot connect to the source {description}"))?;
    Ok(PipelineSource {
        pipeline,
        pool,
        description,
    })
}

/// Asks `question` on the terminal. Without a terminal it is a usage error saying that
/// `action` was not done and `--yes` is needed; any answer but y/yes cancels `action`.
pub fn confirm(action: &str, question: &str) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(UsageError(anyhow!(
            "not {action}: stdin is not a terminal to confirm on; pass --yes"
        ))
        .into());
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(anyhow!("{action} cancelled: nothing was changed"))
    }
}
