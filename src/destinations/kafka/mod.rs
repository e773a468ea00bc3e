//! The `kafka` destination: every change as a record in a Kafka topic, one topic per table
//! (`{prefix}.{schema}.{table}`, see [`topic`]), in Debezium's change format or the flat `json`
//! format ([`crate::destinations::debezium`]). A record's key is the row's key columns as JSON
//! (null for keyless tables), partitioned as Java's default partitioner does; its `etl.id`
//! header is the message id of [`crate::destinations::debezium::message_id`].
//!
//! # Exactly once
//!
//! Each call of the engine (a batch of changes, the start or end of a copy) is one Kafka
//! transaction of a transactional, idempotent producer; copied rows are gathered into
//! transactions of about [`COPY_TRANSACTION_BYTES`], the last one committed with the end of the
//! copy (a copy cut short is started again from its truncate record, so rows held back are
//! never lost). The same transaction
//! writes, to the destination's compacted state topic ([`state`]), each touched table's last
//! change position. After any failure the producer is made again (which aborts an open
//! transaction and fences an older producer with the same `transactional.id`) and the state is
//! read back, committed records only; changes the engine replays at or before a table's
//! recorded position are not written again. A consumer with `isolation.level=read_committed`
//! therefore sees each change once, in order per key.
//!
//! A (re)copy starts with a truncate record (`op: t`, snapshot `true`) that tells consumers to
//! drop what they hold of the table; its rows are `op: r` records. A copy interrupted by a crash
//! is started again with a new truncate record.

mod client;
pub mod probe;
pub mod state;
pub mod topic;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::Mutex;

use self::client::{REQUEST_TIMEOUT, blocking, create_topics, kafka_error};
use self::state::{COPIED, IDENTITY, Position, State, position_key};
use self::topic::{MAX_TOPIC_LEN, state_topic, table_topic};
use crate::base::event::{ChangeEvent, CopyChunk};
use crate::base::schema::{TableId, TableSchema};
use crate::config::KafkaDestinationConfig;
use crate::destinations::debezium::message_id::{change_id, copy_id};
use crate::destinations::debezium::{Encoder, Message, now_ms};
use crate::engine::destination::{Destination, Error, PipelineIdentity, Result};

pub use self::client::base_config;

/// Header holding the record's message id.
pub const ID_HEADER: &str = "etl.id";

/// One record of a transaction.
struct Outgoing {
    /// The table whose record it is (`None`: a state record), named by a too-large record's
    /// table error.
    table: Option<Arc<TableSchema>>,
    topic: String,
    id: String,
    key: Option<String>,
    value: Option<Vec<u8>>,
}

/// What the destination holds between calls; behind one lock: a transactional producer runs
/// one transaction at a time.
#[derive(Default)]
struct Session {
    /// `None` until made, and again after a failure.
    producer: Option<FutureProducer>,
    /// What the state topic says (updated as transactions commit); `None`: read it.
    state: Option<State>,
    /// Topics known to exist.
    topics: HashSet<String>,
    /// Per table being copied.
    copies: HashMap<TableId, Copy>,
}

/// A running copy of one table.
struct Copy {
    /// Part of each copied row's message id: a new copy's ids differ from an earlier one's.
    token: u64,
    /// The next row's number.
    next: u64,
    /// Encoded rows not yet written, and their bytes.
    pending: Vec<Outgoing>,
    pending_bytes: usize,
}

impl Copy {
    fn new(token: u64) -> Copy {
        Copy {
            token,
            next: 1,
            pending: Vec::new(),
            pending_bytes: 0,
        }
    }
}

/// Copied rows are written in transactions of about this many bytes of values: one per
/// 64 KiB chunk made the copy as slow as the broker's transaction round trips.
const COPY_TRANSACTION_BYTES: usize = 8 * 1024 * 1024;

/// Writes change records into Kafka topics.
pub struct KafkaDestination {
    config: KafkaDestinationConfig,
    description: String,
    encoder: Encoder,
    state_topic: String,
    session: Mutex<Session>,
}

impl std::fmt::Debug for KafkaDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaDestination")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// What [`Destination::describe`] says of the destination `config` describes (no credentials).
pub fn describe(config: &KafkaDestinationConfig) -> String {
    format!(
        "kafka {} topics {}.*",
        config.brokers.join(","),
        config.topic_prefix
    )
}

impl KafkaDestination {
    /// A destination for `config`; `database` is `source.db` when `kafka.database` is not set.
    /// Connects lazily: the brokers may be down now (the first write retries until they answer).
    pub fn new(config: &KafkaDestinationConfig, database: &str) -> Self {
        KafkaDestination {
            config: config.clone(),
            description: describe(config),
            encoder: Encoder {
                format: config.format,
                name: config.topic_prefix.clone(),
                db: config
                    .database
                    .clone()
                    .unwrap_or_else(|| database.to_owned()),
                tombstones: config.tombstones,
            },
            state_topic: state_topic(&config.topic_prefix),
            session: Mutex::new(Session::default()),
        }
    }

    /// The producer and the state, made and read when missing.
    async fn ready<'a>(&self, session: &'a mut Session) -> Result<(FutureProducer, &'a mut State)> {
        if !session.topics.contains(&self.state_topic) {
            create_topics(&self.config, &[(self.state_topic.clone(), 1, true)]).await?;
            session.topics.insert(self.state_topic.clone());
        }
        let producer = match &session.producer {
            Some(producer) => producer.clone(),
            None => {
                // Fences any earlier producer and ends its open transaction before the state
                // is read, so the state read is final.
                let producer = client::transactional_producer(&self.config).await?;
                session.state = None;
                session.producer = Some(producer.clone());
                producer
            }
        };
        if session.state.is_none() {
            session.state = Some(state::read(&self.config, &self.state_topic).await?);
        }
        let state = session.state.get_or_insert_with(State::default);
        Ok((producer, state))
    }

    /// Makes sure the topic of `schema` exists.
    async fn ensure_topic(&self, session: &mut Session, schema: &TableSchema) -> Result<String> {
        let topic = table_topic(&self.config.topic_prefix, &schema.name);
        if topic.len() > MAX_TOPIC_LEN {
            return Err(Error::table(
                schema,
                format!(
                    "its topic name `{topic}` is longer than Kafka's {MAX_TOPIC_LEN} characters: \
                     use a shorter kafka.topic_prefix or rename the table"
                ),
            ));
        }
        if !session.topics.contains(&topic) {
            create_topics(
                &self.config,
                &[(topic.clone(), self.config.partitions, false)],
            )
            .await?;
            session.topics.insert(topic.clone());
        }
        Ok(topic)
    }

    /// Writes `records` and the state records `updates` in one transaction; on success applies
    /// `updates` to the held state. On failure the producer and the state are dropped, to be
    /// made and read again.
    async fn transact(
        &self,
        session: &mut Session,
        records: Vec<Outgoing>,
        updates: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<()> {
        let (producer, _) = self.ready(session).await?;
        let state_records = updates.iter().map(|(key, value)| Outgoing {
            table: None,
            topic: self.state_topic.clone(),
            id: String::new(),
            key: Some(key.clone()),
            value: value.clone(),
        });
        let all: Vec<Outgoing> = records.into_iter().chain(state_records).collect();
        let result = write_transaction(&producer, all).await;
        match result {
            Ok(()) => {
                let applied = match session.state.as_mut() {
                    Some(state) => updates.iter().try_for_each(|(key, value)| {
                        state.apply(&self.state_topic, key, value.as_deref())
                    }),
                    None => Ok(()),
                };
                if applied.is_err() {
                    // Committed, but not understood: read the topic again before the next write.
                    session.state = None;
                }
                applied
            }
            Err(e) => {
                session.state = None;
                if let Some(old) = session.producer.take() {
                    // Destroying a producer waits for its threads: off the runtime.
                    let _ = blocking(move || drop(old)).await;
                }
                Err(e)
            }
        }
    }

    /// The state update that records `copied` with `table` added or removed.
    fn copied_update(&self, state: &State, table: TableId, add: bool) -> Result<Vec<u8>> {
        let mut copied = state.copied.clone();
        if add {
            copied.insert(table);
        } else {
            copied.remove(&table);
        }
        let ids: Vec<u32> = copied.iter().map(|t| t.0).collect();
        serde_json::to_vec(&ids).map_err(|e| Error::fatal("encoding", e))
    }
}

/// One transaction: begin, queue every record, commit (which waits for every delivery).
async fn write_transaction(producer: &FutureProducer, records: Vec<Outgoing>) -> Result<()> {
    producer
        .begin_transaction()
        .map_err(|e| kafka_error("beginning a transaction", e))?;
    let queued = queue(producer, &records).await;
    if let Err(e) = queued {
        let abort = producer.clone();
        let _ = blocking(move || abort.abort_transaction(REQUEST_TIMEOUT)).await;
        return Err(e);
    }
    let commit = producer.clone();
    blocking(move || commit.commit_transaction(REQUEST_TIMEOUT))
        .await?
        .map_err(|e| kafka_error("committing a transaction", e))
}

/// Records queued in the producer and not yet acknowledged by the broker, at most: beyond what
/// its in-flight requests carry, queued records make librdkafka's broker thread poll its socket
/// without sleeping until a request slot frees (measured: a core spinning during a copy).
const UNACKNOWLEDGED: usize = 1024;

/// Queues `records` in the producer, waiting while its queue is full or while
/// [`UNACKNOWLEDGED`] records wait for the broker's acknowledgement.
async fn queue(producer: &FutureProducer, records: &[Outgoing]) -> Result<()> {
    let mut deliveries =
        std::collections::VecDeque::with_capacity(records.len().min(UNACKNOWLEDGED));
    for record in records {
        if deliveries.len() >= UNACKNOWLEDGED
            && let Some(oldest) = deliveries.pop_front()
        {
            // A failed delivery fails the commit too, whose error says more: only waited for.
            let _ = oldest.await;
        }
        let mut future = FutureRecord::<str, [u8]>::to(&record.topic);
        if let Some(key) = &record.key {
            future = future.key(key.as_str());
        }
        if let Some(value) = &record.value {
            future = future.payload(value.as_slice());
        }
        if !record.id.is_empty() {
            future = future.headers(OwnedHeaders::new().insert(Header {
                key: ID_HEADER,
                value: Some(record.id.as_str()),
            }));
        }
        loop {
            match producer.send_result(future) {
                Ok(delivery) => {
                    deliveries.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    future = back;
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    let message = format!(
                        "a record of {} bytes for topic {} is larger than the producer's \
                         message.max.bytes: raise it (kafka.properties) and the topic's \
                         max.message.bytes, then roll the table back",
                        record.value.as_ref().map_or(0, Vec::len),
                        record.topic
                    );
                    return Err(match &record.table {
                        Some(schema) => Error::table(schema, message),
                        None => Error::Fatal {
                            message,
                            source: None,
                        },
                    });
                }
                Err((e, _)) => return Err(kafka_error("queueing a record", e)),
            }
        }
    }
    // Deliveries complete before the commit returns; a failed one fails the commit too, but
    // its own error says more.
    drop(deliveries);
    Ok(())
}

impl Destination for KafkaDestination {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn keeps_identity(&self) -> bool {
        true
    }

    async fn read_identity(&self) -> Result<Option<PipelineIdentity>> {
        let mut session = self.session.lock().await;
        let (_, state) = self.ready(&mut session).await?;
        Ok(state.identity.clone())
    }

    async fn write_identity(&self, identity: &PipelineIdentity) -> Result<()> {
        let value = serde_json::to_vec(identity).map_err(|e| Error::fatal("encoding", e))?;
        let mut session = self.session.lock().await;
        self.transact(
            &mut session,
            Vec::new(),
            vec![(IDENTITY.to_owned(), Some(value))],
        )
        .await
    }

    async fn copied_tables(&self) -> Result<Option<BTreeSet<TableId>>> {
        let mut session = self.session.lock().await;
        let (_, state) = self.ready(&mut session).await?;
        Ok(Some(state.copied.clone()))
    }

    async fn prepare_table(&self, schema: &TableSchema) -> Result<()> {
        let mut session = self.session.lock().await;
        self.ensure_topic(&mut session, schema).await.map(drop)
    }

    async fn begin_copy(&self, schema: &TableSchema) -> Result<()> {
        let mut session = self.session.lock().await;
        let topic = self.ensure_topic(&mut session, schema).await?;
        let (_, state) = self.ready(&mut session).await?;
        let copied = self.copied_update(state, schema.id, false)?;
        let token = rand::random::<u64>();
        let start = self.encoder.copy_start(schema, now_ms());
        let table = Arc::new(schema.clone());
        let record = outgoing(&table, &topic, copy_id(schema.id, token, 0), start);
        self.transact(
            &mut session,
            vec![record],
            vec![
                (COPIED.to_owned(), Some(copied)),
                (position_key(schema.id), None),
            ],
        )
        .await?;
        session.copies.insert(schema.id, Copy::new(token));
        Ok(())
    }

    async fn write_copy_rows(&self, schema: &TableSchema, chunk: CopyChunk) -> Result<()> {
        let rows = chunk
            .rows(schema.columns.len())
            .map_err(|e| Error::table(schema, format!("initial copy: {e}")))?;
        let now = now_ms();
        let mut session = self.session.lock().await;
        let topic = self.ensure_topic(&mut session, schema).await?;
        let copy = session
            .copies
            .entry(schema.id)
            .or_insert_with(|| Copy::new(rand::random::<u64>()));
        let table = Arc::new(schema.clone());
        for (n, row) in (copy.next..).zip(&rows) {
            let message = self.encoder.read(schema, row, now);
            let record = outgoing(&table, &topic, copy_id(schema.id, copy.token, n), message);
            copy.pending_bytes += record.value.as_ref().map_or(0, Vec::len);
            copy.pending.push(record);
        }
        copy.next += rows.len() as u64;
        if copy.pending_bytes < COPY_TRANSACTION_BYTES {
            return Ok(());
        }
        let records = std::mem::take(&mut copy.pending);
        copy.pending_bytes = 0;
        // On failure the engine starts the copy again (`begin_copy`): nothing is retried here.
        self.transact(&mut session, records, Vec::new()).await
    }

    async fn finish_copy(&self, schema: &TableSchema) -> Result<()> {
        let mut session = self.session.lock().await;
        let (_, state) = self.ready(&mut session).await?;
        let copied = self.copied_update(state, schema.id, true)?;
        let rest = session
            .copies
            .get_mut(&schema.id)
            .map(|copy| std::mem::take(&mut copy.pending))
            .unwrap_or_default();
        self.transact(&mut session, rest, vec![(COPIED.to_owned(), Some(copied))])
            .await?;
        session.copies.remove(&schema.id);
        Ok(())
    }

    async fn alter_table(&self, _old: &TableSchema, _new: &TableSchema) -> Result<()> {
        // Records carry their columns by name: the next record has the new shape.
        Ok(())
    }

    async fn write_events(&self, events: Vec<ChangeEvent>) -> Result<()> {
        let now = now_ms();
        let mut session = self.session.lock().await;
        let mut topics: HashMap<TableId, String> = HashMap::new();
        for event in &events {
            if let std::collections::hash_map::Entry::Vacant(entry) = topics.entry(event.table.id) {
                entry.insert(self.ensure_topic(&mut session, &event.table).await?);
            }
        }
        let (_, state) = self.ready(&mut session).await?;
        let mut records = Vec::with_capacity(events.len());
        let mut reached: HashMap<TableId, Position> = HashMap::new();
        for event in &events {
            let schema = &event.table;
            let written = state
                .positions
                .get(&schema.id)
                .is_some_and(|at| at.covers(event.commit_lsn, event.ordinal));
            if written {
                continue;
            }
            let topic = &topics[&schema.id];
            let encoded = self.encoder.change(event, now);
            let parts = encoded.len() as u32;
            for (part, message) in (1..).zip(encoded) {
                let id = change_id(schema.id, event.commit_lsn, event.ordinal, part, parts);
                records.push(outgoing(schema, topic, id, message));
            }
            reached.insert(schema.id, Position::of(event.commit_lsn, event.ordinal));
        }
        if reached.is_empty() {
            return Ok(());
        }
        let mut updates = Vec::with_capacity(reached.len());
        for (table, position) in reached {
            let value = serde_json::to_vec(&position).map_err(|e| Error::fatal("encoding", e))?;
            updates.push((position_key(table), Some(value)));
        }
        self.transact(&mut session, records, updates).await
    }
}

fn outgoing(table: &Arc<TableSchema>, topic: &str, id: String, message: Message) -> Outgoing {
    Outgoing {
        table: Some(Arc::clone(table)),
        topic: topic.to_owned(),
        id,
        key: message.key,
        value: message.value,
    }
}
