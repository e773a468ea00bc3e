//! The `nats` destination under failures ([`crate::stream_crashes`]), with a real
//! `nats-server`: ten SIGKILLs of the replicator, then the server taken down for [`OUTAGE`] and
//! brought back on the same port with its data.

use std::time::Duration;

use crate::stream_crashes::ten_sigkills_and_an_outage;
use crate::targets::Target;

/// How long the server stays down: a minute, as an outage a deployment should ride out.
const OUTAGE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_keeps_each_change_once_across_ten_sigkills_and_a_server_outage() {
    let Some(mut target) = Target::nats("crash") else {
        return;
    };
    ten_sigkills_and_an_outage(
        "dest_nats_crash",
        &mut target,
        OUTAGE,
        async |target, length| {
            let Target::Nats { server, .. } = target else {
                unreachable!("a nats target")
            };
            server.run("stop-keep");
            tokio::time::sleep(length).await;
            server.run("start");
        },
    )
    .await;
    target.drop().await;
}
