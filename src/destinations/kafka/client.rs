//! The librdkafka clients of the destination: their settings (brokers, security, the user's
//! extra properties), the transactional producer, topic creation, and how a Kafka error becomes
//! a destination error (transient unless retrying cannot help).
//!
//! librdkafka's transaction calls block the calling thread; they run on tokio's blocking pool.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};

use crate::config::KafkaDestinationConfig;
use crate::engine::destination::{Error, Result};

/// How long a transaction call, a metadata request or a topic creation may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings every client of the destination shares: brokers, security and the user's
/// properties.
pub fn base_config(config: &KafkaDestinationConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    let brokers: Vec<&str> = config.brokers.iter().map(|b| b.trim()).collect();
    client
        .set("bootstrap.servers", brokers.join(","))
        .set("client.id", "etl")
        .set("socket.timeout.ms", "10000")
        .set("reconnect.backoff.max.ms", "2000");
    if let Some(protocol) = &config.security_protocol {
        client.set("security.protocol", protocol.to_ascii_lowercase());
    }
    if let Some(mechanism) = &config.sasl_mechanism {
        client.set("sasl.mechanism", mechanism.to_ascii_uppercase());
    }
    if let Some(username) = &config.sasl_username {
        client.set("sasl.username", username);
    }
    if let Some(password) = &config.sasl_password {
        client.set("sasl.password", password.expose());
    }
    if let Some(ca) = &config.ssl_ca_location {
        client.set("ssl.ca.location", ca);
    }
    for (key, value) in &config.properties {
        client.set(key, value.expose());
    }
    client
}

/// The producer's settings: the exactly-once ones, then throughput defaults the user's
/// `kafka.properties` may override (`linger.ms`, the local queue's bounds).
fn producer_config(config: &KafkaDestinationConfig) -> ClientConfig {
    let mut client = base_config(config);
    client
        .set("transactional.id", config.transactional_id())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Java's default partitioner: a key lands where Java producers would put it.
        .set("partitioner", "murmur2_random")
        .set("transaction.timeout.ms", "60000");
    // Records wait up to `linger.ms` to fill a produce request. A longer linger spares
    // librdkafka's broker thread a wake-up per record (etl's CPU per change in a drain: 23 µs
    // at 5 ms, 12.9 µs at 100 ms, same throughput), but with 100 the kafka end-to-end test
    // (many small transactions) once ran past its limit in CI, so the default stays short.
    for (key, value) in [
        ("linger.ms", "5"),
        ("queue.buffering.max.messages", "1000000"),
        ("queue.buffering.max.kbytes", "1048576"),
    ] {
        if !config.properties.contains_key(key) {
            client.set(key, value);
        }
    }
    client
}

/// A transactional, idempotent producer whose transactions are initialised (any transaction
/// an earlier producer with the same id left open is aborted, and that producer is fenced).
pub async fn transactional_producer(config: &KafkaDestinationConfig) -> Result<FutureProducer> {
    let client = producer_config(config);
    let producer: FutureProducer = client
        .create()
        .map_err(|e| Error::fatal("kafka: creating the producer", e))?;
    let init = producer.clone();
    blocking(move || init.init_transactions(REQUEST_TIMEOUT))
        .await?
        .map_err(|e| kafka_error("initialising the producer's transactions", e))?;
    Ok(producer)
}

/// Runs a blocking librdkafka call on the blocking pool.
pub async fn blocking<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| Error::fatal("kafka: a blocking call panicked", e))
}

/// Creates `topics` (name, partitions, compacted) that do not exist yet.
pub async fn create_topics(
    config: &KafkaDestinationConfig,
    topics: &[(String, i32, bool)],
) -> Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = base_config(config)
        .create()
        .map_err(|e| Error::fatal("kafka: creating the admin client", e))?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions, compacted)| {
            let topic = NewTopic::new(
                name,
                *partitions,
                TopicReplication::Fixed(config.replication_factor),
            );
            if *compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| kafka_error("creating topics", e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                let error = KafkaError::AdminOp(code);
                return Err(kafka_error(&format!("creating topic {topic}"), error));
            }
        }
    }
    Ok(())
}

/// Whether retrying the same call later cannot help.
fn is_permanent(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as Code;
    if let KafkaError::Transaction(e) = error
        && e.is_fatal()
    {
        return true;
    }
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::TransactionalIdAuthorizationFailed
                | Code::TopicAuthorizationFailed
                | Code::ClusterAuthorizationFailed
                | Code::SaslAuthenticationFailed
                | Code::Authentication
                | Code::InvalidConfig
                | Code::InvalidReplicationFactor
                | Code::PolicyViolation
        )
    )
}

/// A destination error for a failed Kafka call: fatal when retrying cannot help (fenced by
/// another producer with the same transactional id, refused credentials), transient otherwise.
pub fn kafka_error(doing: &str, error: KafkaError) -> Error {
    let fenced = matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::Fenced
        )
    );
    if fenced {
        return Error::fatal(
            format!(
                "kafka: {doing}: another producer with the same transactional id took over \
                 (a second replicator for the same topics? set kafka.transactional_id to tell \
                 them apart)"
            ),
            error,
        );
    }
    if is_permanent(&error) {
        Error::fatal(format!("kafka: {doing}"), error)
    } else {
        Error::transient(format!("kafka: {doing}"), error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_producer_properties_override_the_throughput_defaults_only() {
        let config: KafkaDestinationConfig = serde_yaml::from_str(
            "{brokers: ['localhost:9092'], properties: {linger.ms: '20', compression.type: zstd}}",
        )
        .expect("a kafka config");
        let client = producer_config(&config);
        assert_eq!(client.get("linger.ms"), Some("20"));
        assert_eq!(client.get("compression.type"), Some("zstd"));
        assert_eq!(client.get("enable.idempotence"), Some("true"));
        assert_eq!(client.get("queue.buffering.max.messages"), Some("1000000"));
        let defaults: KafkaDestinationConfig =
            serde_yaml::from_str("{brokers: ['localhost:9092']}").expect("a kafka config");
        assert_eq!(producer_config(&defaults).get("linger.ms"), Some("5"));
    }
}
