//! Work the control plane does on a tenant's *source* database (not its own `app` database):
//! connecting with the decrypted settings, listing tables, managing publications, checking
//! replication prerequisites, and reading or changing the replicator's `etl` state of a
//! pipeline (status, rollback, cleanup on delete).
//!
//! Errors the source reports (a missing table, a refused login) are the caller's to fix and
//! come back as 422 with the server's message; they never carry our SQL or a secret.

pub mod checks;
pub mod publications;
pub mod state;

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::api::error::{ApiError, pg_code};
use crate::config::PgConnectionConfig;

/// How long connecting to a source may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to a source with its decrypted (plain) settings: a small pool for one request.
pub async fn connect(plain: &Value) -> Result<PgPool, ApiError> {
    let config: PgConnectionConfig = serde_json::from_value(plain.clone())
        .map_err(|e| ApiError::Internal(format!("stored source config: {e}")))?;
    let connection = config
        .resolve()
        .map_err(|e| ApiError::Invalid(format!("source config: {e}")))?;
    let options = connection.sqlx_options();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options);
    match tokio::time::timeout(CONNECT_TIMEOUT, pool).await {
        Ok(Ok(pool)) => Ok(pool),
        Ok(Err(e)) => Err(ApiError::Source(format!(
            "cannot connect to the source {}: {}",
            connection.describe(),
            describe(&e)
        ))),
        Err(_) => Err(ApiError::Source(format!(
            "cannot connect to the source {}: no answer within {} s",
            connection.describe(),
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// A source-side failure as the client sees it: the server's message, never our SQL.
pub fn source_error(context: &str, error: sqlx::Error) -> ApiError {
    ApiError::Source(format!("{context}: {}", describe(&error)))
}

/// The server's own message for database errors; a short description otherwise.
pub fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => match pg_code(error) {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        sqlx::Error::Io(e) => e.to_string(),
        sqlx::Error::Tls(e) => format!("TLS: {e}"),
        sqlx::Error::PoolTimedOut => "timed out".into(),
        other => other.to_string(),
    }
}

/// An error and its causes on one line (`reading x: connection refused`).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        match e.downcast_ref::<sqlx::Error>() {
            Some(sql) => text.push_str(&format!(": {}", describe(sql))),
            None => text.push_str(&format!(": {e}")),
        }
        cause = e.source();
    }
    text
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Checks an identifier a client gave (Postgres refuses NUL; 63 bytes is its limit).
pub fn check_ident(what: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        return Err(ApiError::Invalid(format!(
            "{what} `{}` must be 1 to 63 bytes without NUL",
            name.replace('\0', "\\0")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_embedded_quotes_doubled() {
        assert_eq!(quote_ident("Orders"), "\"Orders\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
