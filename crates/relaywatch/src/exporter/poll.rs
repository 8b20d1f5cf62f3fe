//! The poller (admin_peers, then a socket dump, then leak detection) and the destroy listener.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::schedule::DumpSchedule;
use super::{lock, Exporter, PeerCounts};
use crate::classify::{classify_maybe, enode_names_onion, Direction, Route};
use crate::cli::Mode;
use crate::sockdiag::{DestroyListener, SockDiag};
use crate::sources::relay::{Peer, PeerList, RelayError, ReplyBuffer};
use crate::sources::{backoff, sockets, Source};
use crate::traffic::ConnKey;

/// The index of a peer's direction in `catalog::labels::DIRECTION`.
fn direction_index(direction: Option<Direction>) -> usize {
    match direction {
        Some(Direction::Inbound) => 0,
        Some(Direction::Outbound) => 1,
        None => 2,
    }
}

/// The key a leak is remembered by when admin_peers gave no local address.
fn conn_key(peer: &Peer) -> ConnKey {
    let unknown = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    (peer.local.unwrap_or(unknown), peer.remote)
}

/// What the poller keeps from one poll to the next: the connections it holds open, and buffers
/// that would otherwise be allocated afresh every poll (at 1,000 peers, a 0.5 MB reply and maps
/// of a thousand sockets: faulting in their pages cost more CPU than using them).
#[derive(Default)]
struct Scratch {
    body: ReplyBuffer,
    diag: Option<SockDiag>,
    dump: sockets::DumpBuffers,
    /// When the socket counters are dumped (see `--sockets-interval`).
    schedule: DumpSchedule,
}

impl Exporter {
    pub(super) fn poll_loop(&self, heartbeat: &super::workers::Heartbeat) {
        let mut scratch = Scratch::default();
        let mut backoff = self.interval;
        let mut last_error: Option<&'static str> = None;
        loop {
            heartbeat.beat();
            let started = Instant::now();
            let relay = self.poll_once(&mut scratch);
            self.ready.store(true, std::sync::atomic::Ordering::Relaxed);
            // Say it once per kind of failure; every failure is in relaywatch_source_up.
            match &relay {
                Ok(()) => last_error = None,
                Err(error) if last_error != Some(error.class()) => {
                    tracing::warn!("relay source failed: {}", error.summary());
                    last_error = Some(error.class());
                }
                Err(_) => {}
            }
            if let Err(error) = &relay {
                tracing::debug!("relay source failed: {error}");
            }
            // Back off while the relay fails (up to 10 intervals, jittered so retries cannot
            // phase-lock with a relay that flaps), so a dead relay is not hammered; a failing
            // socket dump costs nothing and must not slow the leak guard.
            backoff = if relay.is_ok() {
                self.interval
            } else {
                backoff::next_delay(
                    backoff,
                    self.interval,
                    self.interval * 10,
                    backoff::random_unit(),
                )
            };
            std::thread::sleep(backoff.saturating_sub(started.elapsed()));
        }
    }

    /// One poll: admin_peers, a socket dump, leak detection (removal is queued, never awaited).
    /// `relaywatch_source_poll_duration_seconds{source="relay"}` covers the whole cycle.
    fn poll_once(&self, scratch: &mut Scratch) -> Result<(), RelayError> {
        let started = Instant::now();
        let Scratch {
            body,
            diag,
            dump,
            schedule,
        } = scratch;
        let list = match self.relay.peers_into(body) {
            Ok(list) => list,
            Err(error) => {
                self.published().peers = None;
                self.poll_sockets(diag, dump, schedule, None);
                self.record(Source::Relay, false, started.elapsed());
                return Err(error);
            }
        };
        let classified: Vec<(&Peer, Option<Route>)> = list
            .peers
            .iter()
            .map(|peer| (peer, classify_maybe(peer.direction, peer.remote, &self.tor)))
            .collect();
        self.poll_sockets(diag, dump, schedule, Some(&classified));
        self.publish_peers(&list, &classified);
        if self.mode == Mode::OnlyOnion {
            self.detect_leaks(&classified);
        }
        self.record(Source::Relay, true, started.elapsed());
        Ok(())
    }

    /// Follows this poll's peers in the traffic state and the kernel-side filters and, when
    /// `--sockets-interval` has passed, dumps the sockets and applies the dump, under one lock
    /// (see mod.rs). The dump is most of a poll's cost (the kernel walks its whole socket hash
    /// table: 2–3 ms here however few sockets match), and counters fresher than a scrape are
    /// never seen, so it is not taken at every poll.
    fn poll_sockets(
        &self,
        diag: &mut Option<SockDiag>,
        buffers: &mut sockets::DumpBuffers,
        schedule: &mut DumpSchedule,
        peers: Option<&[(&Peer, Option<Route>)]>,
    ) {
        let keyed: Vec<(ConnKey, Route)> = peers
            .unwrap_or_default()
            .iter()
            .filter_map(|(peer, route)| Some(((peer.local?, peer.remote), (*route)?)))
            .collect();
        let mut traffic = lock(&self.traffic);
        let started = Instant::now();

        let peer_ports = peers
            .unwrap_or_default()
            .iter()
            .filter_map(|(peer, _)| Some(((peer.local?, peer.remote), peer.direction?)));
        let filter = self.relay_ports.update(peer_ports, traffic.followed());
        if !schedule.due(Instant::now(), self.interval, self.sockets_interval) {
            if peers.is_some() && schedule.follows_between_dumps() {
                traffic.observe_poll(&keyed, None, Instant::now());
                // It counts a newly listed peer's waiting destroy event: published now, not at
                // the next dump (up to `--sockets-interval` later).
                self.publish_traffic(&traffic);
            }
            return;
        }
        // Only a poll that dumps needs the socket (reopened here after a failure).
        let was_up = self
            .published()
            .health
            .get(Source::Sockets.as_str())
            .map(|h| h.up);
        if diag.is_none() {
            *diag = SockDiag::open()
                .map_err(|error| {
                    if was_up != Some(false) {
                        tracing::warn!("cannot open sock_diag: {error}");
                    }
                })
                .ok();
        }
        let dump = match diag
            .as_mut()
            .map(|diag| sockets::dump_filtered_into(diag, &filter, buffers))
        {
            Some(Ok(())) => Some(&buffers.samples),
            Some(Err(error)) => {
                // Once per outage; every failed poll shows in relaywatch_source_up.
                if was_up != Some(false) {
                    tracing::warn!("sockets source failed: {error}");
                }
                *diag = None;
                None
            }
            None => None,
        };
        schedule.dumped(started, dump.is_some());
        if let (Some(_), Some(dump)) = (peers, dump) {
            traffic.observe_poll(&keyed, Some(dump), Instant::now());
            self.publish_traffic(&traffic);
        }
        let duration = started.elapsed();
        drop(traffic);
        self.record(Source::Sockets, dump.is_some(), duration);
    }

    fn publish_traffic(&self, traffic: &crate::traffic::Traffic) {
        let mut published = self.published();
        published.traffic = traffic.totals();
        published.destroy_events_dropped = traffic.destroy_events_dropped();
    }

    fn publish_peers(&self, list: &PeerList, classified: &[(&Peer, Option<Route>)]) {
        let mut counts = PeerCounts::default();
        for (peer, route) in classified {
            // Without a route the entry is only counted as unparsed (`list.problems`); without
            // a direction it is that too, and counted here as `unknown`.
            let Some(route) = route else {
                continue;
            };
            let slot = match route {
                Route::Tor => &mut counts.tor,
                Route::Clearnet => &mut counts.clearnet,
            };
            slot[direction_index(peer.direction)] += 1;
            if *route == Route::Clearnet && enode_names_onion(&peer.enode) {
                counts.onion_fallback += 1;
            }
        }
        let unparsed = list
            .problems
            .iter()
            .map(|problem| problem.index)
            .collect::<BTreeSet<_>>()
            .len() as u64
            + list.over_limit as u64;
        let mut published = self.published();
        published.peers = Some(counts);
        published.unparsed_peers += unparsed;
        drop(published);
        if let Some(first) = list.problems.first() {
            // Only the entry's position and a fixed problem text: nothing from the relay.
            tracing::debug!("{unparsed} admin_peers entries incomplete; first: {first}");
        }
    }

    /// Counts each clearnet connection once; with --enforce queues its removal, every poll
    /// while it is listed (admin_removePeer does not ban).
    fn detect_leaks(&self, classified: &[(&Peer, Option<Route>)]) {
        let clearnet: Vec<(String, String, ConnKey)> = classified
            .iter()
            .filter(|(_, route)| *route == Some(Route::Clearnet))
            .map(|(peer, _)| (peer.id.clone(), peer.enode.clone(), conn_key(peer)))
            .collect();
        let leaks = lock(&self.guard).observe(clearnet);
        let new = leaks.iter().filter(|leak| leak.new).count() as u64;
        if new > 0 {
            self.published().leaks_total += new;
        }
        if new > 0 {
            // One line per poll, however many: a hostile reply must not flood the log.
            tracing::warn!(
                "{new} new clearnet peer connection(s) to an only-onion relay (privacy leak)"
            );
        }
        for leak in leaks {
            if leak.new {
                tracing::debug!(
                    "leak audit: peer id={} enode={} local={} remote={}",
                    leak.id,
                    leak.enode,
                    leak.key.0,
                    leak.key.1
                );
            }
            if self.enforce {
                if leak.enode.is_empty() {
                    if leak.new {
                        tracing::warn!("a leaking peer has no enode in admin_peers, so admin_removePeer cannot name it; it stays connected until it leaves");
                    }
                } else {
                    self.removals.enqueue(&leak.enode);
                }
            }
        }
        let pending = self.removals.pending();
        if pending > 0 {
            tracing::debug!("{pending} leak removals pending");
        }
    }

    pub(super) fn destroy_loop(&self) {
        let mut listener: Option<DestroyListener> = None;
        // Overruns of the current listener already added to the published total.
        let mut counted_overruns = 0;
        loop {
            if listener.is_none() {
                match DestroyListener::open_filtered(self.relay_ports.destroy_filter()) {
                    Ok(opened) => {
                        listener = Some(opened);
                        counted_overruns = 0;
                    }
                    Err(error) => {
                        tracing::warn!(
                            "cannot subscribe to socket destroy events: {error}; the last bytes of closing peers may be missed"
                        );
                        std::thread::sleep(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            let Some(open) = listener.as_mut() else {
                continue;
            };
            let received = open.recv(Duration::from_secs(1));
            let overruns = open.overruns();
            if overruns > counted_overruns {
                self.published().destroy_overruns += overruns - counted_overruns;
                tracing::warn!("the kernel dropped socket destroy events; bytes of sockets closed meanwhile may be missing");
                counted_overruns = overruns;
            }
            match received {
                Ok(closed) if !closed.is_empty() => {
                    let now = Instant::now();
                    let mut traffic = lock(&self.traffic);
                    for socket in &closed {
                        if let Some(sample) = sockets::sample(socket) {
                            traffic.observe_destroyed(sample, now);
                        }
                    }
                    self.publish_traffic(&traffic);
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!("socket destroy events failed: {error}; resubscribing in 1 s");
                    listener = None;
                    // An error that repeats at once must not become a busy loop.
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
}
