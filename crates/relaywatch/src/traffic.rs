//! Byte accounting: turns per-socket kernel counters of peer sockets into monotonic totals per route.
//!
//! Pure state, no IO: the caller feeds it admin_peers (which sockets are peers, and how they
//! are routed), socket dumps, and destroy events (the final counters of closed sockets).
//! A connection counts from its first byte, because a socket's counters are cumulative since
//! it opened, even when the peer shows up in admin_peers only later.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::classify::Route;

/// A TCP connection as both admin_peers and the kernel name it: the relay's end, the other end.
pub type ConnKey = (SocketAddr, SocketAddr);

/// A map keyed by connection. foldhash instead of std's SipHash: a poll at 1,000 peers makes
/// several thousand lookups, and SipHash over two `SocketAddr`s was 8 % of a poll's CPU; the
/// keys come from the kernel and the relay, and foldhash's per-process seed still keeps an
/// outsider from choosing colliding addresses in advance.
pub type ConnMap<V> = HashMap<ConnKey, V, foldhash::fast::RandomState>;

/// Payload counters of one socket, read from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketSample {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The kernel's socket cookie: tells a new socket from an old one on a reused 4-tuple.
    pub cookie: u64,
    pub received: u64,
    pub sent: u64,
}

impl SocketSample {
    pub fn key(&self) -> ConnKey {
        (self.local, self.remote)
    }
}

/// Cumulative bytes per route; never decreases.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub tor_received: u64,
    pub tor_sent: u64,
    pub clearnet_received: u64,
    pub clearnet_sent: u64,
}

#[derive(Debug)]
struct Tracked {
    route: Route,
    cookie: Option<u64>,
    received: u64,
    sent: u64,
    /// The last poll (`Traffic::polls`) whose admin_peers listed this connection.
    listed_in: u64,
}

impl Tracked {
    fn new(route: Route) -> Tracked {
        Tracked {
            route,
            cookie: None,
            received: 0,
            sent: 0,
            listed_in: 0,
        }
    }

    /// What `sample` adds to what was already counted for this connection; remembers it.
    fn advance(&mut self, sample: &SocketSample) -> (u64, u64) {
        if self.cookie.is_some_and(|cookie| cookie != sample.cookie) {
            // Same 4-tuple, new socket: its counters start from zero.
            self.received = 0;
            self.sent = 0;
        }
        self.cookie = Some(sample.cookie);
        let received = sample.received.saturating_sub(self.received);
        let sent = sample.sent.saturating_sub(self.sent);
        self.received = self.received.max(sample.received);
        self.sent = self.sent.max(sample.sent);
        (received, sent)
    }
}

/// Destroy events of sockets not (yet) known as peers are kept this long: a peer listed by
/// admin_peers may close before the next dump, and then only its destroy event has its bytes.
const DESTROYED_KEEP: Duration = Duration::from_secs(30);
/// Bound on that buffer: unrelated sockets in the network namespace also close.
const DESTROYED_MAX: usize = 20_000;

/// `key`'s sample in a dump, unless its socket's final counters were already counted (a dump
/// taken before the close but applied after it).
fn live(
    sockets: &ConnMap<SocketSample>,
    finished: &HashMap<u64, Instant, foldhash::fast::RandomState>,
    key: &ConnKey,
) -> Option<SocketSample> {
    sockets
        .get(key)
        .filter(|sample| !finished.contains_key(&sample.cookie))
        .copied()
}

#[derive(Debug, Default)]
pub struct Traffic {
    tracked: ConnMap<Tracked>,
    /// Connections no longer listed whose socket left the dump before its destroy event was
    /// applied. Leaving the dump does not mean the event was handled: the kernel broadcasts it
    /// from a work queue after freeing the socket, a socket that got the peer's FIN while its
    /// owner still holds it is out of the dump until the owner closes it, and the exporter's
    /// destroy thread may hold a read event while it waits for the lock the poller holds across
    /// the dump (issue 9: 2,585 bytes each way lost that way). Kept until the event, at most
    /// `DESTROYED_KEEP`.
    closing: ConnMap<(Tracked, Instant)>,
    destroyed: ConnMap<(SocketSample, Instant)>,
    /// Cookies of sockets whose final counters were counted: a dump taken before the close
    /// but applied after it must not start them over.
    finished: HashMap<u64, Instant, foldhash::fast::RandomState>,
    totals: Totals,
    /// Polls observed so far; tells listed connections from unlisted ones without a set per poll.
    polls: u64,
    /// Scratch for the unlisted connections of a poll, kept so a poll allocates nothing.
    unlisted: Vec<ConnKey>,
    /// Destroy events dropped because `destroyed` was full (never decreases).
    destroyed_dropped: u64,
}

impl Traffic {
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Destroy events of unknown sockets dropped because [`DESTROYED_MAX`] were waiting: if one
    /// was a peer's (listed at the next poll), its last bytes are missing.
    pub fn destroy_events_dropped(&self) -> u64 {
        self.destroyed_dropped
    }

    /// Number of sockets currently followed (peer sockets, and closing ones).
    pub fn tracked(&self) -> usize {
        self.tracked.len() + self.closing.len()
    }

    /// The connections whose counters may still be counted: listed, or closing. A kernel-side
    /// filter must let their sockets and destroy events through.
    pub fn followed(&self) -> impl Iterator<Item = &ConnKey> {
        self.tracked.keys().chain(self.closing.keys())
    }

    fn add(&mut self, route: Route, received: u64, sent: u64) {
        match route {
            Route::Tor => {
                self.totals.tor_received += received;
                self.totals.tor_sent += sent;
            }
            Route::Clearnet => {
                self.totals.clearnet_received += received;
                self.totals.clearnet_sent += sent;
            }
        }
    }

    /// Counts what `sample` adds to what was already counted for its connection.
    fn apply(&mut self, key: ConnKey, sample: &SocketSample, now: Instant) {
        let Some(tracked) = self.tracked.get_mut(&key) else {
            return;
        };
        if tracked.cookie.is_some_and(|cookie| cookie != sample.cookie) {
            // Same 4-tuple, new socket: the old one is gone, but its destroy event has not been
            // applied (it would have ended this entry), and holds its last bytes. It waits as
            // closing; left here, it would go to the unmatched buffer and, applied to the new
            // socket's entry, count the old socket a second time.
            let new = Tracked {
                listed_in: tracked.listed_in,
                ..Tracked::new(tracked.route)
            };
            let old = std::mem::replace(tracked, new);
            self.closing.insert(key, (old, now));
        }
        let (received, sent) = tracked.advance(sample);
        let route = tracked.route;
        self.add(route, received, sent);
    }

    /// One poll: `peers` are the connections admin_peers lists now, `sockets` the kernel's dump
    /// if this poll took one. Without a dump, new peers are followed (so their destroy events
    /// count) and nothing else changes: unlisted connections wait for the next dump to tell
    /// whether their socket is still open.
    ///
    /// Allocates nothing in a steady state (a poll at 1,000 peers used to build three maps and
    /// spend more time faulting in their fresh pages than counting).
    pub fn observe_poll(
        &mut self,
        peers: &[(ConnKey, Route)],
        sockets: Option<&ConnMap<SocketSample>>,
        now: Instant,
    ) {
        // Expired first: polls stop while admin_peers fails, and an event kept from before
        // must not be taken by a peer that the first poll after lists on its 4-tuple.
        self.closing
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < DESTROYED_KEEP);
        self.destroyed
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < DESTROYED_KEEP);
        self.finished
            .retain(|_, at| now.saturating_duration_since(*at) < DESTROYED_KEEP);
        self.polls += 1;
        let poll = self.polls;
        for (key, route) in peers {
            let sample = sockets.and_then(|sockets| live(sockets, &self.finished, key));
            let tracked = match self.tracked.get_mut(key) {
                Some(tracked) => tracked,
                // Closing and listed again: only a dump can tell the same socket (resume it)
                // from a new one on the same 4-tuple, so it stays closing until the next one.
                None if sockets.is_none() && self.closing.contains_key(key) => continue,
                None => {
                    // A closing socket that a dump shows again (same cookie) was not gone after
                    // all: resume it, or its bytes would be counted a second time from zero.
                    let resumed = match (sample, self.closing.get(key)) {
                        (Some(sample), Some((closing, _)))
                            if closing.cookie == Some(sample.cookie) =>
                        {
                            self.closing.remove(key).map(|(tracked, _)| tracked)
                        }
                        _ => None,
                    };
                    let tracked = resumed.unwrap_or_else(|| Tracked::new(*route));
                    self.tracked.entry(*key).or_insert(tracked)
                }
            };
            tracked.listed_in = poll;
            // An unmatched event of another socket (a cookie a dump did not show on this
            // connection) is not this connection's.
            let cookie = tracked.cookie;
            if let Some(sample) = sample {
                self.apply(*key, &sample, now);
            } else if self
                .destroyed
                .get(key)
                .is_some_and(|(sample, _)| cookie.is_none_or(|cookie| cookie == sample.cookie))
            {
                if let Some((sample, _)) = self.destroyed.remove(key) {
                    self.apply(*key, &sample, now);
                    self.tracked.remove(key);
                }
            }
        }
        if let Some(sockets) = sockets {
            self.settle_unlisted(sockets, poll, now);
        }
    }

    /// After a dump: the connections that this poll did not list.
    fn settle_unlisted(&mut self, sockets: &ConnMap<SocketSample>, poll: u64, now: Instant) {
        // Connections no longer listed: count their last bytes while the socket closes; once it
        // is gone, wait for its destroy event (see `closing`).
        let mut unlisted = std::mem::take(&mut self.unlisted);
        unlisted.clear();
        unlisted.extend(
            self.tracked
                .iter()
                .filter(|(_, tracked)| tracked.listed_in != poll)
                .map(|(key, _)| *key),
        );
        for key in &unlisted {
            match live(sockets, &self.finished, key) {
                Some(sample) => self.apply(*key, &sample, now),
                None => {
                    let Some(tracked) = self.tracked.remove(key) else {
                        continue;
                    };
                    // An entry no dump showed has counted nothing; it must not take the place
                    // of a closing socket of its tuple that still awaits its event (listed
                    // again while out of the dump, it is that socket: its event would count
                    // it from zero a second time).
                    if tracked.cookie.is_some() || !self.closing.contains_key(key) {
                        self.closing.insert(*key, (tracked, now));
                    }
                }
            }
        }
        self.unlisted = unlisted;
    }

    /// A socket was destroyed; `sample` holds its final counters.
    pub fn observe_destroyed(&mut self, sample: SocketSample, now: Instant) {
        let key = sample.key();
        let tracked = self.tracked.get(&key).map(|tracked| tracked.cookie);
        let closing = self.closing.get(&key).map(|(tracked, _)| tracked.cookie);
        // The same socket first: on a reused 4-tuple an old socket may be closing while a new one
        // is listed. A connection never seen in a dump (no cookie) takes any socket of its tuple.
        let cookie = Some(Some(sample.cookie));
        let entry = if tracked == cookie {
            self.tracked.remove(&key)
        } else if closing == cookie {
            self.closing.remove(&key).map(|(tracked, _)| tracked)
        } else if tracked == Some(None) {
            self.tracked.remove(&key)
        } else if closing == Some(None) {
            self.closing.remove(&key).map(|(tracked, _)| tracked)
        } else {
            None
        };
        match entry {
            Some(mut tracked) => {
                let (received, sent) = tracked.advance(&sample);
                self.add(tracked.route, received, sent);
                self.finished.insert(sample.cookie, now);
            }
            None if self.destroyed.len() < DESTROYED_MAX || self.destroyed.contains_key(&key) => {
                self.destroyed.insert(key, (sample, now));
            }
            None => self.destroyed_dropped += 1,
        }
    }
}

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;
