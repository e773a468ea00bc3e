//! Both migration sets, on one shared database and on two separate ones, run through the binary.

use std::process::{Command, Output};

use crate::common::TestDatabase;

fn etl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_etl"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run etl")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "etl failed: {}\n{}",
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn tables(db: &TestDatabase, schema: &str) -> Vec<String> {
    let pool = db.pool().await;
    sqlx::query_scalar(
        "select table_name::text from information_schema.tables where table_schema = $1 order by 1",
    )
    .bind(schema)
    .fetch_all(&pool)
    .await
    .unwrap()
}

async fn applied_versions(db: &TestDatabase, history: &str) -> Vec<i64> {
    let pool = db.pool().await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select version from {history} order by version"
    )))
    .fetch_all(&pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn both_migration_sets_share_one_database_with_separate_histories() {
    let db = TestDatabase::create("mig_single").await;
    let api = etl(&["migrate", "api", "--database-url", &db.url]);
    assert_success(&api);
    assert!(
        stdout(&api).contains("applied api migration 20261126000001"),
        "{}",
        stdout(&api)
    );
    assert_success(&etl(&["migrate", "replicator", "--database-url", &db.url]));

    let app = tables(&db, "app").await;
    for table in [
        "_sqlx_migrations",
        "destinations",
        "images",
        "pipelines",
        "replicators",
        "sources",
        "tenants",
    ] {
        assert!(
            app.contains(&table.to_owned()),
            "app.{table} missing: {app:?}"
        );
    }
    let etl_tables = tables(&db, "etl").await;
    for table in [
        "_sqlx_migrations",
        "replication_progress",
        "replication_state",
        "table_columns",
        "table_mappings",
        "table_schemas",
    ] {
        assert!(
            etl_tables.contains(&table.to_owned()),
            "etl.{table} missing: {etl_tables:?}"
        );
    }
    let public = tables(&db, "public").await;
    assert!(public.is_empty(), "nothing may land in public: {public:?}");

    let api_versions = applied_versions(&db, "app._sqlx_migrations").await;
    let etl_versions = applied_versions(&db, "etl._sqlx_migrations").await;
    let api_count = etl::migrate::MigrationSet::Api.migrator().iter().count();
    let etl_count = etl::migrate::MigrationSet::Replicator
        .migrator()
        .iter()
        .count();
    assert_eq!(api_versions.len(), api_count);
    assert_eq!(etl_versions.len(), etl_count);
    db.drop_database().await;
}

#[tokio::test]
async fn migration_sets_run_on_two_separate_databases() {
    let control = TestDatabase::create("mig_control").await;
    let source = TestDatabase::create("mig_source").await;
    assert_success(&etl(&["migrate", "api", "--database-url", &control.url]));
    assert_success(&etl(&[
        "migrate",
        "replicator",
        "--database-url",
        &source.url,
    ]));

    assert!(!tables(&control, "app").await.is_empty());
    assert!(
        tables(&control, "etl").await.is_empty(),
        "replicator schema must not be on the control db"
    );
    assert!(!tables(&source, "etl").await.is_empty());
    assert!(
        tables(&source, "app").await.is_empty(),
        "api schema must not be on the source db"
    );
    control.drop_database().await;
    source.drop_database().await;
}

#[tokio::test]
async fn rerunning_migrations_applies_nothing_and_succeeds() {
    let db = TestDatabase::create("mig_rerun").await;
    assert_success(&etl(&["migrate", "replicator", "--database-url", &db.url]));
    let before = applied_versions(&db, "etl._sqlx_migrations").await;
    let again = etl(&["migrate", "replicator", "--database-url", &db.url]);
    assert_success(&again);
    assert!(stdout(&again).contains("up to date"), "{}", stdout(&again));
    assert_eq!(applied_versions(&db, "etl._sqlx_migrations").await, before);
    db.drop_database().await;
}

#[tokio::test]
async fn dry_run_lists_pending_migrations_without_applying_them() {
    let db = TestDatabase::create("mig_dry").await;
    let dry = etl(&["migrate", "api", "--dry-run", "--database-url", &db.url]);
    assert_success(&dry);
    assert!(
        stdout(&dry).contains("pending api migration 20261126000001"),
        "{}",
        stdout(&dry)
    );
    assert!(
        tables(&db, "app").await.is_empty(),
        "a dry run must not create anything"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn database_url_comes_from_the_environment_variable_when_no_flag_is_given() {
    let db = TestDatabase::create("mig_env").await;
    let output = Command::new(env!("CARGO_BIN_EXE_etl"))
        .args(["migrate", "api"])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert_success(&output);
    assert!(!tables(&db, "app").await.is_empty());
    db.drop_database().await;
}

#[tokio::test]
async fn database_url_comes_from_the_config_when_nothing_else_is_given() {
    let db = TestDatabase::create("mig_cfg").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dev.yaml"),
        format!("database: {{url: '{}'}}\n", db.url),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_etl"))
        .args(["--env", "dev", "--config-dir"])
        .arg(dir.path())
        .args(["migrate", "api"])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_success(&output);
    assert!(!tables(&db, "app").await.is_empty());
    db.drop_database().await;
}
