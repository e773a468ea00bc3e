//! Sources: the Postgres databases pipelines replicate from. The connection settings are the
//! replicator's own `pipeline.pg_connection` shape ([`PgConnectionConfig`]), so what is stored
//! is exactly what the replicator later receives; the password is sealed at rest and a GET only
//! says whether one is set.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::config::{PgConnectionConfig, TlsMode};

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// disable | prefer (default) | require | verify-ca | verify-full
    #[serde(default)]
    #[schema(value_type = String)]
    pub mode: TlsMode,
    /// PEM file of trusted roots, on the machine (or in the pod) running the replicator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// Connection settings as a client sends them.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceConfigIn {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Database name.
    pub name: String,
    pub username: String,
    /// Stored encrypted; never returned. Omit it in an update to keep the stored one.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub tls: Option<TlsSettings>,
}

/// Connection settings as the API returns them: no password, only whether one is set.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SourceConfigView {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub username: String,
    #[serde(default)]
    pub password_set: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
}

fn default_port() -> u16 {
    5432
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Source {
    pub id: i64,
    pub tenant_id: String,
    pub name: String,
    pub config: SourceConfigView,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSource {
    pub name: String,
    pub config: SourceConfigIn,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSource {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub config: Option<SourceConfigIn>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Sources {
    pub sources: Vec<Source>,
}

/// A table of a source database.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct SourceTable {
    /// The table's oid (the id replication state uses).
    pub id: i64,
    pub schema: String,
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SourceTables {
    pub tables: Vec<SourceTable>,
}

/// A table named by schema and name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Publication {
    pub name: String,
    pub tables: Vec<TableName>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePublication {
    pub name: String,
    pub tables: Vec<TableName>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePublication {
    pub tables: Vec<TableName>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Publications {
    pub publications: Vec<Publication>,
}

/// `POST /v1/sources/validate`: connection settings and, optionally, the publication to check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateSource {
    pub config: SourceConfigIn,
    #[serde(default)]
    pub publication: Option<String>,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FindingLevel {
    /// Replication cannot work until this is fixed.
    Critical,
    /// Replication works but may break or pin WAL.
    Warning,
}

/// One failed prerequisite.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Finding {
    pub level: FindingLevel,
    pub code: String,
    pub message: String,
    pub hint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ValidationReport {
    /// Empty when everything checked passed.
    pub findings: Vec<Finding>,
}

impl SourceConfigIn {
    /// Checks the settings and returns them as the JSON stored (before sealing).
    pub fn to_json(&self) -> Result<Value, String> {
        for (field, value) in [
            ("host", &self.host),
            ("name", &self.name),
            ("username", &self.username),
        ] {
            if value.trim().is_empty() {
                return Err(format!("`config.{field}` must not be empty"));
            }
            if value.chars().any(char::is_control) {
                return Err(format!(
                    "`config.{field}` must not contain control characters"
                ));
            }
        }
        if self.port == 0 {
            return Err("`config.port` must be between 1 and 65535".into());
        }
        if self.password.as_deref().is_some_and(|p| p.contains('\0')) {
            return Err("`config.password` must not contain NUL".into());
        }
        let mut value = serde_json::json!({
            "host": self.host,
            "port": self.port,
            "name": self.name,
            "username": self.username,
        });
        if let Some(password) = &self.password {
            value["password"] = Value::String(password.clone());
        }
        if let Some(tls) = &self.tls {
            value["tls"] = serde_json::to_value(tls).map_err(|e| e.to_string())?;
        }
        // The replicator must accept exactly this.
        serde_json::from_value::<PgConnectionConfig>(value.clone())
            .map_err(|e| format!("`config`: {e}"))?;
        Ok(value)
    }
}

/// The GET shape of a stored (sealed) config.
pub fn view(redacted: Value) -> Result<SourceConfigView, String> {
    serde_json::from_value(redacted).map_err(|e| format!("stored source config: {e}"))
}
