//! The `APP_` environment-variable layer of the configuration.
//!
//! `APP_PIPELINE__PG_CONNECTION__PORT=5432` sets `pipeline.pg_connection.port`: the prefix is
//! dropped, `__` separates levels and names are lower-cased. Values are parsed like figment's own
//! `Env` provider (numbers, booleans, `[a, b]` arrays), except for secrets (`password`, `url`,
//! `*key*`, `*token*`, `*secret*`), which are kept as the exact text given: figment would read
//! `APP_…__PASSWORD=007` as the number 7 and lose the leading zeros.
//!
//! We implement the provider ourselves instead of using `figment::providers::Env` for that reason,
//! and so that errors can name the exact variable that set a key.

use std::str::FromStr;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

/// Variables that select how configuration is loaded rather than what it contains.
const CONTROL_VARIABLES: [&str; 2] = ["APP_ENVIRONMENT", "APP_CONFIG_DIR"];

const PREFIX: &str = "APP_";

/// The `APP_` variables of a process (or a given list, for tests).
#[derive(Debug, Clone)]
pub struct AppEnv {
    vars: Vec<(String, String)>,
}

impl AppEnv {
    /// Reads the current process environment.
    pub fn from_process() -> Self {
        Self::from_vars(std::env::vars())
    }

    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut vars: Vec<_> = vars
            .into_iter()
            .filter(|(name, _)| {
                name.starts_with(PREFIX)
                    && name.len() > PREFIX.len()
                    && !CONTROL_VARIABLES.contains(&name.as_str())
            })
            .collect();
        vars.sort();
        Self { vars }
    }

    /// The variable name that sets `path` (`["pipeline", "id"]` → `APP_PIPELINE__ID`).
    pub fn variable_name(path: &[&str]) -> String {
        format!("{PREFIX}{}", path.join("__").to_uppercase())
    }
}

/// Whether the leaf key names a secret, whose text must be kept verbatim.
pub fn is_secret_key(key: &str) -> bool {
    key == "url"
        || ["password", "key", "token", "secret"]
            .iter()
            .any(|word| key.contains(word))
}

fn parse_value(leaf: &str, raw: &str) -> Value {
    let trimmed = raw.trim_start();
    if is_secret_key(leaf) && !trimmed.starts_with('[') && !trimmed.starts_with('{') {
        return Value::from(raw.to_owned());
    }
    Value::from_str(raw).unwrap_or_else(|_| Value::from(raw.to_owned()))
}

impl Provider for AppEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
            .interpolater(|_profile, keys| AppEnv::variable_name(keys))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (name, raw) in &self.vars {
            let path: Vec<String> = name[PREFIX.len()..]
                .split("__")
                .map(str::to_lowercase)
                .collect();
            if path.iter().any(String::is_empty) {
                return Err(figment::Error::from(format!(
                    "environment variable {name} has an empty key segment (check the `__` separators)"
                )));
            }
            insert(
                &mut root,
                &path,
                parse_value(&path[path.len() - 1], raw),
                name,
            )?;
        }
        Ok(Profile::Default.collect(root))
    }
}

fn insert(dict: &mut Dict, path: &[String], value: Value, name: &str) -> Result<(), String> {
    let Some((head, rest)) = path.split_first() else {
        return Ok(());
    };
    if rest.is_empty() {
        dict.insert(head.clone(), value);
        return Ok(());
    }
    let child = dict
        .entry(head.clone())
        .or_insert_with(|| Value::from(Dict::new()));
    match child {
        Value::Dict(_, inner) => insert(inner, rest, value, name),
        _ => Err(format!(
            "environment variable {name} nests under `{head}`, which another variable sets to a plain value"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(vars: &[(&str, &str)]) -> Dict {
        let env = AppEnv::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env.data().unwrap().remove(&Profile::Default).unwrap()
    }

    #[test]
    fn double_underscore_nests_and_names_are_lowercased() {
        let dict = data(&[("APP_PIPELINE__PG_CONNECTION__PORT", "5433")]);
        let port = dict["pipeline"].find_ref("pg_connection.port").unwrap();
        assert_eq!(port.to_u128(), Some(5433));
    }

    #[test]
    fn numeric_passwords_keep_their_exact_text() {
        let dict = data(&[("APP_PIPELINE__PG_CONNECTION__PASSWORD", "007")]);
        let password = dict["pipeline"].find_ref("pg_connection.password").unwrap();
        assert_eq!(password.as_str(), Some("007"));
    }

    #[test]
    fn control_variables_are_not_config_keys() {
        let dict = data(&[("APP_ENVIRONMENT", "dev"), ("APP_CONFIG_DIR", "/x")]);
        assert!(dict.is_empty());
    }
}
