//! SQLite failures in the destination's terms: a locked file is transient, a full disk or a
//! corrupt or unwritable file is fatal, anything else concerns the table being written.

use rusqlite::ErrorCode;

use crate::base::schema::TableSchema;
use crate::engine::destination::Error;

use super::metadata::MetadataError;

/// Whether an SQLite error is about the file as a whole rather than one table.
fn file_level(error: &rusqlite::Error) -> Option<bool> {
    let rusqlite::Error::SqliteFailure(failure, _) = error else {
        return None;
    };
    Some(match failure.code {
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => false,
        ErrorCode::DiskFull
        | ErrorCode::SystemIoFailure
        | ErrorCode::DatabaseCorrupt
        | ErrorCode::NotADatabase
        | ErrorCode::CannotOpen
        | ErrorCode::ReadOnly
        | ErrorCode::PermissionDenied
        | ErrorCode::OutOfMemory
        | ErrorCode::FileLockingProtocolFailed => true,
        _ => return None,
    })
}

/// An error while writing `table`.
pub fn table_error(schema: &TableSchema, doing: &str, error: rusqlite::Error) -> Error {
    match file_level(&error) {
        Some(false) => Error::transient(
            format!("sqlite file busy while {doing} {}", schema.name),
            error,
        ),
        Some(true) => Error::fatal(
            format!("sqlite file failed while {doing} {}", schema.name),
            error,
        ),
        None => Error::table(schema, format!("sqlite {doing}: {error}")),
    }
}

/// An error that concerns no single table.
pub fn file_error(doing: &str, error: rusqlite::Error) -> Error {
    match file_level(&error) {
        Some(false) => Error::transient(format!("sqlite file busy while {doing}"), error),
        _ => Error::fatal(format!("sqlite {doing} failed"), error),
    }
}

pub fn metadata_error(error: MetadataError) -> Error {
    match error {
        MetadataError::Sqlite(e) => file_error("writing etl metadata", e),
        other => Error::fatal("sqlite metadata", other),
    }
}
