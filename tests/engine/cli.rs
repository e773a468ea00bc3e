//! The real `etl replicate` binary: `--once` exits 0 when caught up; SIGTERM exits 0 after
//! acknowledging what it applied. The config directory holds only base.yaml and dev.yaml, and
//! the SQLite destination file: a restarted process finds its copy there (a `memory`
//! destination would start empty, and the pipeline would rightly refuse to stream into it).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::helpers::{Source, wait_for};

pub(crate) fn write_config(dir: &Path, source: &Source) {
    write_config_with(dir, source, "null");
}

fn write_config_with(dir: &Path, source: &Source, metrics_address: &str) {
    write_config_at(dir, source, &source.url, metrics_address);
}

/// The config of `source` reached through `url` (the same database, another way in).
fn write_config_at(dir: &Path, source: &Source, url: &str, metrics_address: &str) {
    std::fs::write(
        dir.join("base.yaml"),
        "pipeline:\n  batch: {max_size: 1000, max_fill_ms: 100}\n  status_update_interval_ms: 200\n  \
         publication_refresh_secs: 1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("dev.yaml"),
        format!(
            "pipeline:\n  id: {}\n  publication_name: {}\n  pg_connection:\n    url: '{}'\n  \
             metrics_address: {}\ndestination:\n  sqlite: {{path: '{}'}}\n",
            source.config.id,
            source.config.publication_name,
            url,
            metrics_address,
            dir.join("out.db").display()
        ),
    )
    .unwrap();
}

pub(crate) fn replicate(dir: &Path, once: bool) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_etl"));
    command
        .arg("--config-dir")
        .arg(dir)
        .args(["--env", "dev", "replicate"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("RUST_BACKTRACE")
        .kill_on_drop(true);
    if once {
        command.arg("--once");
    }
    command.spawn().expect("spawn etl")
}

pub(crate) async fn finish(child: Child) -> (Option<i32>, String) {
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("etl exits within 60 s")
        .expect("etl output");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn replicate_once_copies_streams_and_exits_zero() {
    let source = Source::create("eng_cli_once", "pub_cli_once").await;
    source
        .exec(
            "create table a (id int primary key); create table b (id int primary key); \
               insert into a select generate_series(1, 1000); \
               create publication pub_cli_once for table a, b",
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &source);
    source.exec("insert into b values (1)").await;
    let before = source.current_lsn().await;
    let (code, stderr) = finish(replicate(dir.path(), true)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("copy started"), "{stderr}");
    assert!(stderr.contains("ready"), "{stderr}");
    let states = source.states().await;
    assert_eq!(states.len(), 2);
    assert!(states.iter().all(|(_, s)| s == "ready"), "{states:?}");
    assert!(source.confirmed_flush().await.unwrap() >= before);

    // A second run resumes (no copy) and exits as well.
    let (code, stderr) = finish(replicate(dir.path(), true)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("resuming from LSN"), "{stderr}");
    assert!(!stderr.contains("copy started"), "{stderr}");
    source.drop().await;
}

#[tokio::test]
async fn replicate_over_the_unix_socket_copies_and_streams() {
    let source = Source::create("eng_cli_unix", "pub_cli_unix").await;
    source
        .exec(
            "create table u (id int primary key); insert into u select generate_series(1, 300); \
             create publication pub_cli_unix for table u",
        )
        .await;
    let (directories, port): (String, String) = sqlx::query_as(
        "select current_setting('unix_socket_directories'), current_setting('port')",
    )
    .fetch_one(&source.pool)
    .await
    .unwrap();
    let directory = directories.split(',').next().unwrap_or_default().trim();
    assert!(directory.starts_with('/'), "{directories:?}");
    // libpq's form for a socket directory: the path, percent-encoded, as the host.
    let mut url = url::Url::parse(&source.url).unwrap();
    let encoded = directory.replace('/', "%2F");
    url.set_host(Some(&encoded)).unwrap();
    url.set_port(Some(port.parse().unwrap())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_config_at(dir.path(), &source, url.as_str(), "null");
    source.exec("insert into u values (301)").await;
    let before = source.current_lsn().await;
    let (code, stderr) = finish(replicate(dir.path(), true)).await;
    // The host is a path: there is no TCP to fall back to, so a run that copies and streams
    // went through the socket (state store included).
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("copy started"), "{stderr}");
    assert!(source.confirmed_flush().await.unwrap() >= before);
    let out = rusqlite::Connection::open(dir.path().join("out.db")).unwrap();
    let rows: i64 = out
        .query_row("select count(*) from \"public.u\"", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 301);
    source.drop().await;
}

#[tokio::test]
async fn sigterm_stops_replicate_with_exit_zero_after_acknowledging() {
    let source = Source::create("eng_cli_term", "pub_cli_term").await;
    source
        .exec("create table t (id int primary key); create publication pub_cli_term for table t")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write_config_with(dir.path(), &source, &format!("'127.0.0.1:{port}'"));
    let child = replicate(dir.path(), false);
    source.wait_ready(1).await;
    source
        .exec("insert into t select generate_series(1, 5000)")
        .await;
    let after = source.current_lsn().await;
    wait_for("changes acknowledged", Duration::from_secs(30), || async {
        source
            .confirmed_flush()
            .await
            .is_some_and(|lsn| lsn >= after)
    })
    .await;
    // The metrics endpoint reports the copy and the applied changes.
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics endpoint")
        .text()
        .await
        .unwrap();
    assert!(body.contains("etl_events_applied_total 5000"), "{body}");
    assert!(
        body.contains(r#"etl_table_state{schema="public",table="t",state="ready"} 1"#),
        "{body}"
    );
    let pid = nix::unistd::Pid::from_raw(child.id().expect("pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let (code, stderr) = finish(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert!(source.confirmed_flush().await.unwrap() >= after);
    // The slot is free again once the process is gone.
    let active: bool =
        sqlx::query_scalar("select active from pg_replication_slots where slot_name = $1")
            .bind(etl::engine::apply_slot_name(source.config.id))
            .fetch_one(&source.pool)
            .await
            .unwrap();
    assert!(!active);
    source.drop().await;
}

#[tokio::test]
async fn a_missing_publication_is_a_one_line_error_naming_it() {
    let source = Source::create("eng_cli_nopub", "pub_cli_missing").await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &source);
    let (code, stderr) = finish(replicate(dir.path(), true)).await;
    assert_eq!(code, Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{stderr}");
    assert!(last.contains("pub_cli_missing"), "{stderr}");
    source.drop().await;
}

#[tokio::test]
async fn sigkill_during_copy_and_streaming_then_restart_catches_up() {
    let source = Source::create("eng_cli_kill", "pub_cli_kill").await;
    source
        .exec(
            "create table big (id int primary key, pad text); \
               insert into big select g, repeat('k', 300) from generate_series(1, 300000) g; \
               create publication pub_cli_kill for table big",
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &source);
    let kill = |child: &Child| {
        let pid = nix::unistd::Pid::from_raw(child.id().expect("pid") as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    };

    // Killed while copying: the copy is redone and the table gets ready.
    let child = replicate(dir.path(), false);
    wait_for("copy started", Duration::from_secs(30), || async {
        source.states().await.iter().any(|(_, s)| s == "data_sync")
    })
    .await;
    kill(&child);
    let _ = finish(child).await;
    let (code, stderr) = finish(replicate(dir.path(), true)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("copy started"), "{stderr}");
    assert_eq!(
        source.states().await,
        [("big".to_owned(), "ready".to_owned())]
    );

    // Killed while streaming: the restart resumes and acknowledges everything.
    let child = replicate(dir.path(), false);
    source
        .exec("update big set pad = 'x' where id <= 50000; delete from big where id > 290000")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(&child);
    let _ = finish(child).await;
    let after = source.current_lsn().await;
    let (code, stderr) = finish(replicate(dir.path(), true)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("resuming from LSN"), "{stderr}");
    assert!(source.confirmed_flush().await.unwrap() >= after);
    source.drop().await;
}

/// A source whose port accepts connections and closes them at once: the start-up probe passes,
/// then every attempt of the engine fails. `--once` must give up after `retry.once_attempts`
/// and exit 1 with the cause, not retry forever.
#[tokio::test]
async fn replicate_once_gives_up_after_the_configured_attempts() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hangup = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.yaml"), "pipeline: {}\n").unwrap();
    std::fs::write(
        dir.path().join("dev.yaml"),
        format!(
            "pipeline:\n  id: 1\n  publication_name: p\n  pg_connection:\n    \
             url: 'postgres://u:p@127.0.0.1:{port}/db?sslmode=disable'\n  metrics_address: null\n  \
             retry: {{initial_ms: 20, max_ms: 50, once_attempts: 3}}\n\
             destination:\n  sqlite: {{path: '{}'}}\n",
            dir.path().join("out.db").display()
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let (code, stderr) = finish(replicate(dir.path(), true)).await;
    hangup.abort();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("gave up after 3 failed attempts"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "gave up in {:?}",
        started.elapsed()
    );
}

/// Issue 18: `--once` used to exit 0 when a table ended errored. It exits 4 with one line
/// naming the table. The table errors during its copy: its publication row filter divides by
/// zero for one row, so the source refuses the copy (row filters need PostgreSQL 15).
#[tokio::test]
async fn replicate_once_exits_four_naming_the_errored_tables() {
    let source = Source::create("eng_cli_errored", "pub_cli_errored").await;
    let test = "replicate_once_exits_four_naming_the_errored_tables";
    if !crate::versions::requires(&source, 15, test, "publication row filters").await {
        source.drop().await;
        return;
    }
    source
        .exec(
            "create table fine (id int primary key); insert into fine values (1), (2); \
             create table parted (id int primary key); insert into parted values (5); \
             create publication pub_cli_errored for table fine, \
             parted where (10 / (id - 5) > 0)",
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &source);
    let (code, stderr) = finish(replicate(dir.path(), true)).await;
    assert_eq!(code, Some(4), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{stderr}");
    assert!(
        last.contains("caught up, but 1 table(s) ended errored: public.parted: "),
        "{last}"
    );
    assert!(!last.contains("fine"), "{last}");
    let mut states = source.states().await;
    states.sort();
    assert_eq!(
        states,
        [
            ("fine".to_owned(), "ready".to_owned()),
            ("parted".to_owned(), "errored".to_owned())
        ]
    );
    source.drop().await;
}

/// Runs `etl tables resync --table <table> --yes` with the test's configuration.
async fn tables_resync(dir: &Path, table: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_etl"))
        .arg("--config-dir")
        .arg(dir)
        .args([
            "--env", "dev", "tables", "resync", "--table", table, "--yes",
        ])
        .env_remove("RUST_BACKTRACE")
        .output()
        .await
        .expect("run etl tables resync")
}

/// Rows of `table` in the SQLite destination, ordered by `id`, as (id, v).
fn sqlite_rows(dir: &Path, table: &str) -> Vec<(i64, i64)> {
    let db = rusqlite::Connection::open(dir.join("out.db")).unwrap();
    let mut statement = db
        .prepare(&format!("select id, v from \"public.{table}\" order by id"))
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

async fn source_rows(source: &Source, table: &str) -> Vec<(i64, i64)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select id::int8, v::int8 from {table} order by id"
    )))
    .fetch_all(&source.pool)
    .await
    .unwrap()
}

/// Issue 18: `etl tables resync` against a running `etl replicate` under write load; the
/// replicator is SIGKILLed while it copies the table again, restarted, and the destination
/// ends equal to the source.
#[tokio::test]
async fn tables_resync_under_load_survives_a_sigkill_and_ends_equal() {
    let source = Source::create("eng_cli_resync", "pub_cli_resync").await;
    source
        .exec(
            "create table big (id int primary key, v int, pad text); \
             insert into big select g, 0, repeat('r', 300) from generate_series(1, 300000) g; \
             create table small (id int primary key, v int); \
             insert into small select g, 0 from generate_series(1, 100) g; \
             create publication pub_cli_resync for table big, small",
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &source);
    let child = replicate(dir.path(), false);
    source.wait_ready(2).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let (pool, stop) = (source.pool.clone(), stop.clone());
        async move {
            let mut round = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                round += 1;
                let sql = format!(
                    "begin; update big set v = v + 1 where id % 1000 = {m}; \
                     insert into big values ({new}, {round}, 'n'); \
                     delete from big where id = {round}; \
                     update small set v = v + 1 where id = {s}; commit;",
                    m = round % 1000,
                    new = 1_000_000 + round,
                    s = round % 100 + 1,
                );
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&pool)
                    .await
                    .expect("write load");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let resync = tables_resync(dir.path(), "public.big").await;
    let printed = String::from_utf8_lossy(&resync.stdout);
    assert!(
        resync.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&resync.stderr)
    );
    assert!(printed.contains("ready -> init"), "{printed}");

    // Killed while copying the table again.
    wait_for("resync copy started", Duration::from_secs(30), || async {
        source
            .states()
            .await
            .contains(&("big".to_owned(), "data_sync".to_owned()))
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(child.id().expect("pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = finish(child).await;

    let child = replicate(dir.path(), false);
    source.wait_ready(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let after = source.current_lsn().await;
    wait_for("changes acknowledged", Duration::from_secs(60), || async {
        source
            .confirmed_flush()
            .await
            .is_some_and(|lsn| lsn >= after)
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(child.id().expect("pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let (code, stderr) = finish(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    for table in ["big", "small"] {
        let (expected, actual) = (
            source_rows(&source, table).await,
            sqlite_rows(dir.path(), table),
        );
        assert_eq!(expected.len(), actual.len(), "{table}: row count");
        let differing = expected.iter().zip(&actual).find(|(e, a)| e != a);
        assert!(
            differing.is_none(),
            "{table}: rows differ (source, destination): {differing:?}"
        );
    }

    // Resyncing an unknown table is one line naming it.
    let unknown = tables_resync(dir.path(), "public.nope").await;
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("public.nope"), "{stderr}");
    source.drop().await;
}
