//! [`Spill`]: the changes of in-progress transactions that the server streams (pgoutput
//! protocol 2), kept on local disk until their Stream Commit or Stream Abort. One append-only
//! file per top-level transaction, the first offset of each subtransaction's changes beside it
//! (in memory), so a subtransaction's abort truncates exactly its changes away.
//!
//! It knows nothing of tables, batches or the destination: the apply core ([`super::core`])
//! appends the messages of a stream block here and, at Stream Commit, reads them back in order
//! and routes them like a transaction of protocol 1. Memory stays small whatever a
//! transaction's size: only the write buffer and the subtransaction offsets are held.
//!
//! Nothing here survives a restart: a new session (or a new process) deletes every file, and
//! the server streams unfinished transactions again from their first change.
//!
//! **Record format.** Each record is `u32` length (big endian) of what follows the `u64` WAL
//! position, the `u64` WAL position of the message, then the message re-encoded in pgoutput's
//! own in-stream format (with its transaction id). Reading a record back goes through the same
//! decoder the stream uses ([`decode_pgoutput`]), which is unit-tested and fuzzed, so there is
//! no second format to keep in step with the message enum and no new dependency. Plain blocking
//! `std::fs` calls: writes land in the page cache behind an 8 KiB buffer, and the files are
//! never synced (a crash discards them anyway).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::base::lsn::Lsn;
use crate::engine::source::{PgOutputMessage, decode_pgoutput, pgoutput};

/// Bytes of a record's header (length and WAL position).
const HEADER: u64 = 12;
/// A record longer than this is corruption, not a message (PostgreSQL caps a value at 1 GB).
const MAX_RECORD: u32 = 1 << 30;
const EXTENSION: &str = "spill";

/// Why spilling failed.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("cannot {action} spill file {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("spill file {} is corrupt at byte {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// Spilling this record would put more than `max_bytes` in the spill directory.
    #[error(
        "the streamed transaction {xid} would put more than {max_bytes} bytes in the spill \
         directory {} (pipeline.spill.max_bytes)", dir.display()
    )]
    Full {
        xid: u32,
        dir: PathBuf,
        max_bytes: u64,
    },
}

impl SpillError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpillError {
        let path = path.to_owned();
        move |source| SpillError::Io {
            action,
            path,
            source,
        }
    }
}

/// The spill files of one apply worker.
pub(crate) struct Spill {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes in all open files.
    used: u64,
    files: HashMap<u32, TxFile>,
}

/// The file of one top-level transaction.
struct TxFile {
    path: PathBuf,
    writer: BufWriter<File>,
    len: u64,
    /// Each subtransaction with changes, and the offset of its first record, in file order.
    subxacts: Vec<(u32, u64)>,
}

impl Spill {
    /// The spill directory `dir` (created if missing), emptied of the files a previous run
    /// left: the server streams those transactions again.
    #[cfg(test)]
    pub fn open(dir: PathBuf, max_bytes: u64) -> Result<Self, SpillError> {
        let mut spill = Self::new(dir, max_bytes);
        spill.clear()?;
        Ok(spill)
    }

    /// The spill directory `dir`, not touched until [`Spill::clear`] (which the session
    /// calls before streaming).
    pub fn new(dir: PathBuf, max_bytes: u64) -> Self {
        Self {
            dir,
            max_bytes,
            used: 0,
            files: HashMap::new(),
        }
    }

    #[cfg(test)]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes held by the spill files now.
    pub fn used_bytes(&self) -> u64 {
        self.used
    }

    /// Top-level transactions with spilled changes.
    pub fn open_transactions(&self) -> usize {
        self.files.len()
    }

    /// Forgets every transaction and deletes every spill file in the directory, also those a
    /// previous run left (a new stream sends unfinished transactions again); creates the
    /// directory if missing.
    pub fn clear(&mut self) -> Result<(), SpillError> {
        self.files.clear();
        self.used = 0;
        fs::create_dir_all(&self.dir)
            .map_err(SpillError::io("create the directory of", &self.dir))?;
        let entries =
            fs::read_dir(&self.dir).map_err(SpillError::io("list the directory of", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(SpillError::io("list the directory of", &self.dir))?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == EXTENSION) {
                fs::remove_file(&path).map_err(SpillError::io("delete", &path))?;
            }
        }
        Ok(())
    }

    /// Appends `message` (received at `wal_start` inside a stream block of top-level
    /// transaction `top`). Messages that carry no change (Origin, stream control) are ignored.
    pub fn append(
        &mut self,
        top: u32,
        wal_start: Lsn,
        message: &PgOutputMessage,
    ) -> Result<(), SpillError> {
        let Some((xid, payload)) = encode(message, top) else {
            return Ok(());
        };
        let record = HEADER + payload.len() as u64;
        if self.used + record > self.max_bytes {
            return Err(SpillError::Full {
                xid: top,
                dir: self.dir.clone(),
                max_bytes: self.max_bytes,
            });
        }
        let file = match self.files.entry(top) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let path = self.dir.join(format!("{top}.{EXTENSION}"));
                let handle = OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(SpillError::io("create", &path))?;
                entry.insert(TxFile {
                    path,
                    writer: BufWriter::new(handle),
                    len: 0,
                    subxacts: Vec::new(),
                })
            }
        };
        if xid != top && !file.subxacts.iter().any(|(sub, _)| *sub == xid) {
            file.subxacts.push((xid, file.len));
        }
        file.write_record(wal_start, &payload)?;
        self.used += record;
        Ok(())
    }

    /// Stream Abort: `subxid == top` drops the whole transaction; otherwise the changes of
    /// subtransaction `subxid` (and of every subtransaction after it, which were its children)
    /// are dropped. Relation and Type messages in the dropped part are kept: the server
    /// describes a relation once per transaction and counts on it later.
    pub fn abort(&mut self, top: u32, subxid: u32) -> Result<(), SpillError> {
        if subxid == top {
            if let Some(file) = self.files.remove(&top) {
                self.used -= file.len;
                drop(file.writer);
                fs::remove_file(&file.path).map_err(SpillError::io("delete", &file.path))?;
            }
            return Ok(());
        }
        let Some(file) = self.files.get_mut(&top) else {
            return Ok(());
        };
        let Some(index) = file.subxacts.iter().position(|(sub, _)| *sub == subxid) else {
            // The subtransaction sent no change.
            return Ok(());
        };
        let offset = file.subxacts[index].1;
        file.subxacts.truncate(index);
        let kept = file.descriptions_after(offset)?;
        let before = file.len;
        file.truncate(offset)?;
        for (lsn, payload) in kept {
            file.write_record(lsn, &payload)?;
        }
        self.used = self.used - before + file.len;
        Ok(())
    }

    /// Stream Commit: the transaction's changes to read back in order, or `None` when it
    /// spilled none. The file is deleted when the reader is dropped.
    pub fn take(&mut self, top: u32) -> Result<Option<SpillReader>, SpillError> {
        let Some(mut file) = self.files.remove(&top) else {
            return Ok(None);
        };
        self.used -= file.len;
        file.writer
            .flush()
            .map_err(SpillError::io("write", &file.path))?;
        let mut handle = file.writer.into_inner().map_err(|e| SpillError::Io {
            action: "write",
            path: file.path.clone(),
            source: e.into_error(),
        })?;
        handle
            .seek(SeekFrom::Start(0))
            .map_err(SpillError::io("read", &file.path))?;
        Ok(Some(SpillReader {
            reader: BufReader::new(handle),
            path: file.path,
            offset: 0,
            delete_on_drop: true,
        }))
    }
}

impl TxFile {
    fn write_record(&mut self, lsn: Lsn, payload: &[u8]) -> Result<(), SpillError> {
        let len = u32::try_from(payload.len()).map_err(|_| SpillError::Corrupt {
            path: self.path.clone(),
            offset: self.len,
            reason: "a message longer than 4 GiB".into(),
        })?;
        let mut header = [0u8; HEADER as usize];
        header[..4].copy_from_slice(&len.to_be_bytes());
        header[4..].copy_from_slice(&lsn.0.to_be_bytes());
        self.writer
            .write_all(&header)
            .and_then(|()| self.writer.write_all(payload))
            .map_err(SpillError::io("write", &self.path))?;
        self.len += HEADER + payload.len() as u64;
        Ok(())
    }

    /// The Relation and Type records from `offset` to the end.
    fn descriptions_after(&mut self, offset: u64) -> Result<Vec<(Lsn, Vec<u8>)>, SpillError> {
        self.writer
            .flush()
            .map_err(SpillError::io("write", &self.path))?;
        let mut handle = self
            .writer
            .get_ref()
            .try_clone()
            .map_err(SpillError::io("read", &self.path))?;
        handle
            .seek(SeekFrom::Start(offset))
            .map_err(SpillError::io("read", &self.path))?;
        let mut reader = SpillReader {
            reader: BufReader::new(handle),
            path: self.path.clone(),
            offset,
            delete_on_drop: false,
        };
        let mut kept = Vec::new();
        while reader.offset < self.len {
            let Some((lsn, payload)) = reader.next_raw()? else {
                break;
            };
            if matches!(payload.first(), Some(b'R' | b'Y')) {
                kept.push((lsn, payload));
            }
        }
        // The reader shares the file position with the writer: `truncate` seeks again.
        Ok(kept)
    }

    fn truncate(&mut self, offset: u64) -> Result<(), SpillError> {
        self.writer
            .flush()
            .map_err(SpillError::io("write", &self.path))?;
        let handle = self.writer.get_mut();
        handle
            .set_len(offset)
            .and_then(|()| handle.seek(SeekFrom::Start(offset)).map(|_| ()))
            .map_err(SpillError::io("truncate", &self.path))?;
        self.len = offset;
        Ok(())
    }
}

/// Reads a committed transaction's spilled messages back, in the order they came.
pub(crate) struct SpillReader {
    reader: BufReader<File>,
    path: PathBuf,
    offset: u64,
    /// The reader of a committed transaction owns its file.
    delete_on_drop: bool,
}

impl SpillReader {
    /// The next message and its WAL position; `None` at the end.
    pub fn next_message(&mut self) -> Result<Option<(Lsn, PgOutputMessage)>, SpillError> {
        let Some((lsn, payload)) = self.next_raw()? else {
            return Ok(None);
        };
        let message = decode_pgoutput(&payload, true).map_err(|e| SpillError::Corrupt {
            path: self.path.clone(),
            offset: self.offset,
            reason: e.to_string(),
        })?;
        Ok(Some((lsn, message)))
    }

    fn next_raw(&mut self) -> Result<Option<(Lsn, Vec<u8>)>, SpillError> {
        let mut header = [0u8; HEADER as usize];
        match read_full(&mut self.reader, &mut header) {
            Ok(0) => return Ok(None),
            Ok(n) if n == header.len() => {}
            Ok(_) => return Err(self.corrupt("the file ends inside a record header")),
            Err(e) => return Err(SpillError::io("read", &self.path)(e)),
        }
        let (len, lsn) = header.split_at(4);
        let len = u32::from_be_bytes(len.try_into().unwrap_or_default());
        let lsn = Lsn(u64::from_be_bytes(lsn.try_into().unwrap_or_default()));
        if len > MAX_RECORD {
            return Err(self.corrupt("a record longer than 1 GiB"));
        }
        let mut payload = vec![0u8; len as usize];
        match read_full(&mut self.reader, &mut payload) {
            Ok(n) if n == payload.len() => {}
            Ok(_) => return Err(self.corrupt("the file ends inside a record")),
            Err(e) => return Err(SpillError::io("read", &self.path)(e)),
        }
        self.offset += HEADER + u64::from(len);
        Ok(Some((lsn, payload)))
    }

    fn corrupt(&self, reason: &str) -> SpillError {
        SpillError::Corrupt {
            path: self.path.clone(),
            offset: self.offset,
            reason: reason.into(),
        }
    }
}

impl Drop for SpillReader {
    fn drop(&mut self) {
        // Best effort: a file left behind is deleted at the next start.
        if self.delete_on_drop {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut read = 0;
    while read < buf.len() {
        match reader.read(&mut buf[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(read)
}

/// The (sub)transaction id of a message spilled for `top`, and the message in pgoutput's
/// in-stream format; `None` for a message that carries nothing to apply.
fn encode(message: &PgOutputMessage, top: u32) -> Option<(u32, Vec<u8>)> {
    let xid = match message {
        PgOutputMessage::Relation { xid, .. }
        | PgOutputMessage::Type { xid, .. }
        | PgOutputMessage::Insert { xid, .. }
        | PgOutputMessage::Update { xid, .. }
        | PgOutputMessage::Delete { xid, .. }
        | PgOutputMessage::Truncate { xid, .. } => xid.unwrap_or(top),
        _ => return None,
    };
    let mut out = Vec::new();
    pgoutput::encode(message, Some(xid), &mut out);
    Some((xid, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::source::{OldTuple, TupleData};
    use crate::engine::test_messages as m;

    fn spill(max: u64) -> (tempfile::TempDir, Spill) {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::open(dir.path().join("spill"), max).unwrap();
        (dir, spill)
    }

    fn with_xid(message: PgOutputMessage, sub: u32) -> PgOutputMessage {
        match message {
            PgOutputMessage::Insert { relation, new, .. } => PgOutputMessage::Insert {
                xid: Some(sub),
                relation,
                new,
            },
            other => other,
        }
    }

    fn read_all(reader: &mut SpillReader) -> Vec<(Lsn, PgOutputMessage)> {
        let mut all = Vec::new();
        while let Some(one) = reader.next_message().unwrap() {
            all.push(one);
        }
        all
    }

    #[test]
    fn every_spilled_message_reads_back_equal_in_order() {
        let (_dir, mut spill) = spill(1 << 20);
        let messages = vec![
            m::relation(7, "t", &[("id", true), ("v", false)]),
            with_xid(m::insert(7, &["1", "a"]), 5),
            PgOutputMessage::Update {
                xid: Some(5),
                relation: 7,
                old: Some(OldTuple::Key(vec![
                    TupleData::Text("1".into()),
                    TupleData::Null,
                ])),
                new: vec![TupleData::Text("2".into()), TupleData::UnchangedToast],
            },
            PgOutputMessage::Delete {
                xid: Some(5),
                relation: 7,
                old: OldTuple::Full(vec![TupleData::Text("2".into()), TupleData::Null]),
            },
            PgOutputMessage::Truncate {
                xid: Some(5),
                options: 1,
                relations: vec![7, 8],
            },
        ];
        for (i, message) in messages.iter().enumerate() {
            spill.append(5, Lsn(100 + i as u64), message).unwrap();
        }
        let mut reader = spill.take(5).unwrap().unwrap();
        let back = read_all(&mut reader);
        let expected: Vec<_> = messages
            .into_iter()
            .enumerate()
            .map(|(i, message)| {
                let message = match message {
                    PgOutputMessage::Relation {
                        id,
                        namespace,
                        name,
                        replica_identity,
                        columns,
                        ..
                    } => PgOutputMessage::Relation {
                        xid: Some(5),
                        id,
                        namespace,
                        name,
                        replica_identity,
                        columns,
                    },
                    other => other,
                };
                (Lsn(100 + i as u64), message)
            })
            .collect();
        assert_eq!(back, expected);
        assert_eq!(spill.used_bytes(), 0);
    }

    #[test]
    fn a_subtransaction_abort_drops_its_changes_and_keeps_relations() {
        let (_dir, mut spill) = spill(1 << 20);
        spill
            .append(5, Lsn(1), &with_xid(m::insert(7, &["1"]), 5))
            .unwrap();
        spill
            .append(5, Lsn(2), &with_xid(m::insert(7, &["2"]), 6))
            .unwrap();
        spill
            .append(5, Lsn(3), &m::relation(8, "u", &[("id", true)]))
            .unwrap();
        spill
            .append(5, Lsn(4), &with_xid(m::insert(7, &["3"]), 7))
            .unwrap();
        spill.abort(5, 6).unwrap();
        spill
            .append(5, Lsn(5), &with_xid(m::insert(7, &["4"]), 8))
            .unwrap();
        let mut reader = spill.take(5).unwrap().unwrap();
        let lsns: Vec<u64> = read_all(&mut reader).iter().map(|(l, _)| l.0).collect();
        assert_eq!(lsns, vec![1, 3, 5]);
    }

    #[test]
    fn a_top_level_abort_deletes_the_file_and_frees_its_bytes() {
        let (_dir, mut spill) = spill(1 << 20);
        spill
            .append(5, Lsn(1), &with_xid(m::insert(7, &["1"]), 5))
            .unwrap();
        spill
            .append(9, Lsn(2), &with_xid(m::insert(7, &["2"]), 9))
            .unwrap();
        let path = spill.dir().join("5.spill");
        assert!(path.exists());
        spill.abort(5, 5).unwrap();
        assert!(!path.exists());
        assert_eq!(spill.open_transactions(), 1);
        let mut reader = spill.take(9).unwrap().unwrap();
        assert_eq!(read_all(&mut reader).len(), 1);
        drop(reader);
        assert!(!spill.dir().join("9.spill").exists());
        assert!(spill.take(5).unwrap().is_none());
    }

    #[test]
    fn the_disk_bound_refuses_a_record_that_would_pass_it() {
        let (_dir, mut spill) = spill(60);
        spill
            .append(5, Lsn(1), &with_xid(m::insert(7, &["1"]), 5))
            .unwrap();
        let error = spill
            .append(5, Lsn(2), &with_xid(m::insert(7, &["22222222222222"]), 5))
            .unwrap_err();
        assert!(matches!(error, SpillError::Full { xid: 5, .. }), "{error}");
    }

    #[test]
    fn opening_deletes_files_left_by_a_previous_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("3.spill");
        fs::write(&path, b"left over").unwrap();
        let spill = Spill::open(dir.path().to_owned(), 100).unwrap();
        assert!(!path.exists());
        assert_eq!(spill.used_bytes(), 0);
    }

    #[test]
    fn a_truncated_file_is_reported_as_corrupt() {
        let (_dir, mut spill) = spill(1 << 20);
        spill
            .append(5, Lsn(1), &with_xid(m::insert(7, &["1"]), 5))
            .unwrap();
        let path = spill.dir().join("5.spill");
        let mut reader = spill.take(5).unwrap().unwrap();
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        assert!(matches!(
            reader.next_message(),
            Err(SpillError::Corrupt { .. })
        ));
    }
}
