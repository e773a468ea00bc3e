//! The `api` section: how `etl serve-api` listens, which API keys it accepts, the keys that
//! encrypt secrets at rest, which pipeline runtime starts replicators (`local` child
//! processes or `kubernetes` StatefulSets, the latter configured by the `kubernetes` section),
//! where tenants' sources may point ([`NetworkPolicyConfig`]) and how large a request may be.
//!
//! [`ApiConfig::validate`] is the one place that decides whether the control plane may start:
//! without an API key or an encryption key it refuses, naming the key and how to set it.

use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::secret::Secret;
use crate::netpolicy::NetworkPolicyConfig;

/// Bytes of an AES-256 encryption key.
pub const ENCRYPTION_KEY_BYTES: usize = 32;
/// Shortest API key accepted (a generated key is 44 characters of base64).
pub const MIN_API_KEY_CHARS: usize = 32;
/// Default largest request body: configs are a few kilobytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The control plane's settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on, e.g. `127.0.0.1:8000`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Accepted `Authorization: Bearer` keys that administer every tenant; several at once so
    /// keys can be rotated.
    #[serde(default)]
    pub api_keys: Vec<Secret>,
    /// Keys that administer one tenant each: only its own objects, no tenant or image changes.
    #[serde(default)]
    pub tenant_keys: Vec<TenantKeyConfig>,
    /// AES-256-GCM keys for secrets at rest; the highest id encrypts, every one decrypts.
    #[serde(default)]
    pub encryption_keys: Vec<EncryptionKeyConfig>,
    /// Where replicators run.
    #[serde(default)]
    pub runtime: RuntimeKind,
    /// Settings of the `local` runtime.
    #[serde(default)]
    pub local: LocalRuntimeConfig,
    /// Which hosts and ports tenants' sources and Postgres destinations may point at.
    #[serde(default)]
    pub network_policy: NetworkPolicyConfig,
    /// Largest request body accepted; a larger one is answered 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// The web console under `/`.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// The sampler of every pipeline's lag and WAL position (charts, WAL forecast).
    #[serde(default)]
    pub lag_history: LagHistoryConfig,
}

/// One encryption key: its id is stored next to every value it encrypted.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionKeyConfig {
    pub id: u32,
    /// Base64 of 32 random bytes (`etl api generate-key`).
    pub key: Secret,
}

/// A key scoped to one tenant.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantKeyConfig {
    /// The tenant id (`acme`).
    pub tenant: String,
    /// At least 32 characters (`etl api generate-key`).
    pub key: Secret,
}

/// The pipeline runtime.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// `etl replicate` child processes on this machine.
    #[default]
    Local,
    /// One StatefulSet per replicator (see the `kubernetes` section).
    Kubernetes,
}

/// Settings of the `local` runtime.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalRuntimeConfig {
    /// The `etl` binary started as `etl replicate` (default: the running executable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicator_binary: Option<PathBuf>,
    /// Directory for each pipeline's config dir, pid file and log.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Seconds a replicator gets after SIGTERM before it is killed.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_seconds: u64,
    /// Root of the files tenants' `sqlite` and `jsonl` destinations write: each tenant gets
    /// `{data_dir}/{tenant}/`, and a path given through the API is relative to it.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
}

impl Default for LocalRuntimeConfig {
    fn default() -> Self {
        Self {
            replicator_binary: None,
            state_dir: default_state_dir(),
            stop_timeout_seconds: default_stop_timeout(),
            data_dir: default_data_dir(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(".etl/data")
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

fn default_listen() -> String {
    "127.0.0.1:8000".to_owned()
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(".etl/local-runtime")
}

fn default_stop_timeout() -> u64 {
    30
}

impl ApiConfig {
    /// The listen address, parsed.
    pub fn listen_addr(&self) -> Result<SocketAddr, (String, String)> {
        self.listen.parse().map_err(|e| {
            (
                "listen".to_owned(),
                format!(
                    "`{}` is not an address like 127.0.0.1:8000: {e}",
                    self.listen
                ),
            )
        })
    }

    /// Checks everything serde cannot; errors name the key below `api`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.listen_addr()?;
        if self.api_keys.is_empty() {
            return Err((
                "api_keys".into(),
                "no API key is configured: set APP_API__API_KEYS='[\"<key>\"]' \
                 (generate one with `etl api generate-key`)"
                    .into(),
            ));
        }
        for (i, key) in self.api_keys.iter().enumerate() {
            if key.expose().trim().chars().count() < MIN_API_KEY_CHARS {
                return Err((
                    format!("api_keys[{i}]"),
                    format!(
                        "an API key must be at least {MIN_API_KEY_CHARS} characters \
                         (generate one with `etl api generate-key`)"
                    ),
                ));
            }
        }
        for (i, scoped) in self.tenant_keys.iter().enumerate() {
            let tenant = &scoped.tenant;
            if tenant.is_empty()
                || !tenant
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err((
                    format!("tenant_keys[{i}].tenant"),
                    format!("`{tenant}` is not a tenant id (lowercase letters, digits, `-`)"),
                ));
            }
            let key = scoped.key.expose().trim();
            if key.chars().count() < MIN_API_KEY_CHARS {
                return Err((
                    format!("tenant_keys[{i}].key"),
                    format!("a key must be at least {MIN_API_KEY_CHARS} characters"),
                ));
            }
            let reused = self.api_keys.iter().any(|k| k.expose().trim() == key)
                || self.tenant_keys[..i]
                    .iter()
                    .any(|k| k.key.expose().trim() == key);
            if reused {
                return Err((
                    format!("tenant_keys[{i}].key"),
                    "this key is configured twice: each key must name one caller".into(),
                ));
            }
        }
        if self.encryption_keys.is_empty() {
            return Err((
                "encryption_keys".into(),
                "no encryption key is configured: set APP_API__ENCRYPTION_KEYS='[{id=1,key=\"<key>\"}]' \
                 (generate one with `etl api generate-key`)"
                    .into(),
            ));
        }
        for (i, entry) in self.encryption_keys.iter().enumerate() {
            decode_encryption_key(entry.key.expose())
                .map_err(|message| (format!("encryption_keys[{i}].key"), message))?;
            if self.encryption_keys[..i].iter().any(|e| e.id == entry.id) {
                return Err((
                    format!("encryption_keys[{i}].id"),
                    format!("key id {} is used twice", entry.id),
                ));
            }
        }
        if self.max_body_bytes < 1024 {
            return Err((
                "max_body_bytes".into(),
                "must be at least 1024 (a config body is a few kilobytes)".into(),
            ));
        }
        if self.local.data_dir.as_os_str().is_empty() {
            return Err(("local.data_dir".into(), "must not be empty".into()));
        }
        self.console.validate()?;
        self.lag_history.validate()?;
        if self.local.stop_timeout_seconds == 0 {
            return Err((
                "local.stop_timeout_seconds".into(),
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// `api.console`: the web console served under `/`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console (`false`: `/` answers 404 and only the JSON API remains).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Hours a sign-in lasts; the key is checked again on every request all the same.
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
    /// Always mark the session cookie `Secure` (it is marked so anyway when a proxy in front
    /// says `X-Forwarded-Proto: https`).
    #[serde(default)]
    pub secure_cookie: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_hours: default_session_hours(),
            secure_cookie: false,
        }
    }
}

impl ConsoleConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        if self.session_hours == 0 || self.session_hours > 24 * 30 {
            return Err((
                "console.session_hours".into(),
                "must be between 1 and 720".into(),
            ));
        }
        Ok(())
    }
}

/// `api.lag_history`: how often every pipeline's lag and WAL position are sampled into
/// `app.lag_samples`, and for how long samples are kept.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LagHistoryConfig {
    /// Seconds between two samples of every pipeline; 0 turns sampling off.
    #[serde(default = "default_sample_seconds")]
    pub sample_interval_seconds: u64,
    /// Hours a sample is kept; older ones are deleted at every round.
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u64,
}

impl Default for LagHistoryConfig {
    fn default() -> Self {
        Self {
            sample_interval_seconds: default_sample_seconds(),
            retention_hours: default_retention_hours(),
        }
    }
}

impl LagHistoryConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        if self.retention_hours == 0 || self.retention_hours > 24 * 366 {
            return Err((
                "lag_history.retention_hours".into(),
                "must be between 1 and 8784 (one year)".into(),
            ));
        }
        if self.sample_interval_seconds > 3600 {
            return Err((
                "lag_history.sample_interval_seconds".into(),
                "must be at most 3600 (0 turns sampling off)".into(),
            ));
        }
        Ok(())
    }
}

fn default_true() -> bool {
    true
}

fn default_session_hours() -> u64 {
    12
}

fn default_sample_seconds() -> u64 {
    15
}

fn default_retention_hours() -> u64 {
    48
}

/// Decodes a base64 encryption key and checks its length.
pub fn decode_encryption_key(text: &str) -> Result<[u8; ENCRYPTION_KEY_BYTES], String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not valid base64: {e}"))?;
    <[u8; ENCRYPTION_KEY_BYTES]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "must be base64 of exactly {ENCRYPTION_KEY_BYTES} bytes, got {} bytes \
             (generate one with `etl api generate-key`)",
            bytes.len()
        )
    })
}

/// A new random key: base64 of 32 bytes, usable as an API key or an encryption key.
pub fn generate_key() -> String {
    let mut bytes = [0u8; ENCRYPTION_KEY_BYTES];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> ApiConfig {
        ApiConfig {
            listen: default_listen(),
            api_keys: vec![Secret::new(generate_key())],
            tenant_keys: Vec::new(),
            encryption_keys: vec![EncryptionKeyConfig {
                id: 1,
                key: Secret::new(generate_key()),
            }],
            runtime: RuntimeKind::Local,
            local: LocalRuntimeConfig::default(),
            network_policy: NetworkPolicyConfig::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            console: ConsoleConfig::default(),
            lag_history: LagHistoryConfig::default(),
        }
    }

    #[test]
    fn missing_keys_are_refused_naming_the_key() {
        assert_eq!(valid().validate(), Ok(()));
        let mut config = valid();
        config.api_keys.clear();
        assert_eq!(config.validate().unwrap_err().0, "api_keys");
        let mut config = valid();
        config.encryption_keys.clear();
        let (key, message) = config.validate().unwrap_err();
        assert_eq!(key, "encryption_keys");
        assert!(message.contains("etl api generate-key"), "{message}");
    }

    #[test]
    fn bad_keys_and_addresses_are_refused() {
        let mut config = valid();
        config.api_keys.push(Secret::new("short"));
        assert_eq!(config.validate().unwrap_err().0, "api_keys[1]");
        let mut config = valid();
        config.encryption_keys[0].key = Secret::new("c2hvcnQ=");
        assert_eq!(config.validate().unwrap_err().0, "encryption_keys[0].key");
        let mut config = valid();
        let again = config.encryption_keys[0].clone();
        config.encryption_keys.push(again);
        assert_eq!(config.validate().unwrap_err().0, "encryption_keys[1].id");
        let mut config = valid();
        config.listen = "localhost".into();
        assert_eq!(config.validate().unwrap_err().0, "listen");
        let mut config = valid();
        let admin = config.api_keys[0].clone();
        config.tenant_keys.push(TenantKeyConfig {
            tenant: "acme".into(),
            key: admin,
        });
        assert_eq!(config.validate().unwrap_err().0, "tenant_keys[0].key");
        config.tenant_keys[0].key = Secret::new(generate_key());
        assert_eq!(config.validate(), Ok(()));
        config.tenant_keys[0].tenant = "../x".into();
        assert_eq!(config.validate().unwrap_err().0, "tenant_keys[0].tenant");
        let mut config = valid();
        config.max_body_bytes = 10;
        assert_eq!(config.validate().unwrap_err().0, "max_body_bytes");
    }

    #[test]
    fn generated_keys_decode_to_32_bytes() {
        assert_eq!(
            decode_encryption_key(&generate_key()).map(|k| k.len()),
            Ok(32)
        );
        assert_ne!(generate_key(), generate_key());
    }
}
