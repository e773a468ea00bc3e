//! The `kafka` destination under failures ([`crate::stream_crashes`]), with a real
//! Kafka-protocol broker (`tansu`): ten SIGKILLs of the replicator, then the broker frozen
//! (SIGSTOP: every request hangs, as in a network partition) for [`OUTAGE`] while changes keep
//! coming, and let run again. The test broker keeps its data in memory, so the outage is a
//! freeze rather than a restart. The consumer reads with `isolation.level=read_committed`.

use std::time::Duration;

use crate::stream_crashes::ten_sigkills_and_an_outage;
use crate::targets::Target;

/// How long the broker stays frozen.
const OUTAGE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_keeps_each_change_once_across_ten_sigkills_and_a_minute_long_outage() {
    let Some(mut target) = Target::kafka("crash") else {
        return;
    };
    ten_sigkills_and_an_outage(
        "dest_kafka_crash",
        &mut target,
        OUTAGE,
        async |target, length| {
            let Target::Kafka { server, .. } = target else {
                unreachable!("a kafka target")
            };
            server.run("pause");
            tokio::time::sleep(length).await;
            server.run("resume");
        },
    )
    .await;
    target.drop().await;
}
