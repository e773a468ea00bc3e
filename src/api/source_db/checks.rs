//! `POST /v1/sources/validate`: the prerequisites of logical replication on a source, checked by
//! the engine's own [`preconditions`] (the same checks `etl replicate` makes at start-up), each
//! failure a [`Finding`] with a level, a code, what is wrong and how to fix it.

use sqlx::PgPool;

use crate::api::domain::source::{Finding, FindingLevel};
use crate::api::error::ApiError;
use crate::engine::preconditions::{self, Level};

/// Checks a reachable source; `publication`, when given, must exist and hold tables.
pub async fn run(pool: &PgPool, publication: Option<&str>) -> Result<Vec<Finding>, ApiError> {
    let report = preconditions::check(pool, publication)
        .await
        .map_err(|e| ApiError::Source(crate::api::source_db::chain(&e)))?;
    Ok(report
        .findings
        .into_iter()
        .map(|f| Finding {
            level: match f.level {
                Level::Critical => FindingLevel::Critical,
                Level::Warning => FindingLevel::Warning,
            },
            code: f.code.to_owned(),
            message: f.message,
            hint: f.hint,
        })
        .collect())
}

/// The finding for a source that cannot be reached at all.
pub fn unreachable(message: String) -> Finding {
    Finding {
        level: FindingLevel::Critical,
        code: "unreachable".into(),
        message,
        hint: "check host, port, database, user, password and TLS settings, and that the server \
               accepts connections from the replicator's network"
            .into(),
    }
}
