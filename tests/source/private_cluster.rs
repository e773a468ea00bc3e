//! A private PostgreSQL cluster for tests the shared one cannot serve: `ssl=on` with a
//! certificate for `localhost` from a throwaway CA (`ca.crt`; `other_ca.crt` signed nothing),
//! and `pg_hba.conf` lines for the other password methods (`trust_user` trust, `clear_user`
//! password, `md5_user` md5, each with password `<name>-pw`). Stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use etl::config::{PgConnection, Secret, TlsConfig, TlsMode};

/// A running private cluster.
pub struct PrivateCluster {
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

impl PrivateCluster {
    pub fn start() -> PrivateCluster {
        let dir = tempfile::Builder::new()
            .prefix("etl-tls-")
            .tempdir_in("/tmp")
            .unwrap();
        let path = dir.path();
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        crate::common::certs::make_ca_and_localhost_cert(path);
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
                 pg_psql -h /tmp -p {port} -U postgres -d postgres -qAt \
                    -c \"alter system set ssl = on\" \
                    -c \"create role trust_user login replication\" \
                    -c \"create role clear_user login replication password 'clear_user-pw'\" \
                    -c \"set password_encryption = 'md5'; create role md5_user login replication password 'md5_user-pw'\" >/dev/null
                 {{ printf 'host all trust_user 127.0.0.1/32 trust\\nhost all clear_user 127.0.0.1/32 password\\nhost all md5_user 127.0.0.1/32 md5\\n'; cat data/pg_hba.conf; }} > hba.new
                 cat hba.new > data/pg_hba.conf
                 pg_psql -h /tmp -p {port} -U postgres -d postgres -qAt -c \"select pg_reload_conf()\" >/dev/null
                 sleep 1"
            ),
            path,
        );
        PrivateCluster { dir, port }
    }

    pub fn connection(&self, host: &str, mode: TlsMode, ca: Option<&str>) -> PgConnection {
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

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for PrivateCluster {
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
