//! The `nats` destination: every change as a message in a NATS JetStream stream, one subject
//! per table (`{prefix}.{schema}.{table}`, see [`subject`]), in Debezium's change format or the
//! flat `json` format ([`crate::destinations::debezium`]), with the row's key in the `Etl-Key`
//! header.
//!
//! # Exactly once
//!
//! Every message carries a `Nats-Msg-Id` made from its change's position (`(commit_lsn,
//! ordinal)` and which of the change's messages it is). The destination itself skips what the
//! stream holds: [`chain`] publishes with `Nats-Expected-Last-Sequence`, so the stream never
//! has a hole, and the id of a subject's last message says how far its table got. The server's
//! duplicate window is a second line (it drops a known id only when the expected sequence
//! matches; a stale one is refused first). The
//! engine's replays after a crash (events at or below that position) are not published again.
//!
//! The destination keeps its own records in the stream, on subjects with one token after the
//! prefix: `{prefix}._etl_identity` (the [`PipelineIdentity`]) and `{prefix}._etl_copied` (the
//! tables whose copy finished).
//!
//! A (re)copy purges the table's subject and starts with a truncate message (`op: t`, snapshot
//! `true`); its rows are `op: r` messages.

mod chain;
pub mod probe;
mod stream;
pub mod subject;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Subject, jetstream};
use bytes::Bytes;
use tokio::sync::Mutex;

use self::chain::{Chain, Outgoing};
use self::stream::StreamSpec;
use self::subject::{Applied, change_id, control_subject, copy_id, table_subject};
use crate::base::event::{ChangeEvent, CopyChunk};
use crate::base::schema::{TableId, TableSchema};
use crate::config::NatsDestinationConfig;
use crate::destinations::debezium::{Encoder, Message, now_ms};
use crate::engine::destination::{Destination, Error, PipelineIdentity, Result};

pub use self::chain::KEY_HEADER;

/// How long a request to the server may take before it counts as a (transient) failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The destination's state, behind one lock: the stream has a single writer.
struct State {
    chain: Chain,
    /// Tables whose copy finished (mirrors `{prefix}._etl_copied`); `None` until read.
    copied: Option<BTreeSet<TableId>>,
    /// Per table being copied: the copy's token and the next row number.
    copies: HashMap<TableId, (u64, u64)>,
}

/// Writes change messages into one JetStream stream.
pub struct NatsDestination {
    description: String,
    prefix: String,
    encoder: Encoder,
    max_payload: usize,
    state: Mutex<State>,
}

impl std::fmt::Debug for NatsDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsDestination")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// What [`Destination::describe`] says of the destination `config` describes (no credentials).
pub fn describe(config: &NatsDestinationConfig) -> String {
    format!(
        "nats {} stream {} subjects {}.>",
        public_urls(config.url.expose()),
        config.stream_name(),
        config.subject_prefix
    )
}

/// The server URLs without any `user:password@`.
fn public_urls(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let url = url.trim();
            match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    format!("{}{}", &url[..scheme + 3], &url[at + 1..])
                }
                (None, Some(at)) => url[at + 1..].to_owned(),
                _ => url.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Connects to the server with the configured credentials.
/// Connects to the server with the configured credentials; `in_background`: returns at once
/// and keeps trying (requests fail as transient until connected).
pub async fn connect_client(
    config: &NatsDestinationConfig,
    in_background: bool,
) -> Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new()
        .name("etl")
        .connection_timeout(REQUEST_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT));
    if let Some(token) = &config.token {
        options = options.token(token.expose().to_owned());
    }
    if let Some(username) = &config.username {
        let password = config.password.as_ref().map(|p| p.expose().to_owned());
        options = options.user_and_password(username.clone(), password.unwrap_or_default());
    }
    if let Some(seed) = &config.nkey_seed {
        options = options.nkey(seed.expose().to_owned());
    }
    if let Some(path) = &config.credentials_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| Error::Fatal {
                message: format!("nats.credentials_file {}: {e}", path.display()),
                source: None,
            })?;
    }
    if in_background {
        options = options.retry_on_initial_connect();
    }
    let urls: Vec<&str> = config.url.expose().split(',').map(str::trim).collect();
    options.connect(urls).await.map_err(|e| {
        use async_nats::ConnectErrorKind as Kind;
        let message = format!("connecting to {}", public_urls(config.url.expose()));
        match e.kind() {
            Kind::Authentication | Kind::AuthorizationViolation | Kind::ServerParse => {
                Error::fatal(message, e)
            }
            _ => Error::transient(message, e),
        }
    })
}

impl NatsDestination {
    /// Connects, and creates the stream when missing. `database` is `source.db` when
    /// `nats.database` is not set.
    pub async fn connect(config: &NatsDestinationConfig, database: &str) -> Result<Self> {
        let client = match connect_client(config, false).await {
            Ok(client) => client,
            // Down or unreachable now: connect in the background and let the engine's start-up
            // retry until the stream answers (bad credentials still fail here).
            Err(Error::Transient { message, .. }) => {
                tracing::warn!(%message, "NATS server not reachable yet; retrying in the background");
                connect_client(config, true).await?
            }
            Err(other) => return Err(other),
        };
        let max_payload = client.server_info().max_payload;
        let context = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client);
        Ok(NatsDestination {
            description: describe(config),
            prefix: config.subject_prefix.clone(),
            encoder: Encoder {
                format: config.format,
                name: config.subject_prefix.clone(),
                db: config
                    .database
                    .clone()
                    .unwrap_or_else(|| database.to_owned()),
                tombstones: config.tombstones,
            },
            max_payload,
            state: Mutex::new(State {
                chain: Chain::new(context, StreamSpec::new(config)),
                copied: None,
                copies: HashMap::new(),
            }),
        })
    }

    /// A message of `schema` as it goes out; a table error when the server would refuse it.
    fn outgoing(
        &self,
        schema: &TableSchema,
        subject: &Subject,
        id: String,
        message: Message,
    ) -> Result<Outgoing> {
        let payload = Bytes::from(message.value.unwrap_or_default());
        let size = payload.len() + message.key.as_ref().map_or(0, String::len) + id.len() + 200;
        if self.max_payload > 0 && size > self.max_payload {
            return Err(Error::table(
                schema,
                format!(
                    "a message of {size} bytes exceeds the server's max_payload ({} bytes): \
                     raise max_payload in the NATS server configuration, then roll the table back",
                    self.max_payload
                ),
            ));
        }
        Ok(Outgoing {
            subject: subject.clone(),
            id,
            key: message.key,
            payload,
        })
    }

    /// The copied tables, read from the stream the first time.
    async fn copied<'a>(&self, state: &'a mut State) -> Result<&'a mut BTreeSet<TableId>> {
        if state.copied.is_none() {
            let subject = control_subject(&self.prefix, "copied");
            let copied = match state.chain.last_message(&subject).await? {
                None => BTreeSet::new(),
                Some((_, payload)) => serde_json::from_slice::<Vec<u32>>(&payload)
                    .map_err(|e| Error::fatal(format!("the record on {subject} is not ours"), e))?
                    .into_iter()
                    .map(TableId)
                    .collect(),
            };
            state.copied = Some(copied);
        }
        Ok(state.copied.get_or_insert_with(BTreeSet::new))
    }

    /// Publishes the set of copied tables after `change` applied to it.
    async fn record_copied(
        &self,
        state: &mut State,
        change: impl FnOnce(&mut BTreeSet<TableId>),
    ) -> Result<()> {
        let mut copied = self.copied(state).await?.clone();
        change(&mut copied);
        let ids: Vec<u32> = copied.iter().map(|t| t.0).collect();
        let payload = serde_json::to_vec(&ids).map_err(|e| Error::fatal("encoding", e))?;
        self.publish_control(state, "copied", payload).await?;
        state.copied = Some(copied);
        Ok(())
    }

    async fn publish_control(&self, state: &mut State, what: &str, payload: Vec<u8>) -> Result<()> {
        let result = state
            .chain
            .publish(vec![Outgoing {
                subject: Subject::from(control_subject(&self.prefix, what)),
                id: format!("_etl:{what}:{:016x}", rand::random::<u64>()),
                key: None,
                payload: Bytes::from(payload),
            }])
            .await;
        if result.is_err() {
            state.copied = None;
        }
        result
    }
}

impl Destination for NatsDestination {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn keeps_identity(&self) -> bool {
        true
    }

    async fn read_identity(&self) -> Result<Option<PipelineIdentity>> {
        let mut state = self.state.lock().await;
        let subject = control_subject(&self.prefix, "identity");
        match state.chain.last_message(&subject).await? {
            None => Ok(None),
            Some((_, payload)) => serde_json::from_slice(&payload)
                .map(Some)
                .map_err(|e| Error::fatal(format!("the record on {subject} is not ours"), e)),
        }
    }

    async fn write_identity(&self, identity: &PipelineIdentity) -> Result<()> {
        let payload = serde_json::to_vec(identity).map_err(|e| Error::fatal("encoding", e))?;
        let mut state = self.state.lock().await;
        self.publish_control(&mut state, "identity", payload).await
    }

    async fn copied_tables(&self) -> Result<Option<BTreeSet<TableId>>> {
        let mut state = self.state.lock().await;
        Ok(Some(self.copied(&mut state).await?.clone()))
    }

    async fn prepare_table(&self, _schema: &TableSchema) -> Result<()> {
        Ok(())
    }

    async fn begin_copy(&self, schema: &TableSchema) -> Result<()> {
        let subject = table_subject(&self.prefix, &schema.name);
        let mut state = self.state.lock().await;
        self.record_copied(&mut state, |copied| {
            copied.remove(&schema.id);
        })
        .await?;
        state.chain.purge(&subject).await?;
        let token = rand::random::<u64>();
        let start = self.encoder.copy_start(schema, now_ms());
        let start = self.outgoing(
            schema,
            &Subject::from(subject.as_str()),
            copy_id(schema.id, token, 0),
            start,
        )?;
        state.chain.publish(vec![start]).await?;
        state.chain.set_applied(&subject, Applied::Nothing);
        state.copies.insert(schema.id, (token, 1));
        Ok(())
    }

    async fn write_copy_rows(&self, schema: &TableSchema, chunk: CopyChunk) -> Result<()> {
        let rows = chunk
            .rows(schema.columns.len())
            .map_err(|e| Error::table(schema, format!("initial copy: {e}")))?;
        let subject = Subject::from(table_subject(&self.prefix, &schema.name));
        let now = now_ms();
        let mut state = self.state.lock().await;
        let (token, first) = *state
            .copies
            .entry(schema.id)
            .or_insert_with(|| (rand::random::<u64>(), 1));
        let mut messages = Vec::with_capacity(rows.len());
        for (n, row) in (first..).zip(&rows) {
            let message = self.encoder.read(schema, row, now);
            messages.push(self.outgoing(
                schema,
                &subject,
                copy_id(schema.id, token, n),
                message,
            )?);
        }
        state.chain.publish(messages).await?;
        state
            .copies
            .insert(schema.id, (token, first + rows.len() as u64));
        Ok(())
    }

    async fn finish_copy(&self, schema: &TableSchema) -> Result<()> {
        let mut state = self.state.lock().await;
        self.record_copied(&mut state, |copied| {
            copied.insert(schema.id);
        })
        .await?;
        state.copies.remove(&schema.id);
        Ok(())
    }

    async fn alter_table(&self, _old: &TableSchema, _new: &TableSchema) -> Result<()> {
        // Messages carry their columns by name: the next message has the new shape.
        Ok(())
    }

    async fn write_events(&self, events: Vec<ChangeEvent>) -> Result<()> {
        let now = now_ms();
        let mut state = self.state.lock().await;
        let mut messages = Vec::with_capacity(events.len());
        let mut reached: HashMap<String, Applied> = HashMap::new();
        // The table of the previous event, its subject, and how far that subject got: a batch
        // mostly holds runs of one table, so the subject is made once per run.
        let mut current: Option<(&Arc<TableSchema>, String, Subject)> = None;
        let mut applied = Applied::Nothing;
        for event in &events {
            let schema = &event.table;
            if !current
                .as_ref()
                .is_some_and(|(table, ..)| Arc::ptr_eq(table, schema))
            {
                let name = table_subject(&self.prefix, &schema.name);
                if let Some((_, previous, _)) = current.take() {
                    reached.insert(previous, applied);
                }
                applied = match reached.get(&name) {
                    Some(applied) => *applied,
                    None => state.chain.applied(&name).await?,
                };
                let subject = Subject::from(name.as_str());
                current = Some((schema, name, subject));
            }
            let Some((_, _, subject)) = &current else {
                continue;
            };
            let encoded = self.encoder.change(event, now);
            let parts = encoded.len() as u32;
            let written = applied.written(event.position(), parts);
            for (part, message) in (1..).zip(encoded).skip(written as usize) {
                let id = change_id(schema.id, event.commit_lsn, event.ordinal, part, parts);
                messages.push(self.outgoing(schema, subject, id, message)?);
            }
            if written < parts {
                applied = Applied::Change {
                    commit_lsn: event.commit_lsn,
                    ordinal: event.ordinal,
                    part: parts,
                    parts,
                };
            }
        }
        if let Some((_, name, _)) = current {
            reached.insert(name, applied);
        }
        state.chain.publish(messages).await?;
        for (subject, applied) in reached {
            state.chain.set_applied(&subject, applied);
        }
        Ok(())
    }
}
