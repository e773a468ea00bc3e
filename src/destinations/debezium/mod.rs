//! Change messages in Debezium's change-event format (the `payload` of its PostgreSQL
//! connector's events as Kafka Connect's JSON converter writes them with `schemas.enable=false`),
//! and in the flat `json` format of the `jsonl` destination, for message-stream destinations.
//!
//! An event becomes one or more [`Message`]s, each a key (the row's primary-key or
//! replica-identity columns as a JSON object; `None` for keyless tables and truncates) and a
//! value (`None` for a tombstone):
//!
//! ```json
//! {"before":null,"after":{"id":7,"total":"19.90"},
//!  "source":{"version":"0.1.0","connector":"postgresql","name":"shop","ts_ms":1733094636123,
//!            "snapshot":"false","db":"shop","schema":"public","table":"orders",
//!            "txId":747,"lsn":27404232},
//!  "op":"c","ts_ms":1733094636200}
//! ```
//!
//! `op` is `r` for the initial copy, `c`, `u`, `d`, and `t` for a TRUNCATE. As Debezium does, an
//! update that changes the key is a delete of the old key (then its tombstone) and a create of
//! the new one, so a consumer compacting by key keeps the right rows. Value mapping: see
//! [`values`].

pub mod message_id;
pub mod values;

use std::io::Write as _;

use serde_json::Value as Json;

use crate::base::event::{Cell, Change, ChangeEvent, Row};
use crate::base::schema::{ReplicaIdentity, TableSchema};

/// The message format of a stream destination (a configuration value, hence kept in `config`).
pub use crate::config::nats::MessageFormat as Format;

/// What the `source` block says besides the change's own table and position.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub format: Format,
    /// `source.name` (Debezium's `topic.prefix`).
    pub name: String,
    /// `source.db`: the source database.
    pub db: String,
    /// Whether a delete is followed by a tombstone (a `None` value with the same key).
    pub tombstones: bool,
}

/// One message of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The key columns as a JSON object; `None` for keyless tables and truncates.
    pub key: Option<String>,
    /// The JSON value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

/// Milliseconds since 1970-01-01 now (the envelopes' top-level `ts_ms`).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Postgres epoch (2000-01-01) in milliseconds since 1970-01-01.
const POSTGRES_EPOCH_MS: i64 = 946_684_800_000;

/// Where a message stands in the source: `None` for the initial copy.
struct Position {
    ts_ms: i64,
    xid: u32,
    lsn: u64,
}

impl Encoder {
    /// The messages of a change event; `now_ms` is the envelope's `ts_ms`.
    pub fn change(&self, event: &ChangeEvent, now_ms: i64) -> Vec<Message> {
        let schema = &event.table;
        if self.format == Format::Json {
            let mut line = Vec::new();
            crate::destinations::jsonl::encode::change_line(&mut line, event);
            line.pop();
            let key = match &event.change {
                Change::Insert { new } | Change::Update { old: None, new } => key(schema, new),
                Change::Update { old: Some(old), .. } | Change::Delete { old } => key(schema, old),
                Change::Truncate => None,
            };
            return vec![Message {
                key,
                value: Some(line),
            }];
        }
        let position = Position {
            ts_ms: POSTGRES_EPOCH_MS + event.commit_time.div_euclid(1000),
            xid: event.xid,
            lsn: event.lsn.0,
        };
        let envelope = |op: &str, before: Option<(&Row, bool)>, after: Option<&Row>| {
            self.envelope(schema, op, before, after, Some(&position), now_ms)
        };
        let full = schema.replica_identity == ReplicaIdentity::Full;
        match &event.change {
            Change::Insert { new } => vec![Message {
                key: key(schema, new),
                value: Some(envelope("c", None, Some(new))),
            }],
            Change::Update { old, new } => {
                let new_key = key(schema, new);
                let old_key = old.as_ref().and_then(|old| key(schema, old));
                match old_key {
                    Some(old_key) if Some(&old_key) != new_key.as_ref() => {
                        let old = old.as_ref().unwrap_or(new);
                        let mut messages = vec![Message {
                            key: Some(old_key.clone()),
                            value: Some(envelope("d", Some((old, full)), None)),
                        }];
                        if self.tombstones {
                            messages.push(Message {
                                key: Some(old_key),
                                value: None,
                            });
                        }
                        messages.push(Message {
                            key: new_key,
                            value: Some(envelope("c", None, Some(new))),
                        });
                        messages
                    }
                    _ => vec![Message {
                        key: new_key,
                        value: Some(envelope(
                            "u",
                            old.as_ref().map(|old| (old, full)),
                            Some(new),
                        )),
                    }],
                }
            }
            Change::Delete { old } => {
                let old_key = key(schema, old);
                let mut messages = vec![Message {
                    key: old_key.clone(),
                    value: Some(envelope("d", Some((old, full)), None)),
                }];
                if self.tombstones && old_key.is_some() {
                    messages.push(Message {
                        key: old_key,
                        value: None,
                    });
                }
                messages
            }
            Change::Truncate => vec![Message {
                key: None,
                value: Some(envelope("t", None, None)),
            }],
        }
    }

    /// The message of a row of the initial copy (`op: r`).
    pub fn read(&self, schema: &TableSchema, row: &Row, now_ms: i64) -> Message {
        let value = match self.format {
            Format::Json => {
                let mut line = Vec::new();
                crate::destinations::jsonl::encode::read_line(&mut line, schema, row);
                line.pop();
                line
            }
            Format::DebeziumJson => self.envelope(schema, "r", None, Some(row), None, now_ms),
        };
        Message {
            key: key(schema, row),
            value: Some(value),
        }
    }

    /// The message that starts a table's (re)copy: a truncate (`op: t`, snapshot `true`), so
    /// a consumer drops what it holds of the table before the copy's rows.
    pub fn copy_start(&self, schema: &TableSchema, now_ms: i64) -> Message {
        let value = match self.format {
            Format::Json => {
                let mut line = Vec::new();
                crate::destinations::jsonl::encode::copy_start_line(&mut line, schema);
                line.pop();
                line
            }
            Format::DebeziumJson => self.envelope(schema, "t", None, None, None, now_ms),
        };
        Message {
            key: None,
            value: Some(value),
        }
    }

    fn envelope(
        &self,
        schema: &TableSchema,
        op: &str,
        before: Option<(&Row, bool)>,
        after: Option<&Row>,
        position: Option<&Position>,
        now_ms: i64,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"before\":");
        match before {
            Some((row, true)) => row_object(&mut out, schema, row, None),
            Some((row, false)) => row_object(&mut out, schema, row, Some(&schema.key_columns())),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"after\":");
        match after {
            Some(row) => row_object(&mut out, schema, row, None),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"source\":{\"version\":");
        string(&mut out, env!("CARGO_PKG_VERSION"));
        out.extend_from_slice(b",\"connector\":\"postgresql\",\"name\":");
        string(&mut out, &self.name);
        let ts_ms = position.map_or(now_ms, |p| p.ts_ms);
        let snapshot = if position.is_some() { "false" } else { "true" };
        let _ = write!(
            out,
            ",\"ts_ms\":{ts_ms},\"snapshot\":\"{snapshot}\",\"db\":"
        );
        string(&mut out, &self.db);
        out.extend_from_slice(b",\"schema\":");
        string(&mut out, &schema.name.schema);
        out.extend_from_slice(b",\"table\":");
        string(&mut out, &schema.name.name);
        match position {
            Some(p) => {
                let _ = write!(out, ",\"txId\":{},\"lsn\":{}}}", p.xid, p.lsn);
            }
            None => out.extend_from_slice(b",\"txId\":null,\"lsn\":null}"),
        }
        let _ = write!(out, ",\"op\":\"{op}\",\"ts_ms\":{now_ms}}}");
        out
    }
}

/// The key columns of `row` as a JSON object (`{"id":7}`); `None` for keyless tables or when
/// the row lacks a key value.
pub fn key(schema: &TableSchema, row: &Row) -> Option<String> {
    let columns = schema.key_columns();
    if columns.is_empty() || columns.iter().any(|&i| row.get(i).is_none()) {
        return None;
    }
    let mut out = Vec::new();
    row_object(&mut out, schema, row, Some(&columns));
    String::from_utf8(out).ok()
}

/// `{"column": value, …}` of every column of the schema (`only`: of those columns); NULL is
/// `null`, an unchanged TOAST value is Debezium's placeholder.
fn row_object(out: &mut Vec<u8>, schema: &TableSchema, row: &Row, only: Option<&[usize]>) {
    out.push(b'{');
    let mut first = true;
    for (index, (column, cell)) in schema.columns.iter().zip(row).enumerate() {
        if only.is_some_and(|only| !only.contains(&index)) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        string(out, &column.name);
        out.push(b':');
        let value = match cell {
            Cell::Null => Json::Null,
            Cell::Unchanged => values::unavailable(column),
            Cell::Text(text) => values::value(column, text),
        };
        // Writing a `serde_json::Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &value);
    }
    out.push(b'}');
}

fn string(out: &mut Vec<u8>, text: &str) {
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests;
