//! The web console: server-rendered HTML under `/` (the JSON API stays under `/v1`), served by
//! the same axum application. Pages call the API's own handlers and queries as functions
//! (never over HTTP), so validation, tenant isolation and errors are the API's.
//!
//! - [`session`]: sign-in with an API key into a sealed `HttpOnly` cookie, CSRF tokens.
//! - [`sign_in`]: sign in, sign out, choose a tenant.
//! - [`pipelines`]: the pipelines list (polled fragment) and start/stop/restart.
//! - [`pipeline`]: one pipeline: tables, copy progress, errors, actions, lag charts, WAL budget.
//! - [`chart`]: lag charts as SVG drawn on the server.
//! - [`forms`], [`create`]: the create forms of sources, destinations and pipelines.
//! - [`layout`]: the page shell and formatting; [`assets`]: CSS, script and logo compiled in.
//! - [`error`]: how failures look in the browser.
//!
//! HTML is written with `maud`, whose templates escape every interpolated value, so names a
//! tenant chose (attacker-controlled) always render as text. Every response carries a
//! Content-Security-Policy that allows only this origin's script and style files (no inline
//! script or style), no framing and forms posting only here.

pub mod assets;
pub mod chart;
pub mod create;
pub mod error;
pub mod forms;
pub mod layout;
pub mod pipeline;
pub mod pipelines;
pub mod session;
pub mod sign_in;

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::response::{Redirect, Response};
use axum::routing::{get, post};

use super::auth::ApiKeys;
use super::state::AppState;
use crate::config::api::ConsoleConfig;

/// What the console's handlers share.
#[derive(Clone)]
pub struct ConsoleState {
    pub app: AppState,
    pub keys: ApiKeys,
    pub config: ConsoleConfig,
    /// Largest form body (`api.max_body_bytes`).
    pub app_body_limit: usize,
}

/// The policy of every console response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// The console's routes, to be merged beside `/v1`.
pub fn router(state: ConsoleState) -> Router {
    use create as c;
    use pipeline as p;
    use pipelines as ps;
    Router::new()
        .route("/", get(|| async { Redirect::to("/pipelines") }))
        .route(
            "/sign-in",
            get(sign_in::sign_in_page).post(sign_in::sign_in),
        )
        .route("/sign-out", post(sign_in::sign_out))
        .route("/tenants", get(sign_in::tenants_page))
        .route("/tenants/select", post(sign_in::select_tenant))
        .route("/pipelines", get(ps::pipelines_page))
        .route("/pipelines/rows", get(ps::pipeline_rows))
        .route("/pipelines/{id}/{action}", post(ps::pipeline_action))
        .route("/pipelines/{id}", get(p::pipeline_page))
        .route("/pipelines/{id}/live", get(p::pipeline_live))
        .route(
            "/pipelines/{id}/tables/{table}/{action}",
            post(p::table_action),
        )
        .route(
            "/pipelines/new",
            get(c::new_pipeline).post(c::create_pipeline),
        )
        .route("/sources/new", get(c::new_source).post(c::create_source))
        .route(
            "/destinations/new",
            get(c::new_destination).post(c::create_destination),
        )
        .route("/assets/{file}", get(assets::asset))
        .with_state(state)
        .layer(axum::middleware::map_response(secure_headers))
}

/// Security headers on every console response; pages and fragments are not cached.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
