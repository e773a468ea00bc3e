//! The lag sampler with a real pipeline: samples land in `app.lag_samples`, old ones are
//! deleted, `/metrics` and `replication-status` carry the lag and the WAL forecast, and the
//! console draws the chart from the samples.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::client::Console;
use crate::helpers::{TestApp, TestSource, spawn_app_configured};

pub async fn wait_for<T>(what: &str, seconds: u64, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..seconds * 5 {
        if let Some(value) = probe().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Pipeline ids name replication slots, which are unique in the whole test cluster: tests
/// running at once (or a failed run's leftovers) must not share them, so each control plane
/// hands out ids from its own random start.
pub async fn unique_pipeline_ids(app: &TestApp) {
    let start = 1_000 + u64::from(rand::random::<u32>() % 1_000_000);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter table app.pipelines alter column id restart with {start}"
    )))
    .execute(&app.pool)
    .await
    .unwrap();
}

/// A control plane sampling every second, a source with `public.orders` in publication
/// `orders_pub`, tenant `acme` with a memory destination and a pipeline (not started).
pub async fn pipeline_setup() -> (TestApp, TestSource, i64) {
    let app = spawn_app_configured(None, |config| {
        config.lag_history.sample_interval_seconds = 1;
    })
    .await;
    unique_pipeline_ids(&app).await;
    let source = TestSource::create().await;
    sqlx::raw_sql(
        "create table public.orders (id int primary key, item text); \
         insert into public.orders select g, 'item ' || g from generate_series(1, 100) g; \
         create publication orders_pub for table public.orders",
    )
    .execute(&source.db.pool().await)
    .await
    .unwrap();
    app.create_tenant("acme").await;
    app.create_image().await;
    let source_id = app.create_source("acme", "shop", &source).await;
    let destination_id = app
        .create_destination("acme", "mem", json!({"memory": {}}))
        .await;
    let id = app
        .create_pipeline("acme", source_id, destination_id, "orders_pub")
        .await["id"]
        .as_i64()
        .unwrap();
    (app, source, id)
}

#[tokio::test]
async fn lag_is_sampled_with_bounded_retention_and_exposed_as_metrics_status_and_chart() {
    let (app, source, id) = pipeline_setup().await;
    // A sample from long ago: past the 48 h retention, the next round deletes it.
    sqlx::query(
        "insert into app.lag_samples (pipeline_id, sampled_at, wal_lsn, lag_bytes) \
         values ($1, now() - interval '100 hours', 1, 1)",
    )
    .bind(id)
    .execute(&app.pool)
    .await
    .unwrap();
    app.post(
        &format!("/v1/pipelines/{id}/start"),
        Some("acme"),
        json!({}),
    )
    .await
    .expect(200);
    wait_for("the table to be ready", 90, async || {
        let body = app
            .get(
                &format!("/v1/pipelines/{id}/replication-status"),
                Some("acme"),
            )
            .await
            .expect(200);
        (body["tables"][0]["state"] == json!("ready")).then_some(())
    })
    .await;
    // Some WAL to measure a rate on.
    let pool = source.db.pool().await;
    for round in 0..5 {
        sqlx::query(
            "insert into public.orders select g, 'more' from generate_series($1, $1 + 99) g",
        )
        .bind(1000 + round * 100)
        .execute(&pool)
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let samples: Vec<(Option<i64>, Option<f64>, Value)> =
        wait_for("samples with a slot", 30, async || {
            let rows: Vec<(Option<i64>, Option<f64>, Value)> = sqlx::query_as(
                "select lag_bytes, lag_seconds, tables from app.lag_samples \
             where pipeline_id = $1 and confirmed_lsn is not null order by sampled_at",
            )
            .bind(id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
            (rows.len() >= 3 && rows.iter().any(|r| r.1.is_some())).then_some(rows)
        })
        .await;
    let old: i64 = sqlx::query_scalar(
        "select count(*) from app.lag_samples where sampled_at < now() - interval '48 hours'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(old, 0, "samples past the retention are deleted");
    let last = samples.last().unwrap();
    assert!(last.0.is_some_and(|b| b >= 0), "{samples:?}");
    assert_eq!(last.2, json!({"ready": 1}), "{samples:?}");

    // The forecast in replication-status (the test cluster keeps WAL without a bound).
    let status = app
        .get(
            &format!("/v1/pipelines/{id}/replication-status"),
            Some("acme"),
        )
        .await
        .expect(200);
    let forecast = &status["wal_forecast"];
    assert!(status["slot"]["exists"] == json!(true), "{status}");
    let keep: String = sqlx::query_scalar("show max_slot_wal_keep_size")
        .fetch_one(&pool)
        .await
        .unwrap();
    if keep == "-1" {
        assert_eq!(forecast["level"], json!("unbounded"), "{status}");
        assert!(
            forecast["summary"]
                .as_str()
                .unwrap()
                .starts_with("not bounded: max_slot_wal_keep_size is -1"),
            "{status}"
        );
    } else {
        assert!(forecast["safe_wal_size"].is_i64(), "{status}");
        assert!(
            forecast["wal_rate_bytes_per_second"].is_number(),
            "{status}"
        );
    }

    // The gauges.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("etl_api_pipeline_lag_bytes{{tenant_id=\"acme\",pipeline_id=\"{id}\"}}");
    assert!(metrics.contains(&series), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "etl_api_pipeline_slot_invalidated_in_seconds{{tenant_id=\"acme\",pipeline_id=\"{id}\"}}"
        )),
        "{metrics}"
    );

    // The console draws the samples and lists the table counts.
    let mut console = Console::new(&app);
    console.sign_in_to(&app.api_key, "acme").await;
    let live = console
        .get(&format!("/pipelines/{id}/live?range=hour"))
        .await;
    assert_eq!(live.status, StatusCode::OK);
    assert!(
        live.body.contains("class=\"lag-chart bytes\""),
        "{}",
        live.body
    );
    assert!(live.body.contains("<polyline"), "{}", live.body);
    assert!(live.body.contains("id=\"wal-forecast\""), "{}", live.body);
    let day = console.get(&format!("/pipelines/{id}?range=day")).await;
    assert_eq!(day.status, StatusCode::OK);
    assert!(day.body.contains("live?range=day"), "{}", day.body);
    assert!(day.body.contains("<polyline"), "{}", day.body);
    // The assets are served from the binary, with their types.
    for (asset, kind) in [
        ("console.js", "text/javascript"),
        ("console.css", "text/css"),
        ("logo.svg", "image/svg+xml"),
    ] {
        let page = console.get(&format!("/assets/{asset}")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            page.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    assert_eq!(
        console.get("/assets/other.js").await.status,
        StatusCode::NOT_FOUND
    );
    let rows = console.get("/pipelines/rows").await;
    assert!(rows.body.contains("1 ready"), "{}", rows.body);

    app.post(&format!("/v1/pipelines/{id}/stop"), Some("acme"), json!({}))
        .await
        .expect(200);
    app.delete(&format!("/v1/pipelines/{id}"), Some("acme"))
        .await
        .expect(200);
    // Samples go with their pipeline.
    let left: i64 =
        sqlx::query_scalar("select count(*) from app.lag_samples where pipeline_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(left, 0);
    app.shutdown().await;
    source.drop().await;
}

#[tokio::test]
async fn copy_progress_is_read_from_the_source_for_plain_and_ranged_copies() {
    use futures_util::StreamExt as _;
    use sqlx::Connection as _;

    let source = TestSource::create().await;
    let pool = source.db.pool().await;
    sqlx::raw_sql(
        "create table public.big (id int primary key, pad text); \
         insert into public.big select g, repeat('x', 200) from generate_series(1, 200000) g; \
         analyze public.big; \
         create table public.idle (id int primary key);",
    )
    .execute(&pool)
    .await
    .unwrap();
    let oid: i64 = sqlx::query_scalar("select 'public.big'::regclass::oid::int8")
        .fetch_one(&pool)
        .await
        .unwrap();
    let idle: i64 = sqlx::query_scalar("select 'public.idle'::regclass::oid::int8")
        .fetch_one(&pool)
        .await
        .unwrap();
    // The engine's two statement shapes: by table name, and a query over a CTID range.
    for statement in [
        "COPY \"public\".\"big\" (\"id\", \"pad\") TO STDOUT",
        "COPY (SELECT \"id\", \"pad\" FROM \"public\".\"big\" WHERE ctid >= '(0,0)'::tid) TO STDOUT",
    ] {
        let mut copier = sqlx::PgConnection::connect(&source.db.url).await.unwrap();
        let mut stream = copier.copy_out_raw(statement).await.unwrap();
        // Read a little: the server then blocks on a full socket, mid-copy.
        stream.next().await.unwrap().unwrap();
        let progress = wait_for("the copy in pg_stat_progress_copy", 10, async || {
            let found = etl::api::lag::probe::copy_progress(&pool, &[oid, idle])
                .await
                .unwrap();
            found
                .get(&oid)
                .copied()
                .filter(|p| p.rows_copied > 0)
                .map(|p| (p, found))
        })
        .await;
        let (big, found) = progress;
        assert!(big.rows_copied < 200_000, "{statement}: {big:?}");
        let estimate = big.rows_estimated.unwrap();
        assert!(
            (150_000..=250_000).contains(&estimate),
            "{statement}: {estimate}"
        );
        assert!(
            !found.contains_key(&idle),
            "a table not being copied has no progress"
        );
        drop(stream);
        drop(copier);
    }
    pool.close().await;
    source.drop().await;
}
