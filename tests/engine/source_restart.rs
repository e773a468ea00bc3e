//! The source server restarted (fast shutdown) while the pipeline streams: the pipeline
//! reconnects with backoff, resumes from its durable position and loses nothing.

use std::sync::Arc;

use etl::destinations::memory::MemoryDestination;

use crate::helpers::{Source, public, wait_equal};
use crate::private_cluster::PrivateCluster;

// Multi-threaded: the restart blocks this thread while the pipeline must keep answering its
// walsender (a fast shutdown waits until every walsender's client confirmed the end of WAL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_restart_mid_stream_loses_nothing() {
    let cluster = PrivateCluster::start(None);
    let source = Source::at_url(&cluster.url(), "pub_src_restart").await;
    source
        .exec(
            "create table r (id int primary key, v text); \
               insert into r select g, 'copied' from generate_series(1, 1000) g; \
               create publication pub_src_restart for table r",
        )
        .await;
    let dest = Arc::new(MemoryDestination::new());
    let running = source.start(dest.clone());
    source.wait_ready(1).await;
    source
        .exec("insert into r select g, 'before' from generate_series(1001, 2000) g")
        .await;

    // Changes committed while etl may still be reading them, then the server goes away.
    cluster.restart();
    source
        .exec(
            "insert into r select g, 'after' from generate_series(2001, 3000) g; \
               update r set v = 'updated' where id <= 10; \
               delete from r where id between 11 and 20",
        )
        .await;
    wait_equal(&source, &dest, &public("r"), &["id", "v"]).await;
    running.stop().await;
    source.drop().await;
}
