//! Sign-in, cookie flags, CSRF, escaping and tenant isolation of the console, over HTTP.

use etl::config::Secret;
use etl::config::api::{TenantKeyConfig, generate_key};
use reqwest::StatusCode;
use serde_json::json;

use crate::client::Console;
use crate::helpers::{TestSource, spawn_app, spawn_app_configured};

#[tokio::test]
async fn signing_in_sets_a_sealed_http_only_strict_cookie_and_a_wrong_key_is_refused() {
    let app = spawn_app().await;
    let mut console = Console::new(&app);

    // Not signed in: every page sends the browser to the sign-in form.
    let page = console.get("/pipelines").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/sign-in");
    let form = console.get("/sign-in").await;
    assert_eq!(form.status, StatusCode::OK);
    let csp = form.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(
        form.body.contains("<script src=\"/assets/console.js\""),
        "{}",
        form.body
    );

    // A wrong key: 401, the form again, no session.
    let refused = console.sign_in(&generate_key()).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.body.contains("This key is not accepted"),
        "{}",
        refused.body
    );
    assert!(!console.cookies.contains_key("etl_console"));
    assert_eq!(console.get("/pipelines").await.location(), "/sign-in");

    // The right key: a cookie with the flags, holding neither the key nor anything readable.
    let signed = console.sign_in(&app.api_key).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    assert_eq!(signed.location(), "/tenants");
    let cookie = signed
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("etl_console="))
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(!cookie.contains(&app.api_key), "{cookie}");
    let value = &console.cookies["etl_console"];
    assert!(!value.contains(&app.api_key[..10]));
    assert_eq!(console.get("/tenants").await.status, StatusCode::OK);

    // A tampered cookie is no session.
    let mut forged = console.cookies.clone();
    let original = forged["etl_console"].clone();
    let flipped = if original.ends_with('A') { "B" } else { "A" };
    forged.insert(
        "etl_console".into(),
        format!("{}{flipped}", &original[..original.len() - 1]),
    );
    let mut other = Console::new(&app);
    other.cookies = forged;
    assert_eq!(other.get("/tenants").await.location(), "/sign-in");

    // Behind a TLS proxy the cookie is Secure.
    let mut behind_tls = Console::new(&app);
    behind_tls.extra.push(("x-forwarded-proto", "https".into()));
    let secure = behind_tls.sign_in(&app.api_key).await;
    assert!(
        secure
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("etl_console=") && c.contains("; Secure")),
        "{:?}",
        secure.set_cookies()
    );

    // Signing out clears it.
    let csrf = console.get("/tenants").await.csrf();
    let out = console.post("/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.location(), "/sign-in");
    assert!(!console.cookies.contains_key("etl_console"));
    assert_eq!(console.get("/tenants").await.location(), "/sign-in");
    app.shutdown().await;
}

#[tokio::test]
async fn posts_without_the_right_csrf_token_or_from_another_origin_are_refused() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let mut console = Console::new(&app);
    let csrf = console.sign_in_to(&app.api_key, "acme").await;
    let source = [
        ("name", "shop"),
        ("config.host", "127.0.0.1"),
        ("config.name", "postgres"),
        ("config.username", "postgres"),
    ];
    for token in [None, Some("wrong"), Some("")] {
        let mut fields = source.to_vec();
        if let Some(token) = token {
            fields.push(("csrf", token));
        }
        let page = console.post("/sources/new", &fields).await;
        assert_eq!(
            page.status,
            StatusCode::FORBIDDEN,
            "{token:?}: {}",
            page.body
        );
        assert!(page.body.contains("CSRF"), "{}", page.body);
    }
    let stop = console.post("/pipelines/1/stop", &[]).await;
    assert_eq!(stop.status, StatusCode::FORBIDDEN);
    // The right token from another site's page.
    let mut fields = source.to_vec();
    fields.push(("csrf", &csrf));
    let request = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/sources/new", app.address))
        .header("origin", "https://evil.example")
        .header(
            "cookie",
            format!("etl_console={}", console.cookies["etl_console"]),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&fields)
                .finish(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(request.status(), StatusCode::FORBIDDEN);
    // The sign-in form needs its own token too.
    let mut fresh = Console::new(&app);
    let page = fresh
        .post("/sign-in", &[("csrf", "made-up"), ("key", &app.api_key)])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!fresh.cookies.contains_key("etl_console"));
    let sources: i64 = sqlx::query_scalar("select count(*) from app.sources")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(sources, 0, "a refused form created nothing");
    app.shutdown().await;
}

#[tokio::test]
async fn names_with_markup_render_as_text() {
    let app = spawn_app().await;
    let evil = "<script>alert(1)</script>";
    app.post("/v1/tenants", None, json!({"id": "acme", "name": evil}))
        .await
        .expect(201);
    app.create_image().await;
    let source = TestSource::create().await;
    sqlx::raw_sql(
        "create table public.t (id int primary key); create publication p for table public.t",
    )
    .execute(&source.db.pool().await)
    .await
    .unwrap();
    let source_id = app.create_source("acme", evil, &source).await;
    let destination_id = app
        .create_destination(
            "acme",
            "<img src=x onerror=alert(2)>",
            json!({"memory": {}}),
        )
        .await;
    let id = app
        .create_pipeline("acme", source_id, destination_id, "p")
        .await["id"]
        .as_i64()
        .unwrap();
    let mut console = Console::new(&app);
    let csrf = console.sign_in_to(&app.api_key, "acme").await;
    for path in [
        "/tenants".to_owned(),
        "/pipelines".into(),
        "/pipelines/rows".into(),
        format!("/pipelines/{id}"),
        format!("/pipelines/new?source_id={source_id}"),
    ] {
        let page = console.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(!page.body.contains(evil), "{path} has the raw markup");
        // Nothing the Content-Security-Policy would block: no inline script, style or handler.
        assert!(
            page.body.matches("<script").count() == page.body.matches("<script src=").count(),
            "{path}: inline script"
        );
        assert!(!page.body.contains(" style="), "{path}: inline style");
        assert!(
            !page.body.contains(" onclick=") && !page.body.contains(" onload="),
            "{path}"
        );
        assert!(
            !page.body.contains("<img src=x"),
            "{path} has the raw markup"
        );
        if path != "/tenants" {
            assert!(
                page.body.contains("&lt;img src=x onerror=alert(2)&gt;"),
                "{path}: {}",
                page.body
            );
        }
    }
    assert!(
        console
            .get("/tenants")
            .await
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;")
    );
    // What a form echoes back is escaped too, with the API's message next to its field.
    let page = console
        .post(
            "/sources/new",
            &[
                ("csrf", &csrf),
                ("name", "\"><script>alert(3)</script>"),
                ("config.host", ""),
                ("config.name", "db"),
                ("config.username", "u"),
            ],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>alert(3)"), "{}", page.body);
    assert!(
        page.body.contains("&quot;&gt;&lt;script&gt;alert(3)"),
        "{}",
        page.body
    );
    let field_error = page
        .body
        .find("class=\"field-error\"")
        .expect("a field error");
    let host_input = page
        .body
        .find("id=\"config.host\"")
        .expect("the host field");
    assert!(
        field_error > host_input,
        "the message follows the host field: {}",
        page.body
    );
    assert!(
        page.body.contains("`config.host` must not be empty"),
        "{}",
        page.body
    );
    app.shutdown().await;
    source.drop().await;
}

#[tokio::test]
async fn a_tenant_key_sees_and_steers_only_its_tenant() {
    let acme_key = generate_key();
    let scoped = acme_key.clone();
    let app = spawn_app_configured(None, move |config| {
        config.tenant_keys.push(TenantKeyConfig {
            tenant: "acme".into(),
            key: Secret::new(scoped),
        });
    })
    .await;
    app.create_tenant("acme").await;
    app.create_tenant("other").await;
    app.create_image().await;
    let source = TestSource::create().await;
    sqlx::raw_sql(
        "create table public.t (id int primary key); create publication p for table public.t",
    )
    .execute(&source.db.pool().await)
    .await
    .unwrap();
    let mut ids = Vec::new();
    for tenant in ["acme", "other"] {
        let s = app
            .create_source(tenant, &format!("{tenant}-source"), &source)
            .await;
        let d = app
            .create_destination(tenant, &format!("{tenant}-dest"), json!({"memory": {}}))
            .await;
        ids.push(
            app.create_pipeline(tenant, s, d, "p").await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let (ours, theirs) = (ids[0], ids[1]);

    let mut console = Console::new(&app);
    let signed = console.sign_in(&acme_key).await;
    assert_eq!(
        signed.location(),
        "/pipelines",
        "the key's own tenant is chosen"
    );
    let list = console.get("/pipelines").await;
    assert!(list.body.contains("acme-source"), "{}", list.body);
    assert!(!list.body.contains("other-"), "{}", list.body);
    let tenants = console.get("/tenants").await;
    assert!(tenants.body.contains("acme") && !tenants.body.contains("other"));
    let csrf = tenants.csrf();
    let switched = console
        .post("/tenants/select", &[("csrf", &csrf), ("tenant", "other")])
        .await;
    assert_eq!(switched.status, StatusCode::NOT_FOUND, "{}", switched.body);
    for path in [
        format!("/pipelines/{theirs}"),
        format!("/pipelines/{theirs}/live"),
    ] {
        assert_eq!(
            console.get(&path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    for action in ["start", "stop", "restart", "reset"] {
        let page = console
            .post(&format!("/pipelines/{theirs}/{action}"), &[("csrf", &csrf)])
            .await;
        assert_eq!(
            page.status,
            StatusCode::NOT_FOUND,
            "{action}: {}",
            page.body
        );
    }
    let page = console
        .post(
            &format!("/pipelines/{theirs}/tables/errored/retry"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    // Another tenant's source cannot be used for a pipeline either.
    let page = console.get("/pipelines/new?source_id=999999").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("other-source"));
    // Its own pipeline it may steer: a plain form post is redirected back to the page, the
    // console's script gets 204 and refreshes the page itself.
    let stopped = console
        .post(&format!("/pipelines/{ours}/stop"), &[("csrf", &csrf)])
        .await;
    assert_eq!(stopped.status, StatusCode::SEE_OTHER, "{}", stopped.body);
    assert_eq!(stopped.location(), format!("/pipelines/{ours}"));
    console.extra.push(("x-console", "action".into()));
    let stopped = console
        .post(&format!("/pipelines/{ours}/stop"), &[("csrf", &csrf)])
        .await;
    assert_eq!(stopped.status, StatusCode::NO_CONTENT, "{}", stopped.body);
    console.extra.clear();
    // The other tenant's pipeline stayed as it was.
    let desired: String =
        sqlx::query_scalar("select desired_state from app.pipelines where id = $1")
            .bind(theirs)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(desired, "stopped");
    // The administrator key sees both tenants.
    let mut admin = Console::new(&app);
    admin.sign_in(&app.api_key).await;
    let all = admin.get("/tenants").await;
    assert!(all.body.contains("acme") && all.body.contains("other"));
    app.shutdown().await;
    source.drop().await;
}

#[tokio::test]
async fn a_session_lasts_across_restarts_only_while_its_key_is_configured() {
    let second = generate_key();
    let extra = second.clone();
    let app = spawn_app_configured(None, move |config| {
        config.api_keys.push(Secret::new(extra));
    })
    .await;
    app.create_tenant("acme").await;
    let mut console = Console::new(&app);
    console.sign_in_to(&second, "acme").await;
    assert_eq!(console.get("/pipelines").await.status, StatusCode::OK);

    // Restarted with the same keys: still signed in, same tenant.
    let (db, dir, config) = app.stop_serving().await;
    let app = crate::helpers::start(db, config.clone(), dir).await;
    console.base = app.address.clone();
    let page = console.get("/pipelines").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("acme"));

    // Restarted without the key that signed in: the session is gone.
    let (db, dir, mut config) = app.stop_serving().await;
    config.api_keys.retain(|k| k.expose() != second);
    let app = crate::helpers::start(db, config, dir).await;
    console.base = app.address.clone();
    assert_eq!(console.get("/pipelines").await.location(), "/sign-in");
    app.shutdown().await;
}
