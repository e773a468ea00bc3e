//! [`Observer`]: where the workers report what they do — Prometheus [`Metrics`] and the copy
//! progress bars ([`CopyProgress`]) — so the data path does not depend on how it is shown.

use super::metrics::Metrics;
use super::progress::{CopyProgress, TableProgress};
use super::state::StateName;
use crate::base::lsn::Lsn;
use crate::base::schema::TableName;

/// Receives the pipeline's measurements. Cheap to clone.
#[derive(Clone)]
pub struct Observer {
    metrics: Metrics,
    progress: CopyProgress,
}

impl Default for Observer {
    /// Fresh metrics nobody serves, and hidden progress bars (library use, tests).
    fn default() -> Self {
        Self::new(Metrics::new(), CopyProgress::hidden())
    }
}

/// Counts one table's copied rows into the metrics and its progress bar.
pub struct CopyCounter {
    metrics: Metrics,
    table: TableName,
    bar: TableProgress,
}

impl CopyCounter {
    pub fn add(&self, rows: u64) {
        self.metrics.rows_copied(&self.table, rows);
        self.bar.inc(rows);
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}

impl Observer {
    pub fn new(metrics: Metrics, progress: CopyProgress) -> Self {
        Self { metrics, progress }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn table_state(&self, table: &TableName, state: StateName) {
        self.metrics.table_state(table, state.as_str());
    }

    /// A counter for the rows of one table's copy (`estimated_rows` sizes its bar).
    pub fn copy_counter(&self, table: &TableName, estimated_rows: Option<u64>) -> CopyCounter {
        CopyCounter {
            metrics: self.metrics.clone(),
            table: table.clone(),
            bar: self.progress.table(table, estimated_rows),
        }
    }

    pub fn events_applied(&self, count: u64) {
        self.metrics.events_applied(count);
    }

    pub fn batch_written(&self) {
        self.metrics.batch_written();
    }

    pub fn bytes_received(&self, delta: u64) {
        self.metrics.bytes_received(delta);
    }

    pub fn confirmed_lsn(&self, lsn: Lsn) {
        self.metrics.confirmed_lsn(lsn);
    }

    /// What the spill directory holds after a change to it.
    pub fn spill(&self, bytes: u64, transactions: usize) {
        self.metrics.spill(bytes, transactions as u64);
    }

    /// A table's retry bookkeeping (`pipeline.table_errors`), read periodically.
    pub fn table_retries(&self, table: &TableName, attempts: i32, next_attempt: Option<f64>) {
        self.metrics.table_retries(table, attempts, next_attempt);
    }

    /// The slot's health, read periodically.
    pub fn slot(&self, lag_bytes: Option<u64>, safe_wal_size: Option<i64>) {
        if let Some(lag) = lag_bytes {
            self.metrics.slot_lag_bytes(lag);
        }
        self.metrics.safe_wal_size(safe_wal_size);
    }
}
