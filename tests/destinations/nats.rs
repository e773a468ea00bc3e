//! The `nats` destination against the real `nats-server` (started by `scripts/nats-server.sh`,
//! one per test, with JetStream on disk): a consumer that reads the whole stream, checks that
//! no message id repeats, and rebuilds each table from the Debezium messages as a consumer
//! would (upsert by the `Etl-Key` header, keyless rows matched by their whole `before`,
//! unchanged TOAST placeholders filled from the held row, `t` empties the table).
//!

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream;
use etl::base::schema::TableName;
use etl::destinations::debezium::values::UNAVAILABLE;
use etl::destinations::debezium::{Encoder, Format};
use etl::destinations::nats::KEY_HEADER;
use etl::destinations::nats::subject::table_subject;
use futures_util::StreamExt;
use serde_json::Value;
use sqlx::PgPool;

use crate::compare::source_name;
use crate::helpers::table_schema;

pub use crate::servers::NatsServer;

/// One message of the stream.
#[derive(Clone)]
pub struct Received {
    pub subject: String,
    pub id: String,
    pub key: Option<String>,
    pub payload: Vec<u8>,
}

/// Every message of `stream`, in order.
pub async fn read_stream(url: &str, stream: &str) -> Result<Vec<Received>, String> {
    let client = async_nats::connect(url).await.map_err(|e| e.to_string())?;
    let context = jetstream::new(client);
    let mut stream = context
        .get_stream(stream)
        .await
        .map_err(|e| e.to_string())?;
    let last = stream
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .last_sequence;
    let mut received = Vec::new();
    if last == 0 {
        return Ok(received);
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .map_err(|_| "no message for 10 s".to_owned())?;
        let message = next
            .ok_or("the consumer ended")?
            .map_err(|e| e.to_string())?;
        let sequence = message.info().map_err(|e| e.to_string())?.stream_sequence;
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        received.push(Received {
            subject: message.subject.to_string(),
            id: header("Nats-Msg-Id").unwrap_or_default(),
            key: header(KEY_HEADER),
            payload: message.payload.to_vec(),
        });
        if sequence >= last {
            return Ok(received);
        }
    }
}

/// The `op` of each message of `subject` (a Kafka topic, for Kafka), in order; `tombstone` for an
/// empty payload.
pub fn ops(messages: &[Received], subject: &str) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.subject == subject)
        .map(|m| {
            if m.payload.is_empty() {
                return "tombstone".to_owned();
            }
            let value: Value = serde_json::from_slice(&m.payload).unwrap();
            value["op"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Message ids seen more than once (exactly once: none).
pub fn repeated_ids(messages: &[Received]) -> Vec<String> {
    let mut seen = HashSet::new();
    messages
        .iter()
        .filter(|m| !seen.insert(m.id.as_str()))
        .map(|m| m.id.clone())
        .collect()
}

/// What a consumer holds of one table.
#[derive(Default)]
pub struct Rebuilt {
    keyed: BTreeMap<String, Value>,
    keyless: Vec<Value>,
}

impl Rebuilt {
    fn rows(&self) -> Vec<String> {
        let mut rows: Vec<String> = self
            .keyed
            .values()
            .chain(&self.keyless)
            .map(Value::to_string)
            .collect();
        rows.sort();
        rows
    }
}

/// `after`, with each unchanged-TOAST placeholder replaced by the held row's value.
fn fill_unavailable(after: &Value, held: Option<&Value>) -> Value {
    let mut row = after.clone();
    if let (Some(object), Some(held)) = (row.as_object_mut(), held) {
        for (column, value) in object.iter_mut() {
            let placeholder = value.as_str() == Some(UNAVAILABLE)
                || value
                    .as_array()
                    .is_some_and(|a| a.len() == 1 && a[0].as_str() == Some(UNAVAILABLE));
            if placeholder && let Some(old) = held.get(column) {
                *value = old.clone();
            }
        }
    }
    row
}

/// Replays Debezium messages into per-subject tables.
pub fn rebuild(messages: &[Received]) -> HashMap<String, Rebuilt> {
    let mut tables: HashMap<String, Rebuilt> = HashMap::new();
    for message in messages {
        if message.payload.is_empty() {
            continue; // a tombstone
        }
        let Ok(event) = serde_json::from_slice::<Value>(&message.payload) else {
            continue; // the destination's own records
        };
        let Some(op) = event["op"].as_str() else {
            continue;
        };
        let table = tables.entry(message.subject.clone()).or_default();
        let after = &event["after"];
        let before = &event["before"];
        match (op, &message.key) {
            ("t", _) => {
                table.keyed.clear();
                table.keyless.clear();
            }
            ("r" | "c" | "u", Some(key)) => {
                let row = fill_unavailable(after, table.keyed.get(key));
                table.keyed.insert(key.clone(), row);
            }
            ("d", Some(key)) => {
                table.keyed.remove(key);
            }
            ("r" | "c", None) => table.keyless.push(after.clone()),
            ("u" | "d", None) => {
                let position = table.keyless.iter().position(|row| row == before);
                let held = position.map(|i| table.keyless.swap_remove(i));
                assert!(held.is_some(), "keyless {op} of a row not held: {event}");
                if op == "u" {
                    table.keyless.push(fill_unavailable(after, held.as_ref()));
                }
            }
            (other, _) => panic!("unknown op {other}: {event}"),
        }
    }
    tables
}

/// The first difference between the rebuilt `table` and the source's rows (encoded by the
/// same Debezium mapping, which the unit tests check against hand-written JSON).
pub async fn differences(
    pool: &PgPool,
    rebuilt: &HashMap<String, Rebuilt>,
    prefix: &str,
    table: &str,
) -> Option<String> {
    differences_in(pool, rebuilt, prefix, table, table_subject).await
}

/// [`differences`] for any stream destination: `channel` names where a table's messages go
/// (a NATS subject, a Kafka topic), given the prefix and the table's name.
pub async fn differences_in(
    pool: &PgPool,
    rebuilt: &HashMap<String, Rebuilt>,
    prefix: &str,
    table: &str,
    channel: fn(&str, &TableName) -> String,
) -> Option<String> {
    let (schema_name, name) = source_name(pool, table).await;
    let schema = table_schema(pool, table).await;
    let rows = crate::helpers::rows(
        pool,
        &format!("select * from {table}"),
        schema.columns.len(),
    )
    .await;
    let encoder = Encoder {
        format: Format::DebeziumJson,
        name: prefix.into(),
        db: String::new(),
        tombstones: true,
    };
    let mut expected: Vec<String> = rows
        .iter()
        .map(|row| {
            let message = encoder.read(&schema, row, 0);
            let value: Value = serde_json::from_slice(&message.value.unwrap()).unwrap();
            value["after"].to_string()
        })
        .collect();
    expected.sort();
    let subject = channel(prefix, &TableName::new(schema_name, name));
    let actual = rebuilt.get(&subject).map(Rebuilt::rows).unwrap_or_default();
    if expected == actual {
        return None;
    }
    let missing = expected.iter().find(|r| !actual.contains(r));
    let extra = actual.iter().find(|r| !expected.contains(r));
    Some(format!(
        "{table} ({subject}): {} rows expected, {} rebuilt; first missing {missing:?}; first \
         extra {extra:?}",
        expected.len(),
        actual.len()
    ))
}

/// Changes of the `counted` table by op (`D`, `I`, `U`), each message counted (not deduplicated).
pub fn counted_ops(messages: &[Received], prefix: &str) -> Vec<(String, i64)> {
    let subject = format!("{prefix}.public.counted");
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for message in messages.iter().filter(|m| m.subject == subject) {
        let Ok(event) = serde_json::from_slice::<Value>(&message.payload) else {
            continue;
        };
        let op = match event["op"].as_str() {
            Some("c") => "I",
            Some("u") => "U",
            Some("d") => "D",
            _ => continue,
        };
        *counts.entry(op.to_owned()).or_default() += 1;
    }
    counts.into_iter().collect()
}
