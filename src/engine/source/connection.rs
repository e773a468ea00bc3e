//! One PostgreSQL session over TCP (optionally TLS) or a Unix-domain socket: startup,
//! authentication, message framing and the simple-query protocol.
//!
//! Bytes are read into one `BytesMut` and only whole messages are parsed (a partial message
//! stays buffered, so reading is cancel-safe). `postgres-protocol` parses every backend message
//! except `CopyBothResponse` (`W`), which this module recognises by its tag. Notices, parameter
//! status and notifications are consumed here and never reach callers. Replication commands
//! live in [`super::replication`], COPY in [`super::copy`].

use std::time::Duration;

use bytes::{Buf, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{ErrorResponseBody, Header, Message};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::{Error, ServerError};
use super::low_water::{GRACE, LowWater};
use super::{auth, tls};
use crate::config::{PgConnection, TlsMode};

/// How long the TCP connect, TLS handshake and authentication may take together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Reject absurd frame lengths instead of trying to allocate them.
const MAX_MESSAGE_LEN: usize = 1 << 30;
/// TCP keepalive: first probe after this much silence, then every interval, give up after the
/// retries (a dead peer is noticed after about 60 s).
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const TCP_KEEPALIVE_RETRIES: u32 = 3;
/// Read granularity of the socket buffer.
const READ_CHUNK: usize = 64 * 1024;

/// The socket, plain or TLS.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A backend message, or the `CopyBothResponse` that `postgres-protocol` cannot parse.
pub(super) enum Backend {
    CopyBoth,
    Message(Message),
}

/// One session with `replication=database`: accepts replication commands and plain SQL (simple
/// query protocol only), and streams COPY and CopyBoth data.
pub struct ReplicationClient {
    io: Box<dyn Io>,
    read_buf: BytesMut,
    pub(super) write_buf: BytesMut,
    /// `user@host:port/db`, for errors and logs.
    pub(super) target: String,
    /// Major version from the `server_version` parameter (e.g. 15), 0 when unknown.
    pub(super) server_major: u32,
    /// Set while a COPY is being read; the session cannot be used for anything else until the
    /// COPY has been read to its end.
    pub(super) busy: Option<&'static str>,
    pub(super) bytes_received: u64,
    /// Whether the session is encrypted.
    tls: bool,
    /// The TCP socket's descriptor (also under TLS), for socket options set after start-up;
    /// `None` on a Unix-domain socket.
    #[cfg(target_os = "linux")]
    fd: Option<std::os::fd::RawFd>,
    /// The adaptive receive low-water mark while streaming.
    low_water: LowWater,
}

impl std::fmt::Debug for ReplicationClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationClient")
            .field("target", &self.target)
            .field("server_major", &self.server_major)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl ReplicationClient {
    /// Opens a session with `replication=database` and `application_name=etl`, TLS per
    /// `conn.tls.mode`, authenticating with trust, cleartext, md5 or SCRAM-SHA-256.
    ///
    /// The session also sets `client_encoding=UTF8`, `DateStyle=ISO`, `IntervalStyle=postgres`,
    /// `TimeZone=UTC` and `extra_float_digits=3`, so values in COPY and pgoutput have one stable
    /// text form.
    pub async fn connect(conn: &PgConnection) -> Result<Self, Error> {
        let target = conn.describe();
        let attempt =
            tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_mode(conn, conn.tls.mode));
        let result = match attempt.await {
            Ok(result) => result,
            Err(_) => {
                return Err(Error::Timeout {
                    target,
                    action: "connecting",
                    seconds: CONNECT_TIMEOUT.as_secs(),
                });
            }
        };
        match result {
            // libpq's `prefer`: when the TLS handshake itself fails, retry without TLS.
            Err(Error::TlsHandshake { .. }) if conn.tls.mode == TlsMode::Prefer => {
                tracing::warn!(%target, "TLS handshake failed; retrying without TLS (tls.mode prefer)");
                tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_mode(conn, TlsMode::Disable))
                    .await
                    .map_err(|_| Error::Timeout {
                        target,
                        action: "connecting",
                        seconds: CONNECT_TIMEOUT.as_secs(),
                    })?
            }
            other => other,
        }
    }

    async fn connect_mode(conn: &PgConnection, mode: TlsMode) -> Result<Self, Error> {
        if let Some(path) = conn.socket_path() {
            return Self::connect_unix(conn, &path).await;
        }
        let target = conn.describe();
        let tcp = TcpStream::connect((conn.host.as_str(), conn.port))
            .await
            .map_err(|source| Error::Connect {
                target: target.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        set_keepalive(&tcp);
        #[cfg(target_os = "linux")]
        let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
        let (io, tls): (Box<dyn Io>, bool) = if mode == TlsMode::Disable {
            (Box::new(tcp), false)
        } else {
            match tls::negotiate(tcp, conn, &target).await? {
                tls::Negotiated::Tls(io) => (io, true),
                tls::Negotiated::Plain(tcp) => (Box::new(tcp), false),
            }
        };
        let mut client = Self::new(io, tls, target);
        #[cfg(target_os = "linux")]
        {
            client.fd = Some(fd);
        }
        client.startup(conn).await?;
        Ok(client)
    }

    /// A session over the Unix-domain socket `path` (the server's `{directory}/.s.PGSQL.{port}`).
    /// As with libpq, TLS is never used on a local socket.
    async fn connect_unix(conn: &PgConnection, path: &str) -> Result<Self, Error> {
        let target = conn.describe();
        #[cfg(unix)]
        {
            let socket = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|source| Error::Connect {
                    target: target.clone(),
                    source,
                })?;
            // No descriptor: the low-water mark is a TCP feature (a Unix socket wakes its
            // reader on every send).
            let mut client = Self::new(Box::new(socket), false, target);
            client.startup(conn).await?;
            Ok(client)
        }
        #[cfg(not(unix))]
        Err(Error::Connect {
            target,
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("Unix-domain sockets ({path}) are not supported on this platform"),
            ),
        })
    }

    /// A session on a connected socket, before its startup message.
    fn new(io: Box<dyn Io>, tls: bool, target: String) -> Self {
        ReplicationClient {
            io,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::with_capacity(1024),
            target,
            server_major: 0,
            busy: None,
            bytes_received: 0,
            tls,
            #[cfg(target_os = "linux")]
            fd: None,
            low_water: LowWater::off(),
        }
    }

    async fn startup(&mut self, conn: &PgConnection) -> Result<(), Error> {
        let params = [
            ("user", conn.username.as_str()),
            ("database", conn.name.as_str()),
            ("replication", "database"),
            ("application_name", "etl"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO"),
            ("IntervalStyle", "postgres"),
            ("TimeZone", "UTC"),
            ("extra_float_digits", "3"),
        ];
        frontend::startup_message(params.iter().copied(), &mut self.write_buf)
            .map_err(|e| self.protocol(format!("cannot encode the startup message: {e}")))?;
        self.flush().await?;
        auth::authenticate(self, conn).await?;
        // After AuthenticationOk: BackendKeyData and ParameterStatus until ReadyForQuery.
        loop {
            match self.recv().await? {
                Backend::Message(Message::ReadyForQuery(_)) => return Ok(()),
                Backend::Message(Message::BackendKeyData(_)) => {}
                Backend::Message(Message::ErrorResponse(body)) => {
                    return Err(self.server_error(&body, "starting the session"));
                }
                _ => return Err(self.protocol("unexpected message during startup")),
            }
        }
    }

    /// Whether the session is TLS-encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The server's major version (e.g. 15), 0 if the server did not report it.
    pub fn server_major_version(&self) -> u32 {
        self.server_major
    }

    /// `user@host:port/db` of this session.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Bytes read from the socket so far (including protocol framing).
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// Simple-query protocol; returns the rows of the LAST result set as text (`None` = NULL).
    /// Several statements separated by `;` run in one implicit transaction unless they manage
    /// their own.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, Error> {
        self.check_idle()?;
        frontend::query(sql, &mut self.write_buf)
            .map_err(|e| self.protocol(format!("cannot encode query: {e}")))?;
        self.flush().await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self.recv().await? {
                Backend::Message(Message::RowDescription(_)) => rows.clear(),
                Backend::Message(Message::DataRow(body)) => {
                    let mut row = Vec::new();
                    let mut ranges = body.ranges();
                    while let Some(range) = ranges
                        .next()
                        .map_err(|e| self.protocol(format!("malformed DataRow: {e}")))?
                    {
                        let cell = match range {
                            None => None,
                            Some(range) => {
                                let bytes = body.buffer().get(range).ok_or_else(|| {
                                    self.protocol("DataRow column out of bounds".to_owned())
                                })?;
                                Some(String::from_utf8(bytes.to_vec()).map_err(|_| {
                                    self.protocol("DataRow column is not UTF-8".to_owned())
                                })?)
                            }
                        };
                        row.push(cell);
                    }
                    rows.push(row);
                }
                Backend::Message(Message::CommandComplete(_))
                | Backend::Message(Message::EmptyQueryResponse) => {}
                Backend::Message(Message::ErrorResponse(body)) => {
                    error = Some(self.server_error(&body, &format!("query `{}`", abbreviate(sql))));
                }
                Backend::Message(Message::CopyOutResponse(_)) => {
                    // Not asked for here: read and discard the data.
                    self.discard_copy_out().await?;
                }
                Backend::Message(Message::CopyInResponse(_)) => {
                    frontend::copy_fail(
                        "COPY FROM STDIN is not supported by simple_query",
                        &mut self.write_buf,
                    )
                    .map_err(|e| self.protocol(e.to_string()))?;
                    self.flush().await?;
                }
                Backend::Message(Message::ReadyForQuery(_)) => {
                    return match error {
                        Some(error) => Err(error),
                        None => Ok(rows),
                    };
                }
                Backend::CopyBoth => {
                    return Err(self.protocol(
                        "simple_query cannot run a streaming command (CopyBothResponse)".to_owned(),
                    ));
                }
                _ => return Err(self.protocol("unexpected message in simple query".to_owned())),
            }
        }
    }

    /// Sends `Terminate` and closes the socket.
    pub async fn close(mut self) -> Result<(), Error> {
        frontend::terminate(&mut self.write_buf);
        self.flush().await?;
        let _ = self.io.shutdown().await;
        Ok(())
    }

    async fn discard_copy_out(&mut self) -> Result<(), Error> {
        loop {
            match self.recv().await? {
                Backend::Message(Message::CopyData(_)) => {}
                Backend::Message(Message::CopyDone) => return Ok(()),
                Backend::Message(Message::ErrorResponse(body)) => {
                    return Err(self.server_error(&body, "COPY"));
                }
                _ => return Err(self.protocol("unexpected message in COPY OUT".to_owned())),
            }
        }
    }

    /// Reads until `ReadyForQuery`, returning the first error seen (after an `ErrorResponse`
    /// the server skips to the end of the query).
    pub(super) async fn finish_query(&mut self, action: &str) -> Result<(), Error> {
        let mut error = None;
        loop {
            match self.recv().await? {
                Backend::Message(Message::ReadyForQuery(_)) => {
                    return match error {
                        Some(error) => Err(error),
                        None => Ok(()),
                    };
                }
                Backend::Message(Message::ErrorResponse(body)) if error.is_none() => {
                    error = Some(self.server_error(&body, action));
                }
                _ => {}
            }
        }
    }

    pub(super) fn check_idle(&self) -> Result<(), Error> {
        match self.busy {
            None => Ok(()),
            Some(what) => Err(Error::Unusable {
                target: self.target.clone(),
                reason: format!("a {what} was abandoned before its end"),
            }),
        }
    }

    /// Writes everything buffered in `write_buf` and flushes the socket. Cancel-safe: bytes
    /// leave `write_buf` only once the socket took them, so a dropped future never leaves half a
    /// message on the wire; the rest goes out with the next flush.
    pub(super) async fn flush(&mut self) -> Result<(), Error> {
        let result = async {
            while !self.write_buf.is_empty() {
                let written = self.io.write(&self.write_buf).await?;
                if written == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
                }
                self.write_buf.advance(written);
            }
            self.io.flush().await
        }
        .await;
        result.map_err(|source| Error::Io {
            target: self.target.clone(),
            source,
        })
    }

    /// Lets the kernel wake this session's reader only once `bytes` are queued while a
    /// backlog streams (see [`LowWater`]); 0 keeps every wake-up.
    pub(super) fn adapt_low_water(&mut self, bytes: usize) {
        #[cfg(target_os = "linux")]
        if let Some(fd) = self.fd {
            self.low_water = LowWater::new(fd, bytes);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = bytes;
    }

    /// The next message that matters to callers (notices and parameter status are consumed).
    /// Cancel-safe: nothing is lost when the future is dropped.
    pub(super) async fn recv(&mut self) -> Result<Backend, Error> {
        loop {
            while let Some(message) = self.parse_buffered()? {
                match message {
                    Backend::Message(Message::NoticeResponse(body)) => {
                        let mut fields = body.fields();
                        let mut text = String::new();
                        while let Ok(Some(field)) = fields.next() {
                            if field.type_() == b'M' {
                                text = String::from_utf8_lossy(field.value_bytes()).into_owned();
                            }
                        }
                        tracing::debug!(target: "etl::source", server = %self.target, notice = %text);
                    }
                    Backend::Message(Message::ParameterStatus(body)) => {
                        if let (Ok("server_version"), Ok(value)) = (body.name(), body.value()) {
                            self.server_major = parse_major(value);
                        }
                    }
                    Backend::Message(Message::NotificationResponse(_)) => {}
                    other => return Ok(other),
                }
            }
            if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 4 {
                self.read_buf.reserve(READ_CHUNK);
            }
            let read = if self.low_water.raised() {
                match tokio::time::timeout(GRACE, self.io.read_buf(&mut self.read_buf)).await {
                    Ok(read) => read,
                    Err(_) => {
                        // Quiet: let the kernel wake us for any byte again.
                        self.low_water.waited();
                        self.io.read_buf(&mut self.read_buf).await
                    }
                }
            } else {
                self.io.read_buf(&mut self.read_buf).await
            };
            if let Ok(n) = &read {
                self.low_water.after_read(*n);
            }
            match read {
                Ok(0) => {
                    return Err(Error::Closed {
                        target: self.target.clone(),
                    });
                }
                Ok(n) => self.bytes_received += n as u64,
                Err(source) => {
                    return Err(Error::Io {
                        target: self.target.clone(),
                        source,
                    });
                }
            }
        }
    }

    fn parse_buffered(&mut self) -> Result<Option<Backend>, Error> {
        let header = match Header::parse(&self.read_buf) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.protocol(format!("bad message header: {e}"))),
        };
        let total = usize::try_from(header.len())
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        if total > MAX_MESSAGE_LEN {
            return Err(self.protocol(format!("message of {total} bytes is too large")));
        }
        if self.read_buf.len() < total {
            self.read_buf.reserve(total - self.read_buf.len());
            return Ok(None);
        }
        if header.tag() == b'W' {
            let _ = self.read_buf.split_to(total);
            return Ok(Some(Backend::CopyBoth));
        }
        match Message::parse(&mut self.read_buf) {
            Ok(Some(message)) => Ok(Some(Backend::Message(message))),
            Ok(None) => Ok(None),
            Err(e) => Err(self.protocol(format!(
                "cannot parse message with tag {:?}: {e}",
                header.tag() as char
            ))),
        }
    }

    pub(super) fn protocol(&self, message: impl Into<String>) -> Error {
        Error::Protocol {
            target: self.target.clone(),
            message: message.into(),
        }
    }

    pub(super) fn server_error(&self, body: &ErrorResponseBody, action: &str) -> Error {
        Error::Server {
            target: self.target.clone(),
            action: action.to_owned(),
            error: Box::new(parse_error_fields(body)),
        }
    }
}

pub(super) fn parse_error_fields(body: &ErrorResponseBody) -> ServerError {
    let mut error = ServerError::default();
    let mut localized_severity = String::new();
    let mut fields = body.fields();
    while let Ok(Some(field)) = fields.next() {
        let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
        match field.type_() {
            b'S' => localized_severity = value,
            b'V' => error.severity = value,
            b'C' => error.code = value,
            b'M' => error.message = value,
            b'D' => error.detail = Some(value),
            b'H' => error.hint = Some(value),
            _ => {}
        }
    }
    if error.severity.is_empty() {
        error.severity = localized_severity;
    }
    error
}

/// TCP keepalive, so a peer that vanished without closing the connection (host down, network
/// partition) surfaces as an I/O error within about a minute instead of a read that never
/// returns.
fn set_keepalive(tcp: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE_IDLE)
        .with_interval(TCP_KEEPALIVE_INTERVAL)
        .with_retries(TCP_KEEPALIVE_RETRIES);
    if let Err(error) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
        tracing::debug!(%error, "cannot enable TCP keepalive");
    }
}

fn parse_major(version: &str) -> u32 {
    version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|major| major.parse().ok())
        .unwrap_or(0)
}

/// The first line of a query, cut to 200 characters, for error messages.
pub(super) fn abbreviate(sql: &str) -> String {
    let line = sql.lines().next().unwrap_or("").trim();
    let mut out: String = line.chars().take(200).collect();
    if out.len() < sql.trim().len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_major_version_is_read_from_the_version_string() {
        assert_eq!(parse_major("15.8 (Debian 15.8-0+deb12u1)"), 15);
        assert_eq!(parse_major("9.6.24"), 9);
        assert_eq!(parse_major("17devel"), 17);
        assert_eq!(parse_major(""), 0);
    }

    #[tokio::test]
    async fn sockets_get_tcp_keepalive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        set_keepalive(&tcp);
        let socket = socket2::SockRef::from(&tcp);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), TCP_KEEPALIVE_IDLE);
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            TCP_KEEPALIVE_INTERVAL
        );
        assert_eq!(
            socket.tcp_keepalive_retries().unwrap(),
            TCP_KEEPALIVE_RETRIES
        );
    }

    #[test]
    fn long_queries_are_abbreviated_in_errors() {
        assert_eq!(abbreviate("select 1"), "select 1");
        assert_eq!(abbreviate("select 1\nfrom t"), "select 1…");
        assert_eq!(abbreviate(&"x".repeat(300)).chars().count(), 201);
    }
}
