//! Replication commands on a [`ReplicationClient`] (`IDENTIFY_SYSTEM`, slot creation and drop,
//! `START_REPLICATION`) and the CopyBoth [`ReplicationStream`] that follows: XLogData (`w`)
//! decoded with [`super::pgoutput`], primary keepalives (`k`) and our standby status updates
//! (`r`).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::connection::{Backend, ReplicationClient};
use super::error::Error;
use super::pgoutput::{self, PgOutputMessage};
use crate::base::lsn::Lsn;
use crate::base::quote::{quote_identifier, quote_literal};

/// The answer to `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    pub system_id: String,
    pub timeline: u32,
    /// Current WAL flush position of the server.
    pub xlogpos: Lsn,
    pub dbname: Option<String>,
}

/// What `CREATE_REPLICATION_SLOT` does with the slot's snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotAction {
    /// Make the snapshot the current transaction's (must run inside
    /// `BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ` before any query).
    Use,
    /// Export the snapshot under a name usable by `SET TRANSACTION SNAPSHOT` on other sessions,
    /// valid until the next command on this session.
    Export,
    Nothing,
}

/// A created slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    pub name: String,
    /// Changes committed after this LSN are streamed; the snapshot sees everything before.
    pub consistent_point: Lsn,
    /// The exported snapshot's name ([`SnapshotAction::Export`] only).
    pub snapshot_name: Option<String>,
}

/// Options of `START_REPLICATION … LOGICAL` for pgoutput.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOutputOptions {
    pub publication_names: Vec<String>,
    /// 1, or 2 for streaming of in-progress transactions.
    pub proto_version: u32,
    /// Also send logical decoding messages (`pg_logical_emit_message`).
    pub messages: bool,
    /// Stream in-progress transactions (protocol version 2 or later).
    pub streaming: bool,
}

/// One message of the replication stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    XLogData {
        wal_start: Lsn,
        wal_end: Lsn,
        /// Microseconds since 2000-01-01 (Postgres epoch).
        server_time: i64,
        message: PgOutputMessage,
    },
    Keepalive {
        wal_end: Lsn,
        server_time: i64,
        /// The server wants a status update now (or it will consider us gone after
        /// `wal_sender_timeout`). [`ReplicationStream::next`] already answered it.
        reply_requested: bool,
    },
}

/// Slot names: what Postgres accepts (`[a-z0-9_]`, at most 63 bytes), checked here so they can
/// be put in commands without quoting issues.
/// Names the replication command a server error answered (`action`).
fn server_action(action: String) -> impl FnOnce(Error) -> Error {
    move |e| match e {
        Error::Server { target, error, .. } => Error::Server {
            target,
            action,
            error,
        },
        other => other,
    }
}

fn check_slot_name(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidSlotName(name.to_owned()))
    }
}

fn lsn_field(client: &ReplicationClient, value: Option<&String>, what: &str) -> Result<Lsn, Error> {
    let value = value.ok_or_else(|| client.protocol(format!("{what} is missing")))?;
    value
        .parse()
        .map_err(|e| client.protocol(format!("{what}: {e}")))
}

impl ReplicationClient {
    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<SystemInfo, Error> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let row = match rows.as_slice() {
            [row] if row.len() >= 4 => row,
            _ => return Err(self.protocol("IDENTIFY_SYSTEM did not return one row of 4 columns")),
        };
        let system_id = row[0]
            .clone()
            .ok_or_else(|| self.protocol("IDENTIFY_SYSTEM systemid is NULL"))?;
        let timeline = row[1]
            .as_deref()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| self.protocol("IDENTIFY_SYSTEM timeline is not a number"))?;
        let xlogpos = lsn_field(self, row[2].as_ref(), "IDENTIFY_SYSTEM xlogpos")?;
        Ok(SystemInfo {
            system_id,
            timeline,
            xlogpos,
            dbname: row[3].clone(),
        })
    }

    /// `CREATE_REPLICATION_SLOT name [TEMPORARY] LOGICAL pgoutput` with the snapshot action.
    /// A temporary slot disappears when this session ends.
    pub async fn create_slot(
        &mut self,
        name: &str,
        temporary: bool,
        snapshot: SnapshotAction,
    ) -> Result<CreatedSlot, Error> {
        self.create_slot_with(name, temporary, snapshot, false)
            .await
    }

    /// [`Self::create_slot`], with `failover`: a slot standbys synchronize (PostgreSQL 17+,
    /// whose server refuses the option otherwise).
    pub async fn create_slot_with(
        &mut self,
        name: &str,
        temporary: bool,
        snapshot: SnapshotAction,
        failover: bool,
    ) -> Result<CreatedSlot, Error> {
        check_slot_name(name)?;
        let temporary = if temporary { " TEMPORARY" } else { "" };
        // PostgreSQL 15 introduced the parenthesized option list; older servers know only the
        // keyword form, which 15+ still accepts.
        let command = if self.server_major >= 15 || self.server_major == 0 || failover {
            let snapshot = match snapshot {
                SnapshotAction::Use => "use",
                SnapshotAction::Export => "export",
                SnapshotAction::Nothing => "nothing",
            };
            let failover = if failover { ", FAILOVER true" } else { "" };
            format!(
                "CREATE_REPLICATION_SLOT {}{temporary} LOGICAL pgoutput \
                 (SNAPSHOT '{snapshot}'{failover})",
                quote_identifier(name)
            )
        } else {
            let snapshot = match snapshot {
                SnapshotAction::Use => "USE_SNAPSHOT",
                SnapshotAction::Export => "EXPORT_SNAPSHOT",
                SnapshotAction::Nothing => "NOEXPORT_SNAPSHOT",
            };
            format!(
                "CREATE_REPLICATION_SLOT {}{temporary} LOGICAL pgoutput {snapshot}",
                quote_identifier(name)
            )
        };
        let rows = self
            .simple_query(&command)
            .await
            .map_err(server_action(format!("creating replication slot `{name}`")))?;
        let row = match rows.as_slice() {
            [row] if row.len() >= 3 => row,
            _ => return Err(self.protocol("CREATE_REPLICATION_SLOT did not return one row")),
        };
        Ok(CreatedSlot {
            name: row[0].clone().unwrap_or_else(|| name.to_owned()),
            consistent_point: lsn_field(self, row[1].as_ref(), "consistent_point")?,
            snapshot_name: row[2].clone(),
        })
    }

    /// `ALTER_REPLICATION_SLOT name (FAILOVER …)` (PostgreSQL 17+): whether standbys with
    /// `sync_replication_slots` keep a copy of the slot. The slot must not be in use.
    pub async fn alter_slot_failover(&mut self, name: &str, failover: bool) -> Result<(), Error> {
        check_slot_name(name)?;
        self.simple_query(&format!(
            "ALTER_REPLICATION_SLOT {} (FAILOVER {failover})",
            quote_identifier(name)
        ))
        .await
        .map_err(server_action(format!(
            "changing FAILOVER of replication slot `{name}`"
        )))?;
        Ok(())
    }

    /// `DROP_REPLICATION_SLOT name [WAIT]`; `Ok(false)` when the slot does not exist. With
    /// `wait`, an active slot is dropped once its session ends instead of failing.
    pub async fn drop_slot(&mut self, name: &str, wait: bool) -> Result<bool, Error> {
        check_slot_name(name)?;
        let wait = if wait { " WAIT" } else { "" };
        match self
            .simple_query(&format!(
                "DROP_REPLICATION_SLOT {}{wait}",
                quote_identifier(name)
            ))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("42704") => Ok(false),
            Err(Error::Server { target, error, .. }) => Err(Error::Server {
                target,
                action: format!("dropping replication slot `{name}`"),
                error,
            }),
            Err(e) => Err(e),
        }
    }

    /// `START_REPLICATION SLOT name LOGICAL start (proto_version …, publication_names …,
    /// messages …, streaming …)`; consumes the session, which now belongs to the stream.
    pub async fn start_replication(
        mut self,
        slot: &str,
        start: Lsn,
        options: &PgOutputOptions,
    ) -> Result<ReplicationStream, Error> {
        check_slot_name(slot)?;
        self.check_idle()?;
        if options.publication_names.is_empty() {
            return Err(Error::InvalidPublicationName(String::new()));
        }
        for name in &options.publication_names {
            if name.is_empty() || name.contains('\0') {
                return Err(Error::InvalidPublicationName(name.clone()));
            }
        }
        let publications = options
            .publication_names
            .iter()
            .map(|name| quote_identifier(name))
            .collect::<Vec<_>>()
            .join(",");
        let mut command = format!(
            "START_REPLICATION SLOT {} LOGICAL {start} (proto_version '{}', publication_names {}",
            quote_identifier(slot),
            options.proto_version,
            quote_literal(&publications),
        );
        if options.messages {
            command.push_str(", messages 'true'");
        }
        if options.streaming {
            command.push_str(", streaming 'on'");
        }
        command.push(')');
        frontend::query(&command, &mut self.write_buf)
            .map_err(|e| self.protocol(format!("cannot encode START_REPLICATION: {e}")))?;
        self.flush().await?;
        match self.recv().await? {
            Backend::CopyBoth => {}
            Backend::Message(Message::ErrorResponse(body)) => {
                let action = format!("starting replication from slot `{slot}` at {start}");
                // The server follows the error with ReadyForQuery; the session is consumed, so
                // there is no need to wait for it.
                return Err(self.server_error(&body, &action));
            }
            _ => return Err(self.protocol("unexpected answer to START_REPLICATION")),
        }
        Ok(ReplicationStream {
            client: self,
            slot: slot.to_owned(),
            in_stream: false,
            last_received: start,
            last_flush: Lsn::ZERO,
            last_apply: Lsn::ZERO,
            finished: false,
        })
    }
}

/// The CopyBoth stream after `START_REPLICATION`.
#[derive(Debug)]
pub struct ReplicationStream {
    client: ReplicationClient,
    slot: String,
    /// Inside a Stream Start … Stream Stop block (protocol v2).
    in_stream: bool,
    /// Highest WAL end seen (the `write` position of automatic replies).
    last_received: Lsn,
    /// Last flush/apply positions given to [`ReplicationStream::send_status`].
    last_flush: Lsn,
    last_apply: Lsn,
    /// The server ended the stream.
    finished: bool,
}

impl ReplicationStream {
    /// While a backlog streams, be woken only once `bytes` are queued on the socket (an
    /// adaptive `SO_RCVLOWAT`; 0 turns it off). Saves the walsender a wake-up per message.
    pub fn adapt_low_water(&mut self, bytes: usize) {
        self.client.adapt_low_water(bytes);
    }

    /// The next message; `Ok(None)` when the server ended the stream cleanly. A keepalive that
    /// asks for a reply is answered at once with the highest received position as `write` and
    /// the last flush/apply positions given to [`Self::send_status`] (so the slot never moves
    /// further than the caller said), and is then returned.
    ///
    /// Cancel-safe: dropping the future (e.g. in `tokio::select!` against a timer) loses no
    /// message and never leaves half a status update on the wire.
    pub async fn next(&mut self) -> Result<Option<ReplicationMessage>, Error> {
        if self.finished {
            return Ok(None);
        }
        // A status update whose write was interrupted (a cancelled call) goes out first.
        if !self.client.write_buf.is_empty() {
            self.client.flush().await?;
        }
        let mut data = match self.client.recv().await? {
            Backend::Message(Message::CopyData(body)) => body.into_bytes(),
            Backend::Message(Message::CopyDone) => {
                self.finished = true;
                frontend::copy_done(&mut self.client.write_buf);
                self.client.flush().await?;
                let action = format!("ending replication from slot `{}`", self.slot);
                self.client.finish_query(&action).await?;
                return Ok(None);
            }
            // A walsender stopping for a server shutdown, once its client has confirmed
            // everything sent, ends the COPY with CommandComplete alone and exits.
            Backend::Message(Message::CommandComplete(_)) => {
                self.finished = true;
                return Ok(None);
            }
            Backend::Message(Message::ErrorResponse(body)) => {
                self.finished = true;
                let action = format!("streaming from slot `{}`", self.slot);
                return Err(self.client.server_error(&body, &action));
            }
            _ => {
                return Err(self
                    .client
                    .protocol("unexpected message in the replication stream"));
            }
        };
        if data.is_empty() {
            return Err(self
                .client
                .protocol("empty CopyData in the replication stream"));
        }
        match data.get_u8() {
            b'w' => {
                if data.len() < 24 {
                    return Err(self.client.protocol("XLogData header is truncated"));
                }
                let wal_start = Lsn(data.get_u64());
                let wal_end = Lsn(data.get_u64());
                let server_time = data.get_i64();
                let message = pgoutput::decode_bytes(&data, self.in_stream).map_err(|source| {
                    Error::Decode {
                        target: self.client.target.clone(),
                        lsn: wal_start,
                        source,
                    }
                })?;
                match message {
                    PgOutputMessage::StreamStart { .. } => self.in_stream = true,
                    PgOutputMessage::StreamStop => self.in_stream = false,
                    _ => {}
                }
                self.last_received = self.last_received.max(wal_end).max(wal_start);
                Ok(Some(ReplicationMessage::XLogData {
                    wal_start,
                    wal_end,
                    server_time,
                    message,
                }))
            }
            b'k' => {
                if data.len() < 17 {
                    return Err(self.client.protocol("primary keepalive is truncated"));
                }
                let wal_end = Lsn(data.get_u64());
                let server_time = data.get_i64();
                let reply_requested = data.get_u8() == 1;
                if reply_requested {
                    let (write, flush, apply) =
                        (self.last_received, self.last_flush, self.last_apply);
                    self.write_status(write, flush, apply, false).await?;
                }
                Ok(Some(ReplicationMessage::Keepalive {
                    wal_end,
                    server_time,
                    reply_requested,
                }))
            }
            other => Err(self
                .client
                .protocol(format!("unknown replication message kind {other:#04x}"))),
        }
    }

    /// Standby status update (`r`): `write` = last received, `flush` = last durably applied
    /// commit end, `apply` likewise. Postgres moves the slot's `confirmed_flush_lsn` to `flush`.
    /// `reply` asks the server to answer with a keepalive.
    pub async fn send_status(
        &mut self,
        write: Lsn,
        flush: Lsn,
        apply: Lsn,
        reply: bool,
    ) -> Result<(), Error> {
        self.last_flush = self.last_flush.max(flush);
        self.last_apply = self.last_apply.max(apply);
        self.write_status(write, flush, apply, reply).await
    }

    async fn write_status(
        &mut self,
        write: Lsn,
        flush: Lsn,
        apply: Lsn,
        reply: bool,
    ) -> Result<(), Error> {
        let body = status_update(write, flush, apply, postgres_now(), reply);
        let data = frontend::CopyData::new(body).map_err(|e| {
            self.client
                .protocol(format!("cannot encode status update: {e}"))
        })?;
        data.write(&mut self.client.write_buf);
        self.client.flush().await
    }

    /// Sends CopyDone and reads until the server has ended the stream (any XLogData still in
    /// flight is discarded). The session is then closed.
    pub async fn finish(mut self) -> Result<(), Error> {
        if !self.finished {
            frontend::copy_done(&mut self.client.write_buf);
            self.client.flush().await?;
            loop {
                match self.client.recv().await? {
                    Backend::Message(Message::CopyData(_)) => {}
                    Backend::Message(Message::CopyDone) => break,
                    Backend::Message(Message::ErrorResponse(body)) => {
                        let action = format!("ending replication from slot `{}`", self.slot);
                        return Err(self.client.server_error(&body, &action));
                    }
                    // Some servers go straight to CommandComplete.
                    Backend::Message(Message::CommandComplete(_)) => break,
                    _ => {
                        return Err(self
                            .client
                            .protocol("unexpected message while ending the stream"));
                    }
                }
            }
            let action = format!("ending replication from slot `{}`", self.slot);
            self.client.finish_query(&action).await?;
        }
        self.client.close().await
    }

    /// The slot this stream reads.
    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// Highest WAL position received so far.
    pub fn last_received(&self) -> Lsn {
        self.last_received
    }

    /// Bytes read from the socket so far.
    pub fn bytes_received(&self) -> u64 {
        self.client.bytes_received()
    }
}

/// Microseconds since 2000-01-01 00:00:00 UTC, the clock of the replication protocol.
pub fn postgres_now() -> i64 {
    const POSTGRES_EPOCH_UNIX_SECONDS: i64 = 946_684_800;
    let unix_micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    unix_micros - POSTGRES_EPOCH_UNIX_SECONDS * 1_000_000
}

/// The body of a standby status update (`r`).
fn status_update(write: Lsn, flush: Lsn, apply: Lsn, time: i64, reply: bool) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u8(b'r');
    body.put_u64(write.0);
    body.put_u64(flush.0);
    body.put_u64(apply.0);
    body.put_i64(time);
    body.put_u8(u8::from(reply));
    body.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_checked_before_use() {
        for good in ["etl_1_apply", "a", "x9_"] {
            assert!(check_slot_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Upper", "with space", "quote\"", &"a".repeat(64)] {
            assert!(check_slot_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn publication_names_are_quoted_for_the_option_string() {
        let names = ["pub", "we\"ird", "it's"].map(quote_identifier).join(",");
        assert_eq!(quote_literal(&names), r#"'"pub","we""ird","it''s"'"#);
    }

    #[test]
    fn postgres_clock_counts_from_2000() {
        // 2026-01-01 is 26 years after 2000-01-01: more than 8e14 microseconds.
        assert!(postgres_now() > 800_000_000_000_000);
        let body = status_update(Lsn(1), Lsn(0x2_0000_0003), Lsn(4), 5, true);
        let mut expected = vec![b'r'];
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(&0x2_0000_0003u64.to_be_bytes());
        expected.extend_from_slice(&4u64.to_be_bytes());
        expected.extend_from_slice(&5i64.to_be_bytes());
        expected.push(1);
        assert_eq!(body.as_ref(), expected.as_slice());
    }
}
