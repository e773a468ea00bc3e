//! pgoutput messages built by hand for the unit tests of the router and the apply worker's
//! core (no server needed).

use bytes::Bytes;

use super::source::{PgOutputMessage, RelationColumn, ReplicationMessage, TupleData};
use crate::base::lsn::Lsn;

pub fn begin(final_lsn: u64, xid: u32) -> PgOutputMessage {
    PgOutputMessage::Begin {
        final_lsn: Lsn(final_lsn),
        commit_time: 0,
        xid,
    }
}

pub fn commit(commit_lsn: u64, end_lsn: u64) -> PgOutputMessage {
    PgOutputMessage::Commit {
        flags: 0,
        commit_lsn: Lsn(commit_lsn),
        end_lsn: Lsn(end_lsn),
        commit_time: 0,
    }
}

/// A relation `public.<name>` with text columns; `key` columns are its replica identity.
pub fn relation(id: u32, name: &str, columns: &[(&str, bool)]) -> PgOutputMessage {
    PgOutputMessage::Relation {
        xid: None,
        id,
        namespace: "public".into(),
        name: name.into(),
        replica_identity: b'd',
        columns: columns
            .iter()
            .map(|(name, key)| RelationColumn {
                flags: u8::from(*key),
                name: (*name).into(),
                type_oid: 25,
                type_modifier: -1,
            })
            .collect(),
    }
}

pub fn insert(relation: u32, values: &[&str]) -> PgOutputMessage {
    PgOutputMessage::Insert {
        xid: None,
        relation,
        new: values
            .iter()
            .map(|v| TupleData::Text(Bytes::copy_from_slice(v.as_bytes())))
            .collect(),
    }
}

pub fn truncate(relations: &[u32]) -> PgOutputMessage {
    PgOutputMessage::Truncate {
        xid: None,
        options: 0,
        relations: relations.to_vec(),
    }
}

/// `message` as the stream delivers it, at `wal_start`.
pub fn at(wal_start: u64, message: PgOutputMessage) -> ReplicationMessage {
    ReplicationMessage::XLogData {
        wal_start: Lsn(wal_start),
        wal_end: Lsn(wal_start),
        server_time: 0,
        message,
    }
}

pub fn keepalive(wal_end: u64) -> ReplicationMessage {
    ReplicationMessage::Keepalive {
        wal_end: Lsn(wal_end),
        server_time: 0,
        reply_requested: false,
    }
}
