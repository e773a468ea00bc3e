//! [`ApplyCore`]: the apply worker's decisions, one input at a time. [`ApplyCore::step`] takes a
//! stream message, a finished write, a flush request or a table's catch-up hand-off, and
//! returns whether the durable position moved. It routes changes (through the [`Router`] and
//! the [`TableStates`] rule), fills the batch, keeps one write in flight, alters destination
//! tables before a change of a new shape (after writing everything before it), and marks
//! tables `ready` once the durable position passes their catch-up point.
//!
//! Protocol 2 streamed transactions: the messages of a stream block go to the [`Spill`] (one
//! file per top-level transaction), never to the destination; Stream Abort drops a
//! transaction's or subtransaction's messages; Stream Commit starts a *replay*: the spilled
//! messages are routed in order as one transaction committing at the commit LSN, a batch at a
//! time through the normal write path ([`Input::Replay`]), so memory stays bounded and the
//! commit is acknowledged only once its last write is durable. While a replay runs the session
//! reads no stream message.
//!
//! It owns no stream and sends nothing to the server: acknowledging the durable position is
//! the session's job (`super::ack`), so this part runs in unit tests on the in-memory state
//! store and destination.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::task::{JoinError, JoinHandle};

use super::batch::Batch;
use super::spill::{Spill, SpillReader};
use crate::base::lsn::Lsn;
use crate::base::schema::{TableId, TableSchema};
use crate::config::BatchConfig;
use crate::engine::destination::{self, Destination};
use crate::engine::error::Error;
use crate::engine::router::{Applied, Reshape, Routed, Router, Rule, log_reshape};
use crate::engine::source::{PgOutputMessage, ReplicationMessage};
use crate::engine::state::{TableState, TableStates};
use crate::engine::table_sync::SyncDone;
use crate::engine::visibility;

/// A write's result, the commit end it makes durable, and its event count.
pub(crate) type WriteResult = (destination::Result<()>, Option<Lsn>, u64);

/// One thing that happened to the apply worker.
pub(crate) enum Input {
    /// A message from the stream.
    Message(ReplicationMessage),
    /// The write in flight finished.
    Written(Result<WriteResult, JoinError>),
    /// Write what is gathered now (the batch waited long enough, or the stream went quiet).
    Flush,
    /// A table-sync worker caught its table up: the apply worker takes it over.
    SyncDone(SyncDone),
    /// Route the next spilled changes of the streamed transaction being committed (while
    /// [`ApplyCore::replaying`]).
    Replay,
}

/// Spilled messages routed per [`Input::Replay`] at most (a batch may fill sooner).
const REPLAY_CHUNK: usize = 1_024;

/// A committed streamed transaction whose spilled changes are being applied.
struct Replay {
    reader: SpillReader,
    commit_lsn: Lsn,
    end_lsn: Lsn,
    commit_time: i64,
}

/// What a step changed that the caller must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Nothing,
    /// Everything up to here is durable in the destination: acknowledge it.
    Durable(Lsn),
}

impl Rule for TableStates {
    fn applies(&self, table: TableId, commit_lsn: Lsn) -> bool {
        TableStates::applies(self, table, commit_lsn)
    }
}

pub(crate) struct ApplyCore<D> {
    destination: D,
    pub tables: TableStates,
    router: Router,
    batch: Batch,
    limits: BatchConfig,
    inflight: Option<JoinHandle<WriteResult>>,
    durable: Lsn,
    /// Transaction boundary reached by the stream: every transaction ending at or before it
    /// was routed.
    position: Lsn,
    spill: Spill,
    /// The top-level transaction of the stream block being received.
    stream_block: Option<u32>,
    replay: Option<Replay>,
    /// The source, for waiting until a schema change's transaction is visible before the
    /// destination reads the catalog about it (`None` in unit tests without a server).
    source: Option<PgPool>,
}

impl<D: Destination + Clone> ApplyCore<D> {
    /// `shapes`: what the destination has of each table; `resume`: the durable position.
    pub fn new(
        destination: D,
        tables: TableStates,
        shapes: impl IntoIterator<Item = (TableId, Arc<TableSchema>)>,
        limits: BatchConfig,
        resume: Lsn,
        spill: Spill,
        source: Option<PgPool>,
    ) -> Self {
        Self {
            destination,
            tables,
            router: Router::new(shapes),
            batch: Batch::default(),
            limits,
            inflight: None,
            durable: resume,
            position: resume,
            spill,
            stream_block: None,
            replay: None,
            source,
        }
    }

    pub fn durable(&self) -> Lsn {
        self.durable
    }

    pub fn position(&self) -> Lsn {
        self.position
    }

    /// Inside a transaction, a stream block or the replay of a streamed one.
    pub fn in_transaction(&self) -> bool {
        self.router.in_transaction() || self.stream_block.is_some() || self.replay.is_some()
    }

    /// A committed streamed transaction is being applied: feed [`Input::Replay`], not stream
    /// messages, until it is done.
    pub fn replaying(&self) -> bool {
        self.replay.is_some()
    }

    /// Bytes of the spill files (streamed transactions not committed yet).
    #[cfg(test)]
    pub fn spilled_bytes(&self) -> u64 {
        self.spill.used_bytes()
    }

    pub fn batch_is_full(&self) -> bool {
        self.batch.is_full(&self.limits)
    }

    pub fn writing(&self) -> bool {
        self.inflight.is_some()
    }

    /// Nothing gathered and nothing being written.
    pub fn is_idle(&self) -> bool {
        self.inflight.is_none() && self.batch.is_empty()
    }

    /// A write can start and something complete waits for it.
    pub fn has_flushable(&self) -> bool {
        self.inflight.is_none() && self.batch.commit_end.is_some()
    }

    /// When the batch's first event arrived.
    pub fn batch_started(&self) -> Option<std::time::Instant> {
        self.batch.started
    }

    /// The write in flight, to wait on.
    pub fn inflight_mut(&mut self) -> Option<&mut JoinHandle<WriteResult>> {
        self.inflight.as_mut()
    }

    /// A new stream starts from the durable position; whatever was gathered or in flight from
    /// the old one is dropped (the stream sends it again).
    pub async fn new_session(&mut self) {
        if let Some(handle) = self.inflight.take() {
            let _ = handle.await;
        }
        self.batch = Batch::default();
        self.router.new_session();
        self.position = self.durable;
        self.stream_block = None;
        self.replay = None;
    }

    /// Before a stream starts: deletes every spill file (the stream sends each unfinished
    /// transaction again from its first change).
    pub fn clear_spill(&mut self) -> Result<(), Error> {
        self.stream_block = None;
        self.replay = None;
        self.spill.clear()?;
        self.report_spill();
        Ok(())
    }

    /// Tells the observer what the spill directory holds now.
    fn report_spill(&self) {
        let observer = self.tables.writer().observer();
        observer.spill(self.spill.used_bytes(), self.spill.open_transactions());
    }

    /// Takes one input; returns whether the durable position moved.
    pub async fn step(&mut self, input: Input) -> Result<Outcome, Error> {
        let before = self.durable;
        match input {
            Input::Message(message) => self.on_message(message).await?,
            Input::Written(result) => {
                self.inflight = None;
                self.on_written(result).await?;
            }
            Input::Flush => self.launch_write().await?,
            Input::Replay => self.replay_chunk().await?,
            Input::SyncDone(done) => {
                self.tables.rename(done.schema.id, done.schema.name.clone());
                self.tables
                    .adopt(done.schema.id, TableState::SyncDone(done.lsn));
                self.router.set_shape(done.schema);
            }
        }
        Ok(if self.durable > before {
            Outcome::Durable(self.durable)
        } else {
            Outcome::Nothing
        })
    }

    /// Waits for the write in flight and writes the current batch: everything received is
    /// durable afterwards.
    pub async fn drain(&mut self) -> Result<Outcome, Error> {
        let before = self.durable;
        self.write_everything().await?;
        Ok(if self.durable > before {
            Outcome::Durable(self.durable)
        } else {
            Outcome::Nothing
        })
    }

    /// Matches the tables against the publication's (see [`TableStates::reconcile`]).
    pub async fn forget_removed(
        &mut self,
        published: &[crate::engine::catalog::PublishedTable],
        busy: &std::collections::HashSet<TableId>,
    ) -> Result<(), Error> {
        for table in self.tables.reconcile(published, busy).await? {
            self.router.forget(table);
        }
        Ok(())
    }

    /// Marks the table of a table-level destination error errored, so the next session skips
    /// it. Returns `false` for any other error.
    pub async fn contain(&mut self, error: &Error) -> Result<bool, Error> {
        let Error::Destination(destination::Error::Table { table, message, .. }) = error else {
            return Ok(false);
        };
        self.tables
            .mark_errored(
                *table,
                format!("destination rejected a change: {message}"),
                "fix the destination table, then roll the table back to resume it",
            )
            .await?;
        Ok(true)
    }

    async fn on_message(&mut self, message: ReplicationMessage) -> Result<(), Error> {
        let (wal_start, message) = match message {
            ReplicationMessage::Keepalive { wal_end, .. } => {
                // A streamed transaction still open commits after `wal_end` (the server sends
                // it again after a reconnect), so it does not hold the position back.
                if !self.router.in_transaction() && self.replay.is_none() {
                    self.position = self.position.max(wal_end);
                    // An idle source still moves its WAL: follow it so no WAL is pinned.
                    if self.is_idle() && wal_end > self.durable {
                        self.advance_durable(wal_end).await?;
                    }
                }
                return Ok(());
            }
            ReplicationMessage::XLogData {
                wal_start, message, ..
            } => (wal_start, message),
        };
        let message = match message {
            PgOutputMessage::StreamStart { xid, .. } => {
                self.stream_block = Some(xid);
                return Ok(());
            }
            PgOutputMessage::StreamStop => {
                // Once per block of streamed changes (not per change): the spill gauges.
                self.stream_block = None;
                self.report_spill();
                return Ok(());
            }
            PgOutputMessage::StreamAbort { xid, subxid } => {
                self.spill.abort(xid, subxid)?;
                self.report_spill();
                return Ok(());
            }
            PgOutputMessage::StreamCommit {
                xid,
                commit_lsn,
                end_lsn,
                commit_time,
                ..
            } => {
                return self
                    .start_replay(xid, commit_lsn, end_lsn, commit_time)
                    .await;
            }
            message => match self.stream_block {
                Some(top) => return Ok(self.spill.append(top, wal_start, &message)?),
                None => message,
            },
        };
        match self.router.route(wal_start, message, &self.tables)? {
            Routed::Nothing | Routed::Begin { .. } => {}
            Routed::Commit { end_lsn } => {
                self.position = self.position.max(end_lsn);
                self.batch.close_commit(end_lsn);
            }
            Routed::Change(applied) => self.push(applied).await?,
            Routed::Truncate(applied) => {
                for one in applied {
                    self.push(one).await?;
                }
            }
        }
        if self.inflight.is_none() && self.batch_is_full() {
            self.launch_write().await?;
        }
        Ok(())
    }

    /// Stream Commit of `xid`: its spilled changes are routed as one transaction with the
    /// commit's LSN, by [`Input::Replay`] steps.
    async fn start_replay(
        &mut self,
        xid: u32,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: i64,
    ) -> Result<(), Error> {
        let begin = PgOutputMessage::Begin {
            final_lsn: commit_lsn,
            commit_time,
            xid,
        };
        self.router.route(commit_lsn, begin, &self.tables)?;
        let taken = self.spill.take(xid)?;
        self.report_spill();
        match taken {
            Some(reader) => {
                self.replay = Some(Replay {
                    reader,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                });
            }
            // Nothing was spilled (every change filtered out by the server): just a commit.
            None => self.finish_replay(commit_lsn, end_lsn, commit_time)?,
        }
        Ok(())
    }

    /// Routes up to [`REPLAY_CHUNK`] spilled messages; stops early at a full batch while a
    /// write is in flight (the session waits for it, then replays on).
    async fn replay_chunk(&mut self) -> Result<(), Error> {
        for _ in 0..REPLAY_CHUNK {
            if self.batch_is_full() {
                if self.inflight.is_some() {
                    return Ok(());
                }
                self.launch_write().await?;
            }
            let Some(replay) = self.replay.as_mut() else {
                return Ok(());
            };
            let Some((lsn, message)) = replay.reader.next_message()? else {
                let (commit_lsn, end_lsn, commit_time) =
                    (replay.commit_lsn, replay.end_lsn, replay.commit_time);
                // Dropping the reader deletes the file.
                self.replay = None;
                self.finish_replay(commit_lsn, end_lsn, commit_time)?;
                break;
            };
            match self.router.route(lsn, message, &self.tables)? {
                Routed::Change(applied) => self.push(applied).await?,
                Routed::Truncate(applied) => {
                    for one in applied {
                        self.push(one).await?;
                    }
                }
                Routed::Nothing | Routed::Begin { .. } | Routed::Commit { .. } => {}
            }
        }
        if self.inflight.is_none() && self.batch_is_full() {
            self.launch_write().await?;
        }
        Ok(())
    }

    fn finish_replay(
        &mut self,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: i64,
    ) -> Result<(), Error> {
        let commit = PgOutputMessage::Commit {
            flags: 0,
            commit_lsn,
            end_lsn,
            commit_time,
        };
        if let Routed::Commit { end_lsn } = self.router.route(end_lsn, commit, &self.tables)? {
            self.position = self.position.max(end_lsn);
            self.batch.close_commit(end_lsn);
        }
        Ok(())
    }

    async fn push(&mut self, applied: Applied) -> Result<(), Error> {
        if let Some(reshape) = &applied.reshape {
            self.reshape(reshape, applied.event.xid).await?;
        }
        self.batch.push(applied.event, applied.bytes);
        Ok(())
    }

    /// Gives the destination the table's new shape (or, for a refresh, the chance to follow
    /// what changed beside the columns), after everything before it is written.
    /// `xid`: the transaction that described the table.
    async fn reshape(&mut self, reshape: &Reshape, xid: u32) -> Result<(), Error> {
        self.write_everything().await?;
        if let Some(source) = &self.source {
            visibility::wait_visible(source, xid).await?;
        }
        match &reshape.old {
            Some(old) => self.destination.alter_table(old, &reshape.new).await?,
            None => self.destination.prepare_table(&reshape.new).await?,
        }
        self.tables
            .writer()
            .store()
            .store_schema(&reshape.new)
            .await?;
        log_reshape(reshape);
        self.tables.rename(reshape.new.id, reshape.new.name.clone());
        self.router.reshaped(reshape);
        Ok(())
    }

    /// Starts writing the current batch (or, when it holds no events, makes its commit
    /// durable at once).
    async fn launch_write(&mut self) -> Result<(), Error> {
        if self.inflight.is_some() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        if batch.events.is_empty() {
            if let Some(lsn) = batch.commit_end {
                self.advance_durable(lsn).await?;
            }
            return Ok(());
        }
        let destination = self.destination.clone();
        let count = batch.events.len() as u64;
        let ack = batch.commit_end;
        self.inflight = Some(tokio::spawn(async move {
            (destination.write_events(batch.events).await, ack, count)
        }));
        Ok(())
    }

    async fn on_written(&mut self, result: Result<WriteResult, JoinError>) -> Result<(), Error> {
        let (result, ack, count) = result.map_err(|e| {
            Error::Destination(destination::Error::fatal(
                "the destination write panicked",
                e,
            ))
        })?;
        result?;
        let observer = self.tables.writer().observer();
        observer.batch_written();
        observer.events_applied(count);
        if let Some(lsn) = ack {
            self.advance_durable(lsn).await?;
        }
        Ok(())
    }

    async fn write_everything(&mut self) -> Result<(), Error> {
        if let Some(handle) = self.inflight.take() {
            let result = handle.await;
            self.on_written(result).await?;
        }
        let batch = std::mem::take(&mut self.batch);
        if !batch.events.is_empty() {
            let count = batch.events.len() as u64;
            self.destination.write_events(batch.events).await?;
            let observer = self.tables.writer().observer();
            observer.batch_written();
            observer.events_applied(count);
        }
        if let Some(lsn) = batch.commit_end {
            self.advance_durable(lsn).await?;
        }
        Ok(())
    }

    /// Everything up to `lsn` is durable: tables caught up by then are `ready`.
    async fn advance_durable(&mut self, lsn: Lsn) -> Result<(), Error> {
        if lsn <= self.durable {
            return Ok(());
        }
        self.durable = lsn;
        self.tables.writer().observer().confirmed_lsn(lsn);
        self.tables.mark_ready_up_to(lsn).await?;
        Ok(())
    }
}
