//! Start-up checks against real servers: each finding triggered for real.

use std::sync::atomic::{AtomicU32, Ordering};

use etl::config::{PgConnection, Secret, TlsConfig, TlsMode};
use etl::engine::preconditions::{Level, Report, check};
use etl::engine::source::ReplicationClient;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::common::{TestDatabase, admin_url};
use crate::replica_cluster::{PASSWORD, ReplicaCluster};

static NAMES: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NAMES.fetch_add(1, Ordering::Relaxed)
    )
}

async fn execute(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn codes(report: &Report) -> Vec<&'static str> {
    report.findings.iter().map(|f| f.code).collect()
}

/// Whether the server's `max_slot_wal_keep_size` is unlimited (the warning expected everywhere).
async fn unbounded_slot_wal(pool: &PgPool) -> bool {
    let setting: String = sqlx::query_scalar("select current_setting('max_slot_wal_keep_size')")
        .fetch_one(pool)
        .await
        .unwrap();
    setting == "-1"
}

#[tokio::test]
async fn publication_tables_without_key_are_warned_about_by_quoted_name() {
    let db = TestDatabase::create("ops_pre_keys").await;
    let pool = db.pool().await;
    execute(
        &pool,
        r#"create table keyed (id int primary key);
           create table "No ""Key"" here" (a int);
           create table full_identity (a int);
           alter table full_identity replica identity full;
           create table by_index (a int not null unique);
           alter table by_index replica identity using index by_index_a_key;
           create table nothing (id int primary key);
           alter table nothing replica identity nothing;
           create table unpublished (a int);
           create publication pub for table keyed, "No ""Key"" here", full_identity, by_index, nothing"#,
    )
    .await;

    let report = check(&pool, Some("pub")).await.unwrap();

    assert!(report.is_ok(), "{report}");
    let keyless: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.code == "table_without_key")
        .collect();
    assert_eq!(keyless.len(), 2, "{report}");
    assert_eq!(keyless[0].level, Level::Warning);
    assert!(
        keyless[0].message.contains(r#""public"."No ""Key"" here""#),
        "{}",
        keyless[0].message
    );
    assert!(keyless[0].hint.contains("REPLICA IDENTITY FULL"));
    assert!(keyless[1].message.contains(r#""public"."nothing""#));
    assert_eq!(
        report.find("slot_wal_unbounded").is_some(),
        unbounded_slot_wal(&pool).await,
        "{report}"
    );
    pool.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn missing_and_empty_publications_are_critical() {
    let db = TestDatabase::create("ops_pre_pub").await;
    let pool = db.pool().await;
    execute(&pool, "create publication empty_pub").await;

    let missing = check(&pool, Some("no_such_pub")).await.unwrap();
    assert!(!missing.is_ok());
    let finding = missing
        .find("publication_missing")
        .expect("missing finding");
    assert_eq!(finding.level, Level::Critical);
    assert!(finding.message.contains("\"no_such_pub\""), "{finding}");
    assert!(finding.message.contains(&db.name), "{finding}");
    assert!(finding.hint.contains("CREATE PUBLICATION"), "{finding}");
    assert!(missing.find("publication_empty").is_none());

    let empty = check(&pool, Some("empty_pub")).await.unwrap();
    assert!(!empty.is_ok());
    let finding = empty.find("publication_empty").expect("empty finding");
    assert!(
        finding
            .hint
            .contains("ALTER PUBLICATION \"empty_pub\" ADD TABLE")
    );

    // FOR ALL TABLES in a database without tables is just as empty.
    execute(&pool, "create publication all_pub for all tables").await;
    assert!(
        check(&pool, Some("all_pub"))
            .await
            .unwrap()
            .find("publication_empty")
            .is_some()
    );
    execute(&pool, "create table t (id int primary key)").await;
    let report = check(&pool, Some("all_pub")).await.unwrap();
    assert!(report.is_ok(), "{report}");

    let without = check(&pool, None).await.unwrap();
    assert!(without.is_ok(), "{without}");
    assert!(
        codes(&without)
            .iter()
            .all(|c| !c.starts_with("publication") && *c != "table_without_key")
    );
    pool.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn a_role_without_replication_is_critical_until_granted() {
    let db = TestDatabase::create("ops_pre_role").await;
    let admin = db.pool().await;
    let role = unique("ops_norepl");
    execute(
        &admin,
        &format!(
            "create role {role} login password 'pw'; grant connect on database \"{}\" to {role}",
            db.name
        ),
    )
    .await;
    let as_role = |role: &str| {
        PgPoolOptions::new()
            .max_connections(1)
            .connect_with(db.options().username(role).password("pw"))
    };

    let pool = as_role(&role).await.unwrap();
    let report = check(&pool, None).await.unwrap();
    assert!(!report.is_ok());
    let finding = report.find("replication_role").expect("role finding");
    assert!(
        finding.message.contains(&format!("\"{role}\"")),
        "{finding}"
    );
    assert!(
        finding
            .hint
            .contains(&format!("ALTER ROLE \"{role}\" WITH REPLICATION")),
        "{finding}"
    );
    pool.close().await;

    execute(&admin, &format!("alter role {role} replication")).await;
    let pool = as_role(&role).await.unwrap();
    let report = check(&pool, None).await.unwrap();
    assert!(report.find("replication_role").is_none(), "{report}");
    assert!(report.is_ok(), "{report}");
    pool.close().await;

    admin.close().await;
    db.drop_database().await;
    let cluster = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url())
        .await
        .unwrap();
    execute(&cluster, &format!("drop role {role}")).await;
}

#[tokio::test]
async fn replica_wal_level_and_exhausted_slots_and_senders_are_critical() {
    let cluster = ReplicaCluster::start();
    let pool = cluster.pool().await;
    execute(
        &pool,
        "select pg_create_physical_replication_slot('ops_physical', true)",
    )
    .await;
    // A replication session holds the only WAL sender.
    let _sender = ReplicationClient::connect(&PgConnection {
        host: "127.0.0.1".into(),
        port: cluster.port,
        name: "postgres".into(),
        username: "postgres".into(),
        password: Some(Secret::new(PASSWORD)),
        tls: TlsConfig {
            mode: TlsMode::Disable,
            ca_file: None,
        },
    })
    .await
    .unwrap();

    let report = check(&pool, None).await.unwrap();

    assert!(!report.is_ok());
    assert_eq!(
        codes(&report),
        [
            "wal_level",
            "no_free_replication_slot",
            "no_free_wal_sender"
        ],
        "{report}"
    );
    assert!(report.findings[0].message.contains("`replica`"));
    assert!(
        report.findings[1]
            .message
            .contains("1 of max_replication_slots = 1"),
        "{report}"
    );
    assert!(
        report.findings[2]
            .message
            .contains("1 of max_wal_senders = 1"),
        "{report}"
    );
    pool.close().await;
}
