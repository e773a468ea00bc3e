//! How an error and its causes are rendered on one line (`starting: connecting: refused`), for
//! logs, CLI messages and the reasons stored for errored tables and failed replicators. The one
//! place that walks a `source()` chain, so every part of the program shows errors alike.

use std::error::Error;

/// `error: cause: cause` on one line. A cause whose text the line already ends with is left
/// out (`#[error(transparent)]` wrappers and messages that embed their source repeat it).
pub fn error_chain(error: &dyn Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the slot")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error(transparent)]
    struct Inner(#[from] std::io::Error);

    #[test]
    fn causes_follow_on_one_line_without_repeats() {
        let error = Outer(Inner(std::io::Error::other("connection refused")));
        assert_eq!(error_chain(&error), "reading the slot: connection refused");
    }
}
