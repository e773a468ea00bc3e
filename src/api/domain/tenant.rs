//! Tenants: the owners of sources, destinations and pipelines. A tenant id is chosen by the
//! caller and must fit Kubernetes object names (`replicator-{tenant}-{replicator}`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::sections::is_dns1123_label;

/// Longest tenant id: keeps `replicator-{tenant}-{id}` within Kubernetes' 52 characters.
pub const MAX_TENANT_ID: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Tenant {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Lowercase letters, digits and `-`, at most 32 characters.
    pub id: String,
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Tenants {
    pub tenants: Vec<Tenant>,
}

/// Checks a tenant id; the error names the problem.
pub fn validate_tenant_id(id: &str) -> Result<(), String> {
    if id.len() > MAX_TENANT_ID || !is_dns1123_label(id) {
        return Err(format!(
            "tenant id `{id}` is invalid: use 1 to {MAX_TENANT_ID} lowercase letters, digits \
             or `-`, starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks a display name.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("`{what}` must not be empty"));
    }
    if name.chars().count() > 200 {
        return Err(format!("`{what}` must be at most 200 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("`{what}` must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_must_fit_kubernetes_names() {
        assert!(validate_tenant_id("acme-1").is_ok());
        for bad in ["", "Acme", "-a", "a_b", &"a".repeat(33)] {
            assert!(validate_tenant_id(bad).is_err(), "{bad}");
        }
    }
}
