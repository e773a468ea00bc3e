//! The `nats` destination under failures, with the real binary and a real `nats-server`: ten
//! SIGKILLs of the replicator at random moments while changes are committed, then the server
//! taken down for [`OUTAGE`] and brought back on the same port with its data. Afterwards a
//! consumer reading the stream finds no message id twice, every change of `counted` exactly
//! once (no gap, no duplicate), and every table equal to the source.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::end_to_end::{Scenario, counted_changes};
use crate::targets::Target;

/// How long the server stays down.
const OUTAGE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_keeps_each_change_once_across_ten_sigkills_and_a_server_outage() {
    let Some(mut target) = Target::nats("crash") else {
        return;
    };
    let test = async {
        let mut scenario = Scenario::create("dest_nats_crash").await;
        let destination = target.destination_yaml(&scenario).await;
        scenario.configure(&destination);
        scenario.start();
        scenario.wait_ready().await;

        // Rounds of `counted` changes (an insert, an update and a delete on distinct keys),
        // committed while the replicator is killed and restarted.
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let pool = scenario.pool.clone();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut rounds = 0;
                // Keys stay below 1500, where `counted_changes` finds the copied rows it updates.
                while !stop.load(Ordering::Relaxed) && rounds < 1400 {
                    rounds += counted_changes(&pool, rounds, 3).await;
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                rounds
            })
        };
        for _ in 0..10 {
            let pause = rand::random_range(300..1500);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            scenario.kill().await;
            scenario.start();
        }
        let Target::Nats { server, .. } = &target else {
            unreachable!("a nats target")
        };
        server.stop_keep();
        tokio::time::sleep(OUTAGE).await;
        server.restart();
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let counted = writer.await.expect("the writer");
        assert!(counted > 30, "only {counted} rounds of changes were made");

        scenario
            .wait_for(
                "the stream to rebuild into the source",
                Duration::from_secs(180),
                || target.differences(&scenario),
            )
            .await;
        scenario.stop().await;
        let counts = target.audit_counts(&scenario).await;
        assert_eq!(
            counts,
            Some(vec![
                ("D".to_owned(), counted),
                ("I".to_owned(), counted),
                ("U".to_owned(), counted)
            ]),
            "each change of `counted` in the stream once across ten SIGKILLs and an outage"
        );
        scenario.drop().await;
    };
    tokio::time::timeout(Duration::from_secs(480), test)
        .await
        .expect("the crash scenario finishes within 480 s");
    target.drop().await;
}
