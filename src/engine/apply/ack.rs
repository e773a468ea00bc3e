//! [`Acknowledger`]: tells the server how far the destination is durable (standby status
//! updates on the stream) and stores that position in `etl` (monotonic), each at a pace that
//! does not cost the server a slot save per transaction.

use std::time::{Duration, Instant};

use crate::base::lsn::Lsn;
use crate::engine::error::Error;
use crate::engine::source::ReplicationStream;
use crate::engine::state::StateStore;

/// While changes keep arriving, acknowledgements go out at most this often.
const ACK_INTERVAL: Duration = Duration::from_millis(100);

/// Progress is stored in `etl` at most this often (the slot holds it too).
const PROGRESS_STORE_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct Acknowledger {
    store: StateStore,
    /// When the last status update went out, and whether a newer durable position waits.
    last_status: Instant,
    pending: bool,
    progress_stored: Lsn,
    progress_stored_at: Instant,
}

impl Acknowledger {
    pub fn new(store: StateStore) -> Self {
        Self {
            store,
            last_status: Instant::now(),
            pending: false,
            progress_stored: Lsn::ZERO,
            progress_stored_at: Instant::now(),
        }
    }

    /// A newer durable position waits to be acknowledged.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// The destination is durable up to `durable`. Each acknowledgement that moves the slot
    /// makes the server save it to disk: while the stream is busy, acknowledge at most every
    /// `ACK_INTERVAL`; the pending one goes out when the stream goes quiet ([`Self::send`]).
    pub async fn durable(
        &mut self,
        durable: Lsn,
        stream: &mut ReplicationStream,
    ) -> Result<(), Error> {
        if self.last_status.elapsed() >= ACK_INTERVAL {
            self.send(durable, stream).await?;
        } else {
            self.pending = true;
        }
        self.store_progress(durable, false).await
    }

    /// Sends a status update: received up to what the stream saw, flushed and applied up to
    /// `durable`.
    pub async fn send(
        &mut self,
        durable: Lsn,
        stream: &mut ReplicationStream,
    ) -> Result<(), Error> {
        self.pending = false;
        self.last_status = Instant::now();
        let write = stream.last_received().max(durable);
        stream.send_status(write, durable, durable, false).await?;
        Ok(())
    }

    /// Stores `durable` in `etl` (at most once per `PROGRESS_STORE_INTERVAL` unless `force`).
    pub async fn store_progress(&mut self, durable: Lsn, force: bool) -> Result<(), Error> {
        if durable <= self.progress_stored {
            return Ok(());
        }
        if !force && self.progress_stored_at.elapsed() < PROGRESS_STORE_INTERVAL {
            return Ok(());
        }
        self.store.store_progress(durable).await?;
        self.progress_stored = durable;
        self.progress_stored_at = Instant::now();
        Ok(())
    }

    /// Final status update and progress; ends the stream.
    pub async fn finish(
        &mut self,
        durable: Lsn,
        mut stream: ReplicationStream,
    ) -> Result<(), Error> {
        self.send(durable, &mut stream).await?;
        self.store_progress(durable, true).await?;
        tracing::info!(lsn = %durable, "stopped; acknowledged up to {durable}");
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.finish()).await;
        Ok(())
    }
}
