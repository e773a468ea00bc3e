//! How a failed command looks from outside: exit code 2 for usage and configuration errors, 1 for
//! runtime failures, and one readable line (plus its causes) on stderr.

use std::process::ExitCode;

use crate::config::ConfigError;

/// Exit code for a usage or configuration error.
pub const USAGE: u8 = 2;
/// Exit code for a failure at run time.
pub const FAILURE: u8 = 1;

/// Marks an error as the user's input being wrong (exit code 2) rather than a runtime failure.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UsageError(#[from] pub anyhow::Error);

impl From<ConfigError> for UsageError {
    fn from(error: ConfigError) -> Self {
        UsageError(error.into())
    }
}

/// The exit code for `error`: [`USAGE`] when any cause is a configuration or usage error.
pub fn code_for(error: &anyhow::Error) -> ExitCode {
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
