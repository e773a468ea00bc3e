//! Prometheus metrics of the API (`GET /metrics`): requests by method, route template and
//! status, and request latency by route. Route templates (`/v1/pipelines/{pipeline_id}`), not
//! concrete paths, keep the label set small. Per pipeline, the lag sampler
//! ([`super::lag::sampler`]) sets its lag and the WAL forecast ([`PipelineGauges`]).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Which pipeline a gauge is about.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabels {
    pub tenant_id: String,
    pub pipeline_id: String,
}

/// One gauge per pipeline.
pub type FloatGauges = Family<PipelineLabels, Gauge<f64, std::sync::atomic::AtomicU64>>;

/// Per-pipeline gauges, set by each round of the lag sampler.
#[derive(Default)]
pub struct PipelineGauges {
    /// Bytes of WAL the apply slot is behind.
    pub lag_bytes: FloatGauges,
    /// Seconds the apply slot is behind (interpolated between samples).
    pub lag_seconds: FloatGauges,
    /// Seconds until the slot is invalidated at the current rate; +Inf when it is not bounded
    /// or not falling behind.
    pub slot_invalidated_in_seconds: FloatGauges,
}

impl PipelineGauges {
    /// Drops the series of a pipeline that is gone.
    pub fn forget(&self, labels: &PipelineLabels) {
        self.lag_bytes.remove(labels);
        self.lag_seconds.remove(labels);
        self.slot_invalidated_in_seconds.remove(labels);
    }
}

/// The API's metrics registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    /// Per-pipeline lag and WAL forecast.
    pub pipelines: PipelineGauges,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~4 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("etl_api");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route",
            latency.clone(),
        );
        let pipelines = PipelineGauges::default();
        registry.register(
            "pipeline_lag_bytes",
            "Bytes of WAL a pipeline's apply slot is behind the source (lag sampler)",
            pipelines.lag_bytes.clone(),
        );
        registry.register(
            "pipeline_lag_seconds",
            "Seconds a pipeline's apply slot is behind the source (lag sampler)",
            pipelines.lag_seconds.clone(),
        );
        registry.register(
            "pipeline_slot_invalidated_in_seconds",
            "Forecast: seconds until the source invalidates the pipeline's slot at the current \
             rate (safe_wal_size / growth of retained WAL); +Inf when not bounded or not growing",
            pipelines.slot_invalidated_in_seconds.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            pipelines,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Middleware counting and timing every request.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let route_labels = RouteLabels {
        method: method.clone(),
        route: route.clone(),
    };
    metrics
        .latency
        .get_or_create(&route_labels)
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// `GET /metrics`
pub async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}
