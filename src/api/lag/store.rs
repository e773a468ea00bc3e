//! `app.lag_samples`: one row per pipeline and sampling round (see the migration
//! `20261202100001_lag_samples`), read back as points for rates, as the latest sample per
//! pipeline for the console's list, and as bucketed series for its charts.

use std::collections::BTreeMap;

use sqlx::PgPool;
use sqlx::types::Json;

use super::forecast::{Point, WalLimit};
use super::probe::Probe;
use crate::api::db::pipelines::PipelineRow;

/// A sample as written.
#[derive(Debug, Clone)]
pub struct NewSample<'a> {
    pub pipeline_id: i64,
    pub probe: &'a Probe,
    pub lag_seconds: Option<f64>,
    /// Tables by state.
    pub tables: &'a BTreeMap<String, i64>,
}

pub async fn insert(pool: &PgPool, sample: &NewSample<'_>) -> Result<(), sqlx::Error> {
    let p = sample.probe;
    let limit = match p.limit {
        WalLimit::Bounded(bytes) => Some(bytes),
        WalLimit::Unbounded | WalLimit::Unknown => None,
    };
    sqlx::query(
        "insert into app.lag_samples (pipeline_id, sampled_at, wal_lsn, confirmed_lsn, \
         restart_lsn, lag_bytes, lag_seconds, safe_wal_size, wal_status, wal_keep_limit, tables) \
         values ($1, to_timestamp($11), $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         on conflict do nothing",
    )
    .bind(sample.pipeline_id)
    .bind(p.wal_lsn)
    .bind(p.confirmed_lsn)
    .bind(p.restart_lsn)
    .bind(p.lag_bytes())
    .bind(sample.lag_seconds)
    .bind(p.safe_wal_size)
    .bind(p.wal_status.as_deref())
    .bind(limit)
    .bind(Json(sample.tables))
    .bind(p.at)
    .execute(pool)
    .await?;
    Ok(())
}

/// The control-plane database's clock in Unix seconds: every time in the lag history is this
/// clock's (never the source's), so samples of sources with skewed clocks still line up.
pub async fn now(pool: &PgPool) -> Result<f64, sqlx::Error> {
    sqlx::query_scalar("select extract(epoch from clock_timestamp())::float8")
        .fetch_one(pool)
        .await
}

/// The pipeline's samples of the last `seconds`, oldest first.
pub async fn points(
    pool: &PgPool,
    pipeline_id: i64,
    seconds: f64,
) -> Result<Vec<Point>, sqlx::Error> {
    let rows: Vec<(f64, i64, Option<i64>)> = sqlx::query_as(
        "select extract(epoch from sampled_at)::float8, wal_lsn, restart_lsn \
         from app.lag_samples where pipeline_id = $1 \
           and sampled_at > clock_timestamp() - make_interval(secs => $2) \
         order by sampled_at",
    )
    .bind(pipeline_id)
    .bind(seconds)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(at, wal_lsn, restart_lsn)| Point {
            at,
            wal_lsn,
            restart_lsn,
        })
        .collect())
}

/// The samples around WAL position `confirmed` (within the retention): the last one at or
/// before it and the first one after it, oldest first: what [`super::forecast::lag_seconds`]
/// interpolates between, read with two index scans instead of the whole history.
pub async fn around(
    pool: &PgPool,
    pipeline_id: i64,
    confirmed: i64,
) -> Result<Vec<Point>, sqlx::Error> {
    let rows: Vec<(f64, i64, Option<i64>)> = sqlx::query_as(
        "(select extract(epoch from sampled_at)::float8, wal_lsn, restart_lsn \
          from app.lag_samples where pipeline_id = $1 and wal_lsn <= $2 \
          order by sampled_at desc limit 1) \
         union all \
         (select extract(epoch from sampled_at)::float8, wal_lsn, restart_lsn \
          from app.lag_samples where pipeline_id = $1 and wal_lsn > $2 \
          order by sampled_at limit 1) \
         order by 1",
    )
    .bind(pipeline_id)
    .bind(confirmed)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(at, wal_lsn, restart_lsn)| Point {
            at,
            wal_lsn,
            restart_lsn,
        })
        .collect())
}

/// The newest sample of a pipeline, as the pipelines list shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Latest {
    pub pipeline_id: i64,
    /// Seconds since it was taken.
    pub age_seconds: f64,
    pub lag_bytes: Option<i64>,
    pub lag_seconds: Option<f64>,
    pub tables: Json<BTreeMap<String, i64>>,
}

/// The newest sample of each of the tenant's pipelines.
pub async fn latest(pool: &PgPool, tenant_id: &str) -> Result<BTreeMap<i64, Latest>, sqlx::Error> {
    let rows: Vec<Latest> = sqlx::query_as(
        "select distinct on (s.pipeline_id) s.pipeline_id, \
           extract(epoch from clock_timestamp() - s.sampled_at)::float8 as age_seconds, \
           s.lag_bytes, s.lag_seconds, s.tables \
         from app.lag_samples s join app.pipelines p on p.id = s.pipeline_id \
         where p.tenant_id = $1 \
         order by s.pipeline_id, s.sampled_at desc",
    )
    .bind(tenant_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.pipeline_id, r)).collect())
}

/// One point of a chart: the largest lag within a bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartPoint {
    /// Seconds before now (0 = now).
    pub ago: f64,
    pub lag_bytes: Option<i64>,
    pub lag_seconds: Option<f64>,
}

/// Seconds since the pipeline's oldest sample within the last `range_seconds` (0: none).
pub async fn covered(
    pool: &PgPool,
    pipeline_id: i64,
    range_seconds: f64,
) -> Result<f64, sqlx::Error> {
    let seconds: Option<f64> = sqlx::query_scalar(
        "select extract(epoch from clock_timestamp() - min(sampled_at))::float8 \
         from app.lag_samples \
         where pipeline_id = $1 and sampled_at > clock_timestamp() - make_interval(secs => $2)",
    )
    .bind(pipeline_id)
    .bind(range_seconds)
    .fetch_one(pool)
    .await?;
    Ok(seconds.unwrap_or(0.0))
}

/// The pipeline's lag over the last `range_seconds`, the largest value per `bucket_seconds`.
pub async fn chart(
    pool: &PgPool,
    pipeline_id: i64,
    range_seconds: f64,
    bucket_seconds: f64,
) -> Result<Vec<ChartPoint>, sqlx::Error> {
    let rows: Vec<(f64, Option<i64>, Option<f64>)> = sqlx::query_as(
        "select extract(epoch from clock_timestamp())::float8 \
                - max(extract(epoch from sampled_at))::float8, \
                max(lag_bytes), max(lag_seconds) \
         from app.lag_samples \
         where pipeline_id = $1 and sampled_at > clock_timestamp() - make_interval(secs => $2) \
         group by floor(extract(epoch from sampled_at) / $3) \
         order by 1 desc",
    )
    .bind(pipeline_id)
    .bind(range_seconds)
    .bind(bucket_seconds)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(ago, lag_bytes, lag_seconds)| ChartPoint {
            ago: ago.max(0.0),
            lag_bytes,
            lag_seconds,
        })
        .collect())
}

/// Deletes samples older than `retention_hours`; answers how many.
pub async fn prune(pool: &PgPool, retention_hours: u64) -> Result<u64, sqlx::Error> {
    let hours = i32::try_from(retention_hours).unwrap_or(i32::MAX);
    Ok(sqlx::query(
        "delete from app.lag_samples where sampled_at < clock_timestamp() - make_interval(hours => $1)",
    )
    .bind(hours)
    .execute(pool)
    .await?
    .rows_affected())
}

/// Every pipeline of every tenant (the sampler's round).
pub async fn all_pipelines(pool: &PgPool) -> Result<Vec<PipelineRow>, sqlx::Error> {
    sqlx::query_as(
        "select id, tenant_id, source_id, destination_id, replicator_id, publication_name, \
         config, desired_state from app.pipelines order by id",
    )
    .fetch_all(pool)
    .await
}

/// Counts of states, e.g. `{"ready": 12, "errored": 1}`.
pub fn count_states<'a>(states: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for state in states {
        *counts.entry(state.to_owned()).or_insert(0) += 1;
    }
    counts
}
