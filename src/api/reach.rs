//! The network policy ([`crate::netpolicy`]) applied to what tenants ask the control plane to
//! reach: a source's `host`/`port`, a `postgres` destination's `host`/`port` or `url`, an `iceberg` destination's
//! catalog connection. Checked
//! on create, update and validate, and again each time the control plane connects to a source.
//!
//! A refusal answers the tenant with one generic message naming the field (so probing tells
//! nothing about which hosts and ports exist or answer) and logs the details for the operator.

use serde_json::Value;

use super::error::ApiError;
use crate::config::{DestinationConfig, PgConnection, PgConnectionConfig, TlsMode};
use crate::netpolicy::{Checked, NetworkPolicy, Refusal};

/// The connection a tenant's config names, and the field a refusal blames.
pub struct Target {
    pub connection: PgConnection,
    /// e.g. `config.host`, `config.postgres.url`.
    pub field: String,
}

/// The target of a plain source config (`config.host`, or `config.url` for a URL-only one).
pub fn source_target(plain: &Value) -> Result<Target, ApiError> {
    let config: PgConnectionConfig = serde_json::from_value(plain.clone())
        .map_err(|e| ApiError::Invalid(format!("`config`: {e}")))?;
    target(&config, "config")
}

/// The target of a plain destination config, if its kind connects anywhere.
pub fn destination_target(plain: &Value) -> Result<Option<Target>, ApiError> {
    match serde_json::from_value::<DestinationConfig>(plain.clone()) {
        Ok(DestinationConfig::Postgres(postgres)) => {
            target(&postgres.connection, "config.postgres").map(Some)
        }
        Ok(DestinationConfig::Iceberg(iceberg)) => {
            let crate::config::iceberg::IcebergCatalogConfig::Sql(catalog) = &iceberg.catalog;
            target(catalog, "config.iceberg.catalog.sql").map(Some)
        }
        // Shape errors are reported by the destination's own validation.
        _ => Ok(None),
    }
}

fn target(config: &PgConnectionConfig, prefix: &str) -> Result<Target, ApiError> {
    let connection = config
        .resolve()
        .map_err(|e| ApiError::Invalid(format!("`{prefix}`: {e}")))?;
    let field = if config.host.is_some() || config.url.is_none() {
        format!("{prefix}.host")
    } else {
        format!("{prefix}.url")
    };
    Ok(Target { connection, field })
}

/// Checks a target against the policy: 422 naming the field, details in the log.
pub async fn check(policy: &NetworkPolicy, target: &Target) -> Result<Checked, ApiError> {
    let connection = &target.connection;
    policy
        .check(&connection.host, connection.port)
        .await
        .map_err(|refusal| refused(&target.field, &refusal))
}

/// The tenant's answer to a refusal; the operator's log gets why.
pub fn refused(field: &str, refusal: &Refusal) -> ApiError {
    tracing::warn!(field, reason = %refusal, "network policy refused a tenant's address");
    ApiError::Invalid(format!("`{field}`: {}", Refusal::TENANT_MESSAGE))
}

/// The connection to use after a check: the checked address instead of the name (see
/// [`Checked::pinned_host`]).
pub fn pinned(mut connection: PgConnection, checked: &Checked) -> PgConnection {
    if let Some(host) = checked.pinned_host(connection.tls.mode == TlsMode::VerifyFull) {
        connection.host = host;
    }
    connection
}
