//! The binary's configuration handling and exit codes, as a user in a shell sees them.

use std::path::Path;
use std::process::{Command, Output};

fn etl_in(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_etl"));
    command
        .arg("--config-dir")
        .arg(dir)
        .args(args)
        .env_remove("APP_ENVIRONMENT")
        .env_remove("DATABASE_URL")
        .env_remove("RUST_BACKTRACE");
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().expect("run etl")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn config_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// One line on stderr, starting with `error:`, no panic text.
fn assert_one_line_error(output: &Output, code: i32, needles: &[&str]) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {text}");
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {text}");
    assert!(lines[0].starts_with("error: "), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    for needle in needles {
        assert!(text.contains(needle), "`{needle}` missing from: {text}");
    }
}

const BASE: &str = "pipeline:\n  batch: {max_size: 100}\n";
const DEV: &str = "pipeline:\n  id: 7\n  publication_name: pub\n  pg_connection: {url: 'postgres://u:pw@h:1/d'}\n";

#[test]
fn config_show_layers_base_env_file_and_variables() {
    let dir = config_dir(&[("base.yaml", BASE), ("dev.yaml", DEV)]);
    let output = etl_in(
        dir.path(),
        &["--env", "dev", "config", "show"],
        &[("APP_PIPELINE__BATCH__MAX_FILL_MS", "250")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("max_size: 100   # from ") && text.contains("base.yaml"),
        "{text}"
    );
    assert!(
        text.contains("id: 7   # from ") && text.contains("dev.yaml"),
        "{text}"
    );
    assert!(
        text.contains("max_fill_ms: 250   # from APP_PIPELINE__BATCH__MAX_FILL_MS"),
        "{text}"
    );
    assert!(text.contains("postgres://u:[redacted]@h:1/d"), "{text}");
    assert!(!text.contains(":pw@"), "password leaked: {text}");
}

#[test]
fn app_environment_selects_the_environment_and_the_flag_overrides_it() {
    let dir = config_dir(&[("dev.yaml", DEV), ("staging.yaml", "")]);
    let output = etl_in(
        dir.path(),
        &["config", "show"],
        &[("APP_ENVIRONMENT", "dev")],
    );
    assert!(
        stdout(&output).starts_with("# environment: dev"),
        "{}",
        stderr(&output)
    );
    let output = etl_in(
        dir.path(),
        &["--env", "staging", "config", "show"],
        &[("APP_ENVIRONMENT", "dev")],
    );
    assert!(
        stdout(&output).starts_with("# environment: staging"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_default_environment_is_prod() {
    let dir = config_dir(&[("dev.yaml", DEV)]);
    let output = etl_in(dir.path(), &["config", "show"], &[]);
    assert_one_line_error(&output, 2, &["prod.yaml", "does not exist"]);
}

#[test]
fn an_unknown_environment_exits_2_and_lists_the_choices() {
    let dir = config_dir(&[("dev.yaml", DEV)]);
    let output = etl_in(dir.path(), &["--env", "qa", "config", "show"], &[]);
    assert_one_line_error(&output, 2, &["`qa`", "dev, staging, prod"]);
}

#[test]
fn an_unknown_key_exits_2_naming_key_and_file() {
    let dir = config_dir(&[("dev.yaml", "pipeline:\n  id: 1\n  publication_nam: x\n")]);
    let output = etl_in(dir.path(), &["--env", "dev", "config", "show"], &[]);
    assert_one_line_error(&output, 2, &["publication_nam", "dev.yaml"]);
}

#[test]
fn a_wrong_type_from_a_variable_exits_2_naming_the_variable() {
    let dir = config_dir(&[("dev.yaml", DEV)]);
    let output = etl_in(
        dir.path(),
        &["--env", "dev", "config", "show"],
        &[("APP_PIPELINE__MAX_TABLE_SYNC_WORKERS", "many")],
    );
    assert_one_line_error(
        &output,
        2,
        &[
            "pipeline.max_table_sync_workers",
            "APP_PIPELINE__MAX_TABLE_SYNC_WORKERS",
        ],
    );
}

#[test]
fn a_failed_validation_exits_2_naming_key_and_origin() {
    let dir = config_dir(&[("dev.yaml", DEV)]);
    let output = etl_in(
        dir.path(),
        &["--env", "dev", "config", "show"],
        &[("APP_PIPELINE__BATCH__MAX_SIZE", "0")],
    );
    assert_one_line_error(
        &output,
        2,
        &["pipeline.batch.max_size", "APP_PIPELINE__BATCH__MAX_SIZE"],
    );
}

#[test]
fn a_missing_config_directory_exits_2() {
    let output = etl_in(
        Path::new("/nonexistent/etl-config"),
        &["config", "show"],
        &[],
    );
    assert_one_line_error(&output, 2, &["/nonexistent/etl-config"]);
}

#[test]
fn an_unreachable_database_is_a_runtime_failure_with_exit_1() {
    let dir = config_dir(&[("dev.yaml", "")]);
    // Port 1 on loopback refuses connections.
    let output = etl_in(
        dir.path(),
        &[
            "--env",
            "dev",
            "migrate",
            "api",
            "--database-url",
            "postgres://u:secretpw@127.0.0.1:1/db",
        ],
        &[],
    );
    assert_one_line_error(&output, 1, &["cannot connect to 127.0.0.1:1/db"]);
    assert!(!stderr(&output).contains("secretpw"), "{}", stderr(&output));
}

#[test]
fn a_bad_database_url_is_a_usage_error() {
    let dir = config_dir(&[("dev.yaml", "")]);
    let output = etl_in(
        dir.path(),
        &[
            "--env",
            "dev",
            "migrate",
            "api",
            "--database-url",
            "mysql://x/y",
        ],
        &[],
    );
    assert_one_line_error(&output, 2, &["--database-url", "mysql"]);
}

#[test]
fn a_usage_error_exits_2() {
    let dir = config_dir(&[]);
    let output = etl_in(dir.path(), &["migrate", "nothing"], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[test]
fn version_and_help_succeed_and_every_subcommand_has_an_example() {
    let dir = config_dir(&[]);
    let output = etl_in(dir.path(), &["--version"], &[]);
    assert!(output.status.success());
    assert!(stdout(&output).starts_with("etl "), "{}", stdout(&output));
    for args in [
        &["migrate", "api", "--help"][..],
        &["migrate", "replicator", "--help"],
        &["config", "show", "--help"],
    ] {
        let output = etl_in(dir.path(), args, &[]);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert!(
            stdout(&output).contains("Example: "),
            "{args:?} has no example:\n{}",
            stdout(&output)
        );
    }
}
