//! The tracing subscriber: `RUST_LOG` filtering (default [`DEFAULT_FILTER`]), human-readable lines in `dev`,
//! JSON lines in `staging` and `prod`, always on stderr so stdout stays free for data
//! (`etl config show`, the `jsonl` destination).

use tracing_subscriber::EnvFilter;

/// `RUST_LOG` when unset: our info lines, without sqlx's per-statement notices, and without
/// kube's own ERROR line for each failed request (`k8s` reports that error once, with context).
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,kube_client::client::builder=off";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber. Safe to call once per process; later calls are ignored.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
