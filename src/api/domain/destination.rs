//! Destinations: where a pipeline writes. The config is the replicator's own `destination:`
//! section (one kind, e.g. `{"sqlite": {"path": "/data/shop.db"}}`), validated by deserializing
//! it into [`DestinationConfig`], so the API accepts exactly the kinds and fields the replicator
//! supports. Secret fields (`password`, `url`, `*key*`, `*token*`, `*secret*`) are sealed at rest.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::source::{Finding, FindingLevel};
use crate::config::DestinationConfig;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Destination {
    pub id: i64,
    pub tenant_id: String,
    pub name: String,
    /// The destination config with each secret replaced by `{name}_set: true`.
    #[schema(value_type = Object)]
    pub config: Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDestination {
    pub name: String,
    /// Exactly one kind, e.g. `{"memory": {}}` or `{"sqlite": {"path": "/data/x.db"}}`.
    #[schema(value_type = Object)]
    pub config: Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDestination {
    #[serde(default)]
    pub name: Option<String>,
    /// Secrets left out keep their stored value.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateDestination {
    #[schema(value_type = Object)]
    pub config: Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Destinations {
    pub destinations: Vec<Destination>,
}

/// Checks a plain destination config against the replicator's destination kinds.
pub fn validate_config(config: &Value) -> Result<DestinationConfig, String> {
    if !config.is_object() {
        return Err("`config` must be an object with exactly one destination kind".into());
    }
    let parsed = serde_json::from_value::<DestinationConfig>(config.clone())
        .map_err(|e| format!("`config`: {e}"))?;
    parsed
        .validate()
        .map_err(|error| error.within("config").to_string())?;
    Ok(parsed)
}

/// Checks that can be made without writing anything: the config's shape, and for file-based
/// kinds that the path can be a file and is absolute (the replicator creates missing folders).
pub fn findings(config: &Value) -> Vec<Finding> {
    if let Err(message) = validate_config(config) {
        return vec![Finding {
            level: FindingLevel::Critical,
            code: "invalid_config".into(),
            message,
            hint: "give exactly one destination kind with its fields, e.g. {\"memory\": {}}".into(),
        }];
    }
    let mut out = Vec::new();
    if let Some(kind) = config.as_object().and_then(|m| m.values().next())
        && let Some(path) = kind.get("path").and_then(Value::as_str)
    {
        let parent = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if parent.exists() && !parent.is_dir() {
            out.push(Finding {
                level: FindingLevel::Critical,
                code: "not_a_directory".into(),
                message: format!("{} is not a directory", parent.display()),
                hint: "choose a path inside a directory".into(),
            });
        } else if Path::new(path).is_relative() {
            out.push(Finding {
                level: FindingLevel::Warning,
                code: "relative_path".into(),
                message: format!("`{path}` is relative to the replicator's working directory"),
                hint: "use an absolute path".into(),
            });
        }
    }
    out
}
