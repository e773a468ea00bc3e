//! What the control plane's `validate` asks of a `kafka` destination before a pipeline uses it:
//! the brokers answer with the configured security settings, and the destination's state topic
//! either exists or can be created (asked with a validate-only CreateTopics). Nothing is written
//! and no transaction is started, so a running replicator is not disturbed.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, Producer};

use super::client::base_config;
use super::topic::state_topic;
use crate::config::KafkaDestinationConfig;

/// The `host:port` pairs of `kafka.brokers` (for the network policy). Only the bootstrap
/// brokers are known before connecting: the others are learned from the cluster's metadata.
pub fn addresses(config: &KafkaDestinationConfig) -> Result<Vec<(String, u16)>, String> {
    config
        .brokers
        .iter()
        .map(|broker| {
            let broker = broker.trim();
            let (host, port) = broker
                .rsplit_once(':')
                .ok_or_else(|| format!("`{broker}` has no port"))?;
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("`{broker}` has no valid port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(format!("`{broker}` has no host"));
            }
            Ok((host.to_owned(), port))
        })
        .collect()
}

/// Connects and checks the state topic is there or can be created; the error says what failed,
/// in one line.
pub async fn probe(config: &KafkaDestinationConfig) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = base_config(config)
        .create()
        .map_err(|e| format!("the client settings are refused: {e}"))?;
    let topic = state_topic(&config.topic_prefix);
    let metadata = {
        let settings = base_config(config);
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            let producer: BaseProducer = settings.create()?;
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("no broker of {} answered: {e}", config.brokers.join(",")))?
    };
    let exists = metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
    if exists {
        return Ok(());
    }
    let new = NewTopic::new(
        &topic,
        1,
        TopicReplication::Fixed(config.replication_factor),
    )
    .set("cleanup.policy", "compact");
    let options = AdminOptions::new()
        .validate_only(true)
        .operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&new], &options)
        .await
        .map_err(|e| format!("asking to create topic {topic}: {e}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(format!("topic {topic} cannot be created: {code}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses_are_read_for_the_network_policy() {
        let config: KafkaDestinationConfig =
            serde_yaml::from_str("brokers: ['k1:9092', ' [::1]:9093']").unwrap();
        assert_eq!(
            addresses(&config).unwrap(),
            vec![("k1".to_owned(), 9092), ("::1".to_owned(), 9093)]
        );
        let bad: KafkaDestinationConfig = serde_yaml::from_str("brokers: ['k1:x']").unwrap();
        assert!(addresses(&bad).unwrap_err().contains("k1:x"));
    }
}
