//! The deployment environment (`dev`, `staging`, `prod`) that picks `config/{env}.yaml` and the
//! defaults that differ between them (log format, development keys).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Where a process runs; selected by `--env`, else `APP_ENVIRONMENT`, else `prod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Dev,
    Staging,
    Prod,
}

impl Environment {
    pub const ALL: [Environment; 3] = [Environment::Dev, Environment::Staging, Environment::Prod];

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Staging => "staging",
            Environment::Prod => "prod",
        }
    }

    /// Picks the environment from the flag, else `APP_ENVIRONMENT`, else `prod`.
    pub fn select(flag: Option<&str>, variable: Option<&str>) -> Result<Self, UnknownEnvironment> {
        match flag.or(variable) {
            Some(name) => name.parse(),
            None => Ok(Environment::Prod),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An environment name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown environment `{0}`: expected one of dev, staging, prod")]
pub struct UnknownEnvironment(pub String);

impl FromStr for Environment {
    type Err = UnknownEnvironment;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dev" | "development" => Ok(Environment::Dev),
            "staging" => Ok(Environment::Staging),
            "prod" | "production" => Ok(Environment::Prod),
            _ => Err(UnknownEnvironment(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_variable_and_prod_is_the_default() {
        assert_eq!(
            Environment::select(Some("dev"), Some("staging")),
            Ok(Environment::Dev)
        );
        assert_eq!(
            Environment::select(None, Some("staging")),
            Ok(Environment::Staging)
        );
        assert_eq!(Environment::select(None, None), Ok(Environment::Prod));
    }

    #[test]
    fn unknown_environment_lists_the_choices() {
        let err = Environment::select(Some("qa"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown environment `qa`: expected one of dev, staging, prod"
        );
    }
}
