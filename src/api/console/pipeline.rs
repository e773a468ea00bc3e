//! One pipeline's page: its status and actions, and a fragment (`GET /pipelines/{id}/live`,
//! polled) with the WAL budget and forecast, the lag charts over the last hour or day, and
//! every table with its state, copy progress (rows copied / estimated, read from the source's
//! `pg_stat_progress_copy`), last error and hint, and the table actions the API has: resync
//! (back to `init`, also while running), roll back to the previous state (stopped pipelines).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::error::ConsoleError;
use super::layout::{self, action_button, badge};
use super::pipelines::{destination_kind, done, names, status_name, status_of};
use super::session::{Posted, Session};
use super::{ConsoleState, chart};
use crate::api::db::configured::ConfigTable;
use crate::api::db::pipelines::PipelineRow;
use crate::api::domain::pipeline::{
    RollbackRequest, RollbackTables, RollbackTarget, TableReplicationState,
};
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, PathParam, TenantId};
use crate::api::lag::forecast::{ForecastLevel, WalForecast};
use crate::api::lag::probe::{self, CopyProgress};
use crate::api::lag::{self, store};
use crate::api::routes::pipeline_actions as actions;
use crate::api::routes::pipelines::{connect_source, find};
use crate::api::source_db::state as source_state;

/// `?range=hour|day`
#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    #[serde(default)]
    range: Option<String>,
}

/// `GET /pipelines/{id}`
pub async fn pipeline_page(
    State(state): State<ConsoleState>,
    session: Session,
    Path(id): Path<i64>,
    Query(query): Query<RangeQuery>,
) -> Result<Markup, ConsoleError> {
    let tenant = session.tenant()?;
    let row = find(&state.app, &tenant, id).await?;
    let (range, _) = chart::range(query.range.as_deref());
    let sources = names(&state, ConfigTable::Sources, &tenant).await?;
    let destinations = names(&state, ConfigTable::Destinations, &tenant).await?;
    let live = live(&state, &session, &row, query.range.as_deref()).await?;
    let base = format!("/pipelines/{id}");
    Ok(layout::page(
        &format!("Pipeline {id}"),
        &session,
        html! {
            p.small { a href="/pipelines" { "← Pipelines" } }
            h1 { "Pipeline " (id) }
            p.muted {
                (sources.get(&row.source_id).map(|s| s.name.as_str()).unwrap_or("?"))
                " → "
                @if let Some(d) = destinations.get(&row.destination_id) {
                    (d.name) " (" (destination_kind(d)) ")"
                }
                " · publication " code { (row.publication_name) }
            }
            div.actions {
                (action_button(&session, &format!("{base}/start"), "Start", "primary", None))
                (action_button(&session, &format!("{base}/stop"), "Stop", "", None))
                (action_button(&session, &format!("{base}/restart"), "Restart", "", None))
                (action_button(&session, &format!("{base}/tables/errored/retry"), "Retry errored tables", "", None))
                (action_button(&session, &format!("{base}/reset"), "Reset", "danger",
                    Some("Drop this pipeline's slots and state on its source? The next start copies every table again.")))
            }
            p.ranges.small {
                "Charts: "
                @for (name, _) in chart::RANGES {
                    a href={ (base) "?range=" (name) } class=[(name == range).then_some("current")] {
                        "last " (name)
                    }
                }
            }
            div id="pipeline-live" data-poll={ (base) "/live?range=" (range) } data-interval="5000" {
                (live)
            }
        },
    ))
}

/// `GET /pipelines/{id}/live`
pub async fn pipeline_live(
    State(state): State<ConsoleState>,
    session: Session,
    Path(id): Path<i64>,
    Query(query): Query<RangeQuery>,
) -> Result<Markup, ConsoleError> {
    let tenant = session.tenant()?;
    let row = find(&state.app, &tenant, id).await?;
    live(&state, &session, &row, query.range.as_deref()).await
}

/// What is read from the source for the page; the error when it cannot be reached.
struct FromSource {
    tables: Vec<TableReplicationState>,
    progress: BTreeMap<i64, CopyProgress>,
    forecast: WalForecast,
    lag_bytes: Option<i64>,
}

async fn read_source(state: &ConsoleState, row: &PipelineRow) -> Result<FromSource, ApiError> {
    let pool = connect_source(&state.app, row).await?;
    let read = async {
        let tables = source_state::table_states(&pool, row.id).await?;
        let oids: Vec<i64> = tables.iter().map(|t| t.table_id).collect();
        let progress = probe::copy_progress(&pool, &oids).await?;
        let probed = probe::read(&pool, &state.app.pool, row.id).await?;
        let forecast = lag::wal_forecast(&state.app.pool, row.id, &probed).await?;
        Ok(FromSource {
            tables,
            progress,
            forecast,
            lag_bytes: probed.lag_bytes(),
        })
    }
    .await;
    pool.close().await;
    read
}

async fn live(
    state: &ConsoleState,
    session: &Session,
    row: &PipelineRow,
    range: Option<&str>,
) -> Result<Markup, ConsoleError> {
    let status = status_of(state, row).await;
    let (_, range_seconds) = chart::range(range);
    // A history shorter than the range is drawn over the time it covers, in finer buckets.
    let covered = store::covered(&state.app.pool, row.id, range_seconds).await?;
    let span = covered.clamp(chart::MIN_SPAN, range_seconds);
    let bucket = (span / chart::POINTS).max(1.0);
    let points = store::chart(&state.app.pool, row.id, span, bucket).await?;
    let source = read_source(state, row).await;
    Ok(html! {
        div.panel {
            "Status: " (badge(&status_name(&status)))
            @if let Some(reason) = &status.reason { div.reason { (reason) } }
        }
        @match &source {
            Ok(found) => { (budget(found)) }
            Err(error) => { div.panel.error { "The source cannot be read: " (error.to_string()) } }
        }
        h2 { "Lag" }
        (chart::lag_charts(&points, span))
        h2 { "Tables" }
        @if let Ok(found) = &source {
            (tables(session, row.id, found))
        }
    })
}

fn budget(found: &FromSource) -> Markup {
    let f = &found.forecast;
    let level = serde_json::to_value(f.level)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "—".into());
    html! {
        h2 { "WAL budget" }
        div.panel #wal-budget {
            div.budget {
                div { div.small.muted { "lag" } div.value { (or_dash(found.lag_bytes.map(layout::bytes))) } }
                div { div.small.muted { "safe_wal_size" } div.value { (or_dash(f.safe_wal_size.map(layout::bytes))) } }
                div { div.small.muted { "max_slot_wal_keep_size" }
                    div.value { @match (f.max_slot_wal_keep_size_bytes, f.level) {
                        (Some(b), _) => { (layout::bytes(b)) }
                        (None, ForecastLevel::Unbounded) => { "-1 (not bounded)" }
                        (None, _) => { "—" }
                    } } }
                div { div.small.muted { "WAL growth" }
                    div.value { (or_dash(f.wal_rate_bytes_per_second.map(|r| format!("{}/s", layout::bytes(r as i64))))) } }
                div { div.small.muted { "retained WAL growth" }
                    div.value { (or_dash(f.retained_growth_bytes_per_second.map(|r| format!("{}/s", layout::bytes(r as i64))))) } }
            }
            div class={ "forecast " (level) } id="wal-forecast" { (f.summary) }
        }
    }
}

fn tables(session: &Session, pipeline: i64, found: &FromSource) -> Markup {
    html! {
        @if found.tables.is_empty() {
            p.muted { "No table state yet: the replicator has not run." }
        } @else {
            table #tables {
                thead { tr { th { "Table" } th { "State" } th { "Copy" } th { "Last error" } th { "Actions" } } }
                tbody {
                    @for t in &found.tables {
                        (table_row(session, pipeline, t, found.progress.get(&t.table_id)))
                    }
                }
            }
        }
    }
}

fn state_of(table: &TableReplicationState) -> String {
    serde_json::to_value(table.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn error_field<'a>(error: Option<&'a Value>, field: &str) -> Option<&'a str> {
    error.and_then(|e| e.get(field)).and_then(Value::as_str)
}

fn table_row(
    session: &Session,
    pipeline: i64,
    t: &TableReplicationState,
    progress: Option<&CopyProgress>,
) -> Markup {
    let name = t
        .table_name
        .clone()
        .unwrap_or_else(|| format!("oid {}", t.table_id));
    let state = state_of(t);
    let reason = error_field(t.error.as_ref(), "reason").or(t.last_error.as_deref());
    let hint = error_field(t.error.as_ref(), "hint");
    let base = format!("/pipelines/{pipeline}/tables/{}", t.table_id);
    html! {
        tr data-table=(name) {
            td { (name) div.small.muted { "oid " (t.table_id) } }
            td.state { (badge(&state)) }
            td.num {
                @if let Some(p) = progress {
                    @match p.rows_estimated.filter(|e| *e > 0) {
                        Some(estimate) => {
                            progress value=(p.rows_copied.min(estimate)) max=(estimate) {}
                            div.small { (p.rows_copied) " / ~" (estimate) " rows" }
                        }
                        None => { div.small { (p.rows_copied) " rows copied" } }
                    }
                } @else if state == "ready" || state == "sync_done" {
                    span.muted.small { "copied" }
                } @else {
                    span.muted { "—" }
                }
            }
            td {
                @if let Some(reason) = reason {
                    div.reason { (reason) }
                    @if let Some(hint) = hint { div.hint { (hint) } }
                    @if t.attempts > 0 { div.small.muted { (t.attempts) " attempt(s)" } }
                    @if let Some(next) = &t.next_attempt_at { div.small.muted { "next attempt " (next) } }
                } @else { span.muted { "—" } }
            }
            td { div.actions {
                (action_button(session, &format!("{base}/resync"), "Resync", "", None))
                (action_button(session, &format!("{base}/rollback"), "Roll back", "",
                    Some("Restore this table's previous state? (stopped pipelines only)")))
            } }
        }
    }
}

/// `POST /pipelines/{id}/tables/{table}/{resync|rollback|retry}`: `{table}` is an oid, or
/// `errored` for every errored table (`retry`: back to `init`, a resync while running).
pub async fn table_action(
    State(state): State<ConsoleState>,
    Path((id, table, action)): Path<(i64, String, String)>,
    posted: Posted,
) -> Result<Response, ConsoleError> {
    let tenant: TenantId = posted.session.tenant()?;
    let tables = match table.as_str() {
        "errored" => RollbackTables::Errored,
        "all" => RollbackTables::All,
        oid => RollbackTables::Table(
            oid.parse()
                .map_err(|_| ApiError::NotFound(format!("table {oid}")))?,
        ),
    };
    let target = match action.as_str() {
        "resync" | "retry" => RollbackTarget::Init,
        "rollback" => RollbackTarget::Previous,
        other => return Err(ApiError::NotFound(format!("action `{other}`")).into()),
    };
    let app = axum::extract::State(state.app.clone());
    let request = RollbackRequest { tables, target };
    let _rolled = actions::rollback_tables(app, tenant, PathParam(id), JsonBody(request)).await?;
    Ok(done(&posted.headers, &format!("/pipelines/{id}")))
}
