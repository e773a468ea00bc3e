//! [`Batch`]: the change events gathered for the next destination write, and when it is full.

use std::time::Instant;

use crate::base::event::ChangeEvent;
use crate::base::lsn::Lsn;
use crate::config::BatchConfig;

/// The batch being filled.
#[derive(Default)]
pub(crate) struct Batch {
    pub events: Vec<ChangeEvent>,
    bytes: usize,
    /// End of the last commit whose events are all in this batch or earlier ones.
    pub commit_end: Option<Lsn>,
    /// When its first event arrived.
    pub started: Option<Instant>,
}

impl Batch {
    pub fn push(&mut self, event: ChangeEvent, bytes: usize) {
        if self.events.is_empty() {
            self.started = Some(Instant::now());
        }
        self.events.push(event);
        self.bytes += bytes;
    }

    /// A transaction ended at `end_lsn`: once this batch is durable, so is everything up to it.
    pub fn close_commit(&mut self, end_lsn: Lsn) {
        self.commit_end = Some(end_lsn);
    }

    /// Full by event count or by the size of its values.
    pub fn is_full(&self, limits: &BatchConfig) -> bool {
        self.events.len() >= limits.max_size || self.bytes >= limits.max_bytes
    }

    /// Nothing gathered: no event and no commit waiting for acknowledgement.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.commit_end.is_none()
    }
}
