//! The pgoutput encoder: a message back into the wire format, the inverse of `decode`. Spill
//! files of streamed transactions hold messages in this form (so reading them back goes
//! through the same tested and fuzzed decoder), and the decoder's property tests round-trip
//! through it.

use super::{OldTuple, PgOutputMessage, TupleData};

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn put_tuple(out: &mut Vec<u8>, tuple: &[TupleData]) {
    out.extend_from_slice(&(tuple.len() as i16).to_be_bytes());
    for value in tuple {
        match value {
            TupleData::Null => out.push(b'n'),
            TupleData::UnchangedToast => out.push(b'u'),
            TupleData::Text(bytes) | TupleData::Binary(bytes) => {
                out.push(if matches!(value, TupleData::Text(_)) {
                    b't'
                } else {
                    b'b'
                });
                out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }
}

fn put_xid(out: &mut Vec<u8>, xid: Option<u32>) {
    if let Some(xid) = xid {
        out.extend_from_slice(&xid.to_be_bytes());
    }
}

/// Writes `message` in pgoutput's wire format (the inverse of [`decode`]). A message that may
/// carry a transaction id (inside a stream) carries its own, or else `default_xid`.
pub fn encode(message: &PgOutputMessage, default_xid: Option<u32>, out: &mut Vec<u8>) {
    match message {
        PgOutputMessage::Begin {
            final_lsn,
            commit_time,
            xid,
        } => {
            out.push(b'B');
            out.extend_from_slice(&final_lsn.0.to_be_bytes());
            out.extend_from_slice(&commit_time.to_be_bytes());
            out.extend_from_slice(&xid.to_be_bytes());
        }
        PgOutputMessage::Commit {
            flags,
            commit_lsn,
            end_lsn,
            commit_time,
        } => {
            out.push(b'C');
            out.push(*flags);
            out.extend_from_slice(&commit_lsn.0.to_be_bytes());
            out.extend_from_slice(&end_lsn.0.to_be_bytes());
            out.extend_from_slice(&commit_time.to_be_bytes());
        }
        PgOutputMessage::Origin { lsn, name } => {
            out.push(b'O');
            out.extend_from_slice(&lsn.0.to_be_bytes());
            put_string(out, name);
        }
        PgOutputMessage::Relation {
            xid,
            id,
            namespace,
            name,
            replica_identity,
            columns,
        } => {
            out.push(b'R');
            put_xid(out, xid.or(default_xid));
            out.extend_from_slice(&id.to_be_bytes());
            put_string(out, namespace);
            put_string(out, name);
            out.push(*replica_identity);
            out.extend_from_slice(&(columns.len() as i16).to_be_bytes());
            for column in columns {
                out.push(column.flags);
                put_string(out, &column.name);
                out.extend_from_slice(&column.type_oid.to_be_bytes());
                out.extend_from_slice(&column.type_modifier.to_be_bytes());
            }
        }
        PgOutputMessage::Type {
            xid,
            id,
            namespace,
            name,
        } => {
            out.push(b'Y');
            put_xid(out, xid.or(default_xid));
            out.extend_from_slice(&id.to_be_bytes());
            put_string(out, namespace);
            put_string(out, name);
        }
        PgOutputMessage::Insert { xid, relation, new } => {
            out.push(b'I');
            put_xid(out, xid.or(default_xid));
            out.extend_from_slice(&relation.to_be_bytes());
            out.push(b'N');
            put_tuple(out, new);
        }
        PgOutputMessage::Update {
            xid,
            relation,
            old,
            new,
        } => {
            out.push(b'U');
            put_xid(out, xid.or(default_xid));
            out.extend_from_slice(&relation.to_be_bytes());
            match old {
                Some(OldTuple::Key(tuple)) => {
                    out.push(b'K');
                    put_tuple(out, tuple);
                }
                Some(OldTuple::Full(tuple)) => {
                    out.push(b'O');
                    put_tuple(out, tuple);
                }
                None => {}
            }
            out.push(b'N');
            put_tuple(out, new);
        }
        PgOutputMessage::Delete { xid, relation, old } => {
            out.push(b'D');
            put_xid(out, xid.or(default_xid));
            out.extend_from_slice(&relation.to_be_bytes());
            out.push(if matches!(old, OldTuple::Key(_)) {
                b'K'
            } else {
                b'O'
            });
            put_tuple(out, old.columns());
        }
        PgOutputMessage::Truncate {
            xid,
            options,
            relations,
        } => {
            out.push(b'T');
            put_xid(out, xid.or(default_xid));
            out.extend_from_slice(&(relations.len() as i32).to_be_bytes());
            out.push(*options);
            for relation in relations {
                out.extend_from_slice(&relation.to_be_bytes());
            }
        }
        PgOutputMessage::Message {
            xid,
            transactional,
            lsn,
            prefix,
            content,
        } => {
            out.push(b'M');
            put_xid(out, xid.or(default_xid));
            out.push(u8::from(*transactional));
            out.extend_from_slice(&lsn.0.to_be_bytes());
            put_string(out, prefix);
            out.extend_from_slice(&(content.len() as i32).to_be_bytes());
            out.extend_from_slice(content);
        }
        PgOutputMessage::StreamStart { xid, first_segment } => {
            out.push(b'S');
            out.extend_from_slice(&xid.to_be_bytes());
            out.push(u8::from(*first_segment));
        }
        PgOutputMessage::StreamStop => out.push(b'E'),
        PgOutputMessage::StreamCommit {
            xid,
            flags,
            commit_lsn,
            end_lsn,
            commit_time,
        } => {
            out.push(b'c');
            out.extend_from_slice(&xid.to_be_bytes());
            out.push(*flags);
            out.extend_from_slice(&commit_lsn.0.to_be_bytes());
            out.extend_from_slice(&end_lsn.0.to_be_bytes());
            out.extend_from_slice(&commit_time.to_be_bytes());
        }
        PgOutputMessage::StreamAbort { xid, subxid } => {
            out.push(b'A');
            out.extend_from_slice(&xid.to_be_bytes());
            out.extend_from_slice(&subxid.to_be_bytes());
        }
    }
}
