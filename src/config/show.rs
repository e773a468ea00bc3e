//! `etl config show`: the effective configuration as YAML, secrets redacted, each value followed
//! by a comment saying which file or variable set it (or that it is a default).

use serde::Serialize;
use serde_json::Value as Json;

use super::sections::{
    DatabaseConfig, DestinationConfig, KubernetesConfig, PipelineConfig, SECTION_NAMES,
};
use super::{Config, ConfigError};

/// What `config show` prints, and the sections that failed to load or validate.
#[derive(Debug)]
pub struct Rendered {
    pub text: String,
    pub errors: Vec<ConfigError>,
}

/// Renders every section present in `config`, validating each on the way. A section that does
/// not load or validate is still shown as given (secrets redacted) under a `# error:` line, so
/// the values and their origins can be inspected; its error is returned as well.
pub fn render(config: &Config) -> Rendered {
    let mut out = format!(
        "# environment: {}, config dir: {}\n",
        config.environment(),
        config.dir().display()
    );
    let mut errors = Vec::new();
    for &name in SECTION_NAMES {
        let value = match typed_section(config, name) {
            Ok(value) => value,
            Err(error) => {
                out.push_str(&format!("# error: {error}\n"));
                errors.push(error);
                raw_section(config, name)
            }
        };
        if let Some(value) = value {
            out.push_str(name);
            out.push(':');
            write_value(config, &mut out, name, &value, 1);
        }
    }
    Rendered { text: out, errors }
}

/// A section as the files and variables give it, with every secret redacted.
fn raw_section(config: &Config, name: &str) -> Option<Json> {
    let mut value = config
        .figment
        .find_value(name)
        .ok()?
        .deserialize::<Json>()
        .ok()?;
    redact(&mut value);
    Some(value)
}

fn redact(value: &mut Json) {
    match value {
        Json::Object(map) => {
            for (key, child) in map.iter_mut() {
                if !super::env_vars::is_secret_key(key) {
                    redact(child);
                } else if let (true, Json::String(url)) = (key == "url", &*child) {
                    *child = Json::String(super::secret::redact_url_password(url));
                } else {
                    *child = Json::String(super::secret::REDACTED.to_owned());
                }
            }
        }
        Json::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
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
                config.checked(name, p.validate().and_then(|()| p.source()))?;
            }
            to_json(pipeline)
        }
        "destination" => {
            let destination = config.optional_section::<DestinationConfig>(name)?;
            if let Some(d) = &destination {
                config.checked(name, d.validate())?;
            }
            to_json(destination)
        }
        "kubernetes" => {
            let kubernetes = config.optional_section::<KubernetesConfig>(name)?;
            if let Some(k) = &kubernetes {
                config.checked(name, k.validate())?;
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
