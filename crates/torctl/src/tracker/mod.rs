//! Dial accounting: a pure state machine fed with events that yields the exporter's Tor
//! counters and health gauges.
//!
//! A dial is a STREAM with `PURPOSE=USER` (or no PURPOSE, which tor only writes on NEW) to a
//! `.onion` target: the relay's SOCKS connects. Tor's own directory streams are
//! `DIR_FETCH` with `.exit` targets and never count. Each stream id counts once, on NEW or
//! on the first event seen for it. Its outcome is its first terminal status: SUCCEEDED, or
//! FAILED (always followed by CLOSED), or CLOSED without either. See `classify` for the
//! failure reasons and the crate README for the table.
//!
//! Memory is bounded: stream state lives until the stream's CLOSED (succeeded streams stay
//! for their whole life, one per open Tor peer), unfinished streams expire after
//! `pending_ttl`, onion hints after `hint_ttl`, and both maps have hard caps (the oldest
//! entry is evicted). Counters only grow; keep one tracker for the process lifetime and call
//! [`DialTracker::connection_reset`] after every reconnect.

mod classify;
#[cfg(test)]
mod reason_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

pub use classify::DialError;
use classify::{classify, OnionHints};

use crate::event::{CircEvent, Event, HsDescEvent, StatusEvent, StreamEvent};
use crate::vocab::{
    CircPurpose, CircReason, CircStatus, HsDescAction, HsDescReason, Liveness, OrConnStatus,
    StatusKind, StreamPurpose, StreamStatus,
};

/// Bounds of the tracker's correlation state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackerLimits {
    /// Most streams tracked at once (succeeded ones included).
    pub max_streams: usize,
    /// Most onion addresses with hints at once.
    pub max_onions: usize,
    /// How long an onion's hints stay usable after its last hint event. Default 180 s:
    /// longer than tor's default SocksTimeout (120 s, the longest a dial waits) and than
    /// tor's own memory of failed intro points (HS_CACHE_CLIENT_INTRO_STATE_MAX_AGE, 120 s).
    pub hint_ttl: Duration,
    /// How long a stream without an outcome is kept after its last event.
    pub pending_ttl: Duration,
}

impl Default for TrackerLimits {
    fn default() -> Self {
        TrackerLimits {
            max_streams: 4096,
            max_onions: 1024,
            hint_ttl: Duration::from_secs(180),
            pending_ttl: Duration::from_secs(900),
        }
    }
}

/// The counters the exporter exports. They never decrease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TorCounters {
    /// `p2p_dials_tor_total`
    pub dials_total: u64,
    /// `p2p_dials_tor_success_total`
    pub dials_success_total: u64,
    /// `p2p_dials_tor_error_circuit`: failures with [`DialError::is_circuit_error`].
    pub dials_error_circuit: u64,
    dial_errors: [u64; DialError::ALL.len()],
    /// `tor_circuits_built_total`: CIRC BUILT events.
    pub circuits_built_total: u64,
    circuits_failed: BTreeMap<(&'static str, &'static str), u64>,
    orconn_failed: BTreeMap<&'static str, u64>,
    /// Events observed (all kinds).
    pub events_total: u64,
    /// Events of a known kind that lacked a required field.
    pub events_malformed: u64,
}

impl TorCounters {
    /// `p2p_dials_tor_errors_total{reason}`: every reason, zeros included.
    pub fn dial_errors(&self) -> impl Iterator<Item = (DialError, u64)> + '_ {
        DialError::ALL
            .iter()
            .map(|reason| (*reason, self.dial_errors[reason.index()]))
    }

    pub fn dial_error(&self, reason: DialError) -> u64 {
        self.dial_errors[reason.index()]
    }

    /// All failed dials.
    pub fn dials_failed_total(&self) -> u64 {
        self.dial_errors.iter().sum()
    }

    /// `tor_circuits_failed_total{purpose, reason}`: (purpose label, reason label, count),
    /// only the pairs seen. Labels come from [`CircPurpose::LABELS`] and
    /// [`CircReason::LABELS`].
    pub fn circuits_failed(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        self.circuits_failed
            .iter()
            .map(|((purpose, reason), n)| (*purpose, *reason, *n))
    }

    pub fn circuits_failed_total(&self) -> u64 {
        self.circuits_failed.values().sum()
    }

    /// `tor_orconn_failed_total{reason}`: (reason label from [`crate::vocab::OrConnReason::LABELS`],
    /// count), only the reasons seen.
    pub fn orconn_failed(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.orconn_failed.iter().map(|(reason, n)| (*reason, *n))
    }
}

/// Health gauges as the latest event or GETINFO answer says; `None` until known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TorHealth {
    /// 0-100 (`tor_bootstrap_progress_ratio` = this / 100).
    pub bootstrap_progress: Option<u8>,
    /// `tor_network_liveness`.
    pub network_live: Option<bool>,
    /// `tor_circuit_established`.
    pub circuit_established: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pending,
    Succeeded,
    /// Already counted as failed; waiting for CLOSED.
    Failed,
}

#[derive(Debug)]
struct StreamState {
    /// `None`: a stream to an onion that is not a dial (e.g. DIR_FETCH), remembered so
    /// its later events (which carry no PURPOSE) are not mistaken for a dial.
    onion: Option<String>,
    outcome: Outcome,
    /// Events of this stream may have been missed (seen first mid-life, or in flight
    /// across a reconnect): a bare CLOSED then says nothing about the outcome.
    gap: bool,
    last_seen: Instant,
}

#[derive(Debug)]
struct OnionEntry {
    hints: OnionHints,
    updated: Instant,
}

/// The dial accounting state machine. See the module docs.
#[derive(Debug)]
pub struct DialTracker {
    limits: TrackerLimits,
    streams: HashMap<String, StreamState>,
    onions: HashMap<String, OnionEntry>,
    counters: TorCounters,
    health: TorHealth,
    /// Orders hints; starts at 1 so 0 means "never".
    seq: u64,
    last_sweep: Option<Instant>,
}

impl Default for DialTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl DialTracker {
    pub fn new() -> Self {
        Self::with_limits(TrackerLimits::default())
    }

    pub fn with_limits(limits: TrackerLimits) -> Self {
        DialTracker {
            limits: TrackerLimits {
                max_streams: limits.max_streams.max(1),
                max_onions: limits.max_onions.max(1),
                ..limits
            },
            streams: HashMap::new(),
            onions: HashMap::new(),
            counters: TorCounters::default(),
            health: TorHealth::default(),
            seq: 0,
            last_sweep: None,
        }
    }

    pub fn counters(&self) -> &TorCounters {
        &self.counters
    }

    pub fn health(&self) -> &TorHealth {
        &self.health
    }

    /// Streams and onion addresses currently held (for memory checks).
    pub fn tracked(&self) -> (usize, usize) {
        (self.streams.len(), self.onions.len())
    }

    /// Call after the control connection was re-established: events were missed, so a
    /// stream in flight that later shows only CLOSED gets no outcome (it stays counted in
    /// `dials_total`). Streams that SUCCEEDED or FAILED later are still counted.
    pub fn connection_reset(&mut self) {
        for stream in self.streams.values_mut() {
            stream.gap = true;
        }
    }

    /// Health from a GETINFO answer (see [`crate::getinfo`]); `None` leaves a value as is.
    pub fn set_health(
        &mut self,
        bootstrap_progress: Option<u8>,
        network_live: Option<bool>,
        circuit_established: Option<bool>,
    ) {
        let health = &mut self.health;
        health.bootstrap_progress = bootstrap_progress.or(health.bootstrap_progress);
        health.network_live = network_live.or(health.network_live);
        health.circuit_established = circuit_established.or(health.circuit_established);
    }

    /// Feeds one event received at `now` (a monotonic clock; only differences matter).
    pub fn observe(&mut self, event: &Event, now: Instant) {
        self.counters.events_total += 1;
        self.sweep(now);
        match event {
            Event::Stream(stream) => self.on_stream(stream, now),
            Event::Circ(circ) => self.on_circ(circ, now),
            Event::HsDesc(desc) => self.on_hs_desc(desc, now),
            Event::OrConn(orconn) => {
                if orconn.status == OrConnStatus::Failed {
                    let reason = orconn.reason.as_ref().map_or("other", |r| r.label());
                    *self.counters.orconn_failed.entry(reason).or_default() += 1;
                }
            }
            Event::NetworkLiveness(liveness) => match liveness {
                Liveness::Up => self.health.network_live = Some(true),
                Liveness::Down => self.health.network_live = Some(false),
                Liveness::Other(_) => {}
            },
            Event::Status(status) => self.on_status(status),
            Event::Malformed { .. } => self.counters.events_malformed += 1,
            Event::Other { .. } => {}
        }
    }

    fn on_stream(&mut self, event: &StreamEvent, now: Instant) {
        let opening = matches!(event.status, StreamStatus::New | StreamStatus::NewResolve);
        if opening {
            // A NEW for a known id: tor restarted and reuses ids; the old stream's outcome
            // is unknown and stays uncounted.
            self.streams.remove(event.id.as_ref());
        }
        if !self.streams.contains_key(event.id.as_ref()) {
            let Some(onion) = event.target.onion_address() else {
                return; // Not an onion target: never a dial, no state kept.
            };
            let is_dial = event
                .purpose
                .as_ref()
                .is_none_or(|p| *p == StreamPurpose::User)
                && !matches!(
                    event.status,
                    StreamStatus::NewResolve | StreamStatus::SentResolve
                );
            if is_dial {
                self.counters.dials_total += 1;
            }
            self.make_room_for_stream();
            self.streams.insert(
                event.id.to_string(),
                StreamState {
                    onion: is_dial.then_some(onion),
                    outcome: Outcome::Pending,
                    gap: !opening,
                    last_seen: now,
                },
            );
        }
        let stream = self
            .streams
            .get_mut(event.id.as_ref())
            .expect("inserted above");
        stream.last_seen = now;
        let Some(onion) = stream.onion.clone() else {
            if event.status == StreamStatus::Closed {
                self.streams.remove(event.id.as_ref());
            }
            return;
        };
        match (&event.status, stream.outcome) {
            (StreamStatus::Succeeded, Outcome::Pending) => {
                stream.outcome = Outcome::Succeeded;
                self.counters.dials_success_total += 1;
                // The service is reachable: what failed before no longer explains anything.
                self.onions.remove(&onion);
            }
            (StreamStatus::Failed, Outcome::Pending) => {
                stream.outcome = Outcome::Failed;
                self.count_failure(&onion, event, now);
            }
            (StreamStatus::Closed, outcome) => {
                let unexplained = outcome == Outcome::Pending && !stream.gap;
                self.streams.remove(event.id.as_ref());
                if unexplained {
                    self.count_failure(&onion, event, now);
                }
            }
            _ => {}
        }
    }

    fn count_failure(&mut self, onion: &str, event: &StreamEvent, now: Instant) {
        let ttl = self.limits.hint_ttl;
        let hints = self
            .onions
            .get(onion)
            .filter(|entry| now.saturating_duration_since(entry.updated) <= ttl)
            .map(|entry| &entry.hints);
        let reason = classify(event.reason.as_ref(), event.remote_reason.as_ref(), hints);
        self.counters.dial_errors[reason.index()] += 1;
        if reason.is_circuit_error() {
            self.counters.dials_error_circuit += 1;
        }
    }

    fn on_circ(&mut self, event: &CircEvent, now: Instant) {
        match event.status {
            CircStatus::Built => self.counters.circuits_built_total += 1,
            CircStatus::Failed => {
                let purpose = event.purpose.as_ref().map_or("other", |p| p.label());
                let reason = event.reason.as_ref().map_or("none", |r| r.label());
                *self
                    .counters
                    .circuits_failed
                    .entry((purpose, reason))
                    .or_default() += 1;
            }
            _ => {}
        }
        let ended = match event.status {
            CircStatus::Failed => true,
            // A built HS circuit that closes for a benign reason (intro done, redundant,
            // requested) did not fail.
            CircStatus::Closed => !matches!(
                event.reason,
                None | Some(
                    CircReason::Finished
                        | CircReason::Requested
                        | CircReason::IpNowRedundant
                        | CircReason::None
                )
            ),
            _ => false,
        };
        let Some(onion) = event.rend_query.as_deref().and_then(rend_query_address) else {
            return;
        };
        if !ended {
            return;
        }
        let timed_out = event.reason == Some(CircReason::Timeout);
        match event.purpose {
            Some(CircPurpose::HsClientIntro) => {
                let seq = self.next_seq();
                let hints = self.hints_mut(onion, now);
                let all_timeouts = hints.intro.is_none_or(|(all, _)| all) && timed_out;
                hints.intro = Some((all_timeouts, seq));
            }
            Some(CircPurpose::HsClientRend) if timed_out => {
                let seq = self.next_seq();
                self.hints_mut(onion, now).rend_timeout = Some(seq);
            }
            _ => {}
        }
    }

    fn on_hs_desc(&mut self, event: &HsDescEvent, now: Instant) {
        let Some(onion) = rend_query_address(&event.address) else {
            return;
        };
        match event.action {
            HsDescAction::Failed => {
                let seq = self.next_seq();
                let hints = self.hints_mut(onion, now);
                let mut failures = hints.desc.map(|(f, _)| f).unwrap_or_default();
                match event.reason {
                    Some(HsDescReason::NotFound) => failures.not_found = true,
                    Some(HsDescReason::BadDesc) => failures.bad_desc = true,
                    _ => {}
                }
                hints.desc = Some((failures, seq));
            }
            HsDescAction::Received => {
                let seq = self.next_seq();
                let hints = self.hints_mut(onion, now);
                hints.desc = None;
                hints.desc_received = Some(seq);
            }
            _ => {}
        }
    }

    fn on_status(&mut self, event: &StatusEvent) {
        if event.kind != StatusKind::Client {
            return;
        }
        match event.action.as_ref() {
            "BOOTSTRAP" => {
                if let Some(progress) = event
                    .arg("PROGRESS")
                    .and_then(|p| p.parse::<u8>().ok())
                    .filter(|p| *p <= 100)
                {
                    self.health.bootstrap_progress = Some(progress);
                }
            }
            "CIRCUIT_ESTABLISHED" => self.health.circuit_established = Some(true),
            "CIRCUIT_NOT_ESTABLISHED" => self.health.circuit_established = Some(false),
            _ => {}
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn hints_mut(&mut self, onion: String, now: Instant) -> &mut OnionHints {
        let ttl = self.limits.hint_ttl;
        if !self.onions.contains_key(&onion) && self.onions.len() >= self.limits.max_onions {
            evict_oldest(&mut self.onions, |entry| entry.updated);
        }
        let entry = self.onions.entry(onion).or_insert_with(|| OnionEntry {
            hints: OnionHints::default(),
            updated: now,
        });
        if now.saturating_duration_since(entry.updated) > ttl {
            entry.hints = OnionHints::default(); // stale hints must not mix with new ones
        }
        entry.updated = now;
        &mut entry.hints
    }

    fn make_room_for_stream(&mut self) {
        if self.streams.len() >= self.limits.max_streams {
            evict_oldest(&mut self.streams, |stream| stream.last_seen);
        }
    }

    /// Drops expired state, at most once a second (each sweep walks both maps).
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|last| now.saturating_duration_since(last) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        let limits = self.limits;
        self.streams.retain(|_, stream| {
            stream.outcome == Outcome::Succeeded
                || now.saturating_duration_since(stream.last_seen) <= limits.pending_ttl
        });
        self.onions
            .retain(|_, entry| now.saturating_duration_since(entry.updated) <= limits.hint_ttl);
    }
}

/// An HS_DESC address or REND_QUERY (no `.onion`, though tolerated) as the hint key.
fn rend_query_address(value: &str) -> Option<String> {
    if value.is_empty() || value == "UNKNOWN" {
        return None;
    }
    // Without `.onion`, as tor writes it: the same as `onion_address("{value}.onion")`.
    crate::event::onion_address(value).or_else(|| crate::event::onion_label(value))
}

fn evict_oldest<V>(map: &mut HashMap<String, V>, age: impl Fn(&V) -> Instant) {
    let oldest = map
        .iter()
        .min_by_key(|(_, value)| age(value))
        .map(|(key, _)| key.clone());
    if let Some(key) = oldest {
        map.remove(&key);
    }
}
