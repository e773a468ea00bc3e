//! A pure decoder of pgoutput messages (PostgreSQL's "Logical Replication Message Formats"),
//! protocol version 1 and the version 2 stream messages.
//!
//! [`decode`] takes the payload of one XLogData message and returns a [`PgOutputMessage`]. It
//! never panics: every read is checked, and a message that ends early is
//! [`DecodeError::Truncated`] ("need more bytes"), distinct from a message whose content is
//! impossible ([`DecodeError::Malformed`], [`DecodeError::UnknownTag`]). Column values stay as
//! the bytes the server sent; [`TupleData::into_cell`] turns them into engine cells.

use bytes::Bytes;

use crate::base::event::Cell;
use crate::base::lsn::Lsn;

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgOutputMessage {
    Begin {
        final_lsn: Lsn,
        commit_time: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: i64,
    },
    Origin {
        lsn: Lsn,
        name: String,
    },
    Relation {
        xid: Option<u32>,
        id: u32,
        namespace: String,
        name: String,
        replica_identity: u8,
        columns: Vec<RelationColumn>,
    },
    Type {
        xid: Option<u32>,
        id: u32,
        namespace: String,
        name: String,
    },
    Insert {
        xid: Option<u32>,
        relation: u32,
        new: Vec<TupleData>,
    },
    Update {
        xid: Option<u32>,
        relation: u32,
        old: Option<OldTuple>,
        new: Vec<TupleData>,
    },
    Delete {
        xid: Option<u32>,
        relation: u32,
        old: OldTuple,
    },
    Truncate {
        xid: Option<u32>,
        options: u8,
        relations: Vec<u32>,
    },
    Message {
        xid: Option<u32>,
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Bytes,
    },
    StreamStart {
        xid: u32,
        first_segment: bool,
    },
    StreamStop,
    StreamCommit {
        xid: u32,
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: i64,
    },
    StreamAbort {
        xid: u32,
        subxid: u32,
    },
}

/// A column of a Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// 1 = part of the replica identity key.
    pub flags: u8,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

impl RelationColumn {
    pub fn is_key(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// The old row of an Update or Delete: the replica identity key (`K`) or the full row (`O`,
/// `REPLICA IDENTITY FULL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    Key(Vec<TupleData>),
    Full(Vec<TupleData>),
}

impl OldTuple {
    pub fn columns(&self) -> &[TupleData] {
        match self {
            OldTuple::Key(columns) | OldTuple::Full(columns) => columns,
        }
    }

    pub fn into_columns(self) -> Vec<TupleData> {
        match self {
            OldTuple::Key(columns) | OldTuple::Full(columns) => columns,
        }
    }
}

/// One column value of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleData {
    /// `n`
    Null,
    /// `u`: a TOASTed value the change did not touch; not NULL, the value is just not sent.
    UnchangedToast,
    /// `t`: the value in text output format.
    Text(Bytes),
    /// `b`: the value in binary format (only sent when requested; we never request it).
    Binary(Bytes),
}

impl TupleData {
    /// The engine cell for this value; text must be UTF-8 and binary values are refused (the
    /// engine asks for text).
    pub fn into_cell(self) -> Result<Cell, DecodeError> {
        match self {
            TupleData::Null => Ok(Cell::Null),
            TupleData::UnchangedToast => Ok(Cell::Unchanged),
            TupleData::Text(bytes) => match String::from_utf8(bytes.to_vec()) {
                Ok(text) => Ok(Cell::Text(text)),
                Err(_) => Err(DecodeError::Malformed {
                    tag: b't',
                    reason: "column value is not valid UTF-8".into(),
                }),
            },
            TupleData::Binary(_) => Err(DecodeError::Malformed {
                tag: b'b',
                reason: "binary column values are not supported (the engine requests text)".into(),
            }),
        }
    }
}

/// Why bytes are not a pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message ends before a field it must contain: more bytes were needed.
    #[error("message {tag:?} is truncated: {what} needs {needed} more byte(s) at offset {offset}", tag = *tag as char)]
    Truncated {
        tag: u8,
        what: &'static str,
        offset: usize,
        needed: usize,
    },
    /// The bytes are present but impossible (bad tuple kind, negative length, trailing bytes…).
    #[error("message {tag:?} is malformed: {reason}", tag = *tag as char)]
    Malformed { tag: u8, reason: String },
    #[error("unknown pgoutput message tag {0:#04x}")]
    UnknownTag(u8),
    #[error("empty pgoutput message")]
    Empty,
}

impl DecodeError {
    /// True when the input simply ended too early (a longer input might decode).
    pub fn is_truncated(&self) -> bool {
        matches!(self, DecodeError::Truncated { .. } | DecodeError::Empty)
    }
}

/// Decodes one pgoutput message. `in_stream`: the message is inside a protocol v2 Stream
/// Start/Stop block, where data messages carry the transaction id first.
pub fn decode(bytes: &[u8], in_stream: bool) -> Result<PgOutputMessage, DecodeError> {
    decode_from(bytes, None, in_stream)
}

/// Like [`decode`], but column values and message contents share `bytes`' buffer instead of
/// being copied (the replication stream's hot path).
pub fn decode_bytes(bytes: &Bytes, in_stream: bool) -> Result<PgOutputMessage, DecodeError> {
    decode_from(bytes, Some(bytes), in_stream)
}

fn decode_from(
    bytes: &[u8],
    source: Option<&Bytes>,
    in_stream: bool,
) -> Result<PgOutputMessage, DecodeError> {
    let Some((&tag, body)) = bytes.split_first() else {
        return Err(DecodeError::Empty);
    };
    let mut r = Reader {
        tag,
        buf: body,
        offset: 1,
        source,
    };
    let xid = |r: &mut Reader<'_>| -> Result<Option<u32>, DecodeError> {
        if in_stream {
            r.u32("xid").map(Some)
        } else {
            Ok(None)
        }
    };
    let message = match tag {
        b'B' => PgOutputMessage::Begin {
            final_lsn: r.lsn("final LSN")?,
            commit_time: r.i64("commit time")?,
            xid: r.u32("xid")?,
        },
        b'C' => PgOutputMessage::Commit {
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit LSN")?,
            end_lsn: r.lsn("end LSN")?,
            commit_time: r.i64("commit time")?,
        },
        b'O' => PgOutputMessage::Origin {
            lsn: r.lsn("origin LSN")?,
            name: r.string("origin name")?,
        },
        b'R' => {
            let xid = xid(&mut r)?;
            let id = r.u32("relation id")?;
            let namespace = r.string("namespace")?;
            let name = r.string("relation name")?;
            let replica_identity = r.u8("replica identity")?;
            let count = r.i16("column count")?;
            let count = r.count(i64::from(count), 10, "column count")?;
            let mut columns = Vec::with_capacity(count);
            for _ in 0..count {
                columns.push(RelationColumn {
                    flags: r.u8("column flags")?,
                    name: r.string("column name")?,
                    type_oid: r.u32("column type")?,
                    type_modifier: r.i32("column type modifier")?,
                });
            }
            PgOutputMessage::Relation {
                xid,
                id,
                namespace,
                name,
                replica_identity,
                columns,
            }
        }
        b'Y' => PgOutputMessage::Type {
            xid: xid(&mut r)?,
            id: r.u32("type id")?,
            namespace: r.string("type namespace")?,
            name: r.string("type name")?,
        },
        b'I' => {
            let xid = xid(&mut r)?;
            let relation = r.u32("relation id")?;
            match r.u8("tuple marker")? {
                b'N' => {}
                other => {
                    return Err(
                        r.malformed(format!("expected new tuple marker 'N', found {other:#04x}"))
                    );
                }
            }
            PgOutputMessage::Insert {
                xid,
                relation,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let xid = xid(&mut r)?;
            let relation = r.u32("relation id")?;
            let mut old = None;
            let mut marker = r.u8("tuple marker")?;
            if marker == b'K' || marker == b'O' {
                let tuple = r.tuple()?;
                old = Some(if marker == b'K' {
                    OldTuple::Key(tuple)
                } else {
                    OldTuple::Full(tuple)
                });
                marker = r.u8("new tuple marker")?;
            }
            if marker != b'N' {
                return Err(r.malformed(format!(
                    "expected tuple marker 'K', 'O' or 'N', found {marker:#04x}"
                )));
            }
            PgOutputMessage::Update {
                xid,
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let xid = xid(&mut r)?;
            let relation = r.u32("relation id")?;
            let old = match r.u8("tuple marker")? {
                b'K' => OldTuple::Key(r.tuple()?),
                b'O' => OldTuple::Full(r.tuple()?),
                other => {
                    return Err(r.malformed(format!(
                        "expected old tuple marker 'K' or 'O', found {other:#04x}"
                    )));
                }
            };
            PgOutputMessage::Delete { xid, relation, old }
        }
        b'T' => {
            let xid = xid(&mut r)?;
            let count = r.i32("relation count")?;
            let options = r.u8("options")?;
            let count = r.count(i64::from(count), 4, "relation count")?;
            let mut relations = Vec::with_capacity(count);
            for _ in 0..count {
                relations.push(r.u32("relation id")?);
            }
            PgOutputMessage::Truncate {
                xid,
                options,
                relations,
            }
        }
        b'M' => {
            let xid = xid(&mut r)?;
            let flags = r.u8("flags")?;
            let lsn = r.lsn("message LSN")?;
            let prefix = r.string("prefix")?;
            let len = r.i32("content length")?;
            let len = r.count(i64::from(len), 1, "content")?;
            let content = r.bytes(len, "content")?;
            PgOutputMessage::Message {
                xid,
                transactional: flags & 1 == 1,
                lsn,
                prefix,
                content,
            }
        }
        b'S' => PgOutputMessage::StreamStart {
            xid: r.u32("xid")?,
            first_segment: match r.u8("first segment flag")? {
                0 => false,
                1 => true,
                other => {
                    return Err(
                        r.malformed(format!("first segment flag must be 0 or 1, found {other}"))
                    );
                }
            },
        },
        b'E' => PgOutputMessage::StreamStop,
        b'c' => PgOutputMessage::StreamCommit {
            xid: r.u32("xid")?,
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit LSN")?,
            end_lsn: r.lsn("end LSN")?,
            commit_time: r.i64("commit time")?,
        },
        b'A' => {
            let message = PgOutputMessage::StreamAbort {
                xid: r.u32("xid")?,
                subxid: r.u32("subtransaction xid")?,
            };
            // Protocol v4 (parallel apply) appends the abort LSN and time; accept and skip them.
            if r.buf.len() == 16 {
                r.take(16, "abort LSN and time")?;
            }
            message
        }
        other => return Err(DecodeError::UnknownTag(other)),
    };
    if !r.buf.is_empty() {
        return Err(r.malformed(format!("{} unexpected trailing byte(s)", r.buf.len())));
    }
    Ok(message)
}

/// Checked big-endian reads over a message body; every read fails with `Truncated` instead of
/// panicking.
struct Reader<'a> {
    tag: u8,
    buf: &'a [u8],
    /// Offset of `buf` within the whole message, for error messages.
    offset: usize,
    /// The buffer `buf` points into, when values may share it.
    source: Option<&'a Bytes>,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                tag: self.tag,
                what,
                offset: self.offset,
                needed: n - self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        self.offset += n;
        Ok(head)
    }

    /// `n` bytes as `Bytes`: a slice of `source` when there is one, else a copy.
    fn bytes(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        let source = self.source;
        let slice = self.take(n, what)?;
        Ok(match source {
            // `slice` was cut from `source` itself, so `slice_ref` finds it inside.
            Some(source) if !slice.is_empty() => source.slice_ref(slice),
            _ => Bytes::copy_from_slice(slice),
        })
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    fn lsn(&mut self, what: &'static str) -> Result<Lsn, DecodeError> {
        Ok(Lsn(u64::from_be_bytes(self.array(what)?)))
    }

    /// A NUL-terminated UTF-8 string.
    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let Some(end) = self.buf.iter().position(|&b| b == 0) else {
            return Err(DecodeError::Truncated {
                tag: self.tag,
                what,
                offset: self.offset + self.buf.len(),
                needed: 1,
            });
        };
        let bytes = self.take(end, what)?;
        self.take(1, what)?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(self.malformed(format!("{what} is not valid UTF-8"))),
        }
    }

    /// Validates a count read from the message: not negative, and not more items (of at least
    /// `min_item_len` bytes each) than the remaining bytes could hold, so a forged count cannot
    /// force a huge allocation. A count that is too large for the remaining bytes is truncation.
    fn count(
        &self,
        count: i64,
        min_item_len: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let Ok(count) = usize::try_from(count) else {
            return Err(self.malformed(format!("{what} is negative ({count})")));
        };
        let needed = count.saturating_mul(min_item_len);
        if needed > self.buf.len() {
            return Err(DecodeError::Truncated {
                tag: self.tag,
                what,
                offset: self.offset,
                needed: needed - self.buf.len(),
            });
        }
        Ok(count)
    }

    fn tuple(&mut self) -> Result<Vec<TupleData>, DecodeError> {
        let count = self.i16("tuple column count")?;
        let count = self.count(i64::from(count), 1, "tuple column count")?;
        let mut columns = Vec::with_capacity(count);
        for _ in 0..count {
            let value = match self.u8("column kind")? {
                b'n' => TupleData::Null,
                b'u' => TupleData::UnchangedToast,
                kind @ (b't' | b'b') => {
                    let len = self.i32("column length")?;
                    let len = self.count(i64::from(len), 1, "column value")?;
                    let bytes = self.bytes(len, "column value")?;
                    if kind == b't' {
                        TupleData::Text(bytes)
                    } else {
                        TupleData::Binary(bytes)
                    }
                }
                other => {
                    return Err(self.malformed(format!(
                        "column kind must be 'n', 'u', 't' or 'b', found {other:#04x}"
                    )));
                }
            };
            columns.push(value);
        }
        Ok(columns)
    }

    fn malformed(&self, reason: String) -> DecodeError {
        DecodeError::Malformed {
            tag: self.tag,
            reason,
        }
    }
}

#[path = "pgoutput_encode.rs"]
mod encode;
pub use encode::encode;

#[cfg(test)]
#[path = "pgoutput_tests.rs"]
mod tests;
