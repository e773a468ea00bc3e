//! Lag history of pipelines: what the console charts and the WAL forecast are made of.
//!
//! - [`probe`]: one reading of a pipeline's apply slot and its source's WAL position and
//!   `max_slot_wal_keep_size`, over an ordinary connection to the source.
//! - [`store`]: `app.lag_samples` in the control-plane database (bounded retention).
//! - [`sampler`]: the task `etl serve-api` runs to sample every pipeline periodically
//!   (`api.lag_history`), which also sets the per-pipeline Prometheus gauges.
//! - [`forecast`]: lag in seconds, WAL rates and when the slot's WAL budget runs out.
//!
//! [`wal_forecast`] is the forecast of one pipeline right now (live probe + recent samples), as
//! `replication-status` and the console's pipeline page show it.

pub mod forecast;
pub mod probe;
pub mod sampler;
pub mod store;

use sqlx::PgPool;

use self::forecast::{ForecastInput, WalForecast};
use self::probe::Probe;
use crate::api::error::ApiError;

/// Seconds of samples the rates of a forecast are measured over.
pub const RATE_WINDOW_SECONDS: f64 = 900.0;

/// The forecast of a pipeline from a fresh `probe` and its recent samples.
pub async fn wal_forecast(
    app: &PgPool,
    pipeline_id: i64,
    probe: &Probe,
) -> Result<WalForecast, ApiError> {
    let mut recent = store::points(app, pipeline_id, RATE_WINDOW_SECONDS).await?;
    recent.push(probe.point());
    Ok(forecast::forecast(&ForecastInput {
        slot_exists: probe.slot_exists,
        wal_status: probe.wal_status.clone(),
        safe_wal_size: probe.safe_wal_size,
        limit: probe.limit,
        recent,
    }))
}
