//! Running a real pipeline into a memory destination, and comparing it with the source.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etl::base::event::{Cell, Row};
use etl::base::quote::quote_identifier;
use etl::base::schema::TableName;
use etl::config::PipelineConfig;
use etl::destinations::memory::MemoryDestination;
use etl::engine::{self, Destination, RunOptions};
use etl::shutdown::{self, ShutdownTrigger};
use sqlx::PgPool;
use tokio::task::JoinHandle;

use crate::common::TestDatabase;

static PIPELINES: AtomicU64 = AtomicU64::new(0);

/// A pipeline id unique across concurrently running test processes (slot names are global).
pub fn pipeline_id() -> u64 {
    u64::from(std::process::id()) * 1000 + PIPELINES.fetch_add(1, Ordering::Relaxed)
}

/// A test database with a pool and a pipeline configuration pointing at it.
pub struct Source {
    /// The test database, when the source lives in the shared cluster.
    pub db: Option<TestDatabase>,
    pub url: String,
    pub pool: PgPool,
    pub config: PipelineConfig,
}

impl Source {
    pub async fn create(prefix: &str, publication: &str) -> Source {
        let db = TestDatabase::create(prefix).await;
        let mut source = Source::at_url(&db.url.clone(), publication).await;
        source.db = Some(db);
        source
    }

    /// A source in the database at `url` (a private cluster).
    pub async fn at_url(url: &str, publication: &str) -> Source {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(url)
            .await
            .expect("connect to the source");
        let yaml = format!(
            "id: {}\npublication_name: {publication}\npg_connection: {{url: '{}'}}\n\
             batch: {{max_size: 1000, max_fill_ms: 100}}\nstatus_update_interval_ms: 200\n\
             publication_refresh_secs: 1\nmetrics_address: null\n\
             retry: {{initial_ms: 100, max_ms: 1000}}\n",
            pipeline_id(),
            url
        );
        let config: PipelineConfig = serde_yaml::from_str(&yaml).expect("pipeline config");
        Source {
            db: None,
            url: url.to_owned(),
            pool,
            config,
        }
    }

    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Starts the pipeline into a fresh logging memory destination and waits until `tables`
    /// tables are ready.
    pub async fn start_ready(&self, tables: usize) -> (Arc<MemoryDestination>, Running) {
        let dest = Arc::new(MemoryDestination::with_event_log());
        let running = self.start(dest.clone());
        self.wait_ready(tables).await;
        (dest, running)
    }

    pub fn start(&self, destination: Arc<MemoryDestination>) -> Running {
        self.start_with(destination, false)
    }

    /// Starts the pipeline into any destination (`once`: stop when caught up).
    pub fn start_with<D: Destination + Clone>(&self, destination: D, once: bool) -> Running {
        let (trigger, shutdown) = shutdown::channel();
        let config = self.config.clone();
        let handle = tokio::spawn(async move {
            let options = RunOptions {
                once,
                ..RunOptions::default()
            };
            let source = config
                .source()
                .expect("the test source connection resolves");
            engine::run(&config, &source, destination, shutdown, options).await
        });
        Running { trigger, handle }
    }

    /// The apply slot's `confirmed_flush_lsn`, as a number.
    pub async fn confirmed_flush(&self) -> Option<u64> {
        let slot = engine::apply_slot_name(self.config.id);
        sqlx::query_scalar::<_, Option<i64>>(
            "select (confirmed_flush_lsn - '0/0')::bigint from pg_replication_slots \
             where slot_name = $1",
        )
        .bind(slot)
        .fetch_optional(&self.pool)
        .await
        .expect("read slot")
        .flatten()
        .map(|v| v as u64)
    }

    /// The current WAL insert position, as a number.
    pub async fn current_lsn(&self) -> u64 {
        sqlx::query_scalar::<_, i64>("select (pg_current_wal_lsn() - '0/0')::bigint")
            .fetch_one(&self.pool)
            .await
            .expect("current lsn") as u64
    }

    /// Table states of this pipeline by table name.
    pub async fn states(&self) -> Vec<(String, String)> {
        sqlx::query_as(
            "select c.relname::text, s.state from etl.replication_state s \
             join pg_class c on c.oid = s.table_id \
             where s.pipeline_id = $1 and s.is_current order by 1",
        )
        .bind(self.config.id as i64)
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default()
    }

    /// Waits until every table of the pipeline is `ready` (and at least `tables` exist).
    pub async fn wait_ready(&self, tables: usize) {
        wait_for("all tables ready", Duration::from_secs(120), || async {
            let states = self.states().await;
            states.len() >= tables && states.iter().all(|(_, s)| s == "ready")
        })
        .await;
    }

    /// Rows of `table` as text cells in the types' output format, ordered by `order`.
    pub async fn rows(&self, table: &str, columns: &[&str], order: &str) -> Vec<Row> {
        let select = columns
            .iter()
            // concat() renders with the type's output function (bool `t`, padded bpchar),
            // as COPY and pgoutput do; `::text` casts would differ for some types.
            .map(|c| format!("case when {c} is null then null else concat({c}) end"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("select array[{select}]::text[] from {table} order by {order}");
        let mut conn = self.pool.acquire().await.expect("connection");
        sqlx::raw_sql(
            "set timezone = 'UTC'; set extra_float_digits = 3; set datestyle = 'ISO'; \
             set intervalstyle = 'postgres'",
        )
        .execute(&mut *conn)
        .await
        .expect("session settings");
        let rows: Vec<Vec<Option<String>>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await
            .expect("read source rows");
        rows.into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|v| v.map_or(Cell::Null, Cell::Text))
                    .collect()
            })
            .collect()
    }

    pub async fn drop(self) {
        self.pool.close().await;
        if let Some(db) = self.db {
            db.drop_database().await;
        }
    }
}

/// A pipeline task and its shutdown trigger.
pub struct Running {
    pub trigger: ShutdownTrigger,
    pub handle: JoinHandle<Result<(), engine::Error>>,
}

impl Running {
    /// Triggers shutdown and waits for a clean stop.
    pub async fn stop(self) {
        self.trigger.trigger();
        let result = tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("pipeline stops within 30 s")
            .expect("pipeline task");
        result.expect("pipeline ended without error");
    }

    /// Kills the task mid-way (as a crash would): nothing is flushed or acknowledged.
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

/// Polls `check` until it is true; panics with `what` after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The destination's rows of `schema.table`, sorted by the integer in the first column.
pub fn dest_rows(dest: &MemoryDestination, schema: &str, table: &str) -> Vec<Row> {
    let mut rows = dest
        .rows(&TableName::new(schema, table))
        .unwrap_or_default();
    rows.sort_by_key(|row| {
        row.first()
            .and_then(Cell::as_text)
            .and_then(|t| t.parse::<i64>().ok())
            .unwrap_or(i64::MIN)
    });
    rows
}

/// Waits until the destination's copy of `table` equals the source's rows (`columns`: plain
/// column names, the first an integer key).
pub async fn wait_equal(
    source: &Source,
    dest: &MemoryDestination,
    table: &TableName,
    columns: &[&str],
) {
    let quoted: Vec<String> = columns.iter().map(|c| quote_identifier(c)).collect();
    let quoted: Vec<&str> = quoted.iter().map(String::as_str).collect();
    let order = format!("{}::bigint", quoted[0]);
    let (schema, name) = (table.schema.as_str(), table.name.as_str());
    let sql_table = table.quoted();
    let start = Instant::now();
    let (expected, actual) = loop {
        let expected = source.rows(&sql_table, &quoted, &order).await;
        let actual = dest_rows(dest, schema, name);
        if expected == actual {
            return;
        }
        if start.elapsed() > Duration::from_secs(60) {
            break (expected, actual);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(actual.len(), expected.len(), "{table}: row count differs");
    for (a, e) in actual.iter().zip(&expected) {
        assert_eq!(a, e, "{table}: row differs");
    }
    panic!("{table} differs");
}

/// `public.name`.
pub fn public(name: &str) -> TableName {
    TableName::new("public", name)
}

/// No event reached the destination twice (positions are unique per table).
pub fn assert_each_event_once(dest: &MemoryDestination) {
    let mut positions: Vec<_> = dest
        .events()
        .iter()
        .map(|e| (e.table.id, e.position()))
        .collect();
    positions.sort();
    let total = positions.len();
    positions.dedup();
    assert_eq!(positions.len(), total, "an event was applied twice");
}
