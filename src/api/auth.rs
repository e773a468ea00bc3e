//! API-key authentication: every `/v1` request needs `Authorization: Bearer <key>` with one of
//! the configured keys (several at once, so a key can be rotated without downtime). Keys are
//! compared in constant time and every configured key is checked, so timing tells an attacker
//! nothing about which key or which prefix matched.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::Secret;

/// The accepted API keys.
#[derive(Clone)]
pub struct ApiKeys(Arc<Vec<Secret>>);

impl ApiKeys {
    pub fn new(keys: Vec<Secret>) -> Self {
        Self(Arc::new(keys))
    }

    /// Whether `candidate` is one of the keys.
    pub fn accepts(&self, candidate: &str) -> bool {
        let mut matched = subtle::Choice::from(0u8);
        for key in self.0.iter() {
            matched |= key.expose().trim().as_bytes().ct_eq(candidate.as_bytes());
        }
        matched.into()
    }
}

/// Middleware: 401 with a JSON body unless the request carries an accepted key.
pub async fn require_api_key(
    State(keys): State<ApiKeys>,
    request: Request,
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
    match presented {
        Some(key) if keys.accepts(key) => next.run(request).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_configured_key_is_accepted_and_nothing_else() {
        let keys = ApiKeys::new(vec![
            Secret::new("old-key-aaaa"),
            Secret::new("new-key-bbbb"),
        ]);
        assert!(keys.accepts("old-key-aaaa"));
        assert!(keys.accepts("new-key-bbbb"));
        assert!(!keys.accepts("new-key-bbb"));
        assert!(!keys.accepts(""));
        assert!(!keys.accepts("new-key-bbbbb"));
    }
}
