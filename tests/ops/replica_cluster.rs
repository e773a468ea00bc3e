//! A private cluster with `wal_level = replica`, one replication slot and one WAL sender, and a
//! 1 MB `max_slot_wal_keep_size`: what the shared cluster (logical, 100 slots) cannot show.
//! Stopped when dropped.

use std::path::Path;
use std::process::Command;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub const PASSWORD: &str = "replica-secret";

pub struct ReplicaCluster {
    dir: tempfile::TempDir,
    pub port: u16,
}

fn bash(script: &str, dir: &Path) {
    let repo = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("bash")
        .arg("-euc")
        .arg(format!("source '{repo}/scripts/lib.sh'\n{script}"))
        .current_dir(dir)
        .output()
        .expect("run bash");
    assert!(
        output.status.success(),
        "script failed: {script}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl ReplicaCluster {
    pub fn start() -> ReplicaCluster {
        let dir = tempfile::Builder::new()
            .prefix("etl-ops-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        bash(
            &format!(
                "mkdir data; printf '%s\\n' '{PASSWORD}' > pw; chmod 644 pw
                 if [ \"$(id -u)\" = 0 ]; then chown postgres: data; fi
                 chmod 700 data
                 as_pg_owner \"$(pg_bindir)/initdb\" -D \"$PWD/data\" -U postgres --pwfile=\"$PWD/pw\" \
                    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
                 touch pg.log; if [ \"$(id -u)\" = 0 ]; then chown postgres: pg.log; fi
                 as_pg_owner \"$(pg_bindir)/pg_ctl\" -D \"$PWD/data\" -l \"$PWD/pg.log\" -w -t 60 start -o \"\
                    -c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories=/tmp \
                    -c wal_level=replica -c max_replication_slots=1 -c max_wal_senders=1 \
                    -c max_slot_wal_keep_size=1MB -c wal_keep_size=0 -c min_wal_size=32MB \
                    -c max_wal_size=64MB -c fsync=off\" >/dev/null"
            ),
            dir.path(),
        );
        ReplicaCluster { dir, port }
    }

    pub fn options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username("postgres")
            .password(PASSWORD)
            .database("postgres")
    }

    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(self.options())
            .await
            .expect("connect to the private cluster")
    }
}

impl Drop for ReplicaCluster {
    fn drop(&mut self) {
        let repo = env!("CARGO_MANIFEST_DIR");
        let data = self.dir.path().join("data");
        let _ = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{repo}/scripts/lib.sh'; stop_local_cluster '{}'",
                data.display()
            ))
            .status();
    }
}
