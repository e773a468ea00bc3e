//! The one writer of the stream: publishes messages in order, each with
//! `Nats-Expected-Last-Sequence` set to the sequence the previous one will get, so the server
//! stores a message only right after the one before it. The stream therefore always holds a
//! gap-free prefix of what was published; a message lost in a reconnect makes every later one
//! fail instead of leaving a hole. After any failure the chain forgets what it knew and reads
//! the truth back from the stream (its last sequence, and per subject the id of the last
//! message, see [`super::subject::Applied`]) before it publishes again, so what is already
//! there is skipped rather than written twice, whatever the duplicate window.
//!
//! Publishing is pipelined, and only every [`ACK_EVERY`]th message (and the last of a call)
//! asks for an acknowledgement: the chain makes one acknowledged message vouch for every message
//! before it (it is stored only right after them), and a message the server refused without
//! telling makes every later one fail, the acknowledged one included. Up to [`ACK_WINDOW`]
//! messages are in flight. Asking for fewer acknowledgements spares the client a reply inbox,
//! a channel and a lookup per message, and the server an acknowledgement to route back. After
//! a failure every message asks for one until a call succeeds, so an error names its cause
//! (the refused message's own reason, not the `wrong last sequence` of the ones after it).

use std::collections::{HashMap, VecDeque};

use async_nats::jetstream::context::{Context, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::{HeaderMap, Subject, header};
use bytes::Bytes;

use super::stream::{StreamSpec, ensure_stream};
use super::subject::{Applied, parse_id};
use crate::engine::destination::{Error, Result};

/// Messages in flight (published, not yet vouched for by an acknowledgement).
const ACK_WINDOW: usize = 5_000;

/// Every this many messages, one asks for an acknowledgement.
const ACK_EVERY: usize = 1_000;

/// A message ready to publish.
pub struct Outgoing {
    /// Shared by the messages of a table (a cheap clone).
    pub subject: Subject,
    pub id: String,
    pub key: Option<String>,
    pub payload: Bytes,
}

/// Header holding the message's key (the row's key columns as JSON).
pub const KEY_HEADER: &str = "Etl-Key";

/// What the writer knows of the stream; behind the destination's mutex.
pub struct Chain {
    context: Context,
    spec: StreamSpec,
    /// Found or created at first use (the server may be down when the destination starts).
    stream: Option<Stream>,
    /// Sequence of the stream's last message; `None`: read it before publishing.
    last_sequence: Option<u64>,
    /// Per subject, how far it got (read lazily; cleared after a failure).
    applied: HashMap<String, Applied>,
    /// Set by a failure, cleared by a success: every message asks for an acknowledgement, so
    /// a message the server refuses again is named with its own reason.
    ack_each: bool,
}

impl Chain {
    pub fn new(context: Context, spec: StreamSpec) -> Self {
        Chain {
            context,
            spec,
            stream: None,
            last_sequence: None,
            applied: HashMap::new(),
            ack_each: false,
        }
    }

    async fn stream(&mut self) -> Result<&mut Stream> {
        if self.stream.is_none() {
            self.stream = Some(ensure_stream(&self.context, &self.spec).await?);
        }
        self.stream.as_mut().ok_or_else(|| Error::Fatal {
            message: "the stream was not kept".into(),
            source: None,
        })
    }

    /// Deletes every message of `subject`.
    pub async fn purge(&mut self, subject: &str) -> Result<()> {
        let stream = self.stream().await?;
        stream
            .purge()
            .filter(subject)
            .await
            .map_err(|e| Error::transient(format!("purging {subject}"), e))?;
        self.applied.remove(subject);
        Ok(())
    }

    /// How far `subject` got, read from its last message when not known.
    pub async fn applied(&mut self, subject: &str) -> Result<Applied> {
        if let Some(applied) = self.applied.get(subject) {
            return Ok(*applied);
        }
        let applied = match self.last_message(subject).await? {
            None => Applied::Nothing,
            Some((id, _)) => parse_id(&id).ok_or_else(|| Error::Fatal {
                message: format!(
                    "the last message of subject {subject} has the Nats-Msg-Id `{id}`, which \
                     this destination did not write: another writer uses the stream's subjects"
                ),
                source: None,
            })?,
        };
        self.applied.insert(subject.to_owned(), applied);
        Ok(applied)
    }

    /// The `Nats-Msg-Id` and payload of the last message of `subject`, if any.
    pub async fn last_message(&mut self, subject: &str) -> Result<Option<(String, Bytes)>> {
        let stream = self.stream().await?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => {
                let id = message
                    .headers
                    .get(async_nats::header::NATS_MESSAGE_ID)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                Ok(Some((id, message.payload)))
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(Error::transient(
                format!("reading the last message of {subject}"),
                e,
            )),
        }
    }

    /// Records that `subject` got to `applied` (after its messages were acknowledged).
    pub fn set_applied(&mut self, subject: &str, applied: Applied) {
        self.applied.insert(subject.to_owned(), applied);
    }

    async fn last_sequence(&mut self) -> Result<u64> {
        if let Some(sequence) = self.last_sequence {
            return Ok(sequence);
        }
        let info = self
            .stream()
            .await?
            .info()
            .await
            .map_err(|e| Error::transient("reading the stream's state", e))?;
        let sequence = info.state.last_sequence;
        self.last_sequence = Some(sequence);
        Ok(sequence)
    }

    /// Publishes `messages` in order and waits until the server stored every one. On failure
    /// nothing is assumed: the next call reads the stream's state again.
    pub async fn publish(&mut self, messages: Vec<Outgoing>) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let ack_every = if self.ack_each { 1 } else { ACK_EVERY };
        let result = self.publish_in_order(messages, ack_every).await;
        self.ack_each = result.is_err();
        if result.is_err() {
            self.last_sequence = None;
            self.applied.clear();
        }
        result
    }

    async fn publish_in_order(&mut self, messages: Vec<Outgoing>, ack_every: usize) -> Result<()> {
        let mut expected = self.last_sequence().await?;
        let client = self.context.client();
        let mut pending = VecDeque::with_capacity(ACK_WINDOW / ack_every + 1);
        let mut last_acked = expected;
        let count = messages.len();
        for (index, message) in (1usize..).zip(messages) {
            let mut headers = HeaderMap::new();
            if let Some(key) = &message.key {
                headers.insert(KEY_HEADER, key.as_str());
            }
            let acked = index.is_multiple_of(ack_every) || index == count;
            if acked {
                let publish = PublishMessage::build()
                    .payload(message.payload)
                    .headers(headers)
                    .message_id(&message.id)
                    .expected_last_sequence(expected);
                let ack = self
                    .context
                    .send_publish(message.subject, publish)
                    .await
                    .map_err(publish_error)?;
                pending.push_back(ack);
            } else {
                headers.insert(header::NATS_MESSAGE_ID, message.id.as_str());
                headers.insert(
                    header::NATS_EXPECTED_LAST_SEQUENCE,
                    expected.to_string().as_str(),
                );
                client
                    .publish_with_headers(message.subject, headers, message.payload)
                    .await
                    .map_err(core_publish_error)?;
            }
            expected += 1;
            if pending.len() * ack_every >= ACK_WINDOW
                && let Some(ack) = pending.pop_front()
            {
                last_acked = ack.await.map_err(publish_error)?.sequence;
            }
        }
        while let Some(ack) = pending.pop_front() {
            last_acked = ack.await.map_err(publish_error)?.sequence;
        }
        self.last_sequence = Some(last_acked);
        Ok(())
    }
}

/// A message published without an acknowledgement could not be handed to the connection.
fn core_publish_error(error: async_nats::client::PublishError) -> Error {
    match error.kind() {
        async_nats::client::PublishErrorKind::MaxPayloadExceeded => max_payload(&error),
        _ => Error::transient("publishing to JetStream", error),
    }
}

fn max_payload(error: &dyn std::fmt::Display) -> Error {
    Error::Fatal {
        message: format!(
            "a message is larger than the server's max_payload ({error}): raise \
             max_payload in the NATS server configuration"
        ),
        source: None,
    }
}

fn publish_error(error: async_nats::jetstream::context::PublishError) -> Error {
    match error.kind() {
        PublishErrorKind::MaxPayloadExceeded => max_payload(&error),
        PublishErrorKind::StreamNotFound => Error::Fatal {
            message: "the stream is gone (deleted?): no stream takes the subjects any more".into(),
            source: Some(Box::new(error)),
        },
        _ => Error::transient("publishing to JetStream", error),
    }
}
