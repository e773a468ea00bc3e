//! Login (SCRAM, wrong password), TLS negotiation against a server without TLS, a Unix-domain
//! socket, simple query, IDENTIFY_SYSTEM and error reporting.

use etl::config::Secret;
use etl::config::TlsMode;
use etl::engine::source::{Error, ReplicationClient};

use crate::common::TestDatabase;
use crate::helpers::{connect, connection};

#[tokio::test]
async fn scram_login_succeeds_and_runs_queries() {
    let db = TestDatabase::create("src_login").await;
    let pool = db.pool().await;
    let role = format!("scram_{}", db.name);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "set password_encryption = 'scram-sha-256';
         create role \"{role}\" login replication password 'S3cret pw'"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let method: String = sqlx::query_scalar(
        "select case when rolpassword like 'SCRAM-SHA-256$%' then 'scram' else 'other' end \
         from pg_authid where rolname = $1",
    )
    .bind(&role)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        method, "scram",
        "the role's password must be stored as SCRAM"
    );

    let mut conn = connection(&db);
    conn.username = role.clone();
    conn.password = Some(Secret::new("S3cret pw"));
    let mut client = ReplicationClient::connect(&conn).await.unwrap();
    assert!(!client.is_tls());
    assert!(client.server_major_version() >= 10);
    let rows = client
        .simple_query("select current_user, 1 + 1, null::text")
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![vec![Some(role.clone()), Some("2".to_owned()), None]]
    );
    client.close().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("drop role \"{role}\"")))
        .execute(&pool)
        .await
        .unwrap();
    db.drop_database().await;
}

#[tokio::test]
async fn a_socket_directory_as_host_connects_over_the_unix_socket() {
    let db = TestDatabase::create("src_unix").await;
    let pool = db.pool().await;
    let (directories, port): (String, String) = sqlx::query_as(
        "select current_setting('unix_socket_directories'), current_setting('port')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let directory = directories.split(',').next().unwrap_or_default().trim();
    assert!(
        directory.starts_with('/'),
        "the test cluster listens on a Unix socket directory: {directories:?}"
    );
    let mut conn = connection(&db);
    conn.host = directory.to_owned();
    conn.port = port.parse().unwrap();
    // As with libpq, TLS settings do not apply to a local socket.
    conn.tls.mode = TlsMode::Require;

    let mut client = ReplicationClient::connect(&conn).await.unwrap();
    assert!(!client.is_tls());
    let rows = client
        .simple_query("select inet_server_addr() is null, current_database()")
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![vec![Some("t".to_owned()), Some(db.name.clone())]]
    );
    client.close().await.unwrap();

    // The state store's sqlx pool takes the same settings.
    let local = sqlx::PgPool::connect_with(conn.sqlx_options())
        .await
        .unwrap();
    let over_socket: bool = sqlx::query_scalar("select inet_server_addr() is null")
        .fetch_one(&local)
        .await
        .unwrap();
    assert!(over_socket);
    local.close().await;

    // A directory without the server's socket is a connection error naming the socket.
    conn.host = "/nonexistent-etl-socket-dir".to_owned();
    let err = ReplicationClient::connect(&conn).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("[/nonexistent-etl-socket-dir/.s.PGSQL.{port}]")),
        "{text}"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn wrong_password_fails_with_a_clear_error() {
    let db = TestDatabase::create("src_badpw").await;
    let mut conn = connection(&db);
    conn.password = Some(Secret::new("definitely-not-the-password"));
    let err = ReplicationClient::connect(&conn).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(text.contains(&conn.username), "{text}");
    assert!(text.contains("28P01"), "{text}");
    db.drop_database().await;
}

#[tokio::test]
async fn tls_require_against_a_server_without_tls_fails_clearly() {
    let db = TestDatabase::create("src_tlsreq").await;
    let mut conn = connection(&db);
    conn.tls.mode = TlsMode::Require;
    let err = ReplicationClient::connect(&conn).await.unwrap_err();
    assert!(matches!(err, Error::TlsRefused { .. }), "{err:?}");
    assert!(err.to_string().contains("does not accept TLS"), "{err}");
    assert!(err.to_string().contains("require"), "{err}");
    for mode in [TlsMode::VerifyCa, TlsMode::VerifyFull] {
        conn.tls.mode = mode;
        let err = ReplicationClient::connect(&conn).await.unwrap_err();
        assert!(matches!(err, Error::TlsRefused { .. }), "{mode:?}: {err:?}");
    }
    db.drop_database().await;
}

#[tokio::test]
async fn tls_prefer_falls_back_to_a_plain_connection() {
    let db = TestDatabase::create("src_tlspref").await;
    let mut conn = connection(&db);
    conn.tls.mode = TlsMode::Prefer;
    let mut client = ReplicationClient::connect(&conn).await.unwrap();
    assert!(!client.is_tls());
    let rows = client.simple_query("select 'ok'").await.unwrap();
    assert_eq!(rows, vec![vec![Some("ok".to_owned())]]);
    conn.tls.mode = TlsMode::Disable;
    let mut client = ReplicationClient::connect(&conn).await.unwrap();
    assert!(client.simple_query("select 1").await.is_ok());
    db.drop_database().await;
}

#[tokio::test]
async fn identify_system_matches_the_server() {
    let db = TestDatabase::create("src_ident").await;
    let pool = db.pool().await;
    let mut client = connect(&db).await;
    let info = client.identify_system().await.unwrap();
    let (system_id, timeline): (String, i32) = sqlx::query_as(
        "select system_identifier::text, (select timeline_id from pg_control_checkpoint()) \
         from pg_control_system()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(info.system_id, system_id);
    assert_eq!(info.timeline, timeline as u32);
    assert_eq!(info.dbname.as_deref(), Some(db.name.as_str()));
    let current: String = sqlx::query_scalar("select pg_current_wal_flush_lsn()::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    let current: etl::base::lsn::Lsn = current.parse().unwrap();
    assert!(!info.xlogpos.is_zero() && info.xlogpos <= current);
    db.drop_database().await;
}

#[tokio::test]
async fn sql_errors_carry_sqlstate_and_the_session_stays_usable() {
    let db = TestDatabase::create("src_sqlerr").await;
    let mut client = connect(&db).await;
    let err = client
        .simple_query("select * from no_such_table")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("42P01"));
    assert!(!err.is_transient());
    assert!(err.to_string().contains("no_such_table"), "{err}");
    // Several statements: only the last result set is returned.
    let rows = client
        .simple_query("select 1; select 'a' union all select 'b'")
        .await
        .unwrap();
    assert_eq!(rows, vec![vec![Some("a".into())], vec![Some("b".into())]]);
    // A missing slot is not an error for drop_slot.
    assert!(!client.drop_slot("no_such_slot_here", true).await.unwrap());
    db.drop_database().await;
}

#[tokio::test]
async fn a_closed_port_is_a_transient_connect_error() {
    let db = TestDatabase::create("src_closed").await;
    let mut conn = connection(&db);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    conn.port = listener.local_addr().unwrap().port();
    conn.host = "127.0.0.1".into();
    drop(listener);
    let err = ReplicationClient::connect(&conn).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    db.drop_database().await;
}

#[tokio::test]
async fn a_role_without_replication_is_refused_with_sqlstate_42501() {
    let db = TestDatabase::create("src_norepl").await;
    let pool = db.pool().await;
    let role = format!("norepl_{}", db.name);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "create role \"{role}\" login password 'pw' noreplication"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let mut conn = connection(&db);
    conn.username = role.clone();
    conn.password = Some(Secret::new("pw"));
    let err = ReplicationClient::connect(&conn).await.unwrap_err();
    assert_eq!(err.code(), Some("42501"), "{err:?}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains(&role), "{err}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("drop role \"{role}\"")))
        .execute(&pool)
        .await
        .unwrap();
    db.drop_database().await;
}
