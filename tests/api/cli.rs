//! The `serve-api`, `api rotate-key` and `api generate-key` subcommands of the real binary.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use etl::config::api::generate_key;
use serde_json::json;

use crate::common::TestDatabase;
use crate::helpers::TestSource;

fn etl(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_etl"));
    command
        .arg("--config-dir")
        .arg(dir)
        .args(args)
        .env_remove("APP_ENVIRONMENT")
        .env_remove("DATABASE_URL")
        .env_remove("RUST_BACKTRACE");
    for (name, _) in std::env::vars() {
        if name.starts_with("APP_") {
            command.env_remove(name);
        }
    }
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn serve_api_refuses_to_start_without_keys_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prod.yaml"),
        "database: {url: 'postgres://u:p@127.0.0.1:1/x'}\napi: {listen: '127.0.0.1:0'}\n",
    )
    .unwrap();
    let output = etl(dir.path(), &["serve-api"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.starts_with("error: config key `api.api_keys`"),
        "{text}"
    );
    assert!(text.contains("APP_API__API_KEYS"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");

    let output = etl(dir.path(), &["serve-api"])
        .env("APP_API__API_KEYS", format!("[{}]", generate_key()))
        .output()
        .unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("api.encryption_keys"), "{text}");

    // Both kinds of key in the variable syntax the README gives: the configuration loads, and
    // the next thing to fail is the (unreachable) database, a runtime error.
    let output = etl(dir.path(), &["serve-api"])
        .env("APP_API__API_KEYS", format!(r#"["{}"]"#, generate_key()))
        .env(
            "APP_API__ENCRYPTION_KEYS",
            format!(
                r#"[{{id=1,key="{}"}}, {{id=2,key="{}"}}]"#,
                generate_key(),
                generate_key()
            ),
        )
        .output()
        .unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("127.0.0.1:1"), "{text}");

    // A malformed key given that way is a configuration error naming the key.
    let output = etl(dir.path(), &["serve-api"])
        .env("APP_API__API_KEYS", format!(r#"["{}"]"#, generate_key()))
        .env("APP_API__ENCRYPTION_KEYS", r#"[{id=1,key="short"}]"#)
        .output()
        .unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("api.encryption_keys[0].key` (from APP_API__ENCRYPTION_KEYS)"),
        "{text}"
    );
}

#[test]
fn generate_key_prints_a_fresh_32_byte_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let output = etl(dir.path(), &["api", "generate-key"]).output().unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let (a, b) = (run(), run());
    assert_ne!(a, b);
    assert_eq!(
        etl::config::api::decode_encryption_key(&a).map(|k| k.len()),
        Ok(32)
    );
}

/// Writes a dev config for the binary: the given database, keys and a local state dir.
fn write_config(dir: &Path, db: &TestDatabase, api_key: &str, keys: &[(u32, &str)]) {
    let keys: Vec<String> = keys
        .iter()
        .map(|(id, key)| format!("{{id: {id}, key: \"{key}\"}}"))
        .collect();
    std::fs::write(
        dir.join("dev.yaml"),
        format!(
            "database: {{url: '{}'}}\napi:\n  listen: 127.0.0.1:0\n  api_keys: [\"{api_key}\"]\n  \
             encryption_keys: [{}]\n  local: {{state_dir: '{}'}}\n",
            db.url,
            keys.join(", "),
            dir.join("state").display()
        ),
    )
    .unwrap();
}

#[tokio::test]
async fn serve_api_serves_until_sigterm_and_rotate_key_moves_secrets_to_the_newest_key() {
    // One database holds the `app` schema and serves as the source too.
    let source = TestSource::create().await;
    let db = &source.db;
    etl::migrate::run(
        etl::migrate::MigrationSet::Api,
        &db.options(),
        false,
        |_| {},
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (api_key, key1, key2) = (generate_key(), generate_key(), generate_key());
    write_config(dir.path(), db, &api_key, &[(1, &key1)]);

    // Serve on a free port: the log line names the address.
    let mut child = etl(
        dir.path(),
        &["--env", "dev", "--log-format", "json", "serve-api"],
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Read the log to its end (so the server never writes into a closed pipe); the line that
    // names the address is handed over as soon as it appears.
    let log = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut addr_tx = Some(addr_tx);
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(log).lines() {
            let line = line.unwrap_or_default();
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(addr) = event["addr"].as_str()
                && let Some(tx) = addr_tx.take()
            {
                let _ = tx.send(addr.to_owned());
            }
            lines.push(line);
        }
        lines.join("\n")
    });
    let addr = addr_rx.await.expect("serve-api logs its address");
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{addr}/health_check"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let tenant = client
        .post(format!("http://{addr}/v1/tenants"))
        .bearer_auth(&api_key)
        .json(&json!({"id": "acme", "name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(tenant.status(), 201);
    let created = client
        .post(format!("http://{addr}/v1/sources"))
        .bearer_auth(&api_key)
        .header("tenant_id", "acme")
        .json(&json!({"name": "shop", "config": source.config()}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let log = reader.join().unwrap();
    assert!(status.success(), "{status}: {log}");
    assert!(
        !log.contains(&source.password),
        "a secret in the log: {log}"
    );

    write_config(dir.path(), db, &api_key, &[(1, &key1), (2, &key2)]);
    let output = etl(dir.path(), &["--env", "dev", "api", "rotate-key"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("re-encrypted 1 secret value(s) in 1 row(s) with key 2"),
        "{text}"
    );
    let pool = db.pool().await;
    let key_id: i64 =
        sqlx::query_scalar("select (config->'password'->>'key_id')::int8 from app.sources")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(key_id, 2);
    pool.close().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    source.drop().await;
}

/// Issue 11: a refused source is reported within seconds with the real cause, and `--once`
/// gives up instead of retrying forever.
#[test]
fn replicate_once_against_a_refused_source_exits_1_within_seconds_naming_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prod.yaml"),
        "pipeline:\n  id: 1\n  publication_name: p\n  metrics_address: null\n  \
         pg_connection: {host: 127.0.0.1, port: 1, name: x, username: u, password: p, \
         tls: {mode: disable}}\ndestination: {memory: {}}\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let output = etl(dir.path(), &["replicate", "--once"]).output().unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(started.elapsed() < Duration::from_secs(20), "{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: cannot reach the source 127.0.0.1:1")
            && last.to_lowercase().contains("connection refused"),
        "{text}"
    );
}
