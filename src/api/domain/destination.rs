//! Destinations: where a pipeline writes. The config is the replicator's own `destination:`
//! section (one kind, e.g. `{"sqlite": {"path": "/data/shop.db"}}`), validated by deserializing
//! it into [`DestinationConfig`], so the API accepts exactly the kinds and fields the replicator
//! supports. Secret fields (`password`, `url`, `*key*`, `*token*`, `*secret*`) are sealed at rest.
//! File paths (`sqlite.path`, `jsonl.path`) are relative to the tenant's data directory.

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
    /// Exactly one kind, e.g. `{"memory": {}}` or `{"sqlite": {"path": "shop/x.db"}}` (file
    /// paths are relative to the tenant's data directory).
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

/// The shape of a config as findings (empty: valid). Paths and addresses are checked by the
/// route, which knows the tenant and the network policy.
pub fn findings(config: &Value) -> Vec<Finding> {
    match validate_config(config) {
        Ok(_) => Vec::new(),
        Err(message) => vec![invalid(message)],
    }
}

/// A critical `invalid_config` finding.
pub fn invalid(message: String) -> Finding {
    Finding {
        level: FindingLevel::Critical,
        code: "invalid_config".into(),
        message,
        hint: "give exactly one destination kind with its fields, e.g. {\"memory\": {}}; file \
               paths relative to the tenant's directory; plain-text secrets"
            .into(),
    }
}
