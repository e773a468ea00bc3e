//! The page shell (header, navigation, sign-out form, the flash area the script writes to) and
//! the formatting every page shares: bytes, durations, state badges, the CSRF field.

use maud::{DOCTYPE, Markup, html};

use super::session::Session;
use crate::api::auth::Caller;

/// A page with the console's header for a signed-in session.
pub fn page(title: &str, session: &Session, body: Markup) -> Markup {
    let nav = html! {
        nav {
            a href="/pipelines" { "Pipelines" }
            a href="/pipelines/new" { "New pipeline" }
            a href="/sources/new" { "New source" }
            a href="/destinations/new" { "New destination" }
        }
        div.who {
            @if let Some(tenant) = &session.tenant {
                span.tenant title="tenant" { (tenant) }
            }
            @if session.caller == Caller::Admin {
                a href="/tenants" { "switch tenant" }
            }
            form method="post" action="/sign-out" {
                (csrf_field(session))
                button.link type="submit" { "Sign out" }
            }
        }
    };
    shell(title, Some(nav), body)
}

/// A page without navigation (sign-in, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    shell(title, None, body)
}

fn shell(title: &str, nav: Option<Markup>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · etl console" }
                link rel="icon" href="/assets/logo.svg" type="image/svg+xml";
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/pipelines" {
                        img src="/assets/logo.svg" alt="" width="22" height="22";
                        span { "etl console" }
                    }
                    @if let Some(nav) = nav { (nav) }
                }
                div id="flash" class="flash" role="status" aria-live="polite" {}
                main { (body) }
            }
        }
    }
}

/// The hidden field every form of a session carries.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A small form that posts to `action` (one button); `confirm` asks first.
pub fn action_button(
    session: &Session,
    action: &str,
    label: &str,
    class: &str,
    confirm: Option<&str>,
) -> Markup {
    html! {
        form.inline method="post" action=(action) data-async="" data-confirm=[confirm] {
            (csrf_field(session))
            button type="submit" class=(class) { (label) }
        }
    }
}

/// `1.2 GiB`, `340 KiB`, `12 B`.
pub fn bytes(value: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut amount = value.max(0) as f64;
    let mut unit = 0;
    while amount >= 1024.0 && unit + 1 < UNITS.len() {
        amount /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{} B", value.max(0))
    } else {
        format!("{amount:.1} {}", UNITS[unit])
    }
}

/// `0.4 s`, `12 s`, `5 min`, `3.2 h`.
pub fn seconds(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.1} s")
    } else if value < 120.0 {
        format!("{} s", value.round() as i64)
    } else if value < 7200.0 {
        format!("{} min", (value / 60.0).round() as i64)
    } else {
        format!("{:.1} h", value / 3600.0)
    }
}

/// A coloured label for a state name (`ready`, `errored`, `started`, …).
pub fn badge(state: &str) -> Markup {
    let class = match state {
        "ready" | "started" | "ok" => "badge good",
        "errored" | "failed" | "critical" => "badge bad",
        "warning" | "unbounded" | "stopping" | "starting" | "unknown" => "badge warn",
        _ => "badge",
    };
    html! { span class=(class) { (state) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_are_short_and_readable() {
        assert_eq!(bytes(12), "12 B");
        assert_eq!(bytes(-5), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(seconds(0.42), "0.4 s");
        assert_eq!(seconds(42.0), "42 s");
        assert_eq!(seconds(600.0), "10 min");
        assert_eq!(seconds(9000.0), "2.5 h");
    }
}
