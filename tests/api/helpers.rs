//! `spawn_app`: the real application (built by `Application::build`) on a free port, with a
//! fresh migrated database, a temporary state dir for the `local` runtime, and a client with
//! one method per call the tests make.

use std::path::PathBuf;
use std::sync::Arc;

use etl::api::runtime::PipelineRuntime;
use etl::api::runtime::local::LocalRuntime;
use etl::api::startup::Application;
use etl::config::api::{DEFAULT_MAX_BODY_BYTES, generate_key};
use etl::config::{
    ApiConfig, EncryptionKeyConfig, Environment, LocalRuntimeConfig, RuntimeKind, Secret,
};
use etl::migrate::{self, MigrationSet};
use etl::netpolicy::NetworkPolicyConfig;
use etl::shutdown::{self, ShutdownTrigger};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::TestDatabase;

/// A running control plane.
pub struct TestApp {
    pub address: String,
    pub api_key: String,
    pub client: reqwest::Client,
    pub db: TestDatabase,
    pub pool: PgPool,
    pub config: ApiConfig,
    pub state_dir: tempfile::TempDir,
    trigger: ShutdownTrigger,
}

/// An API config with one fresh API key and one encryption key (id 1), tenants' files under
/// `{state_dir}/data`, and a network policy that protects nothing (test sources live on the
/// control plane's own local cluster, as in `dev`).
pub fn api_config(state_dir: PathBuf, replicator_binary: Option<PathBuf>) -> ApiConfig {
    ApiConfig {
        listen: "127.0.0.1:0".into(),
        api_keys: vec![Secret::new(generate_key())],
        tenant_keys: Vec::new(),
        encryption_keys: vec![EncryptionKeyConfig {
            id: 1,
            key: Secret::new(generate_key()),
        }],
        runtime: RuntimeKind::Local,
        local: LocalRuntimeConfig {
            replicator_binary: Some(
                replicator_binary.unwrap_or_else(|| env!("CARGO_BIN_EXE_etl").into()),
            ),
            data_dir: state_dir.join("data"),
            state_dir,
            stop_timeout_seconds: 10,
        },
        network_policy: NetworkPolicyConfig {
            protect: Some(Vec::new()),
            ..NetworkPolicyConfig::default()
        },
        max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        console: Default::default(),
        lag_history: Default::default(),
    }
}

/// A control plane with the real `etl` binary as replicator.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(None).await
}

/// A control plane whose `local` runtime starts `replicator_binary` (default: the real `etl`).
pub async fn spawn_app_with(replicator_binary: Option<PathBuf>) -> TestApp {
    spawn_app_configured(replicator_binary, |_| {}).await
}

/// A control plane with the test config changed by `change` (a network policy, a limit).
pub async fn spawn_app_configured(
    replicator_binary: Option<PathBuf>,
    change: impl FnOnce(&mut ApiConfig),
) -> TestApp {
    let db = TestDatabase::create("api").await;
    migrate::run(MigrationSet::Api, &db.options(), false, |_| {})
        .await
        .expect("migrate the app schema");
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = api_config(state_dir.path().to_owned(), replicator_binary);
    change(&mut config);
    start(db, config, state_dir).await
}

/// Starts an application on `db` with `config` (e.g. other keys, same database).
pub async fn start(db: TestDatabase, config: ApiConfig, state_dir: tempfile::TempDir) -> TestApp {
    let runtime: Arc<dyn PipelineRuntime> =
        Arc::new(LocalRuntime::new(&config.local, Environment::Dev).expect("local runtime"));
    start_with_runtime(db, config, state_dir, runtime).await
}

pub async fn start_with_runtime(
    db: TestDatabase,
    config: ApiConfig,
    state_dir: tempfile::TempDir,
    runtime: Arc<dyn PipelineRuntime>,
) -> TestApp {
    let pool = db.pool().await;
    let app = Application::build(&config, pool.clone(), runtime)
        .await
        .expect("build the application");
    let address = format!("http://{}", app.local_addr().unwrap());
    let (trigger, shutdown) = shutdown::channel();
    tokio::spawn(app.run_until_stopped(shutdown));
    TestApp {
        address,
        api_key: config.api_keys[0].expose().to_owned(),
        client: reqwest::Client::new(),
        db,
        pool,
        config,
        state_dir,
        trigger,
    }
}

/// A response's status and JSON body (`Null` when empty).
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        self.body
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A request with the API key and, when given, the `tenant_id` header.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        tenant: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.call_with_key(&self.api_key, method, path, tenant, body)
            .await
    }

    /// A request with another key (e.g. one scoped to a tenant).
    pub async fn call_with_key(
        &self,
        key: &str,
        method: Method,
        path: &str,
        tenant: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path)).bearer_auth(key);
        if let Some(tenant) = tenant {
            request = request.header("tenant_id", tenant);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        reply(request.send().await.expect("send request")).await
    }

    pub async fn get(&self, path: &str, tenant: Option<&str>) -> Reply {
        self.call(Method::GET, path, tenant, None).await
    }

    pub async fn post(&self, path: &str, tenant: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, tenant, Some(body)).await
    }

    pub async fn patch(&self, path: &str, tenant: Option<&str>, body: Value) -> Reply {
        self.call(Method::PATCH, path, tenant, Some(body)).await
    }

    pub async fn delete(&self, path: &str, tenant: Option<&str>) -> Reply {
        self.call(Method::DELETE, path, tenant, None).await
    }

    /// Sends a body that must be refused with 422 naming `field`; returns the error body.
    pub async fn refused(
        &self,
        method: Method,
        path: &str,
        tenant: Option<&str>,
        body: Value,
        field: &str,
    ) -> Value {
        let body = self
            .call(method, path, tenant, Some(body))
            .await
            .expect(422);
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(field)),
            "{field}: {body}"
        );
        body
    }

    pub async fn create_tenant(&self, id: &str) {
        self.post(
            "/v1/tenants",
            None,
            json!({"id": id, "name": format!("{id} Inc")}),
        )
        .await
        .expect(201);
    }

    pub async fn create_image(&self) -> i64 {
        let body = self
            .post(
                "/v1/images",
                None,
                json!({"name": "ramsup/etl-replicator:test"}),
            )
            .await
            .expect(201);
        body["id"].as_i64().unwrap()
    }

    /// A source pointing at `source` with its real password.
    pub async fn create_source(&self, tenant: &str, name: &str, source: &TestSource) -> i64 {
        let body = self
            .post(
                "/v1/sources",
                Some(tenant),
                json!({"name": name, "config": source.config()}),
            )
            .await
            .expect(201);
        body["id"].as_i64().unwrap()
    }

    pub async fn create_destination(&self, tenant: &str, name: &str, config: Value) -> i64 {
        let body = self
            .post(
                "/v1/destinations",
                Some(tenant),
                json!({"name": name, "config": config}),
            )
            .await
            .expect(201);
        body["id"].as_i64().unwrap()
    }

    pub async fn create_pipeline(
        &self,
        tenant: &str,
        source_id: i64,
        destination_id: i64,
        publication: &str,
    ) -> Value {
        self.post(
            "/v1/pipelines",
            Some(tenant),
            json!({
                "source_id": source_id,
                "destination_id": destination_id,
                "publication_name": publication,
                "config": {"batch": {"max_size": 100, "max_fill_ms": 100}},
            }),
        )
        .await
        .expect(201)
    }

    /// Stops serving and drops the database.
    pub async fn shutdown(self) {
        self.trigger.trigger();
        self.pool.close().await;
        self.db.drop_database().await;
    }

    /// Stops serving, keeping the database and state dir (to start another app on them).
    pub async fn stop_serving(self) -> (TestDatabase, tempfile::TempDir, ApiConfig) {
        self.trigger.trigger();
        self.pool.close().await;
        (self.db, self.state_dir, self.config)
    }
}

pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let text = response.text().await.expect("read body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Reply { status, body }
}

/// A source database with its own login role and a random password (so a test can look for
/// the password in responses, files and environments without false matches).
pub struct TestSource {
    pub db: TestDatabase,
    pub user: String,
    pub password: String,
}

impl TestSource {
    pub async fn create() -> TestSource {
        let db = TestDatabase::create("api_src").await;
        let user = format!("{}_user", db.name);
        let password = format!("pw-{}", generate_key().replace(['+', '/', '='], "x"));
        let admin = db.pool().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "create role \"{user}\" login superuser password '{password}'"
        )))
        .execute(&admin)
        .await
        .expect("create the source role");
        admin.close().await;
        TestSource { db, user, password }
    }

    /// The connection settings as the API takes them.
    pub fn config(&self) -> Value {
        let url = url::Url::parse(&self.db.url).unwrap();
        json!({
            "host": url.host_str().unwrap(),
            "port": url.port().unwrap_or(5432),
            "name": self.db.name,
            "username": self.user,
            "password": self.password,
            "tls": {"mode": "disable"},
        })
    }

    pub async fn drop(self) {
        let user = self.user.clone();
        self.db.drop_database().await;
        let mut conn =
            <sqlx::PgConnection as sqlx::Connection>::connect(&crate::common::admin_url())
                .await
                .expect("connect to the test cluster");
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "drop role if exists \"{user}\""
        )))
        .execute(&mut conn)
        .await;
    }
}

/// Asserts an error body has the JSON error shape and code.
#[track_caller]
pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"], json!(code), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}
