//! Replays the real tor transcripts in `tests/fixtures/` (recorded by `capture.rs`) through
//! framing, parser and tracker, and asserts the exact dial counters of each scenario.
//!
//! Fixture format: `# ` header lines (scenario, each dial's SOCKS reply and timing), then
//! `+seconds<TAB>line` for every line tor sent, seconds since the scenario began.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use torctl::auth;
use torctl::getinfo::{self, bootstrap_progress, parse_circuit_established, parse_liveness};
use torctl::{parse_event, DialError, DialTracker, Event, LineBuffer, Message, TorCounters};

struct Fixture {
    headers: Vec<String>,
    lines: Vec<(Duration, String)>,
}

fn fixture(name: &str) -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut fixture = Fixture {
        headers: Vec::new(),
        lines: Vec::new(),
    };
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("# ") {
            fixture.headers.push(header.to_string());
        } else if let Some(rest) = line.strip_prefix('+') {
            let (secs, raw) = rest.split_once('\t').expect("+seconds<TAB>line");
            let secs: f64 = secs.parse().expect("seconds");
            fixture
                .lines
                .push((Duration::from_secs_f64(secs), raw.to_string()));
        }
    }
    fixture
}

/// Frames the fixture's lines as tor sent them (CRLF) and returns (time, message).
fn messages(fixture: &Fixture) -> Vec<(Duration, Message)> {
    let mut buffer = LineBuffer::new();
    let mut out = Vec::new();
    for (at, line) in &fixture.lines {
        buffer.push(line.as_bytes());
        buffer.push(b"\r\n");
        while let Some(message) = buffer.next_message() {
            out.push((*at, message));
        }
    }
    let stats = buffer.stats();
    assert_eq!(
        stats.malformed_lines + stats.oversized_lines + stats.dropped_messages,
        0
    );
    out
}

/// Feeds one fixture into `tracker`, starting at `t0`; returns the parsed events (which
/// borrow from their messages, leaked here so the events can be returned).
fn replay(tracker: &mut DialTracker, name: &str, t0: Instant) -> Vec<Event<'static>> {
    let fixture = fixture(name);
    let mut events = Vec::new();
    for (at, message) in messages(&fixture) {
        let message: &'static Message = Box::leak(Box::new(message));
        if let Some(event) = parse_event(message) {
            assert!(
                !matches!(event, Event::Malformed { .. }),
                "{event:?} in {name}"
            );
            tracker.observe(&event, t0 + at);
            events.push(event);
        }
    }
    events
}

/// (dials, success, error_circuit, [(reason, count)] of the nonzero reasons)
type Expected = (u64, u64, u64, &'static [(DialError, u64)]);

fn assert_counters(name: &str, counters: &TorCounters, expected: Expected) {
    let (dials, success, circuit, errors) = expected;
    let nonzero: Vec<_> = counters.dial_errors().filter(|(_, n)| *n > 0).collect();
    assert_eq!(
        (
            counters.dials_total,
            counters.dials_success_total,
            counters.dials_error_circuit,
            nonzero.as_slice()
        ),
        (dials, success, circuit, errors),
        "{name}"
    );
}

fn scenario(name: &str, expected: Expected) -> DialTracker {
    let mut tracker = DialTracker::new();
    replay(&mut tracker, name, Instant::now());
    assert_counters(name, tracker.counters(), expected);
    assert_eq!(tracker.tracked().0, 0, "{name}: every dial stream closed");
    tracker
}

#[test]
fn reachable() {
    // SOCKS 0x00, echo round-trip.
    let tracker = scenario("reachable", (1, 1, 0, &[]));
    assert_eq!(tracker.counters().circuits_built_total, 5);
}

#[test]
fn closed_port() {
    // SOCKS 0x05: REASON=END REMOTE_REASON=DONE.
    scenario("closed_port", (1, 0, 0, &[(DialError::Refused, 1)]));
}

#[test]
fn unpublished() {
    // SOCKS 0xF0: six HS_DESC FAILED REASON=NOT_FOUND, then RESOLVEFAILED.
    let tracker = scenario(
        "unpublished",
        (1, 0, 1, &[(DialError::DescriptorNotFound, 1)]),
    );
    assert_eq!(tracker.counters().circuits_built_total, 9);
}

#[test]
fn malformed() {
    // SOCKS 0xF6: REASON=TORPROTOCOL.
    scenario("malformed", (1, 0, 0, &[(DialError::BadOnionAddress, 1)]));
}

#[test]
fn stopped_service() {
    // Warm-up 0x00; then 0x06 (SocksTimeout on the stale rendezvous circuit) and 0x01 (the
    // rendezvous circuit destroyed).
    let tracker = scenario(
        "stopped_service",
        (
            3,
            1,
            2,
            &[(DialError::Timeout, 1), (DialError::Destroyed, 1)],
        ),
    );
    assert_eq!(tracker.counters().circuits_built_total, 7);
}

#[test]
fn stopped_service_newnym() {
    // After NEWNYM: 0xF2 twice. The descriptor is still on the HSDirs (RECEIVED), the intro
    // circuits close with FINISHED, the stream fails RESOLVEFAILED.
    let tracker = scenario(
        "stopped_service_newnym",
        (2, 0, 2, &[(DialError::IntroFailed, 2)]),
    );
    let counters = tracker.counters();
    assert_eq!(counters.circuits_built_total, 15);
    assert_eq!(
        counters.circuits_failed().collect::<Vec<_>>(),
        [("hs_vanguards", "destroyed", 1)]
    );
}

#[test]
fn all_scenarios_through_one_tracker() {
    // One tracker for the process lifetime, as the exporter keeps it; correlation state
    // of one onion must not leak into another's classification.
    let mut tracker = DialTracker::new();
    let mut t0 = Instant::now();
    for name in [
        "reachable",
        "closed_port",
        "unpublished",
        "malformed",
        "stopped_service",
        "stopped_service_newnym",
    ] {
        replay(&mut tracker, name, t0);
        t0 += Duration::from_secs(60);
    }
    assert_counters(
        "all",
        tracker.counters(),
        (
            9,
            2,
            5,
            &[
                (DialError::DescriptorNotFound, 1),
                (DialError::IntroFailed, 2),
                (DialError::BadOnionAddress, 1),
                (DialError::Refused, 1),
                (DialError::Timeout, 1),
                (DialError::Destroyed, 1),
            ],
        ),
    );
    assert_eq!(tracker.counters().events_malformed, 0);
}

#[test]
fn every_real_line_parses() {
    let mut kinds = std::collections::BTreeMap::new();
    for name in [
        "reachable",
        "closed_port",
        "unpublished",
        "malformed",
        "stopped_service",
        "stopped_service_newnym",
    ] {
        for event in replay(&mut DialTracker::new(), name, Instant::now()) {
            *kinds.entry(event.keyword().to_string()).or_insert(0) += 1;
            if let Event::Stream(stream) = &event {
                // The relay's dials name their onion target in every event (§B).
                if stream.target.host.ends_with(".onion") {
                    assert!(stream.target.onion_address().is_some());
                    assert_eq!(stream.target.port.map(|p| p >= 30303), Some(true));
                }
            }
        }
    }
    for kind in ["STREAM", "CIRC", "HS_DESC", "ORCONN", "STATUS_CLIENT"] {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} in {kinds:?}"
        );
    }
    // Only the subscribed kinds arrive, and each one is typed.
    for kind in kinds.keys() {
        assert!(
            [
                "STREAM",
                "CIRC",
                "HS_DESC",
                "ORCONN",
                "STATUS_CLIENT",
                "NETWORK_LIVENESS"
            ]
            .contains(&kind.as_str()),
            "{kind}"
        );
    }
}

#[test]
fn safecookie_and_getinfo_from_real_tor() {
    let fixture = fixture("safecookie");
    let header = |key: &str| -> Vec<u8> {
        let value = fixture
            .headers
            .iter()
            .find_map(|h| h.strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("header {key}"));
        hex::decode(value).unwrap()
    };
    let cookie = header("cookie");
    let client_nonce = header("client_nonce");
    let sent = header("AUTHENTICATE");
    let replies: Vec<Message> = messages(&fixture).into_iter().map(|(_, m)| m).collect();
    assert_eq!(replies.len(), 4, "{replies:?}");

    let info = auth::parse_protocolinfo(&replies[0]).unwrap();
    assert!(info.offers(&torctl::vocab::AuthMethod::SafeCookie));
    assert!(info
        .cookie_file
        .as_deref()
        .unwrap()
        .ends_with("control_auth_cookie"));
    assert_eq!(info.tor_version.as_deref(), Some("0.4.9.11"));

    let challenge = auth::parse_authchallenge(&replies[1]).unwrap();
    assert!(auth::verify_safecookie_server_hash(
        &cookie,
        &client_nonce,
        &challenge
    ));
    let client_hash = auth::safecookie_client_hash(&cookie, &client_nonce, &challenge.server_nonce);
    assert_eq!(client_hash.as_slice(), sent.as_slice());
    assert!(replies[2].is_ok(), "tor accepted that AUTHENTICATE");

    let health = &replies[3];
    let value = |key| getinfo::getinfo_value(health, key).unwrap();
    assert_eq!(
        bootstrap_progress(&value("status/bootstrap-phase")),
        Some(100)
    );
    assert_eq!(parse_liveness(&value("network-liveness")), Some(true));
    assert_eq!(
        parse_circuit_established(&value("status/circuit-established")),
        Some(true)
    );
    assert_eq!(value("version"), "0.4.9.11");
}
