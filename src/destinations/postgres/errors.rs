//! sqlx failures in the destination's terms: lost connections, restarts, timeouts, lock
//! conflicts and too many connections are transient; bad credentials and a full disk are fatal;
//! the rest (a value the column rejects, a failed DDL statement) concern the table being written.

use crate::base::schema::TableSchema;
use crate::engine::destination::Error;

enum Class {
    Transient,
    Fatal,
    Statement,
}

fn classify(error: &sqlx::Error) -> Class {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed
        | sqlx::Error::Protocol(_) => Class::Transient,
        sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => Class::Fatal,
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                c if c.starts_with("08") => Class::Transient,
                "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "55P03" | "57014" => {
                    Class::Transient
                }
                c if c.starts_with("28") => Class::Fatal,
                "53100" | "3D000" => Class::Fatal,
                _ => Class::Statement,
            }
        }
        _ => Class::Statement,
    }
}

/// An error while writing `table` (`doing`: "upserting into", "creating", …).
pub fn table_error(schema: &TableSchema, doing: &str, error: sqlx::Error) -> Error {
    match classify(&error) {
        Class::Transient => Error::transient(format!("postgres {doing} {}", schema.name), error),
        Class::Fatal => Error::fatal(format!("postgres {doing} {}", schema.name), error),
        Class::Statement => Error::table(schema, format!("postgres {doing}: {error}")),
    }
}

/// An error that concerns no single table (connecting, metadata, committing).
pub fn server_error(doing: &str, error: sqlx::Error) -> Error {
    match classify(&error) {
        Class::Transient => Error::transient(format!("postgres destination: {doing}"), error),
        _ => Error::fatal(format!("postgres destination: {doing}"), error),
    }
}
