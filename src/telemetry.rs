//! The tracing subscriber: `RUST_LOG` filtering (default `info`), human-readable lines in `dev`,
//! JSON lines in `staging` and `prod`, always on stderr so stdout stays free for data
//! (`etl config show`, the `jsonl` destination).

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber. Safe to call once per process; later calls are ignored.
pub fn init(format: LogFormat) {
    // kube logs every failed request at ERROR before returning that same error, which `k8s`
    // reports once, with context; keep it quiet unless RUST_LOG asks for it.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,kube_client::client::builder=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
