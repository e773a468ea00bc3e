//! `etl replicate [--once]`: reads the `pipeline` and `destination` sections, builds the
//! destination, and runs the engine until SIGTERM/SIGINT (or, with `--once`, until caught up).
//!
//! Before the engine connects, the source's address is resolved and tried once, so a refused or
//! unreachable source is logged within seconds with the real cause (and, with `--once`, ends the
//! run with exit code 1). A replicator started by the control plane also gets a
//! `network_policy` section: then the source and a `postgres` destination must pass it, and the
//! engine connects to the address that was checked, not to a name that could be re-pointed.

use std::time::Duration;

use anyhow::Context as _;

use crate::config::{
    Config, DestinationConfig, Environment, PgConnectionConfig, PipelineConfig, TlsMode,
};
use crate::destinations::AnyDestination;
use crate::engine::metrics::{self, Metrics};
use crate::engine::progress::CopyProgress;
use crate::engine::{self, Observer, RunOptions};
use crate::netpolicy::{NetworkPolicy, NetworkPolicyConfig};
use crate::shutdown;

/// How long the start-up probe of the source waits for a TCP connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a signalled pipeline may take to flush and acknowledge before the process exits
/// anyway (well below Kubernetes' default 300 s grace period).
const SHUTDOWN_BOUND: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs the configured pipeline. Configuration problems are [`crate::config::ConfigError`]s
/// (exit code 2); everything else is a runtime failure.
pub async fn run(config: Config, once: bool) -> anyhow::Result<()> {
    let mut pipeline: PipelineConfig = config.section("pipeline")?;
    config.checked(
        "pipeline",
        pipeline.validate().and_then(|()| pipeline.source()),
    )?;
    let mut destination_config: DestinationConfig = config.section("destination")?;
    config.checked("destination", destination_config.validate())?;
    if let Some(policy) = config.optional_section::<NetworkPolicyConfig>("network_policy")? {
        let policy = NetworkPolicy::new(&policy, config.environment() == Environment::Dev, &[]);
        enforce(
            &config,
            &policy,
            "pipeline.pg_connection",
            &mut pipeline.pg_connection,
        )
        .await?;
        if let DestinationConfig::Postgres(postgres) = &mut destination_config {
            enforce(
                &config,
                &policy,
                "destination.postgres",
                &mut postgres.connection,
            )
            .await?;
        }
    }
    // Resolved after the policy pinned the host to the address it checked.
    let source = config.checked("pipeline", pipeline.source())?;
    probe_source(&pipeline.pg_connection, once).await?;
    // Debezium's `source.db`: the source database unless configured.
    match &mut destination_config {
        DestinationConfig::Nats(nats) if nats.database.is_none() => {
            nats.database = Some(source.name.clone());
        }
        DestinationConfig::Kafka(kafka) if kafka.database.is_none() => {
            kafka.database = Some(source.name.clone());
        }
        _ => {}
    }
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
    let state_source = source.clone();
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
    if once && !stop.is_triggered() {
        return errored_tables(&state_source, pipeline.id).await;
    }
    Ok(())
}

/// After `--once`: [`crate::exit::TablesErrored`] (exit code 4) naming the tables that ended
/// `errored`, if any.
async fn errored_tables(
    source: &crate::config::PgConnection,
    pipeline_id: u64,
) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(source.sqlx_options())
        .await
        .with_context(|| format!("cannot read the table states from {}", source.describe()))?;
    let errored = crate::engine::state::postgres::PgStateStore::new(pool.clone(), pipeline_id)
        .errored_tables()
        .await
        .context("cannot read the table states")?;
    pool.close().await;
    if errored.is_empty() {
        return Ok(());
    }
    Err(crate::exit::TablesErrored(
        errored
            .into_iter()
            .map(|(_, name, reason)| format!("{name}: {reason}"))
            .collect(),
    )
    .into())
}

/// Checks a connection against the network policy and pins it to the checked address. The
/// error names the key and the address as configured; which rule refused it goes to the log.
async fn enforce(
    config: &Config,
    policy: &NetworkPolicy,
    key: &str,
    connection: &mut PgConnectionConfig,
) -> anyhow::Result<()> {
    let resolved = connection
        .resolve()
        .map_err(|e| config.invalid(key, e.to_string()))?;
    match policy.check(&resolved.host, resolved.port).await {
        Ok(checked) => {
            if let Some(host) = checked.pinned_host(resolved.tls.mode == TlsMode::VerifyFull) {
                connection.host = Some(host);
            }
            Ok(())
        }
        Err(refusal) => {
            tracing::error!(key, reason = %refusal, "the network policy refuses this address");
            Err(config
                .invalid(
                    key,
                    format!(
                        "{}:{} is not allowed by the network policy",
                        resolved.host, resolved.port
                    ),
                )
                .into())
        }
    }
}

/// Tries a TCP (or Unix-socket) connection to the source once, so a refused or unreachable source is reported
/// within seconds with its cause; with `once` that ends the run, otherwise the engine keeps
/// retrying.
async fn probe_source(connection: &PgConnectionConfig, once: bool) -> anyhow::Result<()> {
    let Ok(resolved) = connection.resolve() else {
        return Ok(());
    };
    let socket = resolved.socket_path();
    let address = socket
        .clone()
        .unwrap_or_else(|| format!("{}:{}", resolved.host, resolved.port));
    let attempt = async {
        match &socket {
            #[cfg(unix)]
            Some(path) => tokio::net::UnixStream::connect(path).await.map(drop),
            _ => tokio::net::TcpStream::connect((resolved.host.as_str(), resolved.port))
                .await
                .map(drop),
        }
    };
    let failure = match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
    };
    if once {
        anyhow::bail!("cannot reach the source {address}: {failure}");
    }
    tracing::error!(source = %address, reason = %failure,
        "cannot reach the source; retrying until it answers");
    Ok(())
}
