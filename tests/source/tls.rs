//! TLS against a private cluster with `ssl=on` and a certificate from a throwaway CA (the
//! shared cluster has TLS off): `prefer`/`require` encrypt without checking the certificate,
//! `verify-ca` checks the chain but not the host name, `verify-full` checks both, and a CA
//! that did not sign the certificate is refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use etl::config::{PgConnection, Secret, TlsConfig, TlsMode};
use etl::engine::source::{Error, ReplicationClient};

/// A private cluster serving TLS; stopped when dropped.
struct TlsCluster {
    dir: tempfile::TempDir,
    port: u16,
}

fn run(script: &str, dir: &Path) {
    let repo = env!("CARGO_MANIFEST_DIR");
    let status = Command::new("bash")
        .arg("-euc")
        .arg(format!("source '{repo}/scripts/lib.sh'\n{script}"))
        .current_dir(dir)
        .status()
        .expect("run bash");
    assert!(status.success(), "script failed: {script}");
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl {args:?}");
}

fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

impl TlsCluster {
    fn start() -> TlsCluster {
        let dir = tempfile::Builder::new()
            .prefix("etl-tls-")
            .tempdir_in("/tmp")
            .unwrap();
        let path = dir.path();
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        make_ca(path, "ca");
        make_ca(path, "other_ca");
        openssl(
            path,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        );
        std::fs::write(
            path.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            path,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.crt",
            ],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        run(
            &format!(
                "start_local_cluster \"$PWD/data\" {port} postgres tls-secret \"$PWD/pg.log\"
                 cp server.crt server.key data/
                 if [ \"$(id -u)\" = 0 ]; then chown postgres: data/server.crt data/server.key; fi
                 chmod 600 data/server.key
                 \"$(pg_bindir)/psql\" -h /tmp -p {port} -U postgres -d postgres -qAt \
                    -c \"alter system set ssl = on\" -c \"select pg_reload_conf()\" >/dev/null
                 sleep 1"
            ),
            path,
        );
        TlsCluster { dir, port }
    }

    fn connection(&self, host: &str, mode: TlsMode, ca: Option<&str>) -> PgConnection {
        PgConnection {
            host: host.into(),
            port: self.port,
            name: "postgres".into(),
            username: "postgres".into(),
            password: Some(Secret::new("tls-secret")),
            tls: TlsConfig {
                mode,
                ca_file: ca.map(|name| self.dir.path().join(name)),
            },
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let script = format!("stop_local_cluster '{}'", data.display());
        let repo = env!("CARGO_MANIFEST_DIR");
        let _ = Command::new("bash")
            .arg("-c")
            .arg(format!("source '{repo}/scripts/lib.sh'; {script}"))
            .status();
    }
}

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
    let cluster = TlsCluster::start();

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
