//! The console in a real headless Chromium (Debian's `chromium` + `chromium-driver`), driven
//! over WebDriver: a wrong key is refused; signing in, choosing the tenant, creating a source
//! (named with markup, which must show as text and never run), a destination (first with a path
//! the API refuses, whose message shows next to the field) and a pipeline on a new publication
//! picked from the source's tables; starting it on the `local` runtime, the table reaching
//! `ready`, the lag chart drawn from the sampler's samples, stopping it. Screenshots of the
//! pipelines page, the pipeline page and the refused destination form go to `$ETL_CONSOLE_SCREENSHOTS` (default: a temporary
//! directory); `docs/` holds the committed ones.
//!
//! With `CI=true` a missing browser fails the test; elsewhere it is skipped with a message.

use std::path::PathBuf;

use serde_json::json;

use crate::helpers::{TestSource, spawn_app_configured};
use crate::lag::{unique_pipeline_ids, wait_for};
use crate::webdriver::{Browser, CHROMEDRIVER, CHROMIUM};

fn browser_available() -> bool {
    let present =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !present {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "CI=true but {CHROMIUM} or {CHROMEDRIVER} is missing: apt-get install chromium chromium-driver"
        );
        eprintln!(
            "SKIPPED console browser test: {CHROMIUM} or {CHROMEDRIVER} is missing \
             (apt-get install chromium chromium-driver)"
        );
    }
    present
}

#[tokio::test]
async fn a_person_signs_in_creates_and_runs_a_pipeline_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let shots = std::env::var_os("ETL_CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("etl-console-{}", std::process::id()))
        });
    std::fs::create_dir_all(&shots).unwrap();

    let app = spawn_app_configured(None, |config| {
        config.lag_history.sample_interval_seconds = 1;
    })
    .await;
    app.post(
        "/v1/tenants",
        None,
        json!({"id": "acme", "name": "Acme Corp"}),
    )
    .await
    .expect(201);
    app.create_image().await;
    unique_pipeline_ids(&app).await;
    let source = TestSource::create().await;
    let source_pool = source.db.pool().await;
    sqlx::raw_sql(
        "create table public.orders (id int primary key, customer text, amount numeric); \
         insert into public.orders select g, 'customer ' || g, g * 1.5 from generate_series(1, 500) g; \
         create table public.customers (id int primary key, name text); \
         insert into public.customers select g, 'name ' || g from generate_series(1, 50) g;",
    )
    .execute(&source_pool)
    .await
    .unwrap();
    let settings = source.config();
    let browser = Browser::start().await;
    let at = |path: &str| format!("{}{path}", app.address);

    // A wrong key is refused.
    browser.go(&at("/")).await;
    browser.find("input#key", 10).await;
    browser
        .type_into("input#key", "not-a-key-of-this-control-plane")
        .await;
    browser
        .click("form[action='/sign-in'] button[type=submit]")
        .await;
    let refused = browser
        .wait_text("#error-message", 10, |t| !t.is_empty())
        .await;
    assert!(refused.contains("not accepted"), "{refused}");
    assert!(browser.url().await.ends_with("/sign-in"));

    // The right key, then the tenant.
    browser.type_into("input#key", &app.api_key).await;
    browser
        .click("form[action='/sign-in'] button[type=submit]")
        .await;
    browser.click("form[action='/tenants/select'] button").await;
    browser.find("#pipeline-rows", 10).await;
    let cookies_in_js = browser.run("return document.cookie").await;
    assert_eq!(cookies_in_js, json!(""), "the session cookie is HttpOnly");

    // A source whose name is markup.
    let evil = "<script>window.pwned=1</script>shop";
    browser.go(&at("/sources/new")).await;
    browser.type_into("input[name='name']", evil).await;
    browser
        .type_into(
            "input[name='config.host']",
            settings["host"].as_str().unwrap(),
        )
        .await;
    browser
        .type_into("input[name='config.port']", &settings["port"].to_string())
        .await;
    browser
        .type_into(
            "input[name='config.name']",
            settings["name"].as_str().unwrap(),
        )
        .await;
    browser
        .type_into(
            "input[name='config.username']",
            settings["username"].as_str().unwrap(),
        )
        .await;
    browser
        .type_into(
            "input[name='config.password']",
            settings["password"].as_str().unwrap(),
        )
        .await;
    browser
        .click("select[name='config.tls.mode'] option[value='disable']")
        .await;
    browser
        .click("form[action='/sources/new'] button[type=submit]")
        .await;
    browser
        .find("form[action='/pipelines/new'][method='post']", 15)
        .await;

    // A destination: a path outside the tenant's directory is refused next to its field.
    browser.go(&at("/destinations/new")).await;
    browser.type_into("input[name='name']", "mirror").await;
    browser
        .click("select[name='kind'] option[value='sqlite']")
        .await;
    browser
        .type_into("input[name='config.sqlite.path']", "../outside.db")
        .await;
    browser
        .click("form[action='/destinations/new'] button[type=submit]")
        .await;
    let message = browser
        .wait_text("fieldset[data-kind='sqlite'] .field-error", 10, |t| {
            !t.is_empty()
        })
        .await;
    assert!(
        message.contains("`config.sqlite.path`") && message.contains(".."),
        "{message}"
    );
    assert!(
        browser
            .screenshot(&shots.join("console-destination.png"))
            .await
            > 10_000
    );
    browser
        .click("select[name='kind'] option[value='sqlite']")
        .await;
    browser
        .type_into("input[name='config.sqlite.path']", "shop.db")
        .await;
    browser
        .click("form[action='/destinations/new'] button[type=submit]")
        .await;

    // A pipeline on a new publication of `orders` and `customers`.
    browser
        .find("form[action='/pipelines/new'][method='post']", 15)
        .await;
    browser
        .type_into("input[name='new_publication']", "shop_pub")
        .await;
    for table in ["orders", "customers"] {
        let oid: i64 = sqlx::query_scalar("select $1::regclass::oid::int8")
            .bind(format!("public.{table}"))
            .fetch_one(&source_pool)
            .await
            .unwrap();
        browser
            .click(&format!("input[name='tables'][value='{oid}']"))
            .await;
    }
    browser
        .click("form[action='/pipelines/new'][method='post'] button[type=submit]")
        .await;
    browser.find("#pipeline-live", 15).await;
    let page = browser.url().await;
    let id: i64 = page
        .rsplit('/')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("a pipeline page");

    // Start it; the page updates by itself.
    browser.click("form[action$='/start'] button").await;
    browser
        .wait_text("#pipeline-live .panel .badge", 60, |t| t == "started")
        .await;
    for table in ["public.orders", "public.customers"] {
        browser
            .wait_text(&format!("tr[data-table='{table}'] td.state"), 90, |t| {
                t == "ready"
            })
            .await;
    }
    wait_for("points on the lag chart", 30, async || {
        (browser.all("svg.lag-chart.bytes circle").await.len() >= 3).then_some(())
    })
    .await;
    let sqlite = app.config.local.data_dir.join("acme/shop.db");
    assert!(sqlite.exists(), "the replicator wrote {}", sqlite.display());

    // The pipelines page: the markup name is text, nothing ran.
    browser.go(&at("/pipelines")).await;
    let row = browser
        .wait_text(&format!("tr[data-pipeline='{id}']"), 20, |t| {
            t.contains("2 ready")
        })
        .await;
    assert!(row.contains(evil), "the name shows as typed: {row}");
    assert_eq!(
        browser.run("return window.pwned === undefined").await,
        json!(true)
    );
    assert!(browser.all("tbody script").await.is_empty());
    assert!(
        browser
            .screenshot(&shots.join("console-pipelines.png"))
            .await
            > 10_000
    );

    // Stop it from the list; the row follows without a reload.
    browser
        .click(&format!(
            "tr[data-pipeline='{id}'] form[action$='/stop'] button"
        ))
        .await;
    browser
        .wait_text(&format!("tr[data-pipeline='{id}'] td.status"), 60, |t| {
            t.starts_with("stopped")
        })
        .await;
    let desired: String =
        sqlx::query_scalar("select desired_state from app.pipelines where id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(desired, "stopped");

    // Stopped, its slot falls behind as the source writes: the chart and the budget show it.
    for round in 0..8 {
        sqlx::query(
            "insert into public.orders select g, 'late', 1 from generate_series($1, $1 + 999) g",
        )
        .bind(1000 + round * 1000)
        .execute(&source_pool)
        .await
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    }
    browser.go(&at(&format!("/pipelines/{id}"))).await;
    browser
        .wait_text("#wal-budget .value", 20, |t| t != "0 B" && t.ends_with('B'))
        .await;
    let forecast = browser
        .wait_text("#wal-forecast", 10, |t| !t.is_empty())
        .await;
    assert!(
        forecast.contains("max_slot_wal_keep_size") || forecast.contains("invalidated"),
        "{forecast}"
    );
    wait_for("the lag growing on the chart", 30, async || {
        (browser.all("svg.lag-chart.bytes circle").await.len() >= 8).then_some(())
    })
    .await;
    assert!(
        browser
            .screenshot(&shots.join("console-pipeline.png"))
            .await
            > 10_000
    );
    eprintln!("console screenshots in {}", shots.display());
    drop(browser);
    app.delete(&format!("/v1/pipelines/{id}"), Some("acme"))
        .await
        .expect(200);
    app.shutdown().await;
    source.drop().await;
}
