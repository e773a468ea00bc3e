//! The apply worker: streams the pipeline's permanent slot and applies the changes of every
//! table whose copy is done, in commit order, in batches; acknowledges only what the destination
//! reported durable, and only at commit ends. It also coordinates the table-sync workers.
//!
//! Its parts, one job each:
//! - [`core`]: the decisions, one input at a time (`ApplyCore::step`): routing, batching, one
//!   write in flight, schema changes, tables becoming `ready`. No I/O on the stream.
//! - [`batch`]: the events gathered for the next write.
//! - [`ack`]: the durable position told to the server and stored in `etl`.
//! - [`coordinator`]: starting table-sync workers, their catch-up requests and results.
//! - this module: the session, which owns the stream and turns what happens (messages,
//!   finished writes, timers, workers, shutdown) into inputs for the core.
//!
//! One stream connection is a *session*; any failure ends the session, the worker waits for
//! the write in flight, and a new session resumes from the durable position (transient errors
//! after a backoff; a table-level destination error after marking that table errored).

mod ack;
mod batch;
mod coordinator;
mod core;
mod spill;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use sqlx::PgPool;
use tokio::sync::oneshot;

use self::ack::Acknowledger;
use self::coordinator::{SyncCoordinator, WorkerResult};
use self::core::{ApplyCore, Input, Outcome};
use self::spill::Spill;
use super::catalog;
use super::destination::Destination;
use super::error::Error;
use super::retry::Backoff;
use super::slot_monitor;
use super::source::{PgOutputOptions, ReplicationClient, ReplicationMessage, ReplicationStream};
use super::state::TableStates;
use super::table_sync::{CatchupGrant, CatchupRequest};
use crate::base::error_chain;
use crate::base::lsn::Lsn;
use crate::base::schema::{TableId, TableSchema};
use crate::config::{PgConnection, PipelineConfig, StreamingMode};
use crate::shutdown::Shutdown;

pub use self::spill::SpillError;
pub use super::state::slots::apply_slot_name;

/// Messages taken from the stream's buffer per wake-up.
const BURST: usize = 512;

/// Everything the apply worker starts with.
pub(crate) struct ApplySetup<D> {
    pub config: PipelineConfig,
    pub connection: PgConnection,
    pub pool: PgPool,
    pub destination: D,
    pub shutdown: Shutdown,
    pub tables: TableStates,
    /// The shape the destination has of each table (the stored schemas).
    pub schemas: Vec<(TableId, Arc<TableSchema>)>,
    /// Resume position: max(slot confirmed_flush_lsn, stored progress).
    pub resume: Lsn,
    /// `--once`: stop when everything is ready and durable up to here.
    pub once_target: Option<Lsn>,
    /// `--once`: give up after this many failed sessions in a row.
    pub give_up_after: Option<u32>,
}

/// Why the session woke up.
enum Wake {
    Shutdown,
    Written(Result<core::WriteResult, tokio::task::JoinError>),
    Message(Result<Option<ReplicationMessage>, super::source::Error>),
    Catchup(CatchupRequest),
    Worker(Result<WorkerResult, tokio::task::JoinError>),
    StatusTick,
    RefreshTick,
    FillDeadline,
    Replay,
    Idle,
}

pub(crate) struct ApplyWorker<D> {
    config: PipelineConfig,
    connection: PgConnection,
    pool: PgPool,
    shutdown: Shutdown,
    once_target: Option<Lsn>,
    give_up_after: Option<u32>,
    slot: String,
    core: ApplyCore<D>,
    ack: Acknowledger,
    coordinator: SyncCoordinator<D>,
    bytes_seen: u64,
    /// A streamed transaction outgrew `pipeline.spill.max_bytes`: protocol 1 from now on.
    spill_overflowed: bool,
}

impl<D: Destination + Clone> ApplyWorker<D> {
    pub fn new(setup: ApplySetup<D>) -> Self {
        let ApplySetup {
            config,
            connection,
            pool,
            destination,
            shutdown,
            tables,
            schemas,
            resume,
            once_target,
            give_up_after,
        } = setup;
        let writer = tables.writer().clone();
        let coordinator = SyncCoordinator::new(
            config.clone(),
            connection.clone(),
            pool.clone(),
            destination.clone(),
            writer.clone(),
            shutdown.clone(),
        );
        let spill = Spill::new(config.spill.dir_for(config.id), config.spill.max_bytes);
        let core = ApplyCore::new(
            destination,
            tables,
            schemas,
            config.batch.clone(),
            resume,
            spill,
            Some(pool.clone()),
        );
        Self {
            slot: apply_slot_name(config.id),
            ack: Acknowledger::new(writer.store().clone()),
            config,
            connection,
            pool,
            shutdown,
            once_target,
            give_up_after,
            core,
            coordinator,
            bytes_seen: 0,
            spill_overflowed: false,
        }
    }

    /// Runs sessions until shutdown (or, with `--once`, until done); restarts a failed session
    /// after a backoff when the failure is transient or concerns one table.
    #[tracing::instrument(name = "apply", skip_all, fields(pipeline_id = self.config.id))]
    pub async fn run(mut self) -> Result<(), Error> {
        let mut backoff = Backoff::new(&self.config.retry);
        let mut shutdown = self.shutdown.clone();
        let result = loop {
            let started = Instant::now();
            let outcome = self.session().await;
            // Nothing may be written after this point by the failed session.
            self.core.new_session().await;
            let error = match outcome {
                Ok(()) => break Ok(()),
                Err(error) => error,
            };
            if started.elapsed() > Duration::from_secs(60) {
                backoff.reset();
            }
            if self.core.contain(&error).await? {
                continue;
            }
            if let Error::Spill(SpillError::Full { .. }) = &error {
                // Nothing of the transaction was applied; on protocol 1 the server keeps it
                // until it commits and sends it whole, in batches like any other.
                tracing::warn!(error = %error_chain(&error),
                    "spill bound reached: reconnecting with protocol 1 (no streaming of \
                     in-progress transactions until the replicator restarts)");
                self.spill_overflowed = true;
                continue;
            }
            if !error.is_transient() {
                // A slot the server invalidated fails in many ways; name the cause.
                let slot = slot_monitor::read_slot(&self.pool, &self.slot).await;
                if slot.is_ok_and(|info| info.is_some_and(|i| i.is_invalidated())) {
                    break Err(Error::SlotInvalidated {
                        slot: self.slot.clone(),
                    });
                }
                break Err(error);
            }
            if let Some(limit) = self.give_up_after
                && backoff.attempts() + 1 >= limit
            {
                break Err(Error::GaveUp {
                    attempts: backoff.attempts() + 1,
                    last: Box::new(error),
                });
            }
            let delay = backoff.next_delay();
            tracing::warn!(error = %error_chain(&error), ?delay, attempt = backoff.attempts(),
                "replication interrupted, reconnecting");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.wait() => break Ok(()),
            }
        };
        self.coordinator.stop().await;
        result
    }

    async fn session(&mut self) -> Result<(), Error> {
        self.coordinator.spawn(&self.core.tables);
        let client = ReplicationClient::connect(&self.connection).await?;
        // Protocol 2 `streaming 'on'` (PostgreSQL 14+): large transactions arrive while they
        // run and are spilled here until they commit. Not `'parallel'` (16+): it only lets
        // the server stream earlier in favour of a subscriber applying in parallel workers,
        // while this worker applies in commit order anyway.
        let streaming = self.config.streaming == StreamingMode::Auto
            && !self.spill_overflowed
            && client.server_major_version() >= 14;
        self.core.clear_spill()?;
        let options = PgOutputOptions {
            publication_names: vec![self.config.publication_name.clone()],
            proto_version: if streaming { 2 } else { 1 },
            messages: false,
            streaming,
        };
        let start = self.core.durable();
        tracing::info!(slot = %self.slot, lsn = %start, streaming, "resuming from LSN {start}");
        let mut stream = client
            .start_replication(&self.slot, start, &options)
            .await?;
        stream.adapt_low_water(self.config.read_low_water_bytes);
        self.bytes_seen = 0;
        let max_fill = Duration::from_millis(self.config.batch.max_fill_ms);
        let mut status_tick =
            tokio::time::interval(Duration::from_millis(self.config.status_update_interval_ms));
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refresh_tick =
            tokio::time::interval(Duration::from_secs(self.config.publication_refresh_secs));
        refresh_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh_tick.reset();
        let mut shutdown = self.shutdown.clone();
        loop {
            if self.once_done() {
                self.ack.finish(self.core.durable(), stream).await?;
                return Ok(());
            }
            let writing = self.core.writing();
            let can_launch = !writing;
            let idle_work = self.core.has_flushable() || self.ack.is_pending();
            let fill_deadline = self
                .core
                .batch_started()
                .map(|t| tokio::time::Instant::from_std(t + max_fill));
            let batch_full = self.core.batch_is_full();
            let in_transaction = self.core.in_transaction();
            let replaying = self.core.replaying();
            // A full batch waits for the write in flight (memory stays bounded); a committed
            // streamed transaction is applied before the stream is read on.
            let can_read = !(replaying || (writing && batch_full));
            let has_workers = !self.coordinator.workers.is_empty();
            let inflight = self.core.inflight_mut();
            let catchup_rx = &mut self.coordinator.catchup_rx;
            let workers = &mut self.coordinator.workers;
            let wake = tokio::select! {
                biased;
                () = shutdown.wait() => Wake::Shutdown,
                Some(written) = async { match inflight {
                    Some(handle) => Some(handle.await),
                    None => None,
                } }, if writing => Wake::Written(written),
                Some(request) = catchup_rx.recv(), if !in_transaction => Wake::Catchup(request),
                Some(joined) = workers.join_next(), if has_workers => Wake::Worker(joined),
                _ = status_tick.tick() => Wake::StatusTick,
                _ = refresh_tick.tick() => Wake::RefreshTick,
                () = tokio::time::sleep_until(fill_deadline.unwrap_or_else(tokio::time::Instant::now)),
                    if can_launch && fill_deadline.is_some() => Wake::FillDeadline,
                // A committed streamed transaction is applied before the stream is read on
                // (status updates keep the connection alive meanwhile).
                () = std::future::ready(()), if replaying && !(writing && batch_full) => Wake::Replay,
                // A full batch waits for the write in flight: memory stays bounded.
                message = stream.next(), if can_read => Wake::Message(message),
                () = std::future::ready(()), if idle_work => Wake::Idle,
            };
            match wake {
                Wake::Shutdown => {
                    let outcome = self.core.drain().await?;
                    self.acknowledge(outcome, &mut stream).await?;
                    self.ack.finish(self.core.durable(), stream).await?;
                    return Ok(());
                }
                Wake::Written(result) => {
                    let outcome = self.core.step(Input::Written(result)).await?;
                    self.acknowledge(outcome, &mut stream).await?;
                }
                Wake::Catchup(request) => self.grant_catchup(request, &mut stream).await?,
                Wake::Worker(joined) => {
                    if let Some((table, state)) = self.coordinator.finished(joined)? {
                        self.core.tables.adopt(table, state);
                    }
                    self.coordinator.spawn(&self.core.tables);
                }
                Wake::StatusTick => {
                    let received = stream.bytes_received();
                    self.core
                        .tables
                        .writer()
                        .observer()
                        .bytes_received(received.saturating_sub(self.bytes_seen));
                    self.bytes_seen = received;
                    self.ack.send(self.core.durable(), &mut stream).await?;
                    self.ack.store_progress(self.core.durable(), false).await?;
                }
                Wake::RefreshTick => {
                    self.refresh_publication().await?;
                    if let Some(info) = slot_monitor::read_slot(&self.pool, &self.slot).await? {
                        self.core
                            .tables
                            .writer()
                            .observer()
                            .slot(info.lag_bytes, info.safe_wal_size);
                    }
                }
                Wake::Replay => {
                    let outcome = self.core.step(Input::Replay).await?;
                    self.acknowledge(outcome, &mut stream).await?;
                }
                Wake::FillDeadline => {
                    let outcome = self.core.step(Input::Flush).await?;
                    self.acknowledge(outcome, &mut stream).await?;
                }
                Wake::Idle => {
                    let outcome = self.core.step(Input::Flush).await?;
                    self.acknowledge(outcome, &mut stream).await?;
                    if self.ack.is_pending() {
                        self.ack.send(self.core.durable(), &mut stream).await?;
                    }
                }
                Wake::Message(message) => {
                    let Some(message) = message? else {
                        return Err(Error::Source(super::source::Error::Closed {
                            target: self.connection.describe(),
                        }));
                    };
                    self.read_burst(message, &mut stream).await?;
                }
            }
        }
    }

    /// Takes `first` and what the stream already buffered behind it, without going through
    /// the select again (its timers cost more than decoding a message).
    async fn read_burst(
        &mut self,
        first: ReplicationMessage,
        stream: &mut ReplicationStream,
    ) -> Result<(), Error> {
        let outcome = self.core.step(Input::Message(first)).await?;
        self.acknowledge(outcome, stream).await?;
        for _ in 0..BURST {
            if (self.core.batch_is_full() && self.core.writing()) || self.core.replaying() {
                break;
            }
            let Some(next) = stream.next().now_or_never() else {
                break;
            };
            let Some(message) = next? else {
                break;
            };
            let outcome = self.core.step(Input::Message(message)).await?;
            self.acknowledge(outcome, stream).await?;
        }
        // No pause to let more gather: it delays every live commit, and the socket's adaptive
        // low-water mark already spares the walsender a wake-up per message in a backlog.
        Ok(())
    }

    async fn acknowledge(
        &mut self,
        outcome: Outcome,
        stream: &mut ReplicationStream,
    ) -> Result<(), Error> {
        if let Outcome::Durable(lsn) = outcome {
            self.ack.durable(lsn, stream).await?;
        }
        Ok(())
    }

    /// `--once` is done: every table ready (or errored), nothing copying, and everything
    /// committed before streaming started is durable.
    fn once_done(&self) -> bool {
        let Some(target) = self.once_target else {
            return false;
        };
        self.core.durable() >= target
            && self.coordinator.running().is_empty()
            && self.core.is_idle()
            && self.core.tables.all_settled()
    }

    /// Gives a table-sync worker the current position and waits until it has caught up to it.
    async fn grant_catchup(
        &mut self,
        request: CatchupRequest,
        stream: &mut ReplicationStream,
    ) -> Result<(), Error> {
        let (done_tx, mut done_rx) = oneshot::channel();
        let grant = CatchupGrant {
            target: self.core.position(),
            done: done_tx,
        };
        if request.reply.send(grant).is_err() {
            return Ok(());
        }
        let mut tick = tokio::time::interval(Duration::from_millis(
            self.config.status_update_interval_ms.min(5_000),
        ));
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                done = &mut done_rx => {
                    if let Ok(done) = done {
                        self.core.step(Input::SyncDone(done)).await?;
                    }
                    return Ok(());
                }
                _ = tick.tick() => self.ack.send(self.core.durable(), stream).await?,
                () = shutdown.wait() => return Ok(()),
            }
        }
    }

    /// Adds tables new in the publication (copied, then streamed) and forgets removed ones;
    /// sends errored tables whose automatic retry is due back to `init`; takes the resyncs
    /// recorded in the state store since the last tick (the table stops
    /// being applied now, and is copied again once what was routed of it is durable).
    async fn refresh_publication(&mut self) -> Result<(), Error> {
        let published =
            catalog::publication_tables(&self.pool, &self.config.publication_name).await?;
        let busy = self.coordinator.running().clone();
        self.core.forget_removed(&published, &busy).await?;
        let retried = self.core.tables.writer().store().retry_due().await?;
        if !retried.is_empty() {
            tracing::info!(tables = ?retried, "retrying errored tables (pipeline.table_errors)");
        }
        let writer = self.core.tables.writer();
        for (table, attempts, next) in writer.store().retry_status().await? {
            writer.observer().table_retries(&table, attempts, next);
        }
        let (position, in_transaction) = (self.core.position(), self.core.in_transaction());
        for table in self.core.tables.take_resyncs().await? {
            self.coordinator.hold(table, position, in_transaction);
        }
        self.coordinator
            .release(self.core.durable(), position, in_transaction);
        self.coordinator.spawn(&self.core.tables);
        Ok(())
    }
}
