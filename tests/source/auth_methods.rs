//! trust, cleartext password and md5 authentication (the shared cluster only uses SCRAM), on a
//! private cluster whose `pg_hba.conf` assigns one method per role.

use etl::config::{Secret, TlsMode};
use etl::engine::source::{Error, ReplicationClient};

use crate::private_cluster::PrivateCluster;

#[tokio::test]
async fn trust_cleartext_and_md5_logins_work_and_wrong_passwords_fail() {
    let cluster = PrivateCluster::start();
    let login = |user: &str, password: Option<&str>| {
        let mut conn = cluster.connection("127.0.0.1", TlsMode::Disable, None);
        conn.username = user.into();
        conn.password = password.map(Secret::new);
        conn
    };

    let mut admin = ReplicationClient::connect(&login("postgres", Some("tls-secret")))
        .await
        .unwrap();
    let stored = admin
        .simple_query(
            "select rolname, coalesce(left(rolpassword, 3), '') from pg_authid \
             where rolname in ('md5_user', 'clear_user', 'trust_user') order by 1",
        )
        .await
        .unwrap();
    assert_eq!(
        stored,
        vec![
            vec![Some("clear_user".into()), Some("SCR".into())],
            vec![Some("md5_user".into()), Some("md5".into())],
            vec![Some("trust_user".into()), Some("".into())],
        ]
    );

    for (user, password) in [
        ("trust_user", None),
        ("clear_user", Some("clear_user-pw")),
        ("md5_user", Some("md5_user-pw")),
    ] {
        let mut client = ReplicationClient::connect(&login(user, password))
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let rows = client.simple_query("select current_user").await.unwrap();
        assert_eq!(rows, vec![vec![Some(user.to_owned())]]);
        let info = client.identify_system().await.unwrap();
        assert_eq!(info.dbname.as_deref(), Some("postgres"));
    }

    for user in ["clear_user", "md5_user"] {
        let err = ReplicationClient::connect(&login(user, Some("wrong")))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Auth { .. }), "{user}: {err:?}");
        assert!(err.to_string().contains("28P01"), "{err}");
        let err = ReplicationClient::connect(&login(user, None))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("none is configured"),
            "{user}: {err}"
        );
    }
}
