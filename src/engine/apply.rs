//! The apply worker: streams the pipeline's permanent slot and applies the changes of every
//! table whose copy is done, in commit order, in batches; acknowledges only what the destination
//! reported durable, and only at commit ends. It also coordinates the table-sync workers: it
//! starts them (up to `max_table_sync_workers`), hands each a catch-up target at a transaction
//! boundary, marks tables `ready`, and picks up tables added to or removed from the publication.
//!
//! One stream connection is a *session*; any failure ends the session, the worker waits for
//! the write in flight, and a new session resumes from the durable position (transient errors
//! after a backoff; a table-level destination error after marking that table errored).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::catalog::{self, PublishedTable};
use super::changes::{self, Transaction};
use super::destination::{self, Destination};
use super::error::Error;
use super::observer::Observer;
use super::retry::Backoff;
use super::slot_monitor;
use super::source::{
    PgOutputMessage, PgOutputOptions, ReplicationClient, ReplicationMessage, ReplicationStream,
};
use super::state::{RetryPolicy, StateStore, TableError, TableState};
use super::table_sync::{self, CatchupGrant, CatchupRequest, SyncContext};
use crate::base::error_chain;
use crate::base::event::{Change, ChangeEvent};
use crate::base::lsn::Lsn;
use crate::base::schema::{TableId, TableName, TableSchema};
use crate::config::{PgConnection, PipelineConfig};
use crate::shutdown::Shutdown;

/// While changes keep arriving, acknowledgements go out at most this often.
const ACK_INTERVAL: Duration = Duration::from_millis(100);

/// Pause after draining the socket in the middle of a transaction.
const GATHER_PAUSE: Duration = Duration::from_millis(1);

/// Messages taken from the stream's buffer per wake-up.
const BURST: usize = 512;

/// Progress is stored in `etl` at most this often (the slot holds it too).
const PROGRESS_STORE_INTERVAL: Duration = Duration::from_secs(1);

/// The slot name of a pipeline's apply worker.
pub fn apply_slot_name(pipeline_id: u64) -> String {
    format!("etl_apply_{pipeline_id}")
}

/// Everything the apply worker starts with.
pub(crate) struct ApplySetup<D> {
    pub config: PipelineConfig,
    pub connection: PgConnection,
    pub pool: PgPool,
    pub store: StateStore,
    pub destination: D,
    pub shutdown: Shutdown,
    pub observer: Observer,
    pub tables: Vec<PublishedTable>,
    pub states: BTreeMap<TableId, TableState>,
    pub schemas: BTreeMap<TableId, TableSchema>,
    /// Resume position: max(slot confirmed_flush_lsn, stored progress).
    pub resume: Lsn,
    /// `--once`: stop when everything is ready and durable up to here.
    pub once_target: Option<Lsn>,
}

type WriteResult = (destination::Result<()>, Option<Lsn>, u64);

/// A relation as the stream last described it.
struct Relation {
    schema: Arc<TableSchema>,
    /// The destination is known to have this shape.
    checked: bool,
}

/// The batch being filled.
#[derive(Default)]
struct Batch {
    events: Vec<ChangeEvent>,
    bytes: usize,
    /// End of the last commit whose events are all in this batch or earlier ones.
    commit_end: Option<Lsn>,
    started: Option<Instant>,
}

/// Why the worker woke up.
enum Wake {
    Shutdown,
    Written(Result<WriteResult, tokio::task::JoinError>),
    Message(Result<Option<ReplicationMessage>, super::source::Error>),
    Catchup(CatchupRequest),
    Worker(Result<(TableId, Result<Option<TableState>, Error>), tokio::task::JoinError>),
    StatusTick,
    RefreshTick,
    FillDeadline,
    Idle,
}

/// How a session ended without an error.
enum SessionEnd {
    Stopped,
}

pub(crate) struct ApplyWorker<D> {
    setup: ApplySetup<D>,
    slot: String,
    states: BTreeMap<TableId, TableState>,
    names: BTreeMap<TableId, TableName>,
    /// The shape the destination has for each table.
    schemas: HashMap<TableId, Arc<TableSchema>>,
    durable: Lsn,
    /// Transaction boundary reached by the stream: every transaction ending at or before it
    /// was processed.
    position: Lsn,
    batch: Batch,
    inflight: Option<JoinHandle<WriteResult>>,
    catchup_tx: mpsc::UnboundedSender<CatchupRequest>,
    catchup_rx: mpsc::UnboundedReceiver<CatchupRequest>,
    workers: JoinSet<(TableId, Result<Option<TableState>, Error>)>,
    running: HashSet<TableId>,
    progress_stored: Lsn,
    progress_stored_at: Instant,
    /// When the last status update went out, and whether a newer durable position waits.
    last_status: Instant,
    status_pending: bool,
    bytes_seen: u64,
}

impl<D: Destination + Clone> ApplyWorker<D> {
    pub fn new(mut setup: ApplySetup<D>) -> Self {
        let (catchup_tx, catchup_rx) = mpsc::unbounded_channel();
        let names = setup
            .tables
            .iter()
            .map(|t| (t.id, t.name.clone()))
            .collect();
        let schemas = std::mem::take(&mut setup.schemas)
            .into_iter()
            .map(|(id, schema)| (id, Arc::new(schema)))
            .collect();
        Self {
            slot: apply_slot_name(setup.config.id),
            states: std::mem::take(&mut setup.states),
            names,
            schemas,
            durable: setup.resume,
            position: setup.resume,
            batch: Batch::default(),
            inflight: None,
            catchup_tx,
            catchup_rx,
            workers: JoinSet::new(),
            running: HashSet::new(),
            progress_stored: Lsn::ZERO,
            progress_stored_at: Instant::now(),
            last_status: Instant::now(),
            status_pending: false,
            bytes_seen: 0,
            setup,
        }
    }

    /// Runs sessions until shutdown (or, with `--once`, until done); restarts a failed session
    /// after a backoff when the failure is transient or concerns one table.
    pub async fn run(mut self) -> Result<(), Error> {
        let mut backoff = Backoff::new(&self.setup.config.retry);
        let mut shutdown = self.setup.shutdown.clone();
        let result = loop {
            let started = Instant::now();
            let outcome = self.session().await;
            // Nothing may be written after this point by the failed session.
            self.abandon_inflight().await;
            let error = match outcome {
                Ok(SessionEnd::Stopped) => break Ok(()),
                Err(error) => error,
            };
            if started.elapsed() > Duration::from_secs(60) {
                backoff.reset();
            }
            if let Error::Destination(destination::Error::Table { table, message, .. }) = &error {
                self.mark_errored(*table, message).await?;
                continue;
            }
            if !error.is_transient() {
                // A slot the server invalidated fails in many ways; name the cause.
                let slot = slot_monitor::read_slot(&self.setup.pool, &self.slot).await;
                if slot.is_ok_and(|info| info.is_some_and(|i| i.is_invalidated())) {
                    break Err(Error::SlotInvalidated {
                        slot: self.slot.clone(),
                    });
                }
                break Err(error);
            }
            let delay = backoff.next_delay();
            tracing::warn!(error = %error_chain(&error), ?delay, attempt = backoff.attempts(),
                "replication interrupted, reconnecting");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.wait() => break Ok(()),
            }
        };
        self.stop_workers().await;
        result
    }

    async fn abandon_inflight(&mut self) {
        if let Some(handle) = self.inflight.take() {
            let _ = handle.await;
        }
        self.batch = Batch::default();
    }

    async fn stop_workers(&mut self) {
        // Workers watch the same shutdown handle; give them a moment, then cut them off.
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        while !self.workers.is_empty() {
            tokio::select! {
                _ = self.workers.join_next() => {}
                () = &mut deadline => {
                    self.workers.abort_all();
                    break;
                }
            }
        }
    }

    async fn mark_errored(&mut self, id: TableId, message: &str) -> Result<(), Error> {
        let table = self
            .names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| TableName::new("", format!("relation {id}")));
        tracing::error!(table = %table, error = message, "table errored; the other tables continue");
        let state = TableState::Errored(TableError {
            reason: format!("destination rejected a change: {message}"),
            hint: "fix the destination table, then roll the table back to resume it".into(),
            retry: RetryPolicy::Manual,
        });
        self.setup.store.set_table_state(id, &state).await?;
        self.setup.observer.table_state(&table, "errored");
        self.states.insert(id, state);
        Ok(())
    }

    async fn session(&mut self) -> Result<SessionEnd, Error> {
        self.spawn_workers();
        let client = ReplicationClient::connect(&self.setup.connection).await?;
        let options = PgOutputOptions {
            publication_names: vec![self.setup.config.publication_name.clone()],
            proto_version: 1,
            messages: false,
            streaming: false,
        };
        let start = self.durable;
        tracing::info!(slot = %self.slot, lsn = %start, "resuming from LSN {start}");
        let mut stream = client
            .start_replication(&self.slot, start, &options)
            .await?;
        self.position = start;
        self.bytes_seen = 0;
        let mut relations: HashMap<u32, Relation> = HashMap::new();
        let mut tx: Option<Transaction> = None;
        let config = &self.setup.config;
        let max_fill = Duration::from_millis(config.batch.max_fill_ms);
        let mut status_tick =
            tokio::time::interval(Duration::from_millis(config.status_update_interval_ms));
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refresh_tick =
            tokio::time::interval(Duration::from_secs(config.publication_refresh_secs));
        refresh_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh_tick.reset();
        let mut shutdown = self.setup.shutdown.clone();
        loop {
            if self.once_done() {
                self.finish(stream).await?;
                return Ok(SessionEnd::Stopped);
            }
            let can_launch = self.inflight.is_none();
            let idle_flush = can_launch && self.batch.commit_end.is_some();
            let idle_work = idle_flush || self.status_pending;
            let fill_deadline = self
                .batch
                .started
                .map(|t| tokio::time::Instant::from_std(t + max_fill));
            let writing = self.inflight.is_some();
            let batch_full = self.batch_is_full();
            let has_workers = !self.workers.is_empty();
            let inflight = &mut self.inflight;
            let catchup_rx = &mut self.catchup_rx;
            let workers = &mut self.workers;
            let wake = tokio::select! {
                biased;
                () = shutdown.wait() => Wake::Shutdown,
                Some(written) = async { match inflight.as_mut() {
                    Some(handle) => Some(handle.await),
                    None => None,
                } }, if writing => Wake::Written(written),
                Some(request) = catchup_rx.recv(), if tx.is_none() => Wake::Catchup(request),
                Some(joined) = workers.join_next(), if has_workers => Wake::Worker(joined),
                _ = status_tick.tick() => Wake::StatusTick,
                _ = refresh_tick.tick() => Wake::RefreshTick,
                () = tokio::time::sleep_until(fill_deadline.unwrap_or_else(tokio::time::Instant::now)),
                    if can_launch && fill_deadline.is_some() => Wake::FillDeadline,
                // A full batch waits for the write in flight: memory stays bounded.
                message = stream.next(), if !(writing && batch_full) => Wake::Message(message),
                () = std::future::ready(()), if idle_work => Wake::Idle,
            };
            match wake {
                Wake::Shutdown => {
                    self.drain(&mut stream).await?;
                    self.finish(stream).await?;
                    return Ok(SessionEnd::Stopped);
                }
                Wake::Written(result) => {
                    self.inflight = None;
                    self.on_written(result, &mut stream).await?;
                }
                Wake::Catchup(request) => {
                    self.grant_catchup(request, &mut stream, &mut relations)
                        .await?;
                }
                Wake::Worker(joined) => self.on_worker_done(joined)?,
                Wake::StatusTick => {
                    let received = stream.bytes_received();
                    self.setup
                        .observer
                        .bytes_received(received.saturating_sub(self.bytes_seen));
                    self.bytes_seen = received;
                    self.send_status(&mut stream).await?;
                    self.store_progress(false).await?;
                }
                Wake::RefreshTick => {
                    self.refresh_publication().await?;
                    if let Some(info) =
                        slot_monitor::read_slot(&self.setup.pool, &self.slot).await?
                    {
                        self.setup.observer.slot(info.lag_bytes, info.safe_wal_size);
                    }
                }
                Wake::FillDeadline => self.launch_write(&mut stream).await?,
                Wake::Idle => {
                    self.launch_write(&mut stream).await?;
                    if self.status_pending {
                        self.send_status(&mut stream).await?;
                    }
                }
                Wake::Message(message) => {
                    let Some(message) = message? else {
                        return Err(Error::Source(super::source::Error::Closed {
                            target: self.setup.connection.describe(),
                        }));
                    };
                    self.on_message(message, &mut stream, &mut relations, &mut tx)
                        .await?;
                    // Take what is already buffered without going through the select again
                    // (its timers cost more than decoding a message).
                    let mut burst_read = 0;
                    for _ in 0..BURST {
                        if self.batch_is_full() {
                            if self.inflight.is_some() {
                                break;
                            }
                            self.launch_write(&mut stream).await?;
                        }
                        let Some(next) = stream.next().now_or_never() else {
                            break;
                        };
                        let Some(message) = next? else {
                            break;
                        };
                        self.on_message(message, &mut stream, &mut relations, &mut tx)
                            .await?;
                        burst_read += 1;
                    }
                    if self.inflight.is_none() && self.batch_is_full() {
                        self.launch_write(&mut stream).await?;
                    }
                    if tx.is_some() && burst_read < BURST {
                        // In the middle of a transaction the rest is on its way: let it gather
                        // for a moment instead of waking up for every few hundred bytes (the
                        // context switches slow the sending walsender down more than us).
                        tokio::time::sleep(GATHER_PAUSE).await;
                    }
                }
            }
        }
    }

    fn batch_is_full(&self) -> bool {
        let batch = &self.setup.config.batch;
        self.batch.events.len() >= batch.max_size || self.batch.bytes >= batch.max_bytes
    }

    /// `--once` is done: every table ready (or errored), nothing copying, and everything
    /// committed before streaming started is durable.
    fn once_done(&self) -> bool {
        let Some(target) = self.setup.once_target else {
            return false;
        };
        self.durable >= target
            && self.running.is_empty()
            && self.inflight.is_none()
            && self.batch.events.is_empty()
            && self
                .states
                .values()
                .all(|s| matches!(s, TableState::Ready | TableState::Errored(_)))
    }

    async fn on_message(
        &mut self,
        message: ReplicationMessage,
        stream: &mut ReplicationStream,
        relations: &mut HashMap<u32, Relation>,
        tx: &mut Option<Transaction>,
    ) -> Result<(), Error> {
        let (wal_start, message) = match message {
            ReplicationMessage::Keepalive { wal_end, .. } => {
                if tx.is_none() {
                    self.position = self.position.max(wal_end);
                    let idle = self.inflight.is_none()
                        && self.batch.events.is_empty()
                        && self.batch.commit_end.is_none();
                    if idle && wal_end > self.durable {
                        self.advance_durable(wal_end, stream).await?;
                    }
                }
                return Ok(());
            }
            ReplicationMessage::XLogData {
                wal_start, message, ..
            } => (wal_start, message),
        };
        match message {
            PgOutputMessage::Begin {
                final_lsn,
                xid,
                commit_time,
            } => *tx = Some(Transaction::new(final_lsn, xid, commit_time)),
            PgOutputMessage::Commit { end_lsn, .. } => {
                *tx = None;
                self.position = self.position.max(end_lsn);
                self.batch.commit_end = Some(end_lsn);
            }
            PgOutputMessage::Relation {
                id,
                namespace,
                name,
                replica_identity,
                columns,
                ..
            } => {
                let known = relations
                    .get(&id)
                    .map(|r| r.schema.clone())
                    .or_else(|| self.schemas.get(&TableId(id)).cloned());
                let schema = changes::relation_schema(
                    id,
                    &namespace,
                    &name,
                    replica_identity,
                    &columns,
                    known.as_deref(),
                );
                relations.insert(
                    id,
                    Relation {
                        schema: Arc::new(schema),
                        checked: false,
                    },
                );
            }
            PgOutputMessage::Truncate { relations: ids, .. } => {
                let Some(current) = tx.as_mut() else {
                    return Ok(());
                };
                let final_lsn = current.final_lsn;
                for id in ids {
                    if !self.applies(id, final_lsn) {
                        if let Some(current) = tx.as_mut() {
                            current.skip();
                        }
                        continue;
                    }
                    let schema = self.checked_schema(id, relations, stream).await?;
                    if let Some(current) = tx.as_mut() {
                        let event = current.event(schema, wal_start, Change::Truncate);
                        self.push(event, 0);
                    }
                }
            }
            message => {
                let Some(relation) = changes::relation_of(&message) else {
                    return Ok(());
                };
                let Some(final_lsn) = tx.as_ref().map(|t| t.final_lsn) else {
                    return Ok(());
                };
                if !self.applies(relation, final_lsn) {
                    if let Some(current) = tx.as_mut() {
                        current.skip();
                    }
                    return Ok(());
                }
                let schema = self.checked_schema(relation, relations, stream).await?;
                let mut bytes = 0;
                if let Some(result) = changes::data_change(message, &mut bytes) {
                    let (_, change) = result.map_err(|e| Error::Decode {
                        lsn: wal_start,
                        message: e.to_string(),
                    })?;
                    if let Some(current) = tx.as_mut() {
                        let event = current.event(schema, wal_start, change);
                        self.push(event, bytes);
                    }
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, event: ChangeEvent, bytes: usize) {
        if self.batch.events.is_empty() {
            self.batch.started = Some(Instant::now());
        }
        self.batch.events.push(event);
        self.batch.bytes += bytes;
    }

    /// Whether the apply worker applies `relation`'s changes of a transaction committing at
    /// `final_lsn`.
    fn applies(&self, relation: u32, final_lsn: Lsn) -> bool {
        match self.states.get(&TableId(relation)) {
            Some(TableState::Ready) => true,
            Some(TableState::SyncDone(lsn)) => final_lsn >= *lsn,
            _ => false,
        }
    }

    /// The relation's schema, after telling the destination about a changed shape (every
    /// earlier change written first).
    async fn checked_schema(
        &mut self,
        id: u32,
        relations: &mut HashMap<u32, Relation>,
        stream: &mut ReplicationStream,
    ) -> Result<Arc<TableSchema>, Error> {
        let table = TableId(id);
        let Some(relation) = relations.get(&id) else {
            // pgoutput always describes a relation before its first change.
            return Err(Error::Decode {
                lsn: stream.last_received(),
                message: format!("change of relation {id} before its Relation message"),
            });
        };
        if relation.checked {
            return Ok(relation.schema.clone());
        }
        let new = relation.schema.clone();
        match self.schemas.get(&table).cloned() {
            Some(old) if changes::same_shape(&old, &new) => {}
            old => {
                self.drain(stream).await?;
                match &old {
                    Some(old) => self.setup.destination.alter_table(old, &new).await?,
                    None => self.setup.destination.prepare_table(&new).await?,
                }
                self.setup.store.store_schema(&new).await?;
                tracing::info!(table = %new.name, "schema changed");
                self.schemas.insert(table, new.clone());
                self.names.insert(table, new.name.clone());
            }
        }
        if let Some(relation) = relations.get_mut(&id) {
            relation.checked = true;
        }
        Ok(new)
    }

    /// Starts writing the current batch (or, when it holds no events, acknowledges its commit
    /// at once).
    async fn launch_write(&mut self, stream: &mut ReplicationStream) -> Result<(), Error> {
        if self.inflight.is_some() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        if batch.events.is_empty() {
            if let Some(lsn) = batch.commit_end {
                self.advance_durable(lsn, stream).await?;
            }
            return Ok(());
        }
        let destination = self.setup.destination.clone();
        let count = batch.events.len() as u64;
        let ack = batch.commit_end;
        self.inflight = Some(tokio::spawn(async move {
            (destination.write_events(batch.events).await, ack, count)
        }));
        Ok(())
    }

    async fn on_written(
        &mut self,
        result: Result<WriteResult, tokio::task::JoinError>,
        stream: &mut ReplicationStream,
    ) -> Result<(), Error> {
        let (result, ack, count) = result.map_err(|e| {
            Error::Destination(destination::Error::fatal(
                "the destination write panicked",
                e,
            ))
        })?;
        result?;
        self.setup.observer.batch_written();
        self.setup.observer.events_applied(count);
        if let Some(lsn) = ack {
            self.advance_durable(lsn, stream).await?;
        }
        Ok(())
    }

    /// Waits for the write in flight and writes the current batch: everything received is
    /// durable afterwards.
    async fn drain(&mut self, stream: &mut ReplicationStream) -> Result<(), Error> {
        if let Some(handle) = self.inflight.take() {
            let result = handle.await;
            self.on_written(result, stream).await?;
        }
        let batch = std::mem::take(&mut self.batch);
        if !batch.events.is_empty() {
            let count = batch.events.len() as u64;
            self.setup.destination.write_events(batch.events).await?;
            self.setup.observer.batch_written();
            self.setup.observer.events_applied(count);
        }
        if let Some(lsn) = batch.commit_end {
            self.advance_durable(lsn, stream).await?;
        }
        Ok(())
    }

    /// Everything up to `lsn` is durable: acknowledge it at once, and mark tables ready.
    async fn advance_durable(
        &mut self,
        lsn: Lsn,
        stream: &mut ReplicationStream,
    ) -> Result<(), Error> {
        if lsn <= self.durable {
            return Ok(());
        }
        self.durable = lsn;
        // Each acknowledgement that moves the slot makes the server save it to disk: while the
        // stream is busy, acknowledge at most every ACK_INTERVAL; when it goes quiet, the
        // pending acknowledgement goes out at once (see `Wake::Idle`).
        if self.last_status.elapsed() >= ACK_INTERVAL {
            self.send_status(stream).await?;
        } else {
            self.status_pending = true;
        }
        self.setup.observer.confirmed_lsn(lsn);
        let ready: Vec<TableId> = self
            .states
            .iter()
            .filter(|(_, s)| matches!(s, TableState::SyncDone(at) if *at <= lsn))
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            self.setup
                .store
                .set_table_state(id, &TableState::Ready)
                .await?;
            self.states.insert(id, TableState::Ready);
            if let Some(name) = self.names.get(&id) {
                tracing::info!(table = %name, "ready");
                self.setup.observer.table_state(name, "ready");
            }
        }
        self.store_progress(false).await
    }

    async fn send_status(&mut self, stream: &mut ReplicationStream) -> Result<(), Error> {
        self.status_pending = false;
        self.last_status = Instant::now();
        let write = stream.last_received().max(self.durable);
        stream
            .send_status(write, self.durable, self.durable, false)
            .await?;
        Ok(())
    }

    async fn store_progress(&mut self, force: bool) -> Result<(), Error> {
        if self.durable <= self.progress_stored {
            return Ok(());
        }
        if !force && self.progress_stored_at.elapsed() < PROGRESS_STORE_INTERVAL {
            return Ok(());
        }
        self.setup.store.store_progress(self.durable).await?;
        self.progress_stored = self.durable;
        self.progress_stored_at = Instant::now();
        Ok(())
    }

    /// Final status update and progress; ends the stream.
    async fn finish(&mut self, mut stream: ReplicationStream) -> Result<(), Error> {
        self.send_status(&mut stream).await?;
        self.store_progress(true).await?;
        tracing::info!(lsn = %self.durable, "stopped; acknowledged up to {}", self.durable);
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.finish()).await;
        Ok(())
    }

    /// Gives a table-sync worker the current position and waits until it has caught up to it.
    async fn grant_catchup(
        &mut self,
        request: CatchupRequest,
        stream: &mut ReplicationStream,
        relations: &mut HashMap<u32, Relation>,
    ) -> Result<(), Error> {
        let (done_tx, mut done_rx) = oneshot::channel();
        let grant = CatchupGrant {
            target: self.position,
            done: done_tx,
        };
        if request.reply.send(grant).is_err() {
            return Ok(());
        }
        let mut tick = tokio::time::interval(Duration::from_millis(
            self.setup.config.status_update_interval_ms.min(5_000),
        ));
        let mut shutdown = self.setup.shutdown.clone();
        loop {
            tokio::select! {
                done = &mut done_rx => {
                    if let Ok(done) = done {
                        self.states.insert(request.table, TableState::SyncDone(done.lsn));
                        self.names.insert(request.table, done.schema.name.clone());
                        self.schemas.insert(request.table, done.schema);
                        relations.entry(request.table.0).and_modify(|r| r.checked = false);
                    }
                    return Ok(());
                }
                _ = tick.tick() => self.send_status(stream).await?,
                () = shutdown.wait() => return Ok(()),
            }
        }
    }

    fn on_worker_done(
        &mut self,
        joined: Result<(TableId, Result<Option<TableState>, Error>), tokio::task::JoinError>,
    ) -> Result<(), Error> {
        let (table, result) = joined.map_err(|e| {
            Error::Precondition(format!("a table-sync worker stopped unexpectedly: {e}"))
        })?;
        self.running.remove(&table);
        if let Some(state @ TableState::Errored(_)) = result? {
            self.states.insert(table, state);
        }
        self.spawn_workers();
        Ok(())
    }

    /// Starts table-sync workers for tables that need a copy, up to the configured number.
    fn spawn_workers(&mut self) {
        let max = usize::from(self.setup.config.max_table_sync_workers);
        let waiting: Vec<TableId> = self
            .states
            .iter()
            .filter(|(id, s)| s.needs_sync() && !self.running.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            if self.running.len() >= max {
                break;
            }
            let Some(name) = self.names.get(&id).cloned() else {
                continue;
            };
            let ctx = SyncContext {
                pipeline_id: self.setup.config.id,
                connection: self.setup.connection.clone(),
                publication: self.setup.config.publication_name.clone(),
                destination: self.setup.destination.clone(),
                store: self.setup.store.clone(),
                copy_connections: self.setup.config.max_copy_connections_per_table,
                batch: self.setup.config.batch.clone(),
                retry: self.setup.config.retry.clone(),
                catchup: self.catchup_tx.clone(),
                shutdown: self.setup.shutdown.clone(),
                observer: self.setup.observer.clone(),
            };
            let table = PublishedTable { id, name };
            self.running.insert(id);
            self.workers
                .spawn(async move { (id, table_sync::run(ctx, table).await) });
        }
    }

    /// Adds tables new in the publication (copied, then streamed) and forgets removed ones.
    async fn refresh_publication(&mut self) -> Result<(), Error> {
        let tables =
            catalog::publication_tables(&self.setup.pool, &self.setup.config.publication_name)
                .await?;
        let published: HashSet<TableId> = tables.iter().map(|t| t.id).collect();
        for table in tables {
            if self.states.contains_key(&table.id) {
                continue;
            }
            tracing::info!(table = %table.name, "table added to the publication");
            self.setup
                .store
                .set_table_state(table.id, &TableState::Init)
                .await?;
            self.states.insert(table.id, TableState::Init);
            self.names.insert(table.id, table.name);
        }
        let removed: Vec<TableId> = self
            .states
            .keys()
            .filter(|id| !published.contains(id) && !self.running.contains(id))
            .copied()
            .collect();
        for id in removed {
            if let Some(name) = self.names.remove(&id) {
                tracing::info!(table = %name, "table removed from the publication; no longer replicated");
            }
            self.setup.store.remove_table(id).await?;
            self.states.remove(&id);
            self.schemas.remove(&id);
        }
        self.spawn_workers();
        Ok(())
    }
}
