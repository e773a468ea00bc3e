//! [`SyncCoordinator`]: the apply worker's side of the table-sync workers. It starts one per
//! table that needs a copy (up to `max_table_sync_workers`), receives their catch-up requests
//! and their results, and knows which tables are being copied.
//!
//! A table resynced while streaming is *held* until the apply worker has written every change
//! of it that was routed before the resync was noticed: only then may its copy start (the
//! destination's `begin_copy` empties the table, and an older change landing after the copy
//! would undo part of it).

use std::collections::{BTreeMap, HashSet};

use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};

use crate::base::lsn::Lsn;
use crate::base::schema::TableId;
use crate::config::{PgConnection, PipelineConfig};
use crate::engine::catalog::PublishedTable;
use crate::engine::destination::Destination;
use crate::engine::error::Error;
use crate::engine::state::{StateWriter, TableState, TableStates};
use crate::engine::table_sync::{self, CatchupRequest, SyncContext};
use crate::shutdown::Shutdown;

/// What a finished table-sync worker returns: its table and final state (`None`: shut down).
pub(crate) type WorkerResult = (TableId, Result<Option<TableState>, Error>);

pub(crate) struct SyncCoordinator<D> {
    config: PipelineConfig,
    connection: PgConnection,
    pool: PgPool,
    destination: D,
    writer: StateWriter,
    shutdown: Shutdown,
    catchup_tx: mpsc::UnboundedSender<CatchupRequest>,
    pub catchup_rx: mpsc::UnboundedReceiver<CatchupRequest>,
    pub workers: JoinSet<WorkerResult>,
    running: HashSet<TableId>,
    held: Holds,
}

/// Resynced tables whose copy waits until the durable position reaches a point (`None`: the
/// end of the transaction being routed, not known yet).
#[derive(Debug, Default)]
struct Holds(BTreeMap<TableId, Option<Lsn>>);

impl Holds {
    fn hold(&mut self, table: TableId, position: Lsn, in_transaction: bool) {
        self.0.insert(table, (!in_transaction).then_some(position));
    }

    fn release(&mut self, durable: Lsn, position: Lsn, in_transaction: bool) {
        self.0.retain(|_, until| {
            if until.is_none() && !in_transaction {
                *until = Some(position);
            }
            until.is_none_or(|until| durable < until)
        });
    }

    fn contains(&self, table: &TableId) -> bool {
        self.0.contains_key(table)
    }
}

impl<D: Destination + Clone> SyncCoordinator<D> {
    pub fn new(
        config: PipelineConfig,
        connection: PgConnection,
        pool: PgPool,
        destination: D,
        writer: StateWriter,
        shutdown: Shutdown,
    ) -> Self {
        let (catchup_tx, catchup_rx) = mpsc::unbounded_channel();
        Self {
            config,
            connection,
            pool,
            destination,
            writer,
            shutdown,
            catchup_tx,
            catchup_rx,
            workers: JoinSet::new(),
            running: HashSet::new(),
            held: Holds::default(),
        }
    }

    /// Tables a worker is copying.
    pub fn running(&self) -> &HashSet<TableId> {
        &self.running
    }

    /// Holds `table` (just resynced) until every change of it routed so far is durable:
    /// `position` is the stream's transaction boundary, `in_transaction` whether a transaction
    /// is being routed (its end is then the point to wait for).
    pub fn hold(&mut self, table: TableId, position: Lsn, in_transaction: bool) {
        self.held.hold(table, position, in_transaction);
    }

    /// Releases the held tables whose changes routed before their resync are all durable.
    pub fn release(&mut self, durable: Lsn, position: Lsn, in_transaction: bool) {
        self.held.release(durable, position, in_transaction);
    }

    /// Starts workers for tables that need a copy, up to the configured number.
    pub fn spawn(&mut self, tables: &TableStates) {
        let max = usize::from(self.config.max_table_sync_workers);
        let waiting: Vec<TableId> = tables
            .needing_sync()
            .filter(|id| !self.running.contains(id) && !self.held.contains(id))
            .collect();
        for id in waiting {
            if self.running.len() >= max {
                break;
            }
            let Some(name) = tables.name(id).cloned() else {
                continue;
            };
            let ctx = SyncContext {
                pipeline_id: self.config.id,
                connection: self.connection.clone(),
                pool: self.pool.clone(),
                publication: self.config.publication_name.clone(),
                destination: self.destination.clone(),
                states: self.writer.clone(),
                copy_connections: self.config.max_copy_connections_per_table,
                batch: self.config.batch.clone(),
                retry: self.config.retry.clone(),
                catchup: self.catchup_tx.clone(),
                shutdown: self.shutdown.clone(),
            };
            let table = PublishedTable { id, name };
            self.running.insert(id);
            self.workers
                .spawn(async move { (id, table_sync::run(ctx, table).await) });
        }
    }

    /// A worker finished: its table's final state when it errored (the apply worker takes
    /// it), `None` otherwise (a `sync_done` arrives through the catch-up hand-off).
    pub fn finished(
        &mut self,
        joined: Result<WorkerResult, JoinError>,
    ) -> Result<Option<(TableId, TableState)>, Error> {
        let (table, result) = joined.map_err(|source| Error::WorkerStopped { source })?;
        self.running.remove(&table);
        Ok(match result? {
            Some(state @ TableState::Errored(_)) => Some((table, state)),
            _ => None,
        })
    }

    /// Waits a moment for the workers (they watch the same shutdown), then stops them.
    pub async fn stop(&mut self) {
        let deadline = tokio::time::sleep(std::time::Duration::from_secs(10));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_table_is_released_once_what_was_routed_before_is_durable() {
        let mut holds = Holds::default();
        holds.hold(TableId(1), Lsn(100), false);
        holds.release(Lsn(99), Lsn(120), false);
        assert!(holds.contains(&TableId(1)), "durable has not reached 100");
        holds.release(Lsn(100), Lsn(120), false);
        assert!(!holds.contains(&TableId(1)));
    }

    #[test]
    fn a_table_held_mid_transaction_waits_for_the_end_of_that_transaction() {
        let mut holds = Holds::default();
        holds.hold(TableId(2), Lsn(100), true);
        // Still in the transaction: its end is unknown, even a durable position past the
        // hold point does not release it.
        holds.release(Lsn(150), Lsn(100), true);
        assert!(holds.contains(&TableId(2)));
        // The transaction ended at 200: released once 200 is durable.
        holds.release(Lsn(150), Lsn(200), false);
        assert!(holds.contains(&TableId(2)));
        holds.release(Lsn(200), Lsn(200), false);
        assert!(!holds.contains(&TableId(2)));
    }
}
