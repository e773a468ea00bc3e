//! Work the control plane does on a tenant's *source* database (not its own `app` database):
//! connecting with the decrypted settings, listing tables, managing publications, checking
//! replication prerequisites, and reading or changing the replicator's `etl` state of a
//! pipeline (status, rollback, cleanup on delete).
//!
//! Errors the source reports (a missing table, a refused login) are the caller's to fix and
//! come back as 422 with the server's message; they never carry our SQL or a secret. A source
//! the network policy refuses, or that does not answer, gets one generic message.

pub mod checks;
pub mod publications;
pub mod state;

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::api::error::{ApiError, pg_code};
use crate::api::reach;
use crate::netpolicy::{NetworkPolicy, Refusal};

/// How long connecting to a source may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to a source with its decrypted (plain) settings, if the network policy allows its
/// address: a small pool for one request. A refused address and one that does not answer get
/// the same message; the details go to the log.
pub async fn connect(plain: &Value, policy: &NetworkPolicy) -> Result<PgPool, ApiError> {
    let target = reach::source_target(plain)?;
    let checked = reach::check(policy, &target)
        .await
        .map_err(|_| unreachable_source())?;
    let connection = reach::pinned(target.connection, &checked);
    let options = connection.sqlx_options();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options);
    let failure = match tokio::time::timeout(CONNECT_TIMEOUT, pool).await {
        Ok(Ok(pool)) => return Ok(pool),
        // The server answered and refused (a login, a database): its message is the tenant's
        // to act on.
        Ok(Err(e @ sqlx::Error::Database(_))) => {
            return Err(ApiError::Source(format!(
                "the source refused the connection: {}",
                describe(&e)
            )));
        }
        Ok(Err(e)) => describe(&e),
        Err(_) => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
    };
    tracing::warn!(source = %connection.describe(), reason = %failure, "cannot connect to a tenant's source");
    Err(unreachable_source())
}

/// What a tenant learns about a source that is not allowed or does not answer.
fn unreachable_source() -> ApiError {
    ApiError::Source(format!("the source {}", Refusal::TENANT_MESSAGE))
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

pub use crate::base::error_chain as chain;

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
