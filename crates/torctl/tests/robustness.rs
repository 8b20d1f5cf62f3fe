//! Randomized robustness test in the normal suite: 20,000 deterministic cases of random and
//! mutated control-port bytes through framing, parser and tracker. Asserts no panic, memory
//! within the limits, and counters that never decrease. (A stand-in for cargo-fuzz, which
//! needs nightly; the seed is fixed so a failure reproduces.)

use std::path::PathBuf;
use std::time::{Duration, Instant};

use torctl::{parse_event, DialTracker, LineBuffer, TorCounters, TrackerLimits};

const CASES: usize = 20_000;
const MAX_LINE: usize = 512;
const MAX_MESSAGE: usize = 4096;

/// splitmix64: tiny, deterministic, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Real lines from the fixtures plus spec shapes the fixtures lack.
fn corpus() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut lines: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flat_map(|entry| {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            text.lines()
                .filter_map(|l| l.strip_prefix('+').and_then(|r| r.split_once('\t')))
                .map(|(_, raw)| raw.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(lines.len() > 100, "fixtures missing");
    lines.extend(
        [
            "650-CIRC 1000 EXTENDED moria1,moria2 0xBEEF",
            "650-EXTRAMAGIC=99",
            "650 ANONYMITY=high",
            "650+HS_DESC_CONTENT abc descid $FP~n",
            "hs-descriptor 3",
            "..stuffed",
            ".",
            "650 OK",
            "250+config-text=",
            "650 HS_DESC FAILED abc NO_AUTH $FP~n descid REASON=BAD_DESC",
            "650 STREAM 9 FAILED 0 abc.onion:1 REASON=MISC",
            "650 ORCONN $AA~r FAILED REASON=CONNECTREFUSED NCIRCS=1",
            "650 NETWORK_LIVENESS DOWN",
            "650 STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=50 TAG=x SUMMARY=\"a \\\"b\\\" \\377\"",
            "515 Authentication failed",
        ]
        .map(String::from),
    );
    lines
}

const NASTY: &[&[u8]] = &[
    b"\r",
    b"\n",
    b"\r\n",
    b" ",
    b"\"",
    b"\\",
    b"=",
    b".",
    b"650",
    b"650-",
    b"650+",
    b"250 ",
    b"\xff",
    b"\0",
    b":",
    b",",
    b"REASON=",
    b"PURPOSE=USER",
    b".onion:",
    b"REND_QUERY=",
];

fn mutate(rng: &mut Rng, line: &str) -> Vec<u8> {
    let mut bytes = line.as_bytes().to_vec();
    for _ in 0..rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next() as u8;
            }
            1 => bytes.truncate(at),
            2 => {
                let insert = rng.pick(NASTY);
                bytes.splice(at..at, insert.iter().copied());
            }
            3 => {
                // A huge run, to hit the line limit.
                let run = vec![b'x'; rng.below(3 * MAX_LINE)];
                bytes.splice(at..at, run);
            }
            4 if !bytes.is_empty() => {
                let end = (at + rng.below(16)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            _ => {}
        }
    }
    bytes
}

fn case_bytes(rng: &mut Rng, corpus: &[String]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for _ in 0..1 + rng.below(12) {
        match rng.below(10) {
            0 => bytes.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
            1..=4 => bytes.extend_from_slice(rng.pick(corpus).as_bytes()),
            _ => {
                let line = rng.pick(corpus).clone();
                bytes.extend(mutate(rng, &line));
            }
        }
        if rng.below(8) != 0 {
            bytes.extend_from_slice(b"\r\n");
        }
    }
    bytes
}

fn assert_monotonic(before: &TorCounters, after: &TorCounters) {
    assert!(after.dials_total >= before.dials_total);
    assert!(after.dials_success_total >= before.dials_success_total);
    assert!(after.dials_error_circuit >= before.dials_error_circuit);
    assert!(after.circuits_built_total >= before.circuits_built_total);
    assert!(after.circuits_failed_total() >= before.circuits_failed_total());
    for ((reason, a), (_, b)) in before.dial_errors().zip(after.dial_errors()) {
        assert!(b >= a, "{reason:?}");
    }
    // Every finished dial was counted as a dial first.
    assert!(after.dials_success_total + after.dials_failed_total() <= after.dials_total);
}

#[test]
fn random_and_mutated_input_never_panics_and_stays_bounded() {
    let corpus = corpus();
    let mut rng = Rng(0x7265_6C61_7977_6174); // "relaywat"
    let limits = TrackerLimits {
        max_streams: 64,
        max_onions: 32,
        ..TrackerLimits::default()
    };
    // One framing and one tracker for the whole run, as a long-lived exporter has.
    let mut buffer = LineBuffer::with_limits(MAX_LINE, MAX_MESSAGE);
    let mut tracker = DialTracker::with_limits(limits);
    let t0 = Instant::now();
    let mut events = 0u64;
    for case in 0..CASES {
        let bytes = case_bytes(&mut rng, &corpus);
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let take = (1 + rng.below(64)).min(rest.len());
            buffer.push(&rest[..take]);
            rest = &rest[take..];
            assert!(buffer.buffered_bytes() <= MAX_LINE + MAX_MESSAGE + 2);
            while let Some(message) = buffer.next_message() {
                if let Some(event) = parse_event(&message) {
                    let before = tracker.counters().clone();
                    let now = t0 + Duration::from_millis(case as u64 * 50);
                    tracker.observe(&event, now);
                    events += 1;
                    assert_monotonic(&before, tracker.counters());
                    let (streams, onions) = tracker.tracked();
                    assert!(streams <= limits.max_streams && onions <= limits.max_onions);
                }
            }
        }
        if rng.below(500) == 0 {
            buffer.reset();
            tracker.connection_reset();
        }
    }
    let stats = buffer.stats();
    eprintln!(
        "{CASES} cases, {events} events, {stats:?}, {:?}",
        tracker.counters()
    );
    // The run exercised every path, not just garbage.
    assert!(events > 10_000);
    assert!(stats.oversized_lines > 0 && stats.malformed_lines > 0 && stats.dropped_messages > 0);
    let counters = tracker.counters();
    assert!(counters.dials_total > 0 && counters.dials_success_total > 0);
    assert!(counters.dials_failed_total() > 0 && counters.events_malformed > 0);
}
