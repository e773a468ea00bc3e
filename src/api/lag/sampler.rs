//! The sampler `etl serve-api` runs: every `api.lag_history.sample_interval_seconds` it reads
//! the apply slot of every pipeline (running or stopped: a stopped pipeline's slot still pins
//! WAL on its source) and the states of its tables, writes one row per pipeline into
//! `app.lag_samples`, deletes rows older than `api.lag_history.retention_hours`, and sets the
//! per-pipeline gauges of `/metrics`. A source that cannot be reached skips that pipeline for
//! the round (logged at debug: the console shows the same error where it matters).

use std::collections::BTreeSet;
use std::time::Duration;

use super::forecast::{self, ForecastInput};
use super::{RATE_WINDOW_SECONDS, probe, store};
use crate::api::db::pipelines::PipelineRow;
use crate::api::error::ApiError;
use crate::api::metrics::{FloatGauges, PipelineLabels};
use crate::api::routes::pipelines::connect_source;
use crate::api::source_db::state as source_state;
use crate::api::state::AppState;
use crate::config::api::LagHistoryConfig;
use crate::shutdown::Shutdown;

/// Samples until `shutdown` fires; does nothing when the interval is 0.
pub async fn run(state: AppState, config: LagHistoryConfig, mut shutdown: Shutdown) {
    if config.sample_interval_seconds == 0 {
        return;
    }
    let mut ticker = tokio::time::interval(Duration::from_secs(config.sample_interval_seconds));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut known = BTreeSet::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => return,
        }
        match round(&state, &config, &known).await {
            Ok(seen) => known = seen,
            Err(error) => tracing::warn!(%error, "lag sampling round failed"),
        }
    }
}

/// One round over every pipeline; answers the gauges' label sets now in use (those of the
/// pipelines in `previous` that are gone are dropped).
pub async fn round(
    state: &AppState,
    config: &LagHistoryConfig,
    previous: &BTreeSet<(String, i64)>,
) -> Result<BTreeSet<(String, i64)>, ApiError> {
    store::prune(&state.pool, config.retention_hours).await?;
    let rows = store::all_pipelines(&state.pool).await?;
    let mut seen = BTreeSet::new();
    for row in &rows {
        seen.insert((row.tenant_id.clone(), row.id));
        if let Err(error) = sample(state, row).await {
            tracing::debug!(pipeline_id = row.id, %error, "cannot sample the pipeline's lag");
        }
    }
    for (tenant_id, id) in previous.difference(&seen) {
        state.metrics.pipelines.forget(&labels(tenant_id, *id));
    }
    Ok(seen)
}

fn labels(tenant_id: &str, id: i64) -> PipelineLabels {
    PipelineLabels {
        tenant_id: tenant_id.to_owned(),
        pipeline_id: id.to_string(),
    }
}

/// Samples one pipeline.
async fn sample(state: &AppState, row: &PipelineRow) -> Result<(), ApiError> {
    let source = connect_source(state, row).await?;
    let taken = async {
        let probe = probe::read(&source, &state.pool, row.id).await?;
        let tables = source_state::table_states(&source, row.id).await?;
        Ok::<_, ApiError>((probe, tables))
    }
    .await;
    source.close().await;
    let (probe, tables) = taken?;
    let lag_seconds = match probe.confirmed_lsn {
        Some(confirmed) => {
            let around = store::around(&state.pool, row.id, confirmed).await?;
            forecast::lag_seconds(&around, probe.at, probe.wal_lsn, confirmed)
        }
        None => None,
    };
    let counts = store::count_states(tables.iter().map(|t| state_name(t.state)));
    store::insert(
        &state.pool,
        &store::NewSample {
            pipeline_id: row.id,
            probe: &probe,
            lag_seconds,
            tables: &counts,
        },
    )
    .await?;
    // The samples of the rate window, this one included.
    let recent = store::points(&state.pool, row.id, RATE_WINDOW_SECONDS).await?;
    let outlook = forecast::forecast(&ForecastInput {
        slot_exists: probe.slot_exists,
        wal_status: probe.wal_status.clone(),
        safe_wal_size: probe.safe_wal_size,
        limit: probe.limit,
        recent,
    });
    let gauges = &state.metrics.pipelines;
    let labels = labels(&row.tenant_id, row.id);
    let lag_bytes = probe.lag_bytes().map(|b| b as f64);
    set_or_remove(&gauges.lag_bytes, &labels, lag_bytes);
    set_or_remove(&gauges.lag_seconds, &labels, lag_seconds);
    let invalidated = invalidation_gauge(&outlook);
    set_or_remove(&gauges.slot_invalidated_in_seconds, &labels, invalidated);
    Ok(())
}

fn set_or_remove(family: &FloatGauges, labels: &PipelineLabels, value: Option<f64>) {
    match value {
        Some(value) => {
            family.get_or_create(labels).set(value);
        }
        None => {
            family.remove(labels);
        }
    }
}

/// The gauge's value: the forecast's seconds; +Inf when the slot is not bounded or keeps up;
/// none when unknown (no slot, too few samples).
pub fn invalidation_gauge(outlook: &forecast::WalForecast) -> Option<f64> {
    use forecast::ForecastLevel as L;
    match (outlook.invalidated_in_seconds, outlook.level) {
        (Some(seconds), _) => Some(seconds),
        (None, L::Unbounded) => Some(f64::INFINITY),
        (None, L::Ok | L::Warning) => Some(f64::INFINITY),
        // Lost, or beyond the limit (`unreserved`): it can happen at the next checkpoint.
        (None, L::Critical) => Some(0.0),
        (None, _) => None,
    }
}

/// The API's name of a table state (`ready`, `data_sync`, …).
pub fn state_name(state: crate::api::domain::pipeline::TableStateName) -> &'static str {
    use crate::api::domain::pipeline::TableStateName as S;
    match state {
        S::Init => "init",
        S::DataSync => "data_sync",
        S::FinishedCopy => "finished_copy",
        S::SyncDone => "sync_done",
        S::Ready => "ready",
        S::Errored => "errored",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::lag::forecast::{ForecastLevel, WalForecast};

    fn outlook(level: ForecastLevel, seconds: Option<f64>) -> WalForecast {
        WalForecast {
            level,
            summary: String::new(),
            safe_wal_size: None,
            max_slot_wal_keep_size_bytes: None,
            wal_rate_bytes_per_second: None,
            retained_growth_bytes_per_second: None,
            invalidated_in_seconds: seconds,
            invalidated_if_stopped_in_seconds: None,
        }
    }

    #[test]
    fn the_gauge_is_the_forecast_infinite_when_never_and_absent_when_unknown() {
        let gauge = |level, seconds| invalidation_gauge(&outlook(level, seconds));
        assert_eq!(gauge(ForecastLevel::Warning, Some(3600.0)), Some(3600.0));
        assert_eq!(gauge(ForecastLevel::Unbounded, None), Some(f64::INFINITY));
        assert_eq!(gauge(ForecastLevel::Ok, None), Some(f64::INFINITY));
        assert_eq!(gauge(ForecastLevel::Critical, None), Some(0.0));
        assert_eq!(gauge(ForecastLevel::Unknown, None), None);
    }
}
