//! Integration tests of the web console (`/` of `etl serve-api`) against a real PostgreSQL and,
//! for pipelines that run, the real `etl replicate` on the `local` runtime: sign-in and cookie
//! flags, CSRF, escaping of hostile names, tenant isolation, the lag sampler, and a real
//! headless Chromium driven over WebDriver ([`browser`]).

#[path = "../common/mod.rs"]
mod common;
#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod browser;
mod client;
mod lag;
mod security;
mod webdriver;
