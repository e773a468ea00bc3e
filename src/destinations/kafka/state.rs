//! The destination's records in its compacted state topic ([`super::topic::state_topic`], one
//! partition), written in the same Kafka transactions as the messages they describe:
//!
//! | key | value |
//! |---|---|
//! | `identity` | the [`PipelineIdentity`] as JSON |
//! | `copied` | the ids of the tables whose copy finished, `[16384, …]` |
//! | `position.{table oid}` | the last change written, `{"commit_lsn":…,"ordinal":…}`; a null value after a (re)copy starts |
//!
//! [`read`] replays the topic with `isolation.level=read_committed` up to its end, so it sees
//! exactly the committed transactions: the last value of each key is the truth.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::client::{REQUEST_TIMEOUT, base_config, blocking, kafka_error};
use crate::base::lsn::Lsn;
use crate::base::schema::TableId;
use crate::config::KafkaDestinationConfig;
use crate::engine::destination::{Error, PipelineIdentity, Result};

/// Key of the identity record.
pub const IDENTITY: &str = "identity";
/// Key of the copied-tables record.
pub const COPIED: &str = "copied";

/// Key of a table's position record.
pub fn position_key(table: TableId) -> String {
    format!("position.{}", table.0)
}

/// The last change of a table written to its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub commit_lsn: u64,
    pub ordinal: u32,
}

impl Position {
    pub fn of(commit_lsn: Lsn, ordinal: u32) -> Self {
        Position {
            commit_lsn: commit_lsn.0,
            ordinal,
        }
    }

    /// Whether the change at `(commit_lsn, ordinal)` is at or before this one (already written).
    pub fn covers(&self, commit_lsn: Lsn, ordinal: u32) -> bool {
        (commit_lsn.0, ordinal) <= (self.commit_lsn, self.ordinal)
    }
}

/// What the state topic says.
#[derive(Debug, Default, Clone)]
pub struct State {
    pub identity: Option<PipelineIdentity>,
    pub copied: BTreeSet<TableId>,
    pub positions: HashMap<TableId, Position>,
}

impl State {
    /// Applies one record (`value` `None`: a tombstone).
    pub fn apply(&mut self, topic: &str, key: &str, value: Option<&[u8]>) -> Result<()> {
        let not_ours = |e: serde_json::Error| {
            Error::fatal(
                format!("the record `{key}` of topic {topic} was not written by etl"),
                e,
            )
        };
        match (key, value) {
            (IDENTITY, Some(value)) => {
                self.identity = Some(serde_json::from_slice(value).map_err(not_ours)?);
            }
            (IDENTITY, None) => self.identity = None,
            (COPIED, Some(value)) => {
                let ids: Vec<u32> = serde_json::from_slice(value).map_err(not_ours)?;
                self.copied = ids.into_iter().map(TableId).collect();
            }
            (COPIED, None) => self.copied.clear(),
            (key, value) => {
                let Some(table) = key
                    .strip_prefix("position.")
                    .and_then(|oid| oid.parse::<u32>().ok())
                else {
                    return Err(Error::Fatal {
                        message: format!(
                            "topic {topic} holds a record with key `{key}`, which etl does not \
                             write: another producer uses the destination's state topic"
                        ),
                        source: None,
                    });
                };
                match value {
                    Some(value) => {
                        let position = serde_json::from_slice(value).map_err(not_ours)?;
                        self.positions.insert(TableId(table), position);
                    }
                    None => {
                        self.positions.remove(&TableId(table));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reads the committed records of `topic` from its start to its end.
pub async fn read(config: &KafkaDestinationConfig, topic: &str) -> Result<State> {
    let mut client = base_config(config);
    client
        .set("group.id", "etl-state-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = client
        .create()
        .map_err(|e| Error::fatal("kafka: creating the state reader", e))?;
    let topic = topic.to_owned();
    blocking(move || replay(&consumer, &topic)).await?
}

fn replay(consumer: &BaseConsumer, topic: &str) -> Result<State> {
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| kafka_error("reading the state topic", e))?;
    consumer
        .assign(&partitions)
        .map_err(|e| kafka_error("reading the state topic", e))?;
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut state = State::default();
    loop {
        if Instant::now() > deadline {
            return Err(Error::Transient {
                message: format!(
                    "kafka: reading the state topic {topic} did not reach its end within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ),
                source: None,
            });
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(state),
            Some(Err(e)) => return Err(kafka_error(&format!("reading {topic}"), e)),
            Some(Ok(message)) => {
                let key = message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                state.apply(topic, &key, message.payload())?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_record_of_each_key_wins() {
        let mut state = State::default();
        let position =
            |lsn: u64, ordinal: u32| serde_json::to_vec(&Position::of(Lsn(lsn), ordinal)).unwrap();
        state.apply("t", COPIED, Some(b"[1,2]")).unwrap();
        state
            .apply("t", "position.1", Some(&position(10, 3)))
            .unwrap();
        state
            .apply("t", "position.1", Some(&position(12, 0)))
            .unwrap();
        state
            .apply("t", "position.2", Some(&position(9, 1)))
            .unwrap();
        state.apply("t", "position.2", None).unwrap();
        state.apply("t", COPIED, Some(b"[1]")).unwrap();
        assert_eq!(state.copied, BTreeSet::from([TableId(1)]));
        let at = state.positions[&TableId(1)];
        assert!(at.covers(Lsn(12), 0) && at.covers(Lsn(11), 9) && !at.covers(Lsn(12), 1));
        assert!(!state.positions.contains_key(&TableId(2)));
        let foreign = state.apply("t", "offsets", Some(b"{}")).unwrap_err();
        assert!(
            foreign.to_string().contains("another producer"),
            "{foreign}"
        );
        let garbage = state.apply("t", COPIED, Some(b"nope")).unwrap_err();
        assert!(
            garbage.to_string().contains("not written by etl"),
            "{garbage}"
        );
    }
}
