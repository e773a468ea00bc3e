//! The tracing subscriber: `RUST_LOG` filtering (default [`DEFAULT_FILTER`]), human-readable lines in `dev`,
//! JSON lines in `staging` and `prod`, always on stderr so stdout stays free for data
//! (`etl config show`, the `jsonl` destination). Colours only when stderr is a terminal and
//! `NO_COLOR` is unset, so a log file or a pipe never holds escape codes.

use std::ffi::OsStr;
use std::io::IsTerminal as _;

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
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Whether log lines may carry ANSI colour codes: only on a terminal, and not when `NO_COLOR`
/// is set to anything but the empty string (<https://no-color.org>).
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let set = Some(OsStr::new("1"));
        let empty = Some(OsStr::new(""));
        for (terminal, no_color, expected) in [
            (true, None, true),
            (true, empty, true),
            (true, set, false),
            (false, None, false),
            (false, set, false),
        ] {
            assert_eq!(
                use_colour(terminal, no_color),
                expected,
                "terminal: {terminal}, NO_COLOR: {no_color:?}"
            );
        }
    }
}
