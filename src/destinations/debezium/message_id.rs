//! The id of each message a stream destination writes, derived from the change's position (or,
//! for the initial copy, from the copy's token and the row's number), so a consumer can tell a
//! message it has seen from a new one and the destination can tell how far a table got.

use crate::base::lsn::Lsn;
use crate::base::schema::TableId;

/// `{table oid}:{commit lsn, 16 hex digits}:{ordinal}:{part}:{parts}` (part 1-based).
pub fn change_id(table: TableId, commit_lsn: Lsn, ordinal: u32, part: u32, parts: u32) -> String {
    format!("{}:{:016X}:{ordinal}:{part}:{parts}", table.0, commit_lsn.0)
}

/// `{table oid}:copy:{copy token}:{row number}`; row 0 is the copy's opening truncate.
pub fn copy_id(table: TableId, token: u64, row: u64) -> String {
    format!("{}:copy:{token:016x}:{row}", table.0)
}
