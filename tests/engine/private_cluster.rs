//! A private PostgreSQL cluster for tests that change server settings or restart the server,
//! which the shared test cluster must never see. Started with `scripts/lib.sh`; stopped on drop.

use std::process::Command;

const PASSWORD: &str = "private-pw";

pub struct PrivateCluster {
    dir: tempfile::TempDir,
    port: u16,
    max_slot_wal_keep_size: Option<&'static str>,
}

impl PrivateCluster {
    /// A logical cluster on a free port; `max_slot_wal_keep_size` as given (else unlimited).
    pub fn start(max_slot_wal_keep_size: Option<&'static str>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("etl-engine-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let cluster = Self {
            dir,
            port,
            max_slot_wal_keep_size,
        };
        cluster.start_server();
        cluster
    }

    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Stops the server (fast shutdown: every session is cut) and starts it again.
    pub fn restart(&self) {
        self.stop_server();
        self.start_server();
    }

    fn start_server(&self) {
        self.bash(&format!(
            "start_local_cluster \"$PWD/data\" {} postgres {PASSWORD} \"$PWD/pg.log\"",
            self.port
        ));
    }

    fn stop_server(&self) {
        self.bash("stop_local_cluster \"$PWD/data\"");
    }

    fn bash(&self, script: &str) {
        let repo = env!("CARGO_MANIFEST_DIR");
        let mut command = Command::new("bash");
        command
            .arg("-euc")
            .arg(format!("source '{repo}/scripts/lib.sh'\n{script}"))
            .current_dir(self.dir.path())
            .env("PG_FSYNC", "off");
        if let Some(size) = self.max_slot_wal_keep_size {
            command.env("PG_MAX_SLOT_WAL_KEEP_SIZE", size);
        }
        let status = command.status().expect("run bash");
        assert!(status.success(), "script failed: {script}");
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.stop_server();
    }
}
