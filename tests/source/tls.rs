//! TLS against a private cluster with `ssl=on` and a certificate from a throwaway CA (the
//! shared cluster has TLS off): `prefer`/`require` encrypt without checking the certificate,
//! `verify-ca` checks the chain but not the host name, `verify-full` checks both, and a CA
//! that did not sign the certificate is refused.

use etl::config::{PgConnection, TlsMode};
use etl::engine::source::{Error, ReplicationClient};

use crate::private_cluster::PrivateCluster;

async fn connect_ok(conn: &PgConnection) -> ReplicationClient {
    let mut client = ReplicationClient::connect(conn)
        .await
        .unwrap_or_else(|e| panic!("{:?} to {}: {e}", conn.tls.mode, conn.host));
    let rows = client
        .simple_query("select ssl::text from pg_stat_ssl where pid = pg_backend_pid()")
        .await
        .unwrap();
    assert_eq!(rows, vec![vec![Some("true".to_owned())]], "server sees TLS");
    client
}

#[tokio::test]
async fn tls_modes_check_what_they_promise() {
    let cluster = PrivateCluster::start();

    // prefer and require: encrypted, certificate not checked.
    for mode in [TlsMode::Prefer, TlsMode::Require] {
        let client = connect_ok(&cluster.connection("127.0.0.1", mode, None)).await;
        assert!(client.is_tls());
    }

    // verify-ca: our CA signed it; the host name (an IP not in the certificate) is not checked.
    connect_ok(&cluster.connection("127.0.0.1", TlsMode::VerifyCa, Some("ca.crt"))).await;
    // ... but a CA that did not sign it is refused, as are the bundled web roots.
    for ca in [Some("other_ca.crt"), None] {
        let err =
            ReplicationClient::connect(&cluster.connection("127.0.0.1", TlsMode::VerifyCa, ca))
                .await
                .unwrap_err();
        assert!(matches!(err, Error::TlsHandshake { .. }), "{ca:?}: {err:?}");
        assert!(err.to_string().contains("verify-ca"), "{err}");
    }

    // verify-full: the name must match too.
    connect_ok(&cluster.connection("localhost", TlsMode::VerifyFull, Some("ca.crt"))).await;
    let err = ReplicationClient::connect(&cluster.connection(
        "127.0.0.1",
        TlsMode::VerifyFull,
        Some("ca.crt"),
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, Error::TlsHandshake { .. }), "{err:?}");
    assert!(err.to_string().contains("not valid for name"), "{err}");

    // require with a CA file checks the chain (as libpq does with a root certificate).
    let err = ReplicationClient::connect(&cluster.connection(
        "127.0.0.1",
        TlsMode::Require,
        Some("other_ca.crt"),
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, Error::TlsHandshake { .. }), "{err:?}");

    // A CA file that is not PEM is a configuration error naming the file.
    std::fs::write(cluster.path("garbage.crt"), "not a certificate").unwrap();
    let err = ReplicationClient::connect(&cluster.connection(
        "localhost",
        TlsMode::VerifyFull,
        Some("garbage.crt"),
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, Error::TlsConfig { .. }), "{err:?}");
    assert!(err.to_string().contains("garbage.crt"), "{err}");

    // disable: plain, even though the server offers TLS.
    let client =
        ReplicationClient::connect(&cluster.connection("127.0.0.1", TlsMode::Disable, None))
            .await
            .unwrap();
    assert!(!client.is_tls());
}
