//! The replicator's Prometheus metrics: one [`Metrics`] registry the engine updates (rows copied,
//! events applied, batches, bytes received, confirmed LSN, slot lag, table states) and [`serve`],
//! the HTTP endpoint (`GET /metrics`, OpenMetrics text) a scraper reads.
//!
//! Updates are atomic adds and stores. Per-table series are looked up in a small map keyed by
//! [`TableName`] and created once per table, so the hot path never allocates label sets.
//! The README lists every metric (Replicating → Logs, progress and metrics).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::base::lsn::Lsn;
use crate::base::schema::TableName;

/// Labels of a per-table series: `schema`, `table`.
type TableLabels = [(&'static str, String); 2];
/// Labels of a table-state series: `schema`, `table`, `state`.
type StateLabels = [(&'static str, String); 3];

const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics of one replicator. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    rows_copied: Family<TableLabels, Counter>,
    rows_copied_by_table: RwLock<HashMap<TableName, Counter>>,
    events_applied: Counter,
    batches_written: Counter,
    bytes_received: Counter,
    confirmed_lsn: Gauge<u64, AtomicU64>,
    slot_lag_bytes: Gauge<u64, AtomicU64>,
    safe_wal_size: Gauge<f64, AtomicU64>,
    spill_bytes: Gauge<u64, AtomicU64>,
    spill_transactions: Gauge<u64, AtomicU64>,
    table_states: Family<StateLabels, Gauge>,
    current_states: Mutex<HashMap<TableName, String>>,
    table_error_attempts: Family<TableLabels, Gauge>,
    table_next_attempt: Family<TableLabels, Gauge<f64, AtomicU64>>,
}

/// The metrics endpoint could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot listen for metrics on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the metrics endpoint on {addr} failed")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered and zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let rows_copied = Family::<TableLabels, Counter>::default();
        let events_applied = Counter::default();
        let batches_written = Counter::default();
        let bytes_received = Counter::default();
        let confirmed_lsn = Gauge::<u64, AtomicU64>::default();
        let slot_lag_bytes = Gauge::<u64, AtomicU64>::default();
        let safe_wal_size = Gauge::<f64, AtomicU64>::default();
        safe_wal_size.set(f64::NAN);
        let spill_bytes = Gauge::<u64, AtomicU64>::default();
        let spill_transactions = Gauge::<u64, AtomicU64>::default();
        let table_states = Family::<StateLabels, Gauge>::default();
        let table_error_attempts = Family::<TableLabels, Gauge>::default();
        let table_next_attempt = Family::<TableLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "etl_table_error_attempts",
            "Errors in a row of a table since it was last ready (pipeline.table_errors)",
            table_error_attempts.clone(),
        );
        registry.register(
            "etl_table_next_attempt_timestamp_seconds",
            "When the next automatic retry of an errored table is due (Unix time; 0: none)",
            table_next_attempt.clone(),
        );
        registry.register(
            "etl_rows_copied",
            "Rows copied from a source table during its initial copy",
            rows_copied.clone(),
        );
        registry.register(
            "etl_events_applied",
            "Change events (insert, update, delete, truncate) written to the destination",
            events_applied.clone(),
        );
        registry.register(
            "etl_batches_written",
            "Batches of change events the destination reported durable",
            batches_written.clone(),
        );
        registry.register(
            "etl_received_bytes",
            "Bytes of replication data received from the source",
            bytes_received.clone(),
        );
        registry.register(
            "etl_confirmed_lsn",
            "WAL position confirmed (flushed) to the source, as a number",
            confirmed_lsn.clone(),
        );
        registry.register(
            "etl_slot_lag_bytes",
            "Bytes of WAL between the source's current position and the slot's confirmed position",
            slot_lag_bytes.clone(),
        );
        registry.register(
            "etl_slot_safe_wal_size_bytes",
            "Bytes of WAL that can still be written before the slot is invalidated \
             (NaN when max_slot_wal_keep_size is unlimited or unknown)",
            safe_wal_size.clone(),
        );
        registry.register(
            "etl_spill_bytes",
            "Bytes of streamed, uncommitted transactions waiting in spill files \
             (bounded by pipeline.spill.max_bytes)",
            spill_bytes.clone(),
        );
        registry.register(
            "etl_spill_transactions",
            "Streamed transactions in progress that have a spill file",
            spill_transactions.clone(),
        );
        registry.register(
            "etl_table_state",
            "1 for the current replication state of a table, 0 for its former states",
            table_states.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                rows_copied,
                rows_copied_by_table: RwLock::default(),
                events_applied,
                batches_written,
                bytes_received,
                confirmed_lsn,
                slot_lag_bytes,
                safe_wal_size,
                spill_bytes,
                spill_transactions,
                table_states,
                current_states: Mutex::default(),
                table_error_attempts,
                table_next_attempt,
            }),
        }
    }

    /// `rows` more rows of `table` were copied (call per chunk).
    pub fn rows_copied(&self, table: &TableName, rows: u64) {
        let inner = &self.inner;
        let known = inner
            .rows_copied_by_table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(table)
            .map(|counter| {
                counter.inc_by(rows);
            });
        if known.is_none() {
            let counter = inner.rows_copied.get_or_create_owned(&table_labels(table));
            counter.inc_by(rows);
            inner
                .rows_copied_by_table
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(table.clone(), counter);
        }
    }

    pub fn events_applied(&self, events: u64) {
        self.inner.events_applied.inc_by(events);
    }

    pub fn batch_written(&self) {
        self.inner.batches_written.inc();
    }

    /// `bytes` more bytes arrived on the replication stream (a delta, not a total).
    pub fn bytes_received(&self, bytes: u64) {
        self.inner.bytes_received.inc_by(bytes);
    }

    pub fn confirmed_lsn(&self, lsn: Lsn) {
        self.inner.confirmed_lsn.set(lsn.0);
    }

    pub fn slot_lag_bytes(&self, bytes: u64) {
        self.inner.slot_lag_bytes.set(bytes);
    }

    /// The slot's `safe_wal_size`; `None` (unlimited or unknown) is exported as NaN.
    pub fn safe_wal_size(&self, bytes: Option<i64>) {
        self.inner
            .safe_wal_size
            .set(bytes.map_or(f64::NAN, |b| b as f64));
    }

    /// What the spill directory holds now: bytes, and transactions with a file.
    pub fn spill(&self, bytes: u64, transactions: u64) {
        self.inner.spill_bytes.set(bytes);
        self.inner.spill_transactions.set(transactions);
    }

    /// `table` is now in `state`: its series for `state` becomes 1, its former state's 0.
    pub fn table_state(&self, table: &TableName, state: &str) {
        let inner = &self.inner;
        let mut current = inner
            .current_states
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(previous) = current.get(table) {
            if previous == state {
                return;
            }
            inner
                .table_states
                .get_or_create(&state_labels(table, previous))
                .set(0);
        }
        inner
            .table_states
            .get_or_create(&state_labels(table, state))
            .set(1);
        current.insert(table.clone(), state.to_owned());
    }

    /// `table` has had `attempts` errors in a row; its next automatic retry is due at
    /// `next_attempt` (Unix seconds), if one is scheduled.
    pub fn table_retries(&self, table: &TableName, attempts: i32, next_attempt: Option<f64>) {
        self.inner
            .table_error_attempts
            .get_or_create(&table_labels(table))
            .set(i64::from(attempts));
        self.inner
            .table_next_attempt
            .get_or_create(&table_labels(table))
            .set(next_attempt.unwrap_or(0.0));
    }

    /// The OpenMetrics text exposition of every metric (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; the encoder only forwards `fmt::Write` errors.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        text
    }
}

fn table_labels(table: &TableName) -> TableLabels {
    [
        ("schema", table.schema.clone()),
        ("table", table.name.clone()),
    ]
}

fn state_labels(table: &TableName, state: &str) -> StateLabels {
    [
        ("schema", table.schema.clone()),
        ("table", table.name.clone()),
        ("state", state.to_owned()),
    ]
}

/// Serves `GET /metrics` on `addr` until `shutdown` completes.
pub async fn serve(
    metrics: Metrics,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    serve_on(metrics, listener, shutdown).await
}

/// [`serve`] on a listener that is already bound (port 0 in tests, say).
pub async fn serve_on(
    metrics: Metrics,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(|source| Error::Serve {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Serve { addr, source })
}

async fn scrape(State(metrics): State<Metrics>) -> impl IntoResponse {
    ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], metrics.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn counters_add_up_per_table() {
        let metrics = Metrics::new();
        let orders = TableName::new("public", "orders");
        let weird = TableName::new("my schema", "Weird \"Name\"");
        metrics.rows_copied(&orders, 10);
        metrics.rows_copied(&orders, 5);
        metrics.rows_copied(&weird, 1);
        metrics.events_applied(3);
        metrics.batch_written();
        metrics.bytes_received(100);
        metrics.bytes_received(23);
        let text = metrics.encode();
        assert_eq!(
            line(&text, "etl_rows_copied_total{schema=\"public\""),
            Some("etl_rows_copied_total{schema=\"public\",table=\"orders\"} 15")
        );
        assert_eq!(
            line(&text, "etl_rows_copied_total{schema=\"my schema\""),
            Some("etl_rows_copied_total{schema=\"my schema\",table=\"Weird \\\"Name\\\"\"} 1")
        );
        assert_eq!(
            line(&text, "etl_events_applied_total"),
            Some("etl_events_applied_total 3")
        );
        assert_eq!(
            line(&text, "etl_batches_written_total"),
            Some("etl_batches_written_total 1")
        );
        assert_eq!(
            line(&text, "etl_received_bytes_total"),
            Some("etl_received_bytes_total 123")
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn gauges_hold_the_last_value() {
        let metrics = Metrics::new();
        assert_eq!(
            line(&metrics.encode(), "etl_slot_safe_wal_size_bytes "),
            Some("etl_slot_safe_wal_size_bytes NaN")
        );
        metrics.confirmed_lsn("16/B374D848".parse().unwrap());
        metrics.slot_lag_bytes(4096);
        metrics.safe_wal_size(Some(1 << 30));
        metrics.spill(65536, 2);
        let text = metrics.encode();
        assert_eq!(
            line(&text, "etl_spill_bytes "),
            Some("etl_spill_bytes 65536")
        );
        assert_eq!(
            line(&text, "etl_spill_transactions "),
            Some("etl_spill_transactions 2")
        );
        assert_eq!(
            line(&text, "etl_confirmed_lsn "),
            Some(format!("etl_confirmed_lsn {}", 0x16_B374_D848u64).as_str())
        );
        assert_eq!(
            line(&text, "etl_slot_lag_bytes "),
            Some("etl_slot_lag_bytes 4096")
        );
        assert_eq!(
            line(&text, "etl_slot_safe_wal_size_bytes "),
            Some("etl_slot_safe_wal_size_bytes 1073741824.0")
        );
    }

    #[test]
    fn table_retries_show_attempts_and_the_next_attempt() {
        let metrics = Metrics::new();
        let orders = TableName::new("public", "orders");
        metrics.table_retries(&orders, 2, Some(1_700_000_000.0));
        let text = metrics.encode();
        assert!(
            text.contains("etl_table_error_attempts{schema=\"public\",table=\"orders\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "etl_table_next_attempt_timestamp_seconds{schema=\"public\",table=\"orders\"} 1700000000"
            ),
            "{text}"
        );
        metrics.table_retries(&orders, 0, None);
        assert!(metrics.encode().contains(
            "etl_table_next_attempt_timestamp_seconds{schema=\"public\",table=\"orders\"} 0"
        ),);
    }

    #[test]
    fn table_state_marks_only_the_current_state() {
        let metrics = Metrics::new();
        let orders = TableName::new("public", "orders");
        metrics.table_state(&orders, "init");
        metrics.table_state(&orders, "data_sync");
        metrics.table_state(&orders, "data_sync");
        let text = metrics.encode();
        let state = |s: &str| {
            let prefix =
                format!("etl_table_state{{schema=\"public\",table=\"orders\",state=\"{s}\"}} ");
            line(&text, &prefix).map(|l| l[prefix.len()..].to_owned())
        };
        assert_eq!(state("init").as_deref(), Some("0"));
        assert_eq!(state("data_sync").as_deref(), Some("1"));
        assert_eq!(state("ready"), None);
    }
}
