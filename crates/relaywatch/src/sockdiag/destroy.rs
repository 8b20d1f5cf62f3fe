//! Receives the final counters of every TCP socket freed in our network namespace; unprivileged.
//!
//! A poller loses what a connection sent after its last dump: a closed socket turns into a
//! TIME-WAIT mini socket without tcp_info. The kernel multicasts each freed socket with its tcp_info
//! to the sock_diag destroy groups, and lets unprivileged sockets join them
//! (`NL_CFG_F_NONROOT_RECV` in net/core/sock_diag.c). A [`DestroyFilter`] makes the kernel drop
//! the events of sockets we do not follow before they are queued (see `super::bpf`).

use std::io;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::bpf;
use super::filter::PortFilter;
use super::netlink::NetlinkSocket;
use super::socket::TcpSocket;
use super::wire;

/// Each event is one datagram of about 350 bytes; room for every message even if we fall behind.
const RECEIVE_BUFFER: usize = 64 * 1024;
/// Kernel-side queue: about 4 MiB holds thousands of events between two `recv` calls.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;
/// Bounds one `recv` call under a storm of closes, so the caller gets to publish in between.
const MAX_DATAGRAMS_PER_CALL: usize = 4096;

/// Smaller programs to try when the kernel refuses a long one (ENOMEM: `net.core.optmem_max`
/// bounds the memory a socket's filter may take; 20 KiB before Linux 6.9).
const FALLBACK_INSTRUCTIONS: [usize; 3] = [bpf::MAX_INSTRUCTIONS, 1024, 128];

/// The port filter of the destroy-event socket, shared by the thread that decides the ports (the
/// poller) and the listener's thread: [`DestroyFilter::set`] re-attaches it at once to the open
/// listener, and a listener opened later starts with it.
#[derive(Debug, Clone, Default)]
pub struct DestroyFilter {
    shared: Arc<Mutex<FilterSlot>>,
}

#[derive(Debug, Default)]
struct FilterSlot {
    /// `None` until the first `set`: until then every event is kept.
    ports: Option<PortFilter>,
    /// Whether `ports` is what the kernel runs (false after a refused attach: retried next set).
    attached: bool,
    socket: Weak<NetlinkSocket>,
}

impl DestroyFilter {
    pub fn new() -> DestroyFilter {
        DestroyFilter::default()
    }

    /// From now on, keep only events of sockets that `ports` matches (events already queued
    /// stay). Cheap when the ports did not change. On error the listener keeps every event.
    pub fn set(&self, ports: &PortFilter) -> io::Result<()> {
        let mut slot = self.slot();
        if slot.attached && slot.ports.as_ref() == Some(ports) {
            return Ok(());
        }
        slot.ports = Some(ports.clone());
        slot.attached = false;
        let Some(socket) = slot.socket.upgrade() else {
            return Ok(());
        };
        attach(&socket, ports)?;
        slot.attached = true;
        Ok(())
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, FilterSlot> {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Attaches the filter for `ports`, smaller if the kernel refuses it; if no size is accepted,
/// removes any filter, so that no event is lost to an outdated one.
fn attach(socket: &NetlinkSocket, ports: &PortFilter) -> io::Result<()> {
    let mut refused = None;
    for max_instructions in FALLBACK_INSTRUCTIONS {
        match socket.attach_filter(&bpf::compile(ports, max_instructions)) {
            Ok(()) => return Ok(()),
            Err(error) => refused = Some(error),
        }
    }
    socket.detach_filter()?;
    Err(refused.unwrap_or_else(|| io::Error::other("no filter program")))
}

/// A subscription to TCP destroy events (IPv4 and IPv6 sockets).
pub struct DestroyListener {
    socket: Arc<NetlinkSocket>,
    buf: Vec<u8>,
    overruns: u64,
    malformed: u64,
}

impl DestroyListener {
    /// Events of every socket of the network namespace.
    pub fn open() -> io::Result<DestroyListener> {
        DestroyListener::open_with_buffer(SOCKET_BUFFER, None)
    }

    /// Events of the sockets `filter` selects, from the first event on; every event until the
    /// filter's first `set`.
    pub fn open_filtered(filter: &DestroyFilter) -> io::Result<DestroyListener> {
        DestroyListener::open_with_buffer(SOCKET_BUFFER, Some(filter))
    }

    pub(super) fn open_with_buffer(
        socket_buffer: usize,
        filter: Option<&DestroyFilter>,
    ) -> io::Result<DestroyListener> {
        let socket = Arc::new(NetlinkSocket::open()?);
        // Best effort: a smaller buffer only means earlier overruns, which are counted.
        let _ = socket.set_receive_buffer(socket_buffer);
        socket.bind()?;
        if let Some(filter) = filter {
            // Before joining the groups, so that no unfiltered event is queued; under the slot's
            // lock, so that a concurrent `set` either sees this socket or is seen here.
            let mut slot = filter.slot();
            slot.socket = Arc::downgrade(&socket);
            slot.attached = false;
            if let Some(ports) = slot.ports.clone() {
                // A refused filter leaves none: every event, as without a filter.
                slot.attached = attach(&socket, &ports).is_ok();
            }
        }
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
        DestroyListener::open_with_buffer(4096, None)
    }

    /// Waits until the kernel has flagged an overrun, without reading anything.
    #[cfg(test)]
    pub(super) fn wait_overrun_pending(&self, timeout: Duration) -> io::Result<bool> {
        self.socket.wait_error(timeout)
    }
}

#[cfg(test)]
mod tests;
