//! Signing in and out and choosing a tenant. A key is accepted exactly when the JSON API would
//! accept it as a bearer key ([`crate::api::auth::ApiKeys::identify`]); an administrator key
//! then picks any tenant, a tenant-scoped key has its own chosen and sees no other.

use axum::extract::{Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::ConsoleState;
use super::error::ConsoleError;
use super::layout::{self, csrf_field};
use super::session::{self, Form, Posted, SIGN_IN_COOKIE, Session, random_token};
use crate::api::auth::Caller;
use crate::api::db::tenants;
use crate::api::error::ApiError;

fn sign_in_form(token: &str, problem: Option<&str>) -> Markup {
    layout::bare(
        "Sign in",
        html! {
            div.signin.panel {
                h1 { "Sign in" }
                p.muted { "Use an API key of this control plane (" code { "api.api_keys" }
                    " or " code { "api.tenant_keys" } ")." }
                @if let Some(problem) = problem {
                    p.form-errors id="error-message" { (problem) }
                }
                form method="post" action="/sign-in" {
                    input type="hidden" name="csrf" value=(token);
                    label for="key" { "API key" }
                    input #key type="password" name="key" autocomplete="off" required autofocus;
                    p { button.primary type="submit" { "Sign in" } }
                }
            }
        },
    )
}

/// A sign-in page with a fresh CSRF cookie for its form.
fn sign_in_response(
    state: &ConsoleState,
    headers: &HeaderMap,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    let token = random_token();
    let cookie = session::set_cookie(SIGN_IN_COOKIE, &token, 3600, state, headers);
    (
        status,
        [(SET_COOKIE, cookie)],
        sign_in_form(&token, problem),
    )
        .into_response()
}

/// `GET /sign-in`
pub async fn sign_in_page(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    if Session::open(&state, &headers).is_some() {
        return Redirect::to("/pipelines").into_response();
    }
    sign_in_response(&state, &headers, StatusCode::OK, None)
}

/// `POST /sign-in`: the key from the form; the form's token must match its cookie.
pub async fn sign_in(State(state): State<ConsoleState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let Ok(bytes) = axum::body::to_bytes(body, state.app_body_limit).await else {
        return ConsoleError::TooLarge.into_response();
    };
    let form = Form::parse(&bytes);
    let expected = session::cookie(&headers, SIGN_IN_COOKIE).unwrap_or("");
    let presented = form.get("csrf");
    let csrf_ok = !expected.is_empty()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            presented.as_bytes(),
        ));
    if !csrf_ok || session::check_origin(&headers).is_err() {
        return ConsoleError::Csrf.into_response();
    }
    let key = form.get("key");
    let Some(caller) = state.keys.identify(key) else {
        tracing::info!("console sign-in refused: unknown key");
        return sign_in_response(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("This key is not accepted."),
        );
    };
    let signed_in = Session::new(&state, key, caller);
    let next = if signed_in.tenant.is_some() {
        "/pipelines"
    } else {
        "/tenants"
    };
    let clear = session::set_cookie(SIGN_IN_COOKIE, "", 0, &state, &headers);
    let mut response = Redirect::to(next).into_response();
    let cookies = response.headers_mut();
    cookies.append(SET_COOKIE, signed_in.cookie(&state, &headers));
    cookies.append(SET_COOKIE, clear);
    response
}

/// `POST /sign-out`
pub async fn sign_out(State(state): State<ConsoleState>, posted: Posted) -> Response {
    let clear = session::set_cookie(session::COOKIE_NAME, "", 0, &state, &posted.headers);
    ([(SET_COOKIE, clear)], Redirect::to("/sign-in")).into_response()
}

/// `GET /tenants`: the tenants this key may see (all of them for an administrator key).
pub async fn tenants_page(
    State(state): State<ConsoleState>,
    session: Session,
) -> Result<Markup, ConsoleError> {
    let visible = match &session.caller {
        Caller::Admin => tenants::list(&state.app.pool).await?,
        Caller::Tenant(own) => tenants::get(&state.app.pool, own)
            .await?
            .into_iter()
            .collect(),
    };
    Ok(layout::page(
        "Tenants",
        &session,
        html! {
            h1 { "Choose a tenant" }
            @if visible.is_empty() {
                p.muted { "No tenant exists yet: create one with " code { "POST /v1/tenants" } "." }
            }
            ul.tenants {
                @for tenant in &visible {
                    li {
                        form.inline method="post" action="/tenants/select" {
                            (csrf_field(&session))
                            input type="hidden" name="tenant" value=(tenant.id);
                            button type="submit" { (tenant.name) " " span.muted { "(" (tenant.id) ")" } }
                        }
                    }
                }
            }
        },
    ))
}

/// `POST /tenants/select`: another tenant than the key's own answers 404, as in the API.
pub async fn select_tenant(
    State(state): State<ConsoleState>,
    posted: Posted,
) -> Result<Response, ConsoleError> {
    let tenant = posted.form.get("tenant").to_owned();
    // Scope first: a tenant-scoped key learns nothing about other tenants' existence.
    let chosen = posted.session.with_tenant(tenant.clone())?;
    if tenants::get(&state.app.pool, &tenant).await?.is_none() {
        return Err(ApiError::NotFound(format!("tenant `{tenant}`")).into());
    }
    Ok((
        [(SET_COOKIE, chosen.cookie(&state, &posted.headers))],
        Redirect::to("/pipelines"),
    )
        .into_response())
}
