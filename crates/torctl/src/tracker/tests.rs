//! Tracker tests: counting rules, reconnects, circuits, health, memory bounds and labels.
//! The per-reason tests are in `reason_tests.rs`; both share the helpers defined here.

use std::time::{Duration, Instant};

use super::*;
use crate::framing::LineBuffer;
use crate::parse_event;

pub(super) const ONION: &str = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx";
pub(super) const FP: &str = "$0123456789ABCDEF0123456789ABCDEF01234567~relay01";

/// Feeds event lines (`{o}` = the onion address), one second apart.
pub(super) struct Feed {
    pub(super) tracker: DialTracker,
    t0: Instant,
    t: Duration,
}

impl Feed {
    pub(super) fn new() -> Self {
        Self::with(DialTracker::new())
    }

    pub(super) fn with(tracker: DialTracker) -> Self {
        Feed {
            tracker,
            t0: Instant::now(),
            t: Duration::ZERO,
        }
    }

    pub(super) fn lines(&mut self, lines: &[&str]) -> &mut Self {
        for line in lines {
            let line = line.replace("{o}", ONION).replace("{fp}", FP);
            let mut buffer = LineBuffer::new();
            buffer.push(format!("{line}\r\n").as_bytes());
            let message = buffer.next_message().expect("one message");
            let event = parse_event(&message).expect("an event");
            self.t += Duration::from_secs(1);
            self.tracker.observe(&event, self.t0 + self.t);
        }
        self
    }

    pub(super) fn wait(&mut self, duration: Duration) -> &mut Self {
        self.t += duration;
        self
    }

    pub(super) fn counters(&self) -> &TorCounters {
        self.tracker.counters()
    }

    /// The single failure reason counted so far.
    pub(super) fn only_error(&self) -> DialError {
        let errors: Vec<_> = self
            .counters()
            .dial_errors()
            .filter(|(_, n)| *n > 0)
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].1, 1, "{errors:?}");
        errors[0].0
    }
}

pub(super) const NEW: &str = "650 STREAM 10 NEW 0 {o}.onion:30303 SOURCE_ADDR=127.0.0.1:40000 PURPOSE=USER CLIENT_PROTOCOL=SOCKS5";

pub(super) fn failed(reason: &str) -> String {
    format!("650 STREAM 10 FAILED 0 {{o}}.onion:30303 {reason} PURPOSE=USER CLIENT_PROTOCOL=SOCKS5")
}

pub(super) fn closed(reason: &str) -> String {
    format!("650 STREAM 10 CLOSED 0 {{o}}.onion:30303 {reason} PURPOSE=USER CLIENT_PROTOCOL=SOCKS5")
}

/// Runs `before` (hint events), then NEW, FAILED and CLOSED with `reason`; returns the class.
pub(super) fn dial_failing(before: &[&str], reason: &str) -> DialError {
    let mut feed = Feed::new();
    feed.lines(&[NEW]).lines(before);
    let (failed, closed) = (failed(reason), closed(reason));
    feed.lines(&[&failed, &closed]);
    let counters = feed.counters();
    assert_eq!(counters.dials_total, 1);
    assert_eq!(counters.dials_success_total, 0);
    assert_eq!(counters.dials_failed_total(), 1);
    let reason = feed.only_error();
    assert_eq!(
        counters.dials_error_circuit,
        u64::from(reason.is_circuit_error())
    );
    assert_eq!(
        feed.tracker.tracked().0,
        0,
        "a closed stream leaves no state"
    );
    reason
}

#[test]
fn success_is_counted_once() {
    let mut feed = Feed::new();
    feed.lines(&[
        NEW,
        "650 STREAM 10 SENTCONNECT 75 {o}.onion:30303 PURPOSE=USER",
        "650 STREAM 10 SUCCEEDED 75 {o}.onion:30303 PURPOSE=USER",
        "650 STREAM 10 CLOSED 75 {o}.onion:30303 REASON=END REMOTE_REASON=DONE PURPOSE=USER",
    ]);
    let c = feed.counters();
    assert_eq!(
        (c.dials_total, c.dials_success_total, c.dials_failed_total()),
        (1, 1, 0)
    );
    assert_eq!(feed.tracker.tracked(), (0, 0));
}

#[test]
fn not_dials() {
    let mut feed = Feed::new();
    feed.lines(&[
        // tor's own directory stream
        "650 STREAM 1 NEW 0 127.0.0.1.$AAAA.exit:5000 PURPOSE=DIR_FETCH CLIENT_PROTOCOL=UNKNOWN",
        "650 STREAM 1 CLOSED 5 127.0.0.1.$AAAA.exit:5000 REASON=DONE",
        // a clearnet dial through tor
        "650 STREAM 2 NEW 0 192.0.2.1:30303 PURPOSE=USER",
        "650 STREAM 2 FAILED 0 192.0.2.1:30303 REASON=TIMEOUT",
        // an onion stream of another purpose: its later events carry no PURPOSE
        "650 STREAM 3 NEW 0 {o}.onion:80 PURPOSE=DIR_FETCH",
        "650 STREAM 3 FAILED 0 {o}.onion:80 REASON=TIMEOUT",
        "650 STREAM 3 CLOSED 0 {o}.onion:80 REASON=TIMEOUT",
        // a resolve request
        "650 STREAM 4 NEWRESOLVE 0 {o}.onion:0 PURPOSE=DNS_REQUEST",
    ]);
    let c = feed.counters();
    assert_eq!((c.dials_total, c.dials_failed_total()), (0, 0));
}

#[test]
fn new_was_missed() {
    // The first event seen for an id counts the dial (e.g. the exporter started late).
    let mut feed = Feed::new();
    feed.lines(&[
        "650 STREAM 5 SENTCONNECT 75 {o}.onion:30303 PURPOSE=USER",
        "650 STREAM 5 SUCCEEDED 75 {o}.onion:30303",
        "650 STREAM 6 FAILED 0 {o}.onion:30303 REASON=TIMEOUT",
        "650 STREAM 6 CLOSED 0 {o}.onion:30303 REASON=TIMEOUT",
        // Only CLOSED seen: a dial with unknown outcome.
        "650 STREAM 7 CLOSED 0 {o}.onion:30303 REASON=DONE",
    ]);
    let c = feed.counters();
    assert_eq!(
        (c.dials_total, c.dials_success_total, c.dials_failed_total()),
        (3, 1, 1)
    );
}

#[test]
fn reconnect_gap_and_id_reuse() {
    let mut feed = Feed::new();
    feed.lines(&[NEW, "650 STREAM 11 NEW 0 {o}.onion:1 PURPOSE=USER"]);
    feed.tracker.connection_reset();
    feed.lines(&[
        // Stream 10 may have succeeded while we were away: a bare CLOSED is no failure.
        &closed("REASON=DONE"),
        // Stream 11: tor restarted and reuses the id for a new stream.
        "650 STREAM 11 NEW 0 {o}.onion:2 PURPOSE=USER",
        "650 STREAM 11 SUCCEEDED 3 {o}.onion:2",
    ]);
    let c = feed.counters();
    assert_eq!(
        (c.dials_total, c.dials_success_total, c.dials_failed_total()),
        (3, 1, 0)
    );
}

#[test]
fn closed_without_outcome_is_a_failure() {
    // The SOCKS client gave up while tor was still waiting for a circuit.
    let mut feed = Feed::new();
    feed.lines(&[NEW, &closed("REASON=MISC")]);
    assert_eq!(feed.only_error(), DialError::Other);
}

#[test]
fn circuits_and_orconns() {
    let mut feed = Feed::new();
    feed.lines(&[
        "650 CIRC 1 BUILT {fp} PURPOSE=GENERAL",
        "650 CIRC 2 BUILT {fp} PURPOSE=HS_VANGUARDS",
        "650 CIRC 3 FAILED {fp} PURPOSE=GENERAL REASON=NOPATH",
        "650 CIRC 4 FAILED PURPOSE=GENERAL REASON=NOPATH",
        "650 CIRC 5 FAILED PURPOSE=HS_CLIENT_INTRO REND_QUERY={o} REASON=TIMEOUT",
        "650 CIRC 6 FAILED PURPOSE=FUTURE_PURPOSE REASON=FUTURE_REASON",
        "650 CIRC 7 FAILED",
        "650 CIRC 8 CLOSED {fp} PURPOSE=GENERAL REASON=FINISHED",
        "650 ORCONN {fp} FAILED REASON=CONNECTREFUSED NCIRCS=1",
        "650 ORCONN {fp} FAILED REASON=CONNECTREFUSED",
        "650 ORCONN {fp} FAILED REASON=WHATEVER",
        "650 ORCONN {fp} CLOSED REASON=DONE",
    ]);
    let c = feed.counters();
    assert_eq!(c.circuits_built_total, 2);
    assert_eq!(
        c.circuits_failed().collect::<Vec<_>>(),
        [
            ("general", "nopath", 2),
            ("hs_client_intro", "timeout", 1),
            ("other", "none", 1),
            ("other", "other", 1),
        ]
    );
    assert_eq!(c.circuits_failed_total(), 5);
    assert_eq!(
        c.orconn_failed().collect::<Vec<_>>(),
        [("connectrefused", 2), ("other", 1)]
    );
}

#[test]
fn health_from_events_and_getinfo() {
    let mut feed = Feed::new();
    assert_eq!(*feed.tracker.health(), TorHealth::default());
    feed.lines(&[
        "650 STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=75 TAG=enough_dirinfo SUMMARY=\"Loaded enough directory info to build circuits\"",
        "650 STATUS_CLIENT NOTICE CIRCUIT_ESTABLISHED",
        "650 NETWORK_LIVENESS DOWN",
        "650 STATUS_GENERAL NOTICE BOOTSTRAP PROGRESS=5",
    ]);
    assert_eq!(
        *feed.tracker.health(),
        TorHealth {
            bootstrap_progress: Some(75),
            network_live: Some(false),
            circuit_established: Some(true)
        }
    );
    feed.lines(&[
        "650 NETWORK_LIVENESS UP",
        "650 STATUS_CLIENT NOTICE CIRCUIT_NOT_ESTABLISHED REASON=CLOCK_JUMPED",
    ]);
    feed.tracker.set_health(Some(100), None, None);
    assert_eq!(
        *feed.tracker.health(),
        TorHealth {
            bootstrap_progress: Some(100),
            network_live: Some(true),
            circuit_established: Some(false)
        }
    );
}

#[test]
fn malformed_events_are_counted() {
    let mut feed = Feed::new();
    feed.lines(&["650 STREAM 1", "650 CIRC", "650 GUARD ENTRY $A DOWN"]);
    assert_eq!(feed.counters().events_malformed, 2);
    assert_eq!(feed.counters().events_total, 3);
}

#[test]
fn memory_is_bounded() {
    let limits = TrackerLimits {
        max_streams: 50,
        max_onions: 20,
        ..TrackerLimits::default()
    };
    let mut tracker = DialTracker::with_limits(limits);
    let t0 = Instant::now();
    for i in 0..10_000u32 {
        let now = t0 + Duration::from_millis(u64::from(i));
        let lines = [
            format!("650 STREAM {i} NEW 0 onion{i}.onion:1 PURPOSE=USER"),
            format!("650 HS_DESC FAILED onion{i} NO_AUTH $F descid REASON=NOT_FOUND"),
        ];
        for line in lines {
            let mut buffer = LineBuffer::new();
            buffer.push(format!("{line}\r\n").as_bytes());
            tracker.observe(&parse_event(&buffer.next_message().unwrap()).unwrap(), now);
        }
        let (streams, onions) = tracker.tracked();
        assert!(streams <= 50 && onions <= 20, "{streams} {onions}");
    }
    assert_eq!(tracker.counters().dials_total, 10_000);
    // Unfinished streams expire after pending_ttl.
    let later = t0 + Duration::from_secs(10_000);
    tracker.observe(&Event::Other { keyword: "X" }, later);
    assert_eq!(tracker.tracked(), (0, 0));
}

#[test]
fn labels() {
    let labels: Vec<_> = DialError::ALL.iter().map(|e| e.as_str()).collect();
    assert_eq!(
        labels,
        [
            "descriptor_not_found",
            "descriptor_invalid",
            "intro_failed",
            "rendezvous_failed",
            "client_auth",
            "bad_onion_address",
            "intro_timeout",
            "refused",
            "timeout",
            "destroyed",
            "other"
        ]
    );
    let circuit: Vec<_> = DialError::ALL
        .iter()
        .filter(|e| e.is_circuit_error())
        .map(|e| e.as_str())
        .collect();
    assert_eq!(
        circuit,
        [
            "descriptor_not_found",
            "descriptor_invalid",
            "intro_failed",
            "rendezvous_failed",
            "intro_timeout",
            "timeout",
            "destroyed"
        ]
    );
}
