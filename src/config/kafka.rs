//! Settings of the `kafka` destination (`destination: {kafka: {…}}`): the brokers, the topics it
//! writes, the message format, security and any further librdkafka producer property; errors
//! name the key below `destination` (e.g. `kafka.topic_prefix`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::invalid::{InvalidSetting, Problem};
use super::nats::MessageFormat;
use super::secret::Secret;

/// `destination: {kafka: {brokers: ["localhost:9092"], topic_prefix: shop, …}}`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaDestinationConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// First part of every topic name: table `public.orders` goes to `{topic_prefix}.public.orders`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    #[serde(default = "default_format")]
    pub format: MessageFormat,
    /// A tombstone (null value with the key) after each delete (`debezium_json` only).
    #[serde(default = "default_true")]
    pub tombstones: bool,
    /// `source.db` in Debezium messages; `null`: the pipeline's source database.
    #[serde(default)]
    pub database: Option<String>,
    /// Partitions of the table topics this destination creates (existing topics are kept).
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of the topics it creates; `-1`: the broker's default.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// The producer's `transactional.id`; `null`: `etl.{topic_prefix}`. Two replicators with
    /// the same id fence each other (the older one stops with an error).
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// `plaintext` (default), `ssl`, `sasl_plaintext` or `sasl_ssl`.
    #[serde(default)]
    pub security_protocol: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[serde(default)]
    pub sasl_mechanism: Option<String>,
    #[serde(default)]
    pub sasl_username: Option<String>,
    #[serde(default)]
    pub sasl_password: Option<Secret>,
    /// PEM file of the CA that signed the brokers' certificates (`ssl`, `sasl_ssl`).
    #[serde(default)]
    pub ssl_ca_location: Option<String>,
    /// Further librdkafka producer properties (`compression.type: zstd`, `linger.ms: 20`, …).
    /// Values are secrets in the control plane's storage: they may hold keys.
    #[serde(default)]
    pub properties: BTreeMap<String, Secret>,
}

/// Properties the destination sets itself: changing them would break its guarantees.
pub const OWNED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "transactional.id",
    "enable.idempotence",
    "isolation.level",
    "acks",
    "enable.auto.commit",
    "group.id",
];

fn default_topic_prefix() -> String {
    "etl".to_owned()
}

fn default_format() -> MessageFormat {
    MessageFormat::DebeziumJson
}

fn default_true() -> bool {
    true
}

fn default_partitions() -> i32 {
    1
}

fn default_replication_factor() -> i32 {
    -1
}

/// Whether `text` may be (part of) a Kafka topic name: ASCII letters, digits, `.`, `_`, `-`.
pub fn is_topic_text(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl KafkaDestinationConfig {
    /// The producer's transactional id.
    pub fn transactional_id(&self) -> String {
        self.transactional_id
            .clone()
            .unwrap_or_else(|| format!("etl.{}", self.topic_prefix))
    }

    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.brokers.iter().all(|b| b.trim().is_empty()) {
            return Err(InvalidSetting::new("kafka.brokers", Problem::Empty));
        }
        if let Some(bad) = self.brokers.iter().find(|b| {
            let b = b.trim();
            b.contains("://") || b.contains(',') || !b.contains(':')
        }) {
            return Err(InvalidSetting::new(
                "kafka.brokers",
                Problem::Invalid(format!(
                    "`{bad}` is not a broker address: give `host:port` entries, one per list item"
                )),
            ));
        }
        let prefix = &self.topic_prefix;
        if prefix.is_empty() {
            return Err(InvalidSetting::new("kafka.topic_prefix", Problem::Empty));
        }
        if !is_topic_text(prefix) || prefix.split('.').any(str::is_empty) || prefix.len() > 100 {
            return Err(InvalidSetting::new(
                "kafka.topic_prefix",
                Problem::Invalid(format!(
                    "`{prefix}` is not a topic prefix: up to 100 ASCII letters, digits, `_`, `-` \
                     and single dots"
                )),
            ));
        }
        if self.partitions < 1 {
            return Err(InvalidSetting::new("kafka.partitions", Problem::Zero));
        }
        if self.replication_factor == 0 || self.replication_factor < -1 {
            return Err(InvalidSetting::new(
                "kafka.replication_factor",
                Problem::Invalid("must be at least 1, or -1 for the broker's default".into()),
            ));
        }
        if self.transactional_id.as_deref().is_some_and(str::is_empty) {
            return Err(InvalidSetting::new(
                "kafka.transactional_id",
                Problem::EmptyUseNull("for etl.{topic_prefix}"),
            ));
        }
        if let Some(protocol) = &self.security_protocol {
            let known = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
            if !known.contains(&protocol.to_ascii_lowercase().as_str()) {
                return Err(InvalidSetting::new(
                    "kafka.security_protocol",
                    Problem::Invalid(format!(
                        "`{protocol}`: expected one of {}",
                        known.join(", ")
                    )),
                ));
            }
        }
        if let Some(mechanism) = &self.sasl_mechanism {
            let known = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
            if !known.contains(&mechanism.to_ascii_uppercase().as_str()) {
                return Err(InvalidSetting::new(
                    "kafka.sasl_mechanism",
                    Problem::Invalid(format!(
                        "`{mechanism}`: expected one of {}",
                        known.join(", ")
                    )),
                ));
            }
        }
        if self.sasl_password.is_some() && self.sasl_username.is_none() {
            return Err(InvalidSetting::new(
                "kafka.sasl_username",
                Problem::Invalid("a password needs a username".into()),
            ));
        }
        if let Some(owned) = self
            .properties
            .keys()
            .find(|k| OWNED_PROPERTIES.contains(&k.as_str()))
        {
            return Err(InvalidSetting::new(
                "kafka.properties",
                Problem::Invalid(format!(
                    "`{owned}` is set by the destination itself (its exactly-once guarantee \
                     depends on it); use kafka.brokers or kafka.transactional_id"
                )),
            ));
        }
        Ok(())
    }
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
    fn defaults_fill_everything_but_the_brokers() {
        let Ok(DestinationConfig::Kafka(kafka)) = parse("kafka: {brokers: ['localhost:9092']}")
        else {
            panic!("not kafka")
        };
        assert_eq!(kafka.topic_prefix, "etl");
        assert_eq!(kafka.transactional_id(), "etl.etl");
        assert_eq!(kafka.partitions, 1);
        assert_eq!(kafka.replication_factor, -1);
        assert!(kafka.tombstones);
        assert!(
            parse("kafka: {topic_prefix: x}")
                .unwrap_err()
                .contains("brokers")
        );
    }

    #[test]
    fn bad_settings_name_their_key() {
        let base = "kafka: {brokers: ['h:9092']";
        assert_eq!(invalid_key("kafka: {brokers: []}"), "kafka.brokers");
        assert_eq!(
            invalid_key("kafka: {brokers: ['kafka://h:9092']}"),
            "kafka.brokers"
        );
        assert_eq!(
            invalid_key(&format!("{base}, topic_prefix: 'a b'}}")),
            "kafka.topic_prefix"
        );
        assert_eq!(
            invalid_key(&format!("{base}, topic_prefix: 'a..b'}}")),
            "kafka.topic_prefix"
        );
        assert_eq!(
            invalid_key(&format!("{base}, partitions: 0}}")),
            "kafka.partitions"
        );
        assert_eq!(
            invalid_key(&format!("{base}, replication_factor: 0}}")),
            "kafka.replication_factor"
        );
        assert_eq!(
            invalid_key(&format!("{base}, security_protocol: tls}}")),
            "kafka.security_protocol"
        );
        assert_eq!(
            invalid_key(&format!("{base}, sasl_mechanism: GSSAPI}}")),
            "kafka.sasl_mechanism"
        );
        assert_eq!(
            invalid_key(&format!("{base}, sasl_password: p}}")),
            "kafka.sasl_username"
        );
        assert_eq!(
            invalid_key(&format!("{base}, properties: {{transactional.id: x}}}}")),
            "kafka.properties"
        );
        let unknown = parse(&format!("{base}, subject_prefix: x}}")).unwrap_err();
        assert!(unknown.contains("subject_prefix"), "{unknown}");
    }
}
