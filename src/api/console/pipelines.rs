//! The pipelines page: one row per pipeline of the chosen tenant (source → destination, the
//! runtime's status with its failure reason, lag in bytes and seconds and tables by state from
//! the newest lag sample, start/stop/restart), and `GET /pipelines/rows`, the same rows alone,
//! which the page's script fetches every few seconds.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::ConsoleState;
use super::error::ConsoleError;
use super::layout::{self, action_button, badge};
use super::session::{Posted, Session};
use crate::api::db::configured::{self, ConfigTable, ConfiguredRow};
use crate::api::db::pipelines;
use crate::api::domain::pipeline::PipelineStatus;
use crate::api::error::ApiError;
use crate::api::extract::{PathParam, TenantId};
use crate::api::lag::store::{self, Latest};
use crate::api::routes::pipeline_actions as actions;
use crate::api::routes::pipelines::target;
use crate::api::runtime;

/// How often the page refreshes its rows (milliseconds).
pub const POLL_MS: u32 = 3000;

/// `GET /pipelines`
pub async fn pipelines_page(
    State(state): State<ConsoleState>,
    session: Session,
) -> Result<Markup, ConsoleError> {
    let tenant = session.tenant()?;
    let rows = rows(&state, &session, &tenant).await?;
    Ok(layout::page(
        "Pipelines",
        &session,
        html! {
            div.actions {
                h1 { "Pipelines" }
            }
            p { a.button.primary href="/pipelines/new" { "New pipeline" } }
            table #pipelines {
                thead { tr {
                    th { "Pipeline" } th { "Source → destination" } th { "Status" }
                    th { "Lag" } th { "Tables" } th { "Actions" }
                } }
                tbody id="pipeline-rows" data-poll="/pipelines/rows" data-interval=(POLL_MS) {
                    (rows)
                }
            }
        },
    ))
}

/// `GET /pipelines/rows`: the table rows alone.
pub async fn pipeline_rows(
    State(state): State<ConsoleState>,
    session: Session,
) -> Result<Markup, ConsoleError> {
    let tenant = session.tenant()?;
    rows(&state, &session, &tenant).await
}

/// Names of a tenant's sources or destinations by id, with a destination's kind.
pub async fn names(
    state: &ConsoleState,
    table: ConfigTable,
    tenant: &TenantId,
) -> Result<BTreeMap<i64, ConfiguredRow>, ConsoleError> {
    Ok(configured::list(&state.app.pool, table, &tenant.0)
        .await?
        .into_iter()
        .map(|row| (row.id, row))
        .collect())
}

/// The kind of a stored destination config (`sqlite`, `postgres`, …).
pub fn destination_kind(row: &ConfiguredRow) -> String {
    row.config
        .0
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .unwrap_or_default()
}

/// The runtime's status of a pipeline; an unreachable runtime reads as `unknown` with why.
pub async fn status_of(state: &ConsoleState, row: &pipelines::PipelineRow) -> PipelineStatus {
    match state.app.runtime.status(&target(row)).await {
        Ok(status) => runtime::to_api(&status, row.id),
        Err(error) => PipelineStatus {
            pipeline_id: row.id,
            status: crate::api::domain::pipeline::PipelineState::Unknown,
            reason: Some(error.to_string()),
        },
    }
}

/// The name of a status (`started`, `failed`, …).
pub fn status_name(status: &PipelineStatus) -> String {
    serde_json::to_value(&status.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn rows(
    state: &ConsoleState,
    session: &Session,
    tenant: &TenantId,
) -> Result<Markup, ConsoleError> {
    let list = pipelines::list(&state.app.pool, &tenant.0).await?;
    let sources = names(state, ConfigTable::Sources, tenant).await?;
    let destinations = names(state, ConfigTable::Destinations, tenant).await?;
    let latest = store::latest(&state.app.pool, &tenant.0).await?;
    let mut out = Vec::new();
    for row in &list {
        let status = status_of(state, row).await;
        out.push(html! {
            tr data-pipeline=(row.id) {
                td {
                    a href={ "/pipelines/" (row.id) } { "Pipeline " (row.id) }
                    div.small.muted { "publication " (row.publication_name) }
                }
                td {
                    (sources.get(&row.source_id).map(|s| s.name.as_str()).unwrap_or("?"))
                    " → "
                    @if let Some(d) = destinations.get(&row.destination_id) {
                        (d.name) " " span.muted.small { "(" (destination_kind(d)) ")" }
                    }
                }
                td.status {
                    (badge(&status_name(&status)))
                    @if let Some(reason) = &status.reason { div.reason { (reason) } }
                }
                td.num { (lag_cell(latest.get(&row.id))) }
                td { (tables_cell(latest.get(&row.id))) }
                td { div.actions {
                    (action_button(session, &format!("/pipelines/{}/start", row.id), "Start", "primary", None))
                    (action_button(session, &format!("/pipelines/{}/stop", row.id), "Stop", "", None))
                    (action_button(session, &format!("/pipelines/{}/restart", row.id), "Restart", "", None))
                } }
            }
        });
    }
    Ok(html! {
        @if list.is_empty() {
            tr { td colspan="6" .muted { "No pipeline yet. " a href="/pipelines/new" { "Create one" } "." } }
        }
        @for row in out { (row) }
    })
}

fn lag_cell(latest: Option<&Latest>) -> Markup {
    let Some(sample) = latest else {
        return html! { span.muted { "not sampled yet" } };
    };
    html! {
        @match sample.lag_bytes {
            Some(bytes) => { span.lag-bytes { (layout::bytes(bytes)) } }
            None => { span.muted { "no slot" } }
        }
        @if let Some(seconds) = sample.lag_seconds {
            " · " span.lag-seconds { (layout::seconds(seconds)) }
        }
        div.small.muted { "sampled " (layout::seconds(sample.age_seconds)) " ago" }
    }
}

fn tables_cell(latest: Option<&Latest>) -> Markup {
    let Some(sample) = latest.filter(|s| !s.tables.0.is_empty()) else {
        return html! { span.muted { "—" } };
    };
    html! {
        @for (i, (state, count)) in sample.tables.0.iter().enumerate() {
            @if i > 0 { ", " }
            span class={ "count " (state) } { (count) " " (state) }
        }
    }
}

/// `POST /pipelines/{id}/{start|stop|restart|reset}` through the API's handlers.
pub async fn pipeline_action(
    State(state): State<ConsoleState>,
    Path((id, action)): Path<(i64, String)>,
    posted: Posted,
) -> Result<Response, ConsoleError> {
    let tenant = posted.session.tenant()?;
    let app = axum::extract::State(state.app.clone());
    match action.as_str() {
        "start" => drop(actions::start_pipeline(app, tenant, PathParam(id)).await?),
        "stop" => drop(actions::stop_pipeline(app, tenant, PathParam(id)).await?),
        "restart" => drop(actions::restart_pipeline(app, tenant, PathParam(id)).await?),
        "reset" => drop(
            crate::api::routes::pipeline_reset::reset_pipeline(app, tenant, PathParam(id)).await?,
        ),
        other => return Err(ApiError::NotFound(format!("action `{other}`")).into()),
    }
    Ok(done(&posted.headers, &format!("/pipelines/{id}")))
}

/// The answer to a successful action: 204 to the console's script (which refreshes the page's
/// fragments), a redirect to `back` for a plain form post.
pub fn done(headers: &axum::http::HeaderMap, back: &str) -> Response {
    if headers.contains_key("x-console") {
        axum::http::StatusCode::NO_CONTENT.into_response()
    } else {
        Redirect::to(back).into_response()
    }
}
