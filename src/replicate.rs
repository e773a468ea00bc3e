//! `etl replicate [--once]`: reads the `pipeline` and `destination` sections, builds the
//! destination, and runs the engine until SIGTERM/SIGINT (or, with `--once`, until caught up).

use anyhow::Context as _;

use crate::config::{Config, DestinationConfig, PipelineConfig};
use crate::destinations::AnyDestination;
use crate::engine::metrics::{self, Metrics};
use crate::engine::progress::CopyProgress;
use crate::engine::{self, Observer, RunOptions};
use crate::shutdown;

/// How long a signalled pipeline may take to flush and acknowledge before the process exits
/// anyway (well below Kubernetes' default 300 s grace period).
const SHUTDOWN_BOUND: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs the configured pipeline. Configuration problems are [`crate::config::ConfigError`]s
/// (exit code 2); everything else is a runtime failure.
pub async fn run(config: Config, once: bool) -> anyhow::Result<()> {
    let pipeline: PipelineConfig = config.section("pipeline")?;
    let source = config.checked(
        "pipeline",
        pipeline.validate().and_then(|()| pipeline.source()),
    )?;
    let destination_config: DestinationConfig = config.section("destination")?;
    config.checked("destination", destination_config.validate())?;
    let destination = AnyDestination::from_config(&destination_config)
        .await
        .context("cannot open the destination")?;

    let (trigger, shutdown) = shutdown::channel();
    shutdown::on_signals(trigger).context("cannot install the signal handlers")?;
    tracing::info!(pipeline_id = pipeline.id, publication = %pipeline.publication_name,
        destination = destination_config.kind(), once, "replicator starting");
    let metrics = Metrics::new();
    if let Some(addr) = pipeline.metrics_address {
        // Bind now, so a taken port is reported before replication starts.
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot serve metrics on {addr} (pipeline.metrics_address)")
        })?;
        // Port 0 (the dev default) picks a free port: the log line says which.
        let addr = listener.local_addr().unwrap_or(addr);
        let mut stop = shutdown.clone();
        let served = metrics.clone();
        tokio::spawn(async move {
            let stopped = async move { stop.wait().await };
            if let Err(error) = metrics::serve_on(served, listener, stopped).await {
                tracing::error!(error = %error, "metrics endpoint failed");
            }
        });
        tracing::info!(%addr, "serving metrics");
    }
    let options = RunOptions {
        once,
        observer: Observer::new(metrics, CopyProgress::new()),
    };
    // On a worker thread, like the tasks it talks to (polled by `block_on` on the main thread,
    // every read of the stream would be a cross-thread wake-up).
    let mut run = tokio::spawn({
        let pipeline = pipeline.clone();
        let shutdown = shutdown.clone();
        async move { engine::run(&pipeline, &source, destination, shutdown, options).await }
    });
    let mut stop = shutdown;
    let joined = tokio::select! {
        joined = &mut run => joined,
        () = stop.wait() => match tokio::time::timeout(SHUTDOWN_BOUND, &mut run).await {
            Ok(joined) => joined,
            Err(_) => {
                // Nothing unacknowledged is lost: the next start replays from the last ack.
                tracing::warn!(seconds = SHUTDOWN_BOUND.as_secs(),
                    "the pipeline did not stop in time; exiting without the final flush");
                Ok(Ok(()))
            }
        },
    };
    joined
        .context("the pipeline task failed")?
        .with_context(|| format!("pipeline {} stopped", pipeline.id))?;
    tracing::info!("replicator stopped");
    Ok(())
}
