//! The HTTP surface, one module per resource, and [`router`], which assembles it: `/v1/…`
//! behind API-key authentication; `/health_check`, `/metrics`, the OpenAPI document and the
//! Swagger UI without it.

pub mod destinations;
pub mod health;
pub mod images;
pub mod owned;
pub mod pipeline_actions;
pub mod pipeline_reset;
pub mod pipeline_verify;
pub mod pipelines;
pub mod publications;
pub mod sources;
pub mod table_actions;
pub mod tenants;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::routing::{get, post};
use utoipa::OpenApi as _;
use utoipa_swagger_ui::SwaggerUi;

use super::auth::{ApiKeys, require_api_key};
use super::error::ApiError;
use super::metrics::{Metrics, metrics_handler, track};
use super::openapi::ApiDoc;
use super::state::AppState;

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

/// The whole application; request bodies above `max_body_bytes` are answered 413.
pub fn router(state: AppState, keys: ApiKeys, max_body_bytes: usize) -> Router {
    use destinations as d;
    use pipeline_actions as pa;
    use pipelines as p;
    use publications as pb;
    use sources as s;
    use tenants as t;
    let v1 = Router::new()
        .route("/tenants", get(t::list_tenants).post(t::create_tenant))
        .route(
            "/tenants/{tenant_id}",
            get(t::get_tenant)
                .patch(t::update_tenant)
                .put(t::put_tenant)
                .delete(t::delete_tenant),
        )
        .route(
            "/images",
            get(images::list_images).post(images::create_image),
        )
        .route(
            "/images/{image_id}",
            get(images::get_image)
                .patch(images::update_image)
                .delete(images::delete_image),
        )
        .route("/sources", get(s::list_sources).post(s::create_source))
        .route("/sources/validate", post(s::validate_source))
        .route(
            "/sources/{source_id}",
            get(s::get_source)
                .patch(s::update_source)
                .delete(s::delete_source),
        )
        .route("/sources/{source_id}/tables", get(s::list_source_tables))
        .route(
            "/sources/{source_id}/publications",
            get(pb::list_publications).post(pb::create_publication),
        )
        .route(
            "/sources/{source_id}/publications/{publication_name}",
            get(pb::get_publication)
                .put(pb::update_publication)
                .delete(pb::delete_publication),
        )
        .route(
            "/destinations",
            get(d::list_destinations).post(d::create_destination),
        )
        .route("/destinations/validate", post(d::validate_destination))
        .route(
            "/destinations/{destination_id}",
            get(d::get_destination)
                .patch(d::update_destination)
                .delete(d::delete_destination),
        )
        .route(
            "/pipelines",
            get(p::list_pipelines).post(p::create_pipeline),
        )
        .route(
            "/pipelines/{pipeline_id}",
            get(p::get_pipeline)
                .patch(p::update_pipeline)
                .delete(p::delete_pipeline),
        )
        .route("/pipelines/{pipeline_id}/start", post(pa::start_pipeline))
        .route("/pipelines/{pipeline_id}/stop", post(pa::stop_pipeline))
        .route(
            "/pipelines/{pipeline_id}/restart",
            post(pa::restart_pipeline),
        )
        .route("/pipelines/{pipeline_id}/status", get(pa::pipeline_status))
        .route(
            "/pipelines/{pipeline_id}/replication-status",
            get(pa::replication_status),
        )
        .route(
            "/pipelines/{pipeline_id}/rollback-tables",
            post(pa::rollback_tables),
        )
        .route(
            "/pipelines/{pipeline_id}/verify",
            post(pipeline_verify::verify_pipeline),
        )
        .route(
            "/pipelines/{pipeline_id}/tables/{table_id}/resync",
            post(table_actions::resync_table),
        )
        .route(
            "/pipelines/{pipeline_id}/reset",
            post(pipeline_reset::reset_pipeline),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(keys, require_api_key))
        .layer(axum::middleware::from_fn(request_span));

    let metrics = state.metrics.clone();
    Router::new()
        .nest("/v1", v1)
        .route("/health_check", get(health::health_check))
        .route("/metrics", get(metrics_handler))
        .merge(SwaggerUi::new("/swagger-ui").url("/api-docs/openapi.json", ApiDoc::openapi()))
        .fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(metrics, track))
}

/// One span per request under `/v1`, so every line a handler logs names the tenant (and the
/// pipeline, for its routes) without each handler saying so.
async fn request_span(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument as _;
    let tenant_id = request
        .headers()
        .get(super::extract::TENANT_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let span = tracing::info_span!("request", method = %request.method(),
        path = %request.uri().path(), %tenant_id, pipeline_id = tracing::field::Empty);
    if let Some(id) = pipeline_in_path(request.uri().path()) {
        span.record("pipeline_id", id);
    }
    next.run(request).instrument(span).await
}

/// The pipeline id of a `/pipelines/{id}/…` path (seen without the `/v1` prefix).
fn pipeline_in_path(path: &str) -> Option<i64> {
    let rest = path.trim_start_matches("/v1").strip_prefix("/pipelines/")?;
    rest.split('/').next()?.parse().ok()
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route".into())
}

#[cfg(test)]
mod tests {
    use super::pipeline_in_path;

    #[test]
    fn the_pipeline_of_a_path_is_its_id_segment() {
        assert_eq!(pipeline_in_path("/pipelines/42/start"), Some(42));
        assert_eq!(pipeline_in_path("/v1/pipelines/7"), Some(7));
        assert_eq!(pipeline_in_path("/pipelines"), None);
        assert_eq!(pipeline_in_path("/sources/3"), None);
    }
}
