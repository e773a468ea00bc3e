//! Settings of the `nats` destination (`destination: {nats: {…}}`): the server, the subjects and
//! the JetStream stream it writes, the message format and the credentials; errors name the key
//! below `destination` (e.g. `nats.subject_prefix`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::invalid::{InvalidSetting, Problem};
use super::secret::Secret;

/// `destination: {nats: {url: nats://localhost:4222, subject_prefix: shop, …}}`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NatsDestinationConfig {
    /// `nats://host:4222` (several separated by commas); `tls://` requires TLS. A secret: it may
    /// hold `user:password@`.
    pub url: Secret,
    /// First subject tokens: table `public.orders` goes to `{subject_prefix}.public.orders`.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// The JetStream stream holding `{subject_prefix}.>`; `null`: the prefix in upper case with
    /// `.` replaced by `_` (`shop` → `SHOP`). Created when missing.
    #[serde(default)]
    pub stream: Option<String>,
    #[serde(default = "default_format")]
    pub format: MessageFormat,
    /// A tombstone (empty message with the key) after each delete (`debezium_json` only).
    #[serde(default = "default_true")]
    pub tombstones: bool,
    /// `source.db` in Debezium messages; `null`: the pipeline's source database.
    #[serde(default)]
    pub database: Option<String>,
    /// The stream's duplicate window when this destination creates it (server default 120 s).
    #[serde(default = "default_duplicate_window_secs")]
    pub duplicate_window_secs: u64,
    /// Token authentication.
    #[serde(default)]
    pub token: Option<Secret>,
    /// User and password authentication.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// NKey authentication: the seed (`SU…`).
    #[serde(default)]
    pub nkey_seed: Option<Secret>,
    /// A `.creds` file (JWT and NKey seed) for decentralized authentication.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

/// The message format of a stream destination (`nats.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageFormat {
    /// Debezium's change-event envelope.
    DebeziumJson,
    /// One flat object per change, the same as a line of the `jsonl` destination.
    Json,
}

fn default_subject_prefix() -> String {
    "etl".to_owned()
}

fn default_format() -> MessageFormat {
    MessageFormat::DebeziumJson
}

fn default_true() -> bool {
    true
}

fn default_duplicate_window_secs() -> u64 {
    120
}

impl NatsDestinationConfig {
    /// The stream name: `stream`, or the prefix in upper case with `.` → `_`.
    pub fn stream_name(&self) -> String {
        match &self.stream {
            Some(stream) => stream.clone(),
            None => self.subject_prefix.to_uppercase().replace('.', "_"),
        }
    }

    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.url.expose().trim().is_empty() {
            return Err(InvalidSetting::new("nats.url", Problem::Empty));
        }
        let prefix = &self.subject_prefix;
        if prefix.is_empty() {
            return Err(InvalidSetting::new("nats.subject_prefix", Problem::Empty));
        }
        if prefix
            .split('.')
            .any(|token| token.is_empty() || token.contains(['*', '>']) || has_space(token))
        {
            return Err(InvalidSetting::new(
                "nats.subject_prefix",
                Problem::Invalid(format!(
                    "`{prefix}` is not a subject prefix: dot-separated non-empty tokens without \
                     spaces, `*` or `>`"
                )),
            ));
        }
        let stream = self.stream_name();
        if stream.is_empty()
            || stream.contains(['.', '*', '>', '/', '\\'])
            || has_space(&stream)
            || stream.len() > 255
        {
            return Err(InvalidSetting::new(
                "nats.stream",
                Problem::Invalid(format!(
                    "`{stream}` is not a stream name: no spaces, `.`, `*`, `>`, `/` or `\\`"
                )),
            ));
        }
        if self.duplicate_window_secs == 0 {
            return Err(InvalidSetting::new(
                "nats.duplicate_window_secs",
                Problem::Zero,
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(InvalidSetting::new(
                "nats.username",
                Problem::Invalid("a password needs a username".into()),
            ));
        }
        let methods = [
            self.token.is_some(),
            self.username.is_some(),
            self.nkey_seed.is_some(),
            self.credentials_file.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(InvalidSetting::new(
                "nats",
                Problem::Invalid(
                    "give at most one of token, username/password, nkey_seed, credentials_file"
                        .into(),
                ),
            ));
        }
        Ok(())
    }
}

fn has_space(text: &str) -> bool {
    text.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::super::DestinationConfig;

    fn parse(yaml: &str) -> Result<DestinationConfig, String> {
        serde_yaml::from_str::<DestinationConfig>(yaml).map_err(|e| e.to_string())
    }

    fn invalid_key(yaml: &str) -> String {
        let config = parse(yaml).expect("parses");
        config.validate().expect_err("invalid").key().to_owned()
    }

    #[test]
    fn defaults_fill_everything_but_the_url() {
        let Ok(DestinationConfig::Nats(nats)) = parse("nats: {url: 'nats://localhost:4222'}")
        else {
            panic!("not nats")
        };
        assert_eq!(nats.subject_prefix, "etl");
        assert_eq!(nats.stream_name(), "ETL");
        assert!(nats.tombstones);
        assert_eq!(nats.format, super::MessageFormat::DebeziumJson);
        assert!(
            parse("nats: {subject_prefix: x}")
                .unwrap_err()
                .contains("url")
        );
    }

    #[test]
    fn bad_settings_name_their_key() {
        let base = "nats: {url: 'nats://h:4222'";
        assert_eq!(
            invalid_key(&format!("{base}, subject_prefix: 'a..b'}}")),
            "nats.subject_prefix"
        );
        assert_eq!(
            invalid_key(&format!("{base}, subject_prefix: 'a.>'}}")),
            "nats.subject_prefix"
        );
        assert_eq!(
            invalid_key(&format!("{base}, stream: 'a.b'}}")),
            "nats.stream"
        );
        assert_eq!(
            invalid_key(&format!("{base}, password: p}}")),
            "nats.username"
        );
        assert_eq!(
            invalid_key(&format!("{base}, duplicate_window_secs: 0}}")),
            "nats.duplicate_window_secs"
        );
        assert_eq!(
            invalid_key(&format!("{base}, token: t, nkey_seed: s}}")),
            "nats"
        );
        assert_eq!(invalid_key("nats: {url: ' '}"), "nats.url");
        let unknown = parse(&format!("{base}, topic: x}}")).unwrap_err();
        assert!(unknown.contains("topic"), "{unknown}");
        let format = parse(&format!("{base}, format: avro}}")).unwrap_err();
        assert!(format.contains("debezium_json"), "{format}");
    }
}
