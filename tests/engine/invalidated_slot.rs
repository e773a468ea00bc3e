//! An apply slot invalidated by `max_slot_wal_keep_size` (on a private cluster with a 1 MB
//! limit): a clear error by default, a full resync with `invalidated_slot_behavior: recreate`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use etl::config::InvalidatedSlotBehavior;
use etl::engine::{self, RunOptions};
use etl::shutdown::Shutdown;

use crate::helpers::{Source, public, wait_equal};

const PASSWORD: &str = "private-pw";

/// A private logical cluster with a 1 MB `max_slot_wal_keep_size`; stopped when dropped.
struct SmallWalCluster {
    dir: tempfile::TempDir,
    port: u16,
}

fn bash(script: &str, dir: &Path) {
    let repo = env!("CARGO_MANIFEST_DIR");
    let status = Command::new("bash")
        .arg("-euc")
        .arg(format!("source '{repo}/scripts/lib.sh'\n{script}"))
        .current_dir(dir)
        .env("PG_MAX_SLOT_WAL_KEEP_SIZE", "1MB")
        .env("PG_FSYNC", "off")
        .status()
        .expect("run bash");
    assert!(status.success(), "script failed: {script}");
}

impl SmallWalCluster {
    fn start() -> Self {
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
        bash(
            &format!(
                "start_local_cluster \"$PWD/data\" {port} postgres {PASSWORD} \"$PWD/pg.log\""
            ),
            dir.path(),
        );
        Self { dir, port }
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }
}

impl Drop for SmallWalCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        bash(
            &format!("stop_local_cluster '{}'", data.display()),
            self.dir.path(),
        );
    }
}

#[tokio::test]
async fn an_invalidated_slot_is_an_error_or_a_full_resync() {
    let cluster = SmallWalCluster::start();
    let mut source = Source::at_url(&cluster.url(), "pub_lost").await;
    source
        .exec(
            "create table kept (id int primary key, v text); \
               insert into kept select g, 'v' from generate_series(1, 100) g; \
               create publication pub_lost for table kept; \
               create table noise (payload text)",
        )
        .await;
    let (dest, running) = source.start_ready(1).await;
    running.stop().await;

    // While the pipeline is stopped, far more WAL than the slot may hold is written.
    source
        .exec("update kept set v = 'while stopped' where id <= 10")
        .await;
    for _ in 0..6 {
        source
            .exec(
                "insert into noise select repeat('w', 1000) from generate_series(1, 2000); \
                   select pg_switch_wal();",
            )
            .await;
    }
    source.exec("checkpoint").await;

    let error = tokio::time::timeout(
        Duration::from_secs(30),
        engine::run(
            &source.config,
            dest.clone(),
            Shutdown::never(),
            RunOptions::default(),
        ),
    )
    .await
    .expect("an invalidated slot stops the pipeline")
    .expect_err("an invalidated slot is an error");
    assert!(
        matches!(error, engine::Error::SlotInvalidated { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("invalidated_slot_behavior"),
        "{error}"
    );

    source.config.invalidated_slot_behavior = InvalidatedSlotBehavior::Recreate;
    let running = source.start(dest.clone());
    wait_equal(&source, &dest, &public("kept"), &["id", "v"]).await;
    source
        .exec("insert into kept values (1000, 'after resync')")
        .await;
    wait_equal(&source, &dest, &public("kept"), &["id", "v"]).await;
    running.stop().await;
    source.drop().await;
}
