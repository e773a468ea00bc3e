//! Issue 11, as a hostile tenant would try it: with a valid API key, against the real control
//! plane and the real replicator. Each test performs one attack and asserts that it fails.

use std::time::Duration;

use etl::config::Secret;
use etl::config::api::{TenantKeyConfig, generate_key};
use etl::netpolicy::{NetworkPolicyConfig, Protected};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Reply, TestApp, TestSource, assert_error, spawn_app, spawn_app_configured, start,
};

/// What a tenant is told about any address that is refused or does not answer.
const GENERIC: &str =
    "cannot be reached: the address is not allowed by the network policy or does not answer";

/// A control plane whose network policy protects `protect` (`None`: the default outside dev).
async fn app_protecting(protect: Option<Vec<Protected>>) -> TestApp {
    spawn_app_configured(None, |config| {
        config.network_policy = NetworkPolicyConfig {
            protect,
            ..NetworkPolicyConfig::default()
        };
    })
    .await
}

/// Host and port of the control plane's own database (the test cluster).
fn control_plane(app: &TestApp) -> (String, u16) {
    let url = url::Url::parse(&app.db.url).unwrap();
    (
        url.host_str().unwrap().to_owned(),
        url.port().unwrap_or(5432),
    )
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

async fn stored_destination(app: &TestApp, id: i64) -> Value {
    sqlx::query_scalar("select config from app.destinations where id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Starts a pipeline of tenant `evil` from a new source into `destination`: the answer, and
/// the source to drop afterwards.
async fn start_pipeline_into(app: &TestApp, destination: i64) -> (Reply, TestSource) {
    app.create_image().await;
    let source = TestSource::create().await;
    let source_id = app.create_source("evil", "shop", &source).await;
    let pipeline = app
        .create_pipeline("evil", source_id, destination, "pub")
        .await["id"]
        .as_i64()
        .unwrap();
    let path = format!("/v1/pipelines/{pipeline}/start");
    (app.post(&path, Some("evil"), json!({})).await, source)
}

/// Every file below `dir` whose contents include `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains(needle))
        {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn another_tenants_sealed_password_is_refused_and_a_moved_ciphertext_never_opens() {
    let app = spawn_app().await;
    app.create_tenant("victim").await;
    app.create_tenant("evil").await;
    let secret = "victim-s3cret-7c1f";
    let victim = app
        .create_destination(
            "victim",
            "mirror",
            json!({"postgres": {"host": "mirror.victim", "username": "etl", "password": secret}}),
        )
        .await;
    let sealed = stored_destination(&app, victim).await["postgres"]["password"].clone();
    assert!(sealed["ciphertext"].is_string(), "{sealed}");
    let evil = app
        .create_destination(
            "evil",
            "mine",
            json!({"postgres": {"host": "mirror.evil", "username": "etl", "password": "mine"}}),
        )
        .await;

    // The attack of issue 11: the victim's sealed object given as the password.
    let stolen =
        json!({"postgres": {"host": "mirror.evil", "username": "etl", "password": sealed}});
    let field = "`config.postgres.password`";
    let path = format!("/v1/destinations/{evil}");
    let body = json!({"config": stolen});
    let refusal = app
        .refused(Method::PATCH, &path, Some("evil"), body, field)
        .await;
    assert_error(&refusal, "invalid");
    let body = json!({"name": "stolen", "config": stolen});
    app.refused(Method::POST, "/v1/destinations", Some("evil"), body, field)
        .await;
    let report = app
        .post(
            "/v1/destinations/validate",
            Some("evil"),
            json!({"config": stolen}),
        )
        .await
        .expect(200);
    assert_eq!(report["findings"][0]["code"], json!("invalid_config"));

    // Even moved by hand inside the database, the ciphertext is bound to the victim's row: the
    // evil pipeline cannot start with it and nothing the replicator would get holds it.
    sqlx::query(
        "update app.destinations set config = jsonb_set(config, '{postgres,password}', $2) \
         where id = $1",
    )
    .bind(evil)
    .bind(&sealed)
    .execute(&app.pool)
    .await
    .unwrap();
    let (started, source) = start_pipeline_into(&app, evil).await;
    let body = started.expect(500);
    assert!(!body.to_string().contains(secret), "{body}");
    assert_eq!(
        files_containing(app.state_dir.path(), secret),
        Vec::<std::path::PathBuf>::new()
    );
    app.shutdown().await;
    source.drop().await;
}

#[tokio::test]
async fn a_source_on_the_control_plane_database_is_refused_and_probing_learns_nothing() {
    let app = app_protecting(Some(vec![Protected::ControlPlaneDatabase])).await;
    app.create_tenant("evil").await;
    let (host, port) = control_plane(&app);
    let own = json!({"host": host, "port": port, "name": app.db.name,
        "username": "postgres", "password": "postgres", "tls": {"mode": "disable"}});
    let refusal = format!("`config.host`: {GENERIC}");
    let body = json!({"name": "app", "config": own});
    app.refused(Method::POST, "/v1/sources", Some("evil"), body, &refusal)
        .await;
    let mut by_name = own.clone();
    by_name["host"] = json!("localhost");
    let body = json!({"name": "app", "config": by_name});
    app.refused(Method::POST, "/v1/sources", Some("evil"), body, &refusal)
        .await;

    // An allowed address, then an update onto the control plane's database.
    let elsewhere = json!({"host": "203.0.113.7", "name": "shop", "username": "u"});
    let id = app
        .post(
            "/v1/sources",
            Some("evil"),
            json!({"name": "shop", "config": elsewhere}),
        )
        .await
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    let path = format!("/v1/sources/{id}");
    let body = json!({"config": own});
    app.refused(Method::PATCH, &path, Some("evil"), body, &refusal)
        .await;

    // Validate answers the same for the protected server, a closed port and a missing host.
    let mut closed = own.clone();
    closed["port"] = json!(1);
    let mut missing = own.clone();
    missing["host"] = json!("no-such-host.invalid");
    let mut messages = Vec::new();
    for config in [own, closed, missing] {
        let report = app
            .post(
                "/v1/sources/validate",
                Some("evil"),
                json!({"config": config, "publication": "app_pub"}),
            )
            .await
            .expect(200);
        assert_eq!(
            report["findings"][0]["code"],
            json!("unreachable"),
            "{report}"
        );
        messages.push(report["findings"][0]["message"].clone());
    }
    assert_eq!(messages[0], json!(format!("the source {GENERIC}")));
    assert!(messages.iter().all(|m| *m == messages[0]), "{messages:?}");

    // Slots are global to the cluster and other tests make their own: count the ones on the
    // control plane's database.
    let slots: i64 = sqlx::query_scalar(
        "select count(*) from pg_replication_slots where database = current_database()",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(slots, 0);
    app.shutdown().await;
}

#[tokio::test]
async fn loopback_link_local_and_metadata_addresses_are_refused_by_default_outside_dev() {
    let app = app_protecting(None).await;
    app.create_tenant("evil").await;
    for host in [
        "localhost",
        "127.0.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "169.254.169.254",
        "fd00:ec2::254",
        "fe80::1",
    ] {
        let body = json!({"name": "s", "config": {"host": host, "name": "d", "username": "u"}});
        let refusal = format!("`config.host`: {GENERIC}");
        app.refused(Method::POST, "/v1/sources", Some("evil"), body, &refusal)
            .await;
    }
    for (config, field) in [
        (
            json!({"postgres": {"host": "169.254.169.254", "username": "u"}}),
            "config.postgres.host",
        ),
        (
            json!({"postgres": {"url": "postgres://u:p@[::1]:5432/x"}}),
            "config.postgres.url",
        ),
    ] {
        let body = json!({"name": "d", "config": config});
        let refusal = format!("`{field}`: {GENERIC}");
        app.refused(
            Method::POST,
            "/v1/destinations",
            Some("evil"),
            body,
            &refusal,
        )
        .await;
    }
    app.post(
        "/v1/sources",
        Some("evil"),
        json!({"name": "s", "config": {"host": "203.0.113.7", "name": "d", "username": "u"}}),
    )
    .await
    .expect(201);
    app.shutdown().await;
}

#[tokio::test]
async fn the_replicator_refuses_a_source_the_policy_denies_before_it_connects() {
    // Created while the policy allowed it; the policy then changes.
    let app = spawn_app().await;
    app.create_tenant("evil").await;
    app.create_image().await;
    let source = TestSource::create().await;
    let source_id = app.create_source("evil", "shop", &source).await;
    let destination = app
        .create_destination("evil", "mem", json!({"memory": {}}))
        .await;
    let id = app
        .create_pipeline("evil", source_id, destination, "pub")
        .await["id"]
        .as_i64()
        .unwrap();
    let (db, state_dir, mut config) = app.stop_serving().await;
    config.network_policy.protect = Some(vec![Protected::Loopback]);
    let app = start(db, config, state_dir).await;

    app.post(
        &format!("/v1/pipelines/{id}/start"),
        Some("evil"),
        json!({}),
    )
    .await
    .expect(200);
    let mut status = Value::Null;
    for _ in 0..200 {
        status = app
            .get(&format!("/v1/pipelines/{id}/status"), Some("evil"))
            .await
            .expect(200);
        if status["status"] == json!("failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["status"], json!("failed"), "{status}");
    let reason = status["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("not allowed by the network policy"),
        "{reason}"
    );
    // It never connected: no slot, no state schema on the source.
    let pool = source.db.pool().await;
    let (slots, schema): (i64, Option<String>) = sqlx::query_as(
        "select (select count(*) from pg_replication_slots where database = current_database()), \
         to_regnamespace('etl')::text",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((slots, schema), (0, None));
    pool.close().await;
    app.shutdown().await;
    source.drop().await;
}

#[tokio::test]
async fn file_destinations_cannot_leave_the_tenant_directory() {
    let app = spawn_app().await;
    app.create_tenant("evil").await;
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("x.conf");
    for (config, field) in [
        (
            json!({"jsonl": {"path": "../../x.conf"}}),
            "config.jsonl.path",
        ),
        (
            json!({"sqlite": {"path": "a/../../x.db"}}),
            "config.sqlite.path",
        ),
        (
            json!({"sqlite": {"path": "/etc/shadow"}}),
            "config.sqlite.path",
        ),
        (
            json!({"jsonl": {"path": target.to_str().unwrap()}}),
            "config.jsonl.path",
        ),
    ] {
        let body = json!({"name": "f", "config": config});
        app.refused(Method::POST, "/v1/destinations", Some("evil"), body, field)
            .await;
    }

    // A symbolic link inside the tenant's directory leads nowhere.
    let tenant_dir = app.config.local.data_dir.join("evil");
    std::fs::create_dir_all(&tenant_dir).unwrap();
    std::os::unix::fs::symlink(outside.path(), tenant_dir.join("out")).unwrap();
    let body = json!({"name": "f", "config": {"sqlite": {"path": "out/x.db"}}});
    app.refused(
        Method::POST,
        "/v1/destinations",
        Some("evil"),
        body,
        "symbolic link",
    )
    .await;

    // Allowed inside; an update cannot move it out.
    let id = app
        .create_destination("evil", "f", json!({"sqlite": {"path": "shop/x.db"}}))
        .await;
    let path = format!("/v1/destinations/{id}");
    let body = json!({"config": {"sqlite": {"path": "/etc/shadow"}}});
    app.refused(
        Method::PATCH,
        &path,
        Some("evil"),
        body,
        "`config.sqlite.path`",
    )
    .await;

    // A path stored before these checks is refused when the pipeline starts: nothing is written.
    sqlx::query("update app.destinations set config = $2 where id = $1")
        .bind(id)
        .bind(json!({"jsonl": {"path": target.to_str().unwrap()}}))
        .execute(&app.pool)
        .await
        .unwrap();
    let (started, source) = start_pipeline_into(&app, id).await;
    let body = started.expect(422);
    assert!(message(&body).contains("`config.jsonl.path`"), "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!target.exists());
    app.shutdown().await;
    source.drop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_answered_413() {
    let app = spawn_app().await;
    let name = "x".repeat(10 * 1024 * 1024);
    let body = app
        .post("/v1/tenants", None, json!({"id": "big", "name": name}))
        .await
        .expect(413);
    assert_error(&body, "payload_too_large");
    app.get("/v1/tenants/big", None).await.expect(404);
    app.shutdown().await;
}

#[tokio::test]
async fn a_key_scoped_to_one_tenant_sees_and_changes_only_that_tenant() {
    let key = generate_key();
    let scoped = TenantKeyConfig {
        tenant: "evil".into(),
        key: Secret::new(key.clone()),
    };
    let app = spawn_app_configured(None, |config| config.tenant_keys.push(scoped)).await;
    app.create_tenant("evil").await;
    app.create_tenant("victim").await;
    let victim = app
        .create_destination("victim", "mem", json!({"memory": {}}))
        .await;
    let own = app
        .create_destination("evil", "mem", json!({"memory": {}}))
        .await;
    let as_evil = |method, path: String, tenant: Option<&'static str>, body| {
        let key = key.clone();
        let app = &app;
        async move { app.call_with_key(&key, method, &path, tenant, body).await }
    };

    // Its own tenant and objects work.
    let listed = as_evil(Method::GET, "/v1/tenants".into(), None, None)
        .await
        .expect(200);
    assert_eq!(
        listed["tenants"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["tenants"][0]["id"], json!("evil"));
    as_evil(
        Method::GET,
        format!("/v1/destinations/{own}"),
        Some("evil"),
        None,
    )
    .await
    .expect(200);

    // The other tenant does not exist for it, in any method.
    for (method, path, tenant) in [
        (Method::GET, "/v1/tenants/victim".to_owned(), None),
        (Method::DELETE, "/v1/tenants/victim".to_owned(), None),
        (Method::GET, "/v1/destinations".to_owned(), Some("victim")),
        (
            Method::GET,
            format!("/v1/destinations/{victim}"),
            Some("victim"),
        ),
        (
            Method::DELETE,
            format!("/v1/destinations/{victim}"),
            Some("victim"),
        ),
    ] {
        let body = as_evil(method.clone(), path.clone(), tenant, None)
            .await
            .expect(404);
        assert_error(&body, "not_found");
    }
    let body = json!({"name": "Mine now"});
    as_evil(Method::PUT, "/v1/tenants/victim".into(), None, Some(body))
        .await
        .expect(404);

    // Tenants and images are the administrator's.
    let body = json!({"id": "third", "name": "Third"});
    let refused = as_evil(Method::POST, "/v1/tenants".into(), None, Some(body))
        .await
        .expect(403);
    assert_error(&refused, "forbidden");
    let body = json!({"name": "evil/image:latest", "is_default": true});
    as_evil(Method::POST, "/v1/images".into(), None, Some(body))
        .await
        .expect(403);

    app.get(&format!("/v1/destinations/{victim}"), Some("victim"))
        .await
        .expect(200);
    app.get("/v1/tenants/victim", None).await.expect(200);
    app.shutdown().await;
}
