//! Resyncing a table while the pipeline runs (issue 18): the table goes back to `init` in the
//! state, the running apply worker notices on its refresh tick, stops applying it, and a
//! table-sync worker copies it again and hands it back to streaming — under write load, with
//! no gap (the destination ends equal to the source) and no duplicate (each event once), while
//! the other tables keep streaming. The same path makes rolling an errored table back to
//! `init` safe while running, and automatic retries of errored tables (`pipeline.table_errors`)
//! use it too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etl::base::schema::TableId;
use etl::config::TableErrorsConfig;
use etl::destinations::memory::MemoryDestination;
use etl::engine::state::postgres::PgStateStore;
use etl::engine::state::{Error as StateError, RollbackSelection, StateName};

use crate::helpers::{Source, assert_each_event_once, public, wait_equal, wait_for};

async fn table_id(source: &Source, name: &str) -> TableId {
    let oid: i64 = sqlx::query_scalar("select $1::regclass::oid::int8")
        .bind(name)
        .fetch_one(&source.pool)
        .await
        .unwrap();
    TableId(u32::try_from(oid).unwrap())
}

/// How many times `table` entered `state` (the history is kept).
async fn times_in(source: &Source, table: TableId, state: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from etl.replication_state where pipeline_id = $1 \
         and table_id = $2::bigint::oid and state = $3",
    )
    .bind(source.config.id as i64)
    .bind(i64::from(table.0))
    .bind(state)
    .fetch_one(&source.pool)
    .await
    .unwrap()
}

/// Keeps changing both tables until `stop`: updates, inserts and deletes in `hot`, updates in
/// `other`.
fn write_load(source: &Source, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let pool = source.pool.clone();
    tokio::spawn(async move {
        let mut round = 0u64;
        while !stop.load(Ordering::Relaxed) {
            round += 1;
            let sql = format!(
                "begin; update hot set v = v + 1 where id % 97 = {m}; \
                 insert into hot values ({new}, {round}); delete from hot where id = {round}; \
                 update other set v = v + 1 where id = {o}; commit;",
                m = round % 97,
                new = 1_000_000 + round,
                o = round % 500 + 1,
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .expect("write load");
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        round
    })
}

#[tokio::test]
async fn a_table_resynced_under_write_load_ends_equal_while_the_others_keep_streaming() {
    let source = Source::create("eng_resync", "pub_resync").await;
    source
        .exec(
            "create table hot (id int primary key, v int); \
             create table other (id int primary key, v int); \
             insert into hot select g, 0 from generate_series(1, 50000) g; \
             insert into other select g, 0 from generate_series(1, 500) g; \
             create publication pub_resync for table hot, other",
        )
        .await;
    let (dest, running) = source.start_ready(2).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = write_load(&source, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (hot, other) = (
        table_id(&source, "public.hot").await,
        table_id(&source, "public.other").await,
    );
    let store = PgStateStore::new(source.pool.clone(), source.config.id);
    let moved = store
        .resync_tables(RollbackSelection::Table(hot))
        .await
        .unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(
        (moved[0].from, moved[0].to),
        (StateName::Ready, StateName::Init)
    );
    // Already waiting for its copy: a second resync is refused, the first one is not disturbed.
    let again = store.resync_tables(RollbackSelection::Table(hot)).await;
    assert!(
        matches!(again, Err(StateError::BeingCopied { .. })),
        "{again:?}"
    );

    wait_for(
        "hot copied again and ready",
        Duration::from_secs(90),
        || async {
            times_in(&source, hot, "data_sync").await == 2
                && source
                    .states()
                    .await
                    .iter()
                    .all(|(_, state)| state == "ready")
        },
    )
    .await;
    // Changes keep flowing into the resynced table after its hand-off.
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.await.unwrap();
    assert!(
        rounds > 50,
        "the load ran during the resync ({rounds} rounds)"
    );

    wait_equal(&source, &dest, &public("hot"), &["id", "v"]).await;
    wait_equal(&source, &dest, &public("other"), &["id", "v"]).await;
    assert_each_event_once(&dest);
    assert_eq!(
        times_in(&source, other, "data_sync").await,
        1,
        "the other table was not copied again"
    );
    running.stop().await;
    source.drop().await;
}

#[tokio::test]
async fn an_errored_table_rolled_back_to_init_while_running_is_copied_again() {
    let source = Source::create("eng_resync_err", "pub_resync_err").await;
    source
        .exec(
            "create table good (id int primary key, v text); \
             create table bad (id int primary key, v text); \
             insert into good values (1, 'a'); insert into bad values (1, 'a'); \
             create publication pub_resync_err for table good, bad",
        )
        .await;
    let (dest, running) = source.start_ready(2).await;
    dest.fail_writes_for(public("bad"), "value too wide for the destination");
    source
        .exec("insert into bad values (2, 'b'); insert into good values (2, 'b')")
        .await;
    wait_for("bad errored", Duration::from_secs(30), || async {
        source
            .states()
            .await
            .contains(&("bad".to_owned(), "errored".to_owned()))
    })
    .await;
    // Changes it misses while errored come back with the new copy.
    source
        .exec("insert into bad values (3, 'missed'); update bad set v = 'z' where id = 1")
        .await;
    dest.stop_failing(&public("bad"));
    let store = PgStateStore::new(source.pool.clone(), source.config.id);
    let moved = store
        .resync_tables(RollbackSelection::Errored)
        .await
        .unwrap();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0].from, StateName::Errored);
    source.wait_ready(2).await;
    source.exec("insert into bad values (4, 'after')").await;
    wait_equal(&source, &dest, &public("bad"), &["id", "v"]).await;
    wait_equal(&source, &dest, &public("good"), &["id", "v"]).await;
    running.stop().await;
    source.drop().await;
}

/// The current row of `table`: state, attempts, last error, whether a retry is scheduled
/// (empty before the pipeline created its state).
async fn retry_row(source: &Source, table: TableId) -> (String, i32, Option<String>, bool) {
    sqlx::query_as(
        "select state, attempts, last_error, next_attempt_at is not null \
         from etl.replication_state where pipeline_id = $1 \
         and table_id = $2::bigint::oid and is_current",
    )
    .bind(source.config.id as i64)
    .bind(i64::from(table.0))
    .fetch_optional(&source.pool)
    .await
    .ok()
    .flatten()
    .unwrap_or_default()
}

#[tokio::test]
async fn an_errored_table_is_retried_up_to_the_configured_attempts_then_waits_for_the_operator() {
    let mut source = Source::create("eng_retry", "pub_retry").await;
    source.config.table_errors = TableErrorsConfig {
        max_attempts: 2,
        retry_delay_secs: 1,
    };
    source
        .exec(
            "create table good (id int primary key, v text); \
             create table bad (id int primary key, v text); \
             insert into good values (1, 'a'); insert into bad values (1, 'a'); \
             create publication pub_retry for table good, bad",
        )
        .await;
    let dest = Arc::new(MemoryDestination::with_event_log());
    dest.fail_writes_for(public("bad"), "value too wide for the destination");
    let running = source.start(dest.clone());
    let bad = table_id(&source, "public.bad").await;

    // The first copy and two retries fail; then the table stays errored, nothing scheduled.
    wait_for("retries exhausted", Duration::from_secs(60), || async {
        retry_row(&source, bad).await.1 == 3
    })
    .await;
    let (state, attempts, last_error, scheduled) = retry_row(&source, bad).await;
    assert_eq!((state.as_str(), attempts, scheduled), ("errored", 3, false));
    assert!(
        last_error
            .as_deref()
            .is_some_and(|e| e.contains("value too wide")),
        "{last_error:?}"
    );
    assert_eq!(times_in(&source, bad, "data_sync").await, 3);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        times_in(&source, bad, "data_sync").await,
        3,
        "no fourth copy"
    );
    wait_equal(&source, &dest, &public("good"), &["id", "v"]).await;

    // The operator fixes the cause and resyncs: a fresh count.
    dest.stop_failing(&public("bad"));
    let store = PgStateStore::new(source.pool.clone(), source.config.id);
    store
        .resync_tables(RollbackSelection::Table(bad))
        .await
        .unwrap();
    source.wait_ready(2).await;
    assert_eq!(
        retry_row(&source, bad).await,
        ("ready".to_owned(), 0, None, false)
    );

    // An error while streaming is retried automatically: it succeeds once the cause is gone,
    // and the table comes back with the change it missed.
    dest.fail_writes_for(public("bad"), "destination hiccup");
    source.exec("insert into bad values (2, 'b')").await;
    wait_for(
        "bad errored while streaming",
        Duration::from_secs(30),
        || async { retry_row(&source, bad).await.0 == "errored" },
    )
    .await;
    let (_, attempts, last_error, scheduled) = retry_row(&source, bad).await;
    assert_eq!((attempts, scheduled), (1, true));
    assert!(last_error.is_some_and(|e| e.contains("hiccup")));
    dest.stop_failing(&public("bad"));
    source.wait_ready(2).await;
    // Two copies for the operator's resync and the recovery, at least; one more when the 1 s
    // retry came (and failed) before the cause was fixed.
    assert!(times_in(&source, bad, "data_sync").await >= 5);
    wait_equal(&source, &dest, &public("bad"), &["id", "v"]).await;
    wait_equal(&source, &dest, &public("good"), &["id", "v"]).await;
    running.stop().await;
    source.drop().await;
}

#[tokio::test]
async fn retry_attempts_and_the_next_attempt_show_in_the_metrics() {
    let mut source = Source::create("eng_retry_metrics", "pub_retry_metrics").await;
    source.config.table_errors = TableErrorsConfig {
        max_attempts: 5,
        retry_delay_secs: 3600,
    };
    source
        .exec(
            "create table bad (id int primary key); insert into bad values (1); \
             create publication pub_retry_metrics for table bad",
        )
        .await;
    let dest = Arc::new(MemoryDestination::new());
    dest.fail_writes_for(public("bad"), "value too wide for the destination");
    let metrics = etl::engine::metrics::Metrics::new();
    let options = etl::engine::RunOptions {
        once: false,
        observer: etl::engine::Observer::new(
            metrics.clone(),
            etl::engine::progress::CopyProgress::hidden(),
        ),
    };
    let (trigger, shutdown) = etl::shutdown::channel();
    let config = source.config.clone();
    let task = tokio::spawn(async move {
        let connection = config.source().expect("source");
        etl::engine::run(&config, &connection, dest, shutdown, options).await
    });
    let attempts = "etl_table_error_attempts{schema=\"public\",table=\"bad\"} 1";
    wait_for("the retry in the metrics", Duration::from_secs(60), || {
        let text = metrics.encode();
        async move { text.contains(attempts) }
    })
    .await;
    let text = metrics.encode();
    let next: f64 = text
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                "etl_table_next_attempt_timestamp_seconds{schema=\"public\",table=\"bad\"} ",
            )
        })
        .and_then(|v| v.parse().ok())
        .expect("the next attempt is exported");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        next > now + 3000.0 && next < now + 3700.0,
        "next attempt in an hour: {next} vs now {now}"
    );
    trigger.trigger();
    task.await.unwrap().unwrap();
    source.drop().await;
}
