//! [`LowWater`]: an adaptive `SO_RCVLOWAT` on the replication socket, so a client draining a
//! backlog is not woken for every message the walsender sends.
//!
//! While the walsender keeps the socket busy, every `send` it makes wakes a reader parked in
//! `epoll_wait`, whether or not the reader wants data yet; those wake-ups cost the walsender
//! kernel time on each send and slow the whole drain down. With a low-water mark of N bytes
//! the kernel wakes the reader only once N bytes are queued. The mark adapts:
//! - a read that returns a large amount (the socket had a lot queued: a backlog) raises it;
//! - a read that waits longer than a short grace period lowers it to 1 (setting the option
//!   makes the kernel re-check the queue), so a quiet stream's last bytes are never held back
//!   longer than that grace period.
//!
//! `socket2` and `nix` expose no setter for `SO_RCVLOWAT`, so it is set through `libc` here.

use std::time::Duration;

/// A read at least this large means the socket had a backlog queued.
const BACKLOG_READ: usize = 32 * 1024;

/// How long a read may wait with a raised mark before the mark drops to 1.
pub(super) const GRACE: Duration = Duration::from_millis(1);

/// The low-water mark of one socket.
#[derive(Debug)]
pub(super) struct LowWater {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
    /// The mark used while a backlog streams; 0 = never raised.
    high: usize,
    /// The mark currently set on the socket.
    current: usize,
}

impl LowWater {
    /// A mark that stays at the kernel's default (1).
    pub fn off() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            fd: -1,
            high: 0,
            current: 1,
        }
    }

    /// Adapts the mark of the socket `fd` between 1 and `high` bytes (0: never raised).
    #[cfg(target_os = "linux")]
    pub fn new(fd: std::os::fd::RawFd, high: usize) -> Self {
        Self {
            fd,
            high,
            current: 1,
        }
    }

    /// Whether a read should give up waiting after [`GRACE`] and call [`Self::waited`].
    pub fn raised(&self) -> bool {
        self.current > 1
    }

    /// A read returned `bytes`.
    pub fn after_read(&mut self, bytes: usize) {
        if self.high > 1 && bytes >= BACKLOG_READ && self.current != self.high {
            self.set(self.high);
        }
    }

    /// A read waited longer than [`GRACE`]: the stream is quiet.
    pub fn waited(&mut self) {
        if self.current != 1 {
            self.set(1);
        }
    }

    fn set(&mut self, mark: usize) {
        #[cfg(target_os = "linux")]
        {
            let value = libc::c_int::try_from(mark).unwrap_or(libc::c_int::MAX);
            // SAFETY: `fd` is the socket of the session that owns this value (it is closed
            // only when the session is dropped, which drops this value too); the option value
            // is a valid c_int of the size given.
            let result = unsafe {
                libc::setsockopt(
                    self.fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVLOWAT,
                    std::ptr::from_ref(&value).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if result != 0 {
                tracing::debug!(error = %std::io::Error::last_os_error(),
                    "cannot set SO_RCVLOWAT; reading without it");
                self.high = 0;
                self.current = 1;
                return;
            }
        }
        self.current = mark;
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn mark_of(fd: std::os::fd::RawFd) -> libc::c_int {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid socket and a c_int-sized out value.
        let result = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                std::ptr::from_mut(&mut value).cast(),
                &mut len,
            )
        };
        assert_eq!(result, 0);
        value
    }

    #[tokio::test]
    async fn the_mark_rises_on_a_backlog_and_drops_when_a_read_waits() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let fd = socket.as_raw_fd();
        let mut mark = LowWater::new(fd, 16 * 1024);
        mark.after_read(100);
        assert!(!mark.raised(), "a small read is not a backlog");
        mark.after_read(BACKLOG_READ);
        assert!(mark.raised());
        assert_eq!(mark_of(fd), 16 * 1024);
        mark.waited();
        assert!(!mark.raised());
        assert_eq!(mark_of(fd), 1);
        let mut off = LowWater::new(fd, 0);
        off.after_read(BACKLOG_READ);
        assert!(!off.raised(), "0 never raises the mark");
    }
}
