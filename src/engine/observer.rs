//! [`Observer`]: where the workers report what they do (metrics, copy progress bars), so the
//! data path does not depend on how it is displayed.

use std::sync::Arc;

use super::lsn::Lsn;
use super::schema::TableName;

/// Receives the pipeline's measurements. The default observes nothing.
#[derive(Clone, Default)]
pub struct Observer {
    _private: Arc<()>,
}

impl Observer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn table_state(&self, _table: &TableName, _state: &str) {}

    /// A counter for the rows of one table's copy (`pages`: its size, for an estimate).
    pub fn copy_progress(&self, _table: &TableName, _pages: u64) -> Box<dyn Fn(u64) + Send + Sync> {
        Box::new(|_| {})
    }

    pub fn copy_finished(&self, _table: &TableName) {}

    pub fn events_applied(&self, _count: u64) {}

    pub fn batch_written(&self) {}

    pub fn bytes_received(&self, _delta: u64) {}

    pub fn confirmed_lsn(&self, _lsn: Lsn) {}
}
