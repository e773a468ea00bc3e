//! A message-stream destination under failures, with the real binary and a real server: ten
//! SIGKILLs of the replicator at random moments while changes are committed, then the server
//! out of reach for a while (how is the target's business: taken down, or frozen) and back.
//! Afterwards a consumer finds no message id twice, every change of `counted` exactly once (no
//! gap, no duplicate), and every table equal to the source. Used by `nats_crashes` and
//! `kafka_crashes`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::end_to_end::{Scenario, counted_changes};
use crate::targets::Target;

/// Runs the scenario in database `db` against `target`; `outage` takes the server away for
/// `length` and brings it back.
pub async fn ten_sigkills_and_an_outage(
    db: &str,
    target: &mut Target,
    length: Duration,
    outage: impl AsyncFnOnce(&Target, Duration),
) {
    let settle = target.convergence_limit().max(Duration::from_secs(180));
    let limit = Duration::from_secs(240) + settle + length;
    let test = async {
        let mut scenario = Scenario::create(db).await;
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
        outage(target, length).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let counted = writer.await.expect("the writer");
        assert!(counted > 30, "only {counted} rounds of changes were made");

        scenario
            .wait_for("the messages to rebuild into the source", settle, || {
                target.differences(&scenario)
            })
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
            "each change of `counted` in the messages once across ten SIGKILLs and an outage"
        );
        scenario.drop().await;
    };
    tokio::time::timeout(limit, test)
        .await
        .unwrap_or_else(|_| panic!("the crash scenario did not finish within {limit:?}"));
}
