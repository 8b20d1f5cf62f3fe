//! The sockets source: kernel byte counters of the relay's peer sockets (sock_diag dump + destroy events).
//!
//! Also decides which sockets the kernel should show us at all ([`RelayPorts`]): the network
//! namespace may hold thousands of unrelated ones.
//!
//! # Which ports
//!
//! One filter serves the dump and the destroy events, made of ports that stay fixed:
//! - the relay's listen port, the local port of every inbound peer, Tor or clearnet (the onion
//!   service forwards to it), learned from the first inbound entry;
//! - the Tor SOCKS port (`--tor-proxy`), the remote port of every outbound Tor connection;
//! - the remote ports of outbound clearnet peers seen so far (peers listen on few ports, mostly
//!   30303), the most recent [`MAX_DIALED_PORTS`];
//! - and the local port of any listed or followed connection those do not cover (an entry
//!   whose port was forgotten under the bound).
//!
//! Not each connection's own local port: at 1,000 peers that makes a 14 KB program, and the
//! kernel audits a program in time quadratic in its length on every dump (`valid_cc` walks from
//! the start for each inner jump): measured 6 ms of kernel CPU per dump at 1,000 ports, 72 ms
//! at 4,300, against 2.4 ms for the dump itself. Fixed ports also keep the destroy filter
//! unchanged from poll to poll, so it is rarely re-attached.
//!
//! # Why filtering on the ports known at the last poll loses no byte counted without a filter
//!
//! Bytes are counted only for connections that admin_peers lists (`traffic.rs`), from
//! (a) dump samples of listed connections and of followed ones (listed earlier, not yet gone);
//! (b) destroy events of followed connections, including closing ones awaiting their event;
//! (c) destroy events that arrive before their connection is listed: a peer that connected
//!     after one admin_peers call, is listed by the next, and closed before that poll's dump.
//!
//! The filter is rebuilt after admin_peers and before the dump, and covers every listed and
//! followed connection, so (a) and (b) lose nothing. Destroy events are judged when the kernel
//! queues them, by the filter of the last [`RelayPorts::update`]: (c) is the race, its socket
//! was unknown then. The fixed ports cover it for every inbound peer once the listen port is
//! known, every outbound Tor peer, and every outbound clearnet peer on a port seen before.
//!
//! What is left: an inbound peer before any inbound peer was ever listed, or an outbound
//! clearnet dial to a port never seen, that connects after one admin_peers call, is listed by
//! the next, and whose socket is freed between that reply and this poll's `update` (the HTTP
//! transfer and JSON decode, milliseconds per poll interval). Its destroy event is dropped where
//! it would have been counted without a filter; `update` runs right after admin_peers to keep
//! that window short. `tests::a_peer_that_connects_and_closes_between_two_polls_is_counted`
//! shows the cases the fixed ports close.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::classify::Direction;
use crate::sockdiag::{DestroyFilter, PortFilter, SockDiag, TcpSocket};
use crate::traffic::{ConnKey, ConnMap, SocketSample};

/// Payload counters of one socket; `None` when the kernel gave no tcp_info for it.
pub fn sample(socket: &TcpSocket) -> Option<SocketSample> {
    Some(SocketSample {
        local: socket.local,
        remote: socket.remote,
        cookie: socket.cookie,
        received: socket.payload_received()?,
        sent: socket.payload_sent()?,
    })
}

/// Dumps every TCP socket of the network namespace, keyed by (local, remote). For tests and
/// benchmarks; the poller reuses its buffers ([`dump_filtered_into`]).
#[cfg(test)]
pub fn dump(diag: &mut SockDiag) -> io::Result<ConnMap<SocketSample>> {
    let mut samples = ConnMap::default();
    keyed(&diag.dump()?, &mut samples);
    Ok(samples)
}

/// What a poller keeps from one dump to the next, so that a dump allocates nothing once the
/// buffers have grown to the relay's peer count.
#[derive(Default)]
pub struct DumpBuffers {
    sockets: Vec<TcpSocket>,
    /// The last dump's samples, keyed by (local, remote).
    pub samples: ConnMap<SocketSample>,
}

/// Dumps the sockets `filter` selects (see [`RelayPorts::update`]), keyed by (local, remote).
/// For tests and benchmarks, like [`dump`].
#[cfg(test)]
pub fn dump_filtered(
    diag: &mut SockDiag,
    filter: &PortFilter,
) -> io::Result<ConnMap<SocketSample>> {
    let mut buffers = DumpBuffers::default();
    dump_filtered_into(diag, filter, &mut buffers)?;
    Ok(buffers.samples)
}

/// [`dump_filtered`] into `buffers.samples`, reusing the buffers.
pub fn dump_filtered_into(
    diag: &mut SockDiag,
    filter: &PortFilter,
    buffers: &mut DumpBuffers,
) -> io::Result<()> {
    diag.dump_filtered_into(filter, &mut buffers.sockets)?;
    keyed(&buffers.sockets, &mut buffers.samples);
    Ok(())
}

fn keyed(sockets: &[TcpSocket], samples: &mut ConnMap<SocketSample>) {
    samples.clear();
    samples.reserve(sockets.len());
    samples.extend(
        sockets
            .iter()
            .filter_map(sample)
            .map(|sample| (sample.key(), sample)),
    );
}

/// Listen ports remembered: a relay has one, possibly on IPv4 and IPv6; the bound is slack.
pub const MAX_LISTEN_PORTS: usize = 16;
/// Remote ports of outbound clearnet peers remembered, least recently seen forgotten first.
pub const MAX_DIALED_PORTS: usize = 256;

/// Ports learned from admin_peers that stay in the destroy filter (see the module comment).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LearnedPorts {
    /// Port -> the update that last saw it.
    listen: BTreeMap<u16, u64>,
    dialed: BTreeMap<u16, u64>,
    updates: u64,
}

impl LearnedPorts {
    fn learn(&mut self, key: ConnKey, direction: Direction, tor_proxy_port: u16) {
        let (local, remote) = (key.0.port(), key.1.port());
        match direction {
            Direction::Inbound => remember(&mut self.listen, local, self.updates, MAX_LISTEN_PORTS),
            Direction::Outbound if remote != tor_proxy_port => {
                remember(&mut self.dialed, remote, self.updates, MAX_DIALED_PORTS)
            }
            Direction::Outbound => {}
        }
    }
}

fn remember(ports: &mut BTreeMap<u16, u64>, port: u16, now: u64, max: usize) {
    ports.insert(port, now);
    if ports.len() > max {
        if let Some((&oldest, _)) = ports.iter().min_by_key(|(_, seen)| **seen) {
            ports.remove(&oldest);
        }
    }
}

/// The filter of one poll; pure. `peers` are this poll's admin_peers entries, `followed` the
/// connections traffic still counts (`Traffic::followed`).
pub fn filter<'a>(
    peers: impl IntoIterator<Item = (ConnKey, Direction)>,
    followed: impl IntoIterator<Item = &'a ConnKey>,
    tor_proxy: SocketAddr,
    learned: &mut LearnedPorts,
) -> PortFilter {
    learned.updates += 1;
    let peers: Vec<(ConnKey, Direction)> = peers.into_iter().collect();
    for (key, direction) in &peers {
        learned.learn(*key, *direction, tor_proxy.port());
    }
    let mut filter = PortFilter {
        local: learned.listen.keys().copied().collect(),
        remote: learned.dialed.keys().copied().collect(),
    };
    filter.remote.insert(tor_proxy.port());
    let keys = peers
        .iter()
        .map(|(key, _)| *key)
        .chain(followed.into_iter().copied());
    let uncovered: Vec<u16> = keys
        .filter(|(local, remote)| !filter.matches(local.port(), remote.port()))
        .map(|(local, _)| local.port())
        .collect();
    filter.local.extend(uncovered);
    filter
}

/// The relay's ports across polls, and the destroy-event filter they make.
#[derive(Debug)]
pub struct RelayPorts {
    tor_proxy: SocketAddr,
    learned: Mutex<LearnedPorts>,
    destroy: DestroyFilter,
    /// Whether the last attach failed, so that the warning is logged once per failure spell.
    destroy_failing: AtomicBool,
}

impl RelayPorts {
    /// `tor_proxy` is the relay's `--tor-proxy` (the exporter's `--tor-proxy`).
    pub fn new(tor_proxy: SocketAddr) -> RelayPorts {
        RelayPorts {
            tor_proxy,
            learned: Mutex::new(LearnedPorts::default()),
            destroy: DestroyFilter::new(),
            destroy_failing: AtomicBool::new(false),
        }
    }

    /// For the destroy listener: `DestroyListener::open_filtered(ports.destroy_filter())`.
    pub fn destroy_filter(&self) -> &DestroyFilter {
        &self.destroy
    }

    /// Call right after admin_peers, before the dump: re-attaches the destroy filter (when it
    /// changed) and returns the same filter for the dump. `peers` are this poll's entries (none
    /// if admin_peers failed), `followed` the connections traffic still counts.
    pub fn update<'a>(
        &self,
        peers: impl IntoIterator<Item = (ConnKey, Direction)>,
        followed: impl IntoIterator<Item = &'a ConnKey>,
    ) -> PortFilter {
        let filter = {
            let mut learned = self
                .learned
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            filter(peers, followed, self.tor_proxy, &mut learned)
        };
        match self.destroy.set(&filter) {
            Ok(()) => {
                if self.destroy_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("socket destroy events are filtered in the kernel again");
                }
            }
            Err(error) => {
                if !self.destroy_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "cannot filter socket destroy events in the kernel ({error}); receiving all of them"
                    );
                }
            }
        }
        filter
    }
}

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;
