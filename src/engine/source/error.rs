//! The error type of the replication source, and the transient/fatal classification the
//! pipeline's retry logic matches on.

use super::pgoutput::DecodeError;
use crate::base::lsn::Lsn;

/// An `ErrorResponse` from the server, with the fields a person needs to act on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerError {
    /// `ERROR`, `FATAL` or `PANIC` (the non-localized severity when the server sends it).
    pub severity: String,
    /// The SQLSTATE code, e.g. `28P01` for a wrong password.
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (SQLSTATE {})",
            self.severity, self.message, self.code
        )?;
        if let Some(detail) = &self.detail {
            write!(f, "; detail: {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; hint: {hint}")?;
        }
        Ok(())
    }
}

impl ServerError {
    /// Connection exceptions (class 08), admin/crash shutdown, "cannot connect now" (the server is
    /// starting up or shutting down) and "too many connections" are worth retrying; so is the
    /// server's internal refusal to export a new slot's snapshot because its walsender already
    /// holds an xmin (a race inside `CREATE_REPLICATION_SLOT … USE_SNAPSHOT`, seen under load on
    /// PostgreSQL 15: a new session succeeds).
    pub fn is_transient(&self) -> bool {
        self.code.starts_with("08")
            || matches!(self.code.as_str(), "57P01" | "57P02" | "57P03" | "53300")
            || (self.code == "XX000"
                && self
                    .message
                    .starts_with("cannot build an initial slot snapshot when MyProc->xmin"))
    }
}

/// Why a source operation failed. The `Display` form names the server (`user@host:port/db`),
/// and the slot, query or file involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("I/O error on the connection to {target}: {source}")]
    Io {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the server {target} closed the connection unexpectedly")]
    Closed { target: String },
    #[error("timed out after {seconds} s while {action} ({target})")]
    Timeout {
        target: String,
        action: &'static str,
        seconds: u64,
    },
    #[error(
        "the server {target} does not accept TLS connections, but tls.mode is `{mode}` \
         (use `prefer` or `disable` to allow a plain connection)"
    )]
    TlsRefused { target: String, mode: &'static str },
    #[error("TLS handshake with {target} failed (tls.mode `{mode}`): {source}")]
    TlsHandshake {
        target: String,
        mode: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid TLS setting for {target}: {message}")]
    TlsConfig { target: String, message: String },
    #[error("authentication as `{user}` at {target} failed: {message}")]
    Auth {
        target: String,
        user: String,
        message: String,
    },
    #[error("{action} on {target} failed: {error}")]
    Server {
        target: String,
        /// What we asked for, e.g. the query or `creating slot "etl_1"`.
        action: String,
        error: Box<ServerError>,
    },
    #[error("protocol violation from {target}: {message}")]
    Protocol { target: String, message: String },
    #[error("invalid replication slot name `{0}`: use 1-63 characters a-z, 0-9 and _")]
    InvalidSlotName(String),
    #[error("invalid publication name `{0}`: must be non-empty and contain no NUL byte")]
    InvalidPublicationName(String),
    #[error("cannot decode pgoutput message of WAL record at {lsn} from {target}: {source}")]
    Decode {
        target: String,
        lsn: Lsn,
        #[source]
        source: DecodeError,
    },
    #[error("the session to {target} is unusable: {reason}")]
    Unusable { target: String, reason: String },
}

impl Error {
    /// True when retrying the same operation later may succeed: the connection was lost, reset
    /// or timed out, or the server is shutting down or starting up. Authentication failures,
    /// SQL errors, missing slots/publications and protocol violations are fatal.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Io { .. } | Error::Closed { .. } => true,
            Error::Timeout { .. } | Error::Unusable { .. } => true,
            Error::Server { error, .. } => error.is_transient(),
            Error::TlsHandshake { source, .. } => is_io_transient(source),
            _ => false,
        }
    }

    /// The server's error, when the failure is an `ErrorResponse`.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Error::Server { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The SQLSTATE, when the failure is an `ErrorResponse`.
    pub fn code(&self) -> Option<&str> {
        self.server_error().map(|e| e.code.as_str())
    }
}

fn is_io_transient(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionReset
            | ConnectionAborted
            | ConnectionRefused
            | BrokenPipe
            | TimedOut
            | UnexpectedEof
            | NotConnected
            | Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> Error {
        Error::Server {
            target: "u@h:1/d".into(),
            action: "query".into(),
            error: Box::new(ServerError {
                severity: "FATAL".into(),
                code: code.into(),
                message: "m".into(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn connection_and_shutdown_errors_are_transient() {
        for code in ["08006", "08P01", "57P01", "57P02", "57P03"] {
            assert!(server(code).is_transient(), "{code}");
        }
        assert!(Error::Closed { target: "x".into() }.is_transient());
    }

    #[test]
    fn the_slot_snapshot_race_is_transient_other_internal_errors_are_not() {
        let with_message = |message: &str| {
            let mut err = server("XX000");
            if let Error::Server { error, .. } = &mut err {
                error.message = message.into();
            }
            err
        };
        let race = "cannot build an initial slot snapshot when MyProc->xmin already is valid";
        assert!(with_message(race).is_transient());
        assert!(!with_message("could not open file").is_transient());
    }

    #[test]
    fn auth_and_sql_errors_are_fatal() {
        for code in ["28P01", "42601", "42704", "55000"] {
            assert!(!server(code).is_transient(), "{code}");
        }
        assert!(!Error::InvalidSlotName("X".into()).is_transient());
    }

    #[test]
    fn display_names_the_target_and_the_server_fields() {
        let mut err = server("28P01");
        if let Error::Server { error, .. } = &mut err {
            error.detail = Some("d".into());
            error.hint = Some("h".into());
        }
        let text = err.to_string();
        for part in ["u@h:1/d", "28P01", "detail: d", "hint: h"] {
            assert!(text.contains(part), "{text}");
        }
    }
}
