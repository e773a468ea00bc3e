//! API-key authentication: every `/v1` request needs `Authorization: Bearer <key>` with one of
//! the configured keys (several at once, so a key can be rotated without downtime). Keys are
//! compared in constant time and every configured key is checked, so timing tells an attacker
//! nothing about which prefix matched.
//!
//! A key says who is calling ([`Caller`]): an `api.api_keys` key administers every tenant; an
//! `api.tenant_keys` key only its own tenant. The middleware puts the caller into the request;
//! the `tenant_id` extractor and the tenant and image routes enforce its scope (another tenant
//! answers 404, as its objects do; changes to tenants or images answer 403).

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::Secret;
use crate::config::api::TenantKeyConfig;

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An `api.api_keys` key: every tenant, tenants and images too.
    Admin,
    /// An `api.tenant_keys` key: this tenant's objects only.
    Tenant(String),
}

impl Caller {
    /// Whether the caller may act for `tenant`.
    pub fn may_act_for(&self, tenant: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Tenant(own) => own == tenant,
        }
    }

    /// 404 for a tenant outside the caller's scope (as if it did not exist).
    pub fn scope(&self, tenant: &str) -> Result<(), ApiError> {
        if self.may_act_for(tenant) {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("tenant `{tenant}`")))
        }
    }

    /// 403 unless the caller administers every tenant.
    pub fn require_admin(&self, action: &str) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Tenant(_) => Err(ApiError::Forbidden(format!(
                "{action} needs a key from api.api_keys; this key is scoped to one tenant"
            ))),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }
}

/// The accepted API keys and whom each identifies.
#[derive(Clone)]
pub struct ApiKeys(Arc<Vec<(Secret, Caller)>>);

impl ApiKeys {
    pub fn new(admin: Vec<Secret>, scoped: &[TenantKeyConfig]) -> Self {
        let mut keys: Vec<_> = admin.into_iter().map(|k| (k, Caller::Admin)).collect();
        keys.extend(
            scoped
                .iter()
                .map(|k| (k.key.clone(), Caller::Tenant(k.tenant.clone()))),
        );
        Self(Arc::new(keys))
    }

    /// Who `candidate` identifies, if it is one of the keys. Every key is compared, each in
    /// constant time.
    pub fn identify(&self, candidate: &str) -> Option<Caller> {
        let mut found = None;
        for (key, caller) in self.0.iter() {
            let equal = key.expose().trim().as_bytes().ct_eq(candidate.as_bytes());
            if bool::from(equal) {
                found = Some(caller.clone());
            }
        }
        found
    }
}

/// Middleware: 401 with a JSON body unless the request carries an accepted key; the
/// [`Caller`] goes into the request for the handlers.
pub async fn require_api_key(
    State(keys): State<ApiKeys>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented.and_then(|key| keys.identify(key)) {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => ApiError::Unauthorized.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_configured_key_is_accepted_and_nothing_else() {
        let keys = ApiKeys::new(
            vec![Secret::new("old-key-aaaa"), Secret::new("new-key-bbbb")],
            &[TenantKeyConfig {
                tenant: "acme".into(),
                key: Secret::new("acme-key-cccc"),
            }],
        );
        assert_eq!(keys.identify("old-key-aaaa"), Some(Caller::Admin));
        assert_eq!(keys.identify("new-key-bbbb"), Some(Caller::Admin));
        assert_eq!(
            keys.identify("acme-key-cccc"),
            Some(Caller::Tenant("acme".into()))
        );
        assert_eq!(keys.identify("new-key-bbb"), None);
        assert_eq!(keys.identify(""), None);
        assert_eq!(keys.identify("new-key-bbbbb"), None);
    }
}
