//! Console sessions. Signing in with an API key sets one cookie, `etl_console`: the key, the
//! chosen tenant, a CSRF token and an expiry, sealed with the control plane's AES-256-GCM
//! encryption keys ([`Encryptor`], associated data `etl-console-session/1`), so the browser
//! holds it but can neither read nor change it. The cookie is `HttpOnly`, `SameSite=Strict`,
//! `Path=/` and `Secure` when the request came over TLS (`X-Forwarded-Proto: https` from a
//! proxy in front, or `api.console.secure_cookie`). The key is never put in a URL, a page or
//! browser storage.
//!
//! Every request opens the cookie and identifies the key again with [`ApiKeys`], exactly as
//! the JSON API does: a key removed from the config ends its sessions at once, and a
//! tenant-scoped key acts for its tenant only ([`Caller::may_act_for`]).
//!
//! CSRF: every form carries the session's token in a field `csrf`, and [`Posted`] refuses a
//! POST without the right one (403), or whose `Origin` is another site. The sign-in form, which
//! has no session yet, uses a short-lived cookie `etl_console_csrf` holding the same token as
//! its field (double submit).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::ConsoleState;
use super::error::ConsoleError;
use crate::api::auth::Caller;
use crate::api::crypto::EncryptedValue;
use crate::api::extract::TenantId;

/// The session cookie.
pub const COOKIE_NAME: &str = "etl_console";
/// The sign-in form's CSRF cookie.
pub const SIGN_IN_COOKIE: &str = "etl_console_csrf";
const ASSOCIATED: &[u8] = b"etl-console-session/1";

/// What the cookie holds (sealed).
#[derive(Serialize, Deserialize)]
struct Sealed {
    key: String,
    tenant: Option<String>,
    csrf: String,
    expires: u64,
}

/// A signed-in browser.
#[derive(Clone)]
pub struct Session {
    pub caller: Caller,
    /// The chosen tenant, within the caller's scope.
    pub tenant: Option<String>,
    /// The token every form of this session carries.
    pub csrf: String,
    key: String,
    expires: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("caller", &self.caller)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// 32 random bytes, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Session {
    /// A new session for `key` (already identified as `caller`); a tenant-scoped key gets its
    /// tenant chosen at once.
    pub fn new(state: &ConsoleState, key: &str, caller: Caller) -> Self {
        let tenant = match &caller {
            Caller::Tenant(own) => Some(own.clone()),
            Caller::Admin => None,
        };
        Self {
            caller,
            tenant,
            csrf: random_token(),
            key: key.to_owned(),
            expires: now() + state.config.session_hours * 3600,
        }
    }

    /// The same session with `tenant` chosen (the caller must be allowed to act for it).
    pub fn with_tenant(mut self, tenant: String) -> Result<Self, ConsoleError> {
        self.caller.scope(&tenant)?;
        self.tenant = Some(tenant);
        Ok(self)
    }

    /// The chosen tenant, as the API's handlers take it.
    pub fn tenant(&self) -> Result<TenantId, ConsoleError> {
        let tenant = self.tenant.clone().ok_or(ConsoleError::NoTenant)?;
        self.caller.scope(&tenant)?;
        Ok(TenantId(tenant))
    }

    /// The `Set-Cookie` value that stores this session.
    pub fn cookie(&self, state: &ConsoleState, headers: &HeaderMap) -> HeaderValue {
        let sealed = Sealed {
            key: self.key.clone(),
            tenant: self.tenant.clone(),
            csrf: self.csrf.clone(),
            expires: self.expires,
        };
        let plain = serde_json::to_string(&sealed).unwrap_or_default();
        let value = state.app.encryptor.encrypt(&plain, ASSOCIATED);
        let json = serde_json::to_string(&value).unwrap_or_default();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let max_age = self.expires.saturating_sub(now());
        set_cookie(COOKIE_NAME, &token, max_age, state, headers)
    }

    /// Opens the session cookie of a request: `None` when absent, tampered with, expired, or
    /// when its key is no longer accepted.
    pub fn open(state: &ConsoleState, headers: &HeaderMap) -> Option<Self> {
        let token = cookie(headers, COOKIE_NAME)?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()?;
        let value: EncryptedValue = serde_json::from_slice(&json).ok()?;
        let plain = state.app.encryptor.decrypt(&value, ASSOCIATED).ok()?;
        let sealed: Sealed = serde_json::from_str(plain.expose()).ok()?;
        if sealed.expires <= now() {
            return None;
        }
        let caller = state.keys.identify(&sealed.key)?;
        let tenant = sealed.tenant.filter(|t| caller.may_act_for(t));
        Some(Self {
            caller,
            tenant,
            csrf: sealed.csrf,
            key: sealed.key,
            expires: sealed.expires,
        })
    }

    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// A `Set-Cookie` value with the console's flags.
pub fn set_cookie(
    name: &str,
    value: &str,
    max_age: u64,
    state: &ConsoleState,
    headers: &HeaderMap,
) -> HeaderValue {
    let secure = state.config.secure_cookie
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let text = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    // Tokens are base64url and names are constants: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<ConsoleState> for Session {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, ConsoleError> {
        Session::open(state, &parts.headers).ok_or(ConsoleError::SignIn)
    }
}

/// A form body: `application/x-www-form-urlencoded` pairs in order (a field may repeat).
#[derive(Debug, Default, Clone)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Self {
        Self(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`, trimmed ("" when absent).
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    }

    /// Every value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A POST from a signed-in browser whose CSRF token and origin were checked.
pub struct Posted {
    pub session: Session,
    pub form: Form,
    pub headers: HeaderMap,
}

/// Refuses a request whose `Origin` is not this host (browsers send it with every POST).
pub fn check_origin(headers: &HeaderMap) -> Result<(), ConsoleError> {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let same = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| !host.is_empty() && rest == host);
    if same {
        Ok(())
    } else {
        Err(ConsoleError::Csrf)
    }
}

impl FromRequest<ConsoleState> for Posted {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &ConsoleState) -> Result<Self, ConsoleError> {
        let (mut parts, body) = request.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        check_origin(&parts.headers)?;
        let bytes = axum::body::to_bytes(body, state.app_body_limit)
            .await
            .map_err(|_| ConsoleError::TooLarge)?;
        let form = Form::parse(&bytes);
        if !session.csrf_matches(form.get("csrf")) {
            return Err(ConsoleError::Csrf);
        }
        Ok(Self {
            session,
            form,
            headers: parts.headers,
        })
    }
}
