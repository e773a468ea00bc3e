//! What the sections' `validate()` checks return when a value is wrong in a way serde cannot
//! express: an [`InvalidSetting`] naming the key at fault (dotted, relative to the value that was
//! checked) and the [`Problem`] with it.
//!
//! The checks know nothing of files or variables; [`super::Config::checked`] puts the section's
//! name in front of the key and adds where the value came from, and the control plane renders the
//! same error under its own field names (`config.sqlite.path`).

use std::path::PathBuf;

use super::postgres::ConnectionConfigError;

/// A setting that fails a check; `Display` is "`key`: problem".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {problem}")]
pub struct InvalidSetting {
    key: String,
    problem: Problem,
}

/// What is wrong with a setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    #[error("must not be empty")]
    Empty,
    /// Empty where `null` means something: the hint says what.
    #[error("must not be empty (use null {0})")]
    EmptyUseNull(&'static str),
    #[error("must be at least 1")]
    Zero,
    #[error("must be between 1 and 65535")]
    PortZero,
    #[error("{} is a directory; give a file name", .0.display())]
    IsDirectory(PathBuf),
    #[error("unknown key: expected {0}")]
    UnknownKey(&'static str),
    #[error("{0}")]
    Connection(#[from] ConnectionConfigError),
    #[error("initial_ms must be at least 1 and max_ms at least initial_ms")]
    RetryBounds,
    /// A number the place it is stored in cannot hold (`pipeline.id` is a bigint in the state
    /// tables).
    #[error("{value} is too large: at most {max} ({reason})")]
    TooLarge {
        value: u64,
        max: u64,
        reason: &'static str,
    },
    #[error(
        "`{0}` is not a valid namespace name (lowercase letters, digits and `-`, starting and \
         ending with a letter or digit, at most 63 characters)"
    )]
    NotDns1123Label(String),
    #[error("`{0}` is not a Kubernetes quantity (e.g. `250m`, `1`, `512Mi`, `2Gi`)")]
    NotQuantity(String),
    /// Any other problem, said in full.
    #[error("{0}")]
    Invalid(String),
}

impl InvalidSetting {
    pub fn new(key: impl Into<String>, problem: Problem) -> Self {
        Self {
            key: key.into(),
            problem,
        }
    }

    /// The dotted key at fault, relative to the value that was checked (`sqlite.path`).
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// The same error seen from one level up: `path` becomes `{parent}.path`.
    pub fn within(self, parent: &str) -> Self {
        Self {
            key: format!("{parent}.{}", self.key),
            problem: self.problem,
        }
    }
}

/// A check of `value` that fails with [`Problem::Zero`] under `key`.
pub(crate) fn at_least_one(key: &str, value: u64) -> Result<(), InvalidSetting> {
    if value == 0 {
        return Err(InvalidSetting::new(key, Problem::Zero));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_setting_names_its_key_and_keeps_the_problem_when_nested() {
        let error =
            InvalidSetting::new("path", Problem::IsDirectory("/tmp".into())).within("sqlite");
        assert_eq!(error.key(), "sqlite.path");
        assert_eq!(error.problem(), &Problem::IsDirectory("/tmp".into()));
        assert_eq!(
            error.to_string(),
            "`sqlite.path`: /tmp is a directory; give a file name"
        );
    }
}
