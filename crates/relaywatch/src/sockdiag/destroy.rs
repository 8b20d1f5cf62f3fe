//! Receives the final counters of every TCP socket freed in our network namespace; unprivileged.
//!
//! A poller loses what a connection sent after its last dump: a closed socket turns into a
//! TIME-WAIT mini socket without tcp_info. The kernel multicasts each freed socket with its tcp_info
//! to the sock_diag destroy groups, and lets unprivileged sockets join them
//! (`NL_CFG_F_NONROOT_RECV` in net/core/sock_diag.c).

use std::io;
use std::time::Duration;

use super::netlink::NetlinkSocket;
use super::socket::TcpSocket;
use super::wire;

/// Each event is one datagram of about 350 bytes; room for every message even if we fall behind.
const RECEIVE_BUFFER: usize = 64 * 1024;
/// Kernel-side queue: about 4 MiB holds thousands of events between two `recv` calls.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;
/// Bounds one `recv` call under a storm of closes, so the caller gets to publish in between.
const MAX_DATAGRAMS_PER_CALL: usize = 4096;

/// A subscription to TCP destroy events (IPv4 and IPv6 sockets).
pub struct DestroyListener {
    socket: NetlinkSocket,
    buf: Vec<u8>,
    overruns: u64,
    malformed: u64,
}

impl DestroyListener {
    pub fn open() -> io::Result<DestroyListener> {
        DestroyListener::open_with_buffer(SOCKET_BUFFER)
    }

    fn open_with_buffer(socket_buffer: usize) -> io::Result<DestroyListener> {
        let socket = NetlinkSocket::open()?;
        // Best effort: a smaller buffer only means earlier overruns, which are counted.
        let _ = socket.set_receive_buffer(socket_buffer);
        socket.bind()?;
        socket.join_group(wire::SKNLGRP_INET_TCP_DESTROY)?;
        socket.join_group(wire::SKNLGRP_INET6_TCP_DESTROY)?;
        Ok(DestroyListener {
            socket,
            buf: vec![0; RECEIVE_BUFFER],
            overruns: 0,
            malformed: 0,
        })
    }

    /// Waits up to `timeout` for events, then drains what is queued. Returns the sockets freed since
    /// the last call (empty on timeout). Sockets that never connected (listeners, unconnected
    /// sockets; remote port 0) are left out.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Vec<TcpSocket>> {
        let mut sockets = Vec::new();
        if !self.socket.wait_readable(timeout)? {
            return Ok(sockets);
        }
        for _ in 0..MAX_DATAGRAMS_PER_CALL {
            let len = match self.socket.recv(&mut self.buf, true) {
                Ok(len) => len,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                // The kernel dropped events because its queue was full; the socket stays usable.
                Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.overruns += 1;
                    continue;
                }
                Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                    self.malformed += 1;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let parsed = wire::parse_messages(&self.buf[..len], None);
            self.malformed += parsed.malformed as u64;
            sockets.extend(
                parsed
                    .sockets
                    .into_iter()
                    .filter(|socket| socket.remote.port() != 0),
            );
        }
        Ok(sockets)
    }

    /// How often the kernel reported ENOBUFS since `open`: each time, an unknown number of events
    /// (and their final counters) was lost.
    pub fn overruns(&self) -> u64 {
        self.overruns
    }

    /// Datagrams or messages that could not be decoded since `open`.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// A listener whose kernel queue holds only a few events, to provoke overruns.
    #[cfg(test)]
    pub(super) fn open_tiny() -> io::Result<DestroyListener> {
        DestroyListener::open_with_buffer(4096)
    }

    /// Waits until the kernel has flagged an overrun, without reading anything.
    #[cfg(test)]
    pub(super) fn wait_overrun_pending(&self, timeout: Duration) -> io::Result<bool> {
        self.socket.wait_error(timeout)
    }
}
