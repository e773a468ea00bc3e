//! Reading what the `kafka` destination wrote, as a consumer would: every table topic of a
//! prefix, each partition from its start (or where the last read stopped) to its end, with
//! `isolation.level=read_committed`. The records become the same
//! [`Received`] messages the NATS tests rebuild tables from (topic for subject, the `etl.id`
//! header for the message id).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use etl::destinations::kafka::ID_HEADER;
use etl::destinations::kafka::topic::state_topic;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::nats::Received;

/// Every record of the table topics of `prefix`, topic by topic, partitions in order.
pub async fn read_topics(address: &str, prefix: &str) -> Result<Vec<Received>, String> {
    let mut reader = TopicReader::new(address, prefix);
    tokio::task::spawn_blocking(move || reader.read())
        .await
        .map_err(|e| e.to_string())?
}

/// A consumer that keeps its position, as a real one does: each [`TopicReader::read`] reads
/// what was added since the last one (a debug build of the test broker serves about 5 000
/// records a second, so reading everything again at each check would not keep up).
pub struct TopicReader {
    address: String,
    prefix: String,
    /// Per topic and partition, the offset to read from next.
    next: HashMap<(String, i32), i64>,
    received: Vec<Received>,
    /// Over TLS, trusting this CA (PEM file); plaintext when `None`.
    tls_ca: Option<String>,
}

impl TopicReader {
    pub fn new(address: &str, prefix: &str) -> Self {
        TopicReader {
            address: address.to_owned(),
            prefix: prefix.to_owned(),
            next: HashMap::new(),
            received: Vec::new(),
            tls_ca: None,
        }
    }

    /// A reader that connects over TLS, trusting the CA in the PEM file `ca`.
    pub fn over_tls(address: &str, prefix: &str, ca: &str) -> Self {
        TopicReader {
            tls_ca: Some(ca.to_owned()),
            ..TopicReader::new(address, prefix)
        }
    }

    /// Reads every table topic to its end (blocking); returns all records read so far.
    pub fn read(&mut self) -> Result<Vec<Received>, String> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.address)
            .set("group.id", "etl-test-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed");
        if let Some(ca) = &self.tls_ca {
            config
                .set("security.protocol", "ssl")
                .set("ssl.ca.location", ca)
                .set("broker.address.family", "v4");
        }
        let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(|e| format!("metadata: {e}"))?;
        let state = state_topic(&self.prefix);
        for topic in metadata.topics() {
            let name = topic.name();
            if !name.starts_with(&format!("{}.", self.prefix)) || name == state {
                continue;
            }
            let ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
            self.read_topic(&consumer, name, &ids)?;
        }
        Ok(self.received.clone())
    }

    /// Appends the records of `topic` (its `partitions`, each from where the last read stopped
    /// to its end).
    fn read_topic(
        &mut self,
        consumer: &BaseConsumer,
        topic: &str,
        partitions: &[i32],
    ) -> Result<(), String> {
        let mut list = TopicPartitionList::new();
        for partition in partitions {
            let offset = match self.next.get(&(topic.to_owned(), *partition)) {
                Some(next) => Offset::Offset(*next),
                None => Offset::Beginning,
            };
            list.add_partition_offset(topic, *partition, offset)
                .map_err(|e| e.to_string())?;
        }
        consumer.assign(&list).map_err(|e| e.to_string())?;
        let mut open: HashSet<i32> = partitions.iter().copied().collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !open.is_empty() {
            if Instant::now() > deadline {
                return Err(format!("{topic}: not read to its end in 120 s"));
            }
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    open.remove(&partition);
                }
                Some(Err(e)) => return Err(format!("{topic}: {e}")),
                Some(Ok(message)) => {
                    if message.topic() != topic {
                        continue; // left over from the previous assignment
                    }
                    self.next.insert(
                        (topic.to_owned(), message.partition()),
                        message.offset() + 1,
                    );
                    let id = message
                        .headers()
                        .and_then(|h| h.iter().find(|h| h.key == ID_HEADER))
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default();
                    self.received.push(Received {
                        subject: message.topic().to_owned(),
                        id,
                        key: message
                            .key()
                            .map(|k| String::from_utf8_lossy(k).into_owned()),
                        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// `messages` with each repeated `etl.id` kept once (the first), after checking that every
/// repeat carries the same change as the first: same key, same value but for the envelope's
/// top-level `ts_ms` (when etl wrote it). Prints how many repeats there were.
pub fn without_aborted_repeats(messages: Vec<Received>) -> Vec<Received> {
    fn change(message: &Received) -> (Option<String>, serde_json::Value) {
        let mut value: serde_json::Value =
            serde_json::from_slice(&message.payload).unwrap_or(serde_json::Value::Null);
        if let Some(object) = value.as_object_mut() {
            object.remove("ts_ms");
        }
        (message.key.clone(), value)
    }
    let mut first: HashMap<String, (Option<String>, serde_json::Value)> = HashMap::new();
    let mut kept = Vec::with_capacity(messages.len());
    let mut repeats = 0;
    for message in messages {
        match first.get(&message.id) {
            Some(seen) => {
                assert_eq!(
                    seen,
                    &change(&message),
                    "id {} repeats with another change",
                    message.id
                );
                repeats += 1;
            }
            None => {
                first.insert(message.id.clone(), change(&message));
                kept.push(message);
            }
        }
    }
    if repeats > 0 {
        eprintln!("kafka: {repeats} records repeat an id (aborted transactions, shown by tansu)");
    }
    kept
}
