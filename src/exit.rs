//! How a failed command looks from outside: exit code 2 for usage and configuration errors, 1 for
//! runtime failures, 3 when `etl verify` found drift, 4 when `etl replicate --once` ended with
//! errored tables, and one readable line (plus its causes) on stderr.

use std::process::ExitCode;

use crate::config::ConfigError;

/// Exit code for a usage or configuration error.
pub const USAGE: u8 = 2;
/// Exit code for a failure at run time.
pub const FAILURE: u8 = 1;

/// Exit code of `etl replicate --once` when it caught up but some tables ended `errored`.
pub const TABLES_ERRORED: u8 = 4;

/// Exit code of `etl verify` when a table's destination differs from its source.
pub const DRIFT_FOUND: u8 = 3;

/// `etl verify` found these tables (`name`) differing from the source.
#[derive(Debug, thiserror::Error)]
#[error("drift found in {} table(s): {}", .0.len(), .0.join(", "))]
pub struct DriftFound(pub Vec<String>);

/// `etl replicate --once` caught up, but these tables (`name: reason`) ended `errored`.
#[derive(Debug, thiserror::Error)]
#[error("caught up, but {} table(s) ended errored: {}", .0.len(), .0.join("; "))]
pub struct TablesErrored(pub Vec<String>);

/// Marks an error as the user's input being wrong (exit code 2) rather than a runtime failure.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UsageError(#[from] pub anyhow::Error);

impl From<ConfigError> for UsageError {
    fn from(error: ConfigError) -> Self {
        UsageError(error.into())
    }
}

/// The exit code for `error`: [`TABLES_ERRORED`] for [`TablesErrored`], [`USAGE`] when any
/// cause is a configuration or usage error, else [`FAILURE`].
pub fn code_for(error: &anyhow::Error) -> ExitCode {
    if error.chain().any(|cause| cause.is::<TablesErrored>()) {
        return ExitCode::from(TABLES_ERRORED);
    }
    if error.chain().any(|cause| cause.is::<DriftFound>()) {
        return ExitCode::from(DRIFT_FOUND);
    }
    let usage = error
        .chain()
        .any(|cause| cause.is::<ConfigError>() || cause.is::<UsageError>());
    ExitCode::from(if usage { USAGE } else { FAILURE })
}

/// `error: top-level message: cause: cause`, on one line.
pub fn render(error: &anyhow::Error) -> String {
    let error: &(dyn std::error::Error + 'static) = error.as_ref();
    format!("error: {}", crate::base::error_chain(error))
}

impl UsageError {
    /// Wraps any standard error as a usage error.
    pub fn from_std(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        UsageError(error.into())
    }
}
