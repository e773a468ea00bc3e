//! `etl config show`: the effective configuration as YAML, secrets redacted, each value followed
//! by a comment saying which file or variable set it (or that it is a default).

use serde::Serialize;
use serde_json::Value as Json;

use super::sections::{
    DatabaseConfig, DestinationConfig, KubernetesConfig, PipelineConfig, SECTION_NAMES,
};
use super::{Config, ConfigError};

/// Renders every section present in `config`, validating each on the way.
pub fn render(config: &Config) -> Result<String, ConfigError> {
    let mut out = format!(
        "# environment: {}, config dir: {}\n",
        config.environment(),
        config.dir().display()
    );
    for &name in SECTION_NAMES {
        if let Some(value) = typed_section(config, name)? {
            out.push_str(name);
            out.push(':');
            write_value(config, &mut out, name, &value, 1);
        }
    }
    Ok(out)
}

fn typed_section(config: &Config, name: &'static str) -> Result<Option<Json>, ConfigError> {
    fn to_json<T: Serialize>(value: Option<T>) -> Option<Json> {
        value.and_then(|v| serde_json::to_value(v).ok())
    }
    Ok(match name {
        "database" => {
            let database = config.optional_section::<DatabaseConfig>(name)?;
            if let Some(db) = &database {
                db.resolve()
                    .map_err(|e| config.invalid("database", e.to_string()))?;
            }
            to_json(database)
        }
        "pipeline" => {
            let pipeline = config.optional_section::<PipelineConfig>(name)?;
            if let Some(p) = &pipeline {
                p.validate()
                    .map_err(|(key, msg)| config.invalid(&format!("pipeline.{key}"), msg))?;
                p.pg_connection
                    .resolve()
                    .map_err(|e| config.invalid("pipeline.pg_connection", e.to_string()))?;
            }
            to_json(pipeline)
        }
        "destination" => {
            let destination = config.optional_section::<DestinationConfig>(name)?;
            if let Some(d) = &destination {
                d.validate()
                    .map_err(|(key, msg)| config.invalid(&format!("destination.{key}"), msg))?;
            }
            to_json(destination)
        }
        "kubernetes" => {
            let kubernetes = config.optional_section::<KubernetesConfig>(name)?;
            if let Some(k) = &kubernetes {
                k.validate()
                    .map_err(|(key, msg)| config.invalid(&format!("kubernetes.{key}"), msg))?;
            }
            to_json(kubernetes)
        }
        // Shown as is: missing keys are `serve-api`'s to refuse, not `config show`'s.
        "api" => to_json(config.optional_section::<super::ApiConfig>(name)?),
        _ => None,
    })
}

fn write_value(config: &Config, out: &mut String, path: &str, value: &Json, depth: usize) {
    let indent = "  ".repeat(depth);
    match value {
        Json::Object(map) if !map.is_empty() => {
            out.push('\n');
            for (key, child) in map {
                out.push_str(&indent);
                out.push_str(&scalar(&Json::String(key.clone())));
                out.push(':');
                write_value(config, out, &format!("{path}.{key}"), child, depth + 1);
            }
        }
        Json::Array(items) if !items.is_empty() => {
            out.push_str(&format!("   # {}\n", config.origin(path)));
            for item in items {
                out.push_str(&indent);
                out.push_str("- ");
                out.push_str(&flow(item));
                out.push('\n');
            }
        }
        leaf => {
            out.push(' ');
            out.push_str(&flow(leaf));
            out.push_str(&format!("   # {}\n", config.origin(path)));
        }
    }
}

/// A value on one line (YAML flow style; JSON is valid YAML flow).
fn flow(value: &Json) -> String {
    match value {
        Json::String(_) => scalar(value),
        other => other.to_string(),
    }
}

fn scalar(value: &Json) -> String {
    serde_yaml::to_string(value)
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_else(|_| value.to_string())
}
