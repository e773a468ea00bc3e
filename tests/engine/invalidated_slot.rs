//! An apply slot invalidated by `max_slot_wal_keep_size` (on a private cluster with a 1 MB
//! limit): a clear error by default, a full resync with `invalidated_slot_behavior: recreate`.

use std::time::Duration;

use etl::config::InvalidatedSlotBehavior;
use etl::engine::{self, RunOptions};
use etl::shutdown::Shutdown;

use crate::helpers::{Source, public, wait_equal};
use crate::private_cluster::PrivateCluster;

#[tokio::test]
async fn an_invalidated_slot_is_an_error_or_a_full_resync() {
    let cluster = PrivateCluster::start(Some("1MB"));
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
            &source.config.source().unwrap(),
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
