//! Fuzz harness for the control-port parser on stable Rust (cargo-fuzz needs nightly):
//! proptest generates byte streams from real transcript lines, mutated lines, spec shapes
//! and raw random bytes, split into arbitrary chunks, with reconnects and clock jumps, and
//! runs them through framing, event parser and tracker. On failure proptest shrinks the case
//! and records its seed in `tests/fuzz.proptest-regressions` (commit that file).
//!
//! Properties: nothing panics; memory stays within the framing and tracker limits; every
//! counter (tracker and framing) only grows; every finished dial was counted as a dial; and
//! framing does not depend on how the bytes were chunked.
//!
//! `cargo test -p torctl --test fuzz` runs 4096 cases (about a second, for CI). A long run:
//! `PROPTEST_CASES=2000000 cargo test -p torctl --release --test fuzz -- --nocapture`.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use torctl::{
    parse_event, DialTracker, FramingStats, LineBuffer, Message, TorCounters, TrackerLimits,
};

const MAX_LINE: usize = 256;
const MAX_MESSAGE: usize = 2048;
const LIMITS: TrackerLimits = TrackerLimits {
    max_streams: 16,
    max_onions: 8,
    hint_ttl: Duration::from_secs(2),
    pending_ttl: Duration::from_secs(5),
};

/// Real lines from the fixtures plus shapes the fixtures lack (multi-line and data events).
fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut lines: Vec<Vec<u8>> = Vec::new();
        // Sorted: a persisted failure names corpus lines by index.
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(path).unwrap();
            lines.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix('+').and_then(|r| r.split_once('\t')))
                    .map(|(_, raw)| raw.as_bytes().to_vec()),
            );
        }
        assert!(lines.len() > 100, "fixtures missing");
        for extra in [
            "650-CIRC 1000 EXTENDED moria1,moria2 0xBEEF",
            "650-EXTRAMAGIC=99",
            "650 ANONYMITY=high",
            "650+HS_DESC_CONTENT abc descid $FP~n",
            "..stuffed",
            ".",
            "650 OK",
            "250+config-text=",
            "250-PROTOCOLINFO 1",
            "650 HS_DESC FAILED abc NO_AUTH $FP~n descid REASON=BAD_DESC",
            "650 HS_DESC FAILED abc NO_AUTH $FP~n descid REASON=NOT_FOUND",
            "650 CIRC 9 FAILED PURPOSE=HS_CLIENT_INTRO REND_QUERY=abc REASON=TIMEOUT",
            "650 CIRC 9 CLOSED PURPOSE=HS_CLIENT_REND REND_QUERY=abc REASON=TIMEOUT",
            "650 STREAM 9 NEW 0 abc.onion:1 PURPOSE=USER",
            "650 STREAM 9 FAILED 0 abc.onion:1 REASON=RESOLVEFAILED",
            "650 STREAM 9 CLOSED 0 abc.onion:1 REASON=MISC",
            "650 STREAM 9 SUCCEEDED 3 abc.onion:1",
            "650 ORCONN $AA~r FAILED REASON=CONNECTREFUSED NCIRCS=1",
            "650 NETWORK_LIVENESS DOWN",
            "650 STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=50 TAG=x SUMMARY=\"a \\\"b\\\" \\377\"",
            "650 STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=300",
            "515 Authentication failed",
        ] {
            lines.push(extra.as_bytes().to_vec());
        }
        lines
    })
}

/// Fragments that steer the grammar: separators, quotes, escapes, keywords.
const NASTY: &[&[u8]] = &[
    b"\r",
    b"\n",
    b"\r\n",
    b" ",
    b"\"",
    b"\\",
    b"\\\"",
    b"\\777",
    b"=",
    b".",
    b"..",
    b"650",
    b"650-",
    b"650+",
    b"250 ",
    b"\xff",
    b"\xc3",
    b"\0",
    b":",
    b",",
    b"REASON=",
    b"PURPOSE=USER",
    b".onion:",
    b"REND_QUERY=",
    b"STREAM ",
    b"CIRC ",
    b"HS_DESC ",
    b"FAILED ",
    b"CLOSED ",
    b"SUCCEEDED ",
    b"NEW ",
];

#[derive(Debug, Clone)]
enum Mutation {
    SetByte(usize, u8),
    Truncate(usize),
    Insert(usize, usize),
    Run(usize, usize),
    Delete(usize, usize),
}

#[derive(Debug, Clone)]
enum Piece {
    /// Raw random bytes.
    Raw(Vec<u8>),
    /// Corpus line `index`, mutated, then a terminator (CRLF, LF, CR or none).
    Line(usize, Vec<Mutation>, u8),
    /// The connection dropped: framing reset, tracker told.
    Reset,
    /// The clock moves on by this many milliseconds (expiry and eviction paths).
    Tick(u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::SetByte(at, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 0..NASTY.len()).prop_map(|(at, i)| Mutation::Insert(at, i)),
        (any::<usize>(), 0..3 * MAX_LINE).prop_map(|(at, n)| Mutation::Run(at, n)),
        (any::<usize>(), 0usize..16).prop_map(|(at, n)| Mutation::Delete(at, n)),
    ]
}

fn piece() -> impl Strategy<Value = Piece> {
    let lines = corpus().len();
    prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Piece::Raw),
        10 => (0..lines, proptest::collection::vec(mutation(), 0..4), 0u8..8)
            .prop_map(|(i, m, t)| Piece::Line(i, m, t)),
        1 => Just(Piece::Reset),
        2 => prop_oneof![0u64..2_000, 0u64..20_000].prop_map(Piece::Tick),
    ]
}

fn apply(line: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = line.to_vec();
    for mutation in mutations {
        let at = |pos: usize, len: usize| pos % (len + 1);
        match *mutation {
            Mutation::SetByte(pos, byte) if !bytes.is_empty() => {
                let i = pos % bytes.len();
                bytes[i] = byte;
            }
            Mutation::SetByte(..) => {}
            Mutation::Truncate(pos) => bytes.truncate(at(pos, bytes.len())),
            Mutation::Insert(pos, i) => {
                let at = at(pos, bytes.len());
                bytes.splice(at..at, NASTY[i].iter().copied());
            }
            Mutation::Run(pos, n) => {
                let at = at(pos, bytes.len());
                bytes.splice(at..at, std::iter::repeat_n(b'x', n));
            }
            Mutation::Delete(pos, n) => {
                let at = at(pos, bytes.len());
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
        }
    }
    bytes
}

/// What one connection segment sends: its bytes and the clock ticks after each piece.
struct Segment {
    bytes: Vec<u8>,
    /// (byte offset, milliseconds to add once this many bytes were pushed)
    ticks: Vec<(usize, u64)>,
}

fn segments(pieces: &[Piece]) -> Vec<Segment> {
    let mut out = vec![Segment {
        bytes: Vec::new(),
        ticks: Vec::new(),
    }];
    for piece in pieces {
        let segment = out.last_mut().expect("one segment at least");
        match piece {
            Piece::Raw(bytes) => segment.bytes.extend_from_slice(bytes),
            Piece::Line(i, mutations, terminator) => {
                segment.bytes.extend(apply(&corpus()[*i], mutations));
                segment.bytes.extend_from_slice(match terminator {
                    0 => &b"\n"[..],
                    1 => b"",
                    2 => b"\r",
                    _ => b"\r\n",
                });
            }
            Piece::Tick(ms) => segment.ticks.push((segment.bytes.len(), *ms)),
            Piece::Reset => out.push(Segment {
                bytes: Vec::new(),
                ticks: Vec::new(),
            }),
        }
    }
    out
}

fn assert_counters_grow(before: &TorCounters, after: &TorCounters) {
    assert!(after.dials_total >= before.dials_total);
    assert!(after.dials_success_total >= before.dials_success_total);
    assert!(after.dials_error_circuit >= before.dials_error_circuit);
    assert!(after.circuits_built_total >= before.circuits_built_total);
    assert!(
        after.events_total > before.events_total,
        "one event was observed"
    );
    assert!(after.events_malformed >= before.events_malformed);
    for ((reason, a), (_, b)) in before.dial_errors().zip(after.dial_errors()) {
        assert!(b >= a, "{reason:?}");
    }
    for (purpose, reason, n) in before.circuits_failed() {
        let now = after
            .circuits_failed()
            .find(|(p, r, _)| (*p, *r) == (purpose, reason))
            .map_or(0, |(_, _, n)| n);
        assert!(now >= n, "circuits_failed {purpose} {reason}");
    }
    for (reason, n) in before.orconn_failed() {
        let now = after
            .orconn_failed()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| n);
        assert!(now >= n, "orconn_failed {reason}");
    }
    assert!(after.dials_success_total + after.dials_failed_total() <= after.dials_total);
}

fn assert_stats_grow(before: &FramingStats, after: &FramingStats) {
    assert!(after.lines >= before.lines && after.messages >= before.messages);
    assert!(after.oversized_lines >= before.oversized_lines);
    assert!(after.malformed_lines >= before.malformed_lines);
    assert!(after.dropped_messages >= before.dropped_messages);
}

/// Runs the pipeline over `segments`, pushing `chunks`-sized pieces (cycled); returns every
/// message in order and the final framing stats.
fn run(segments: &[Segment], chunks: &[usize]) -> (Vec<Message>, FramingStats) {
    let mut buffer = LineBuffer::with_limits(MAX_LINE, MAX_MESSAGE);
    let mut tracker = DialTracker::with_limits(LIMITS);
    let mut now = Instant::now();
    let mut messages = Vec::new();
    let mut chunk_sizes = chunks.iter().cycle();
    for (n, segment) in segments.iter().enumerate() {
        if n > 0 {
            buffer.reset();
            tracker.connection_reset();
        }
        let mut ticks = segment.ticks.iter().peekable();
        let mut at = 0;
        while at < segment.bytes.len() || ticks.peek().is_some() {
            while let Some(&&(offset, ms)) = ticks.peek() {
                if offset > at {
                    break;
                }
                now += Duration::from_millis(ms);
                ticks.next();
            }
            if at >= segment.bytes.len() {
                continue;
            }
            let take = (*chunk_sizes.next().expect("non-empty")).min(segment.bytes.len() - at);
            let stats_before = buffer.stats();
            buffer.push(&segment.bytes[at..at + take]);
            at += take;
            assert_stats_grow(&stats_before, &buffer.stats());
            assert!(buffer.buffered_bytes() <= MAX_LINE + MAX_MESSAGE + 2);
            while let Some(message) = buffer.next_message() {
                assert!(!message.lines.is_empty());
                if let Some(event) = parse_event(&message) {
                    let before = tracker.counters().clone();
                    tracker.observe(&event, now);
                    assert_counters_grow(&before, tracker.counters());
                    let (streams, onions) = tracker.tracked();
                    assert!(streams <= LIMITS.max_streams && onions <= LIMITS.max_onions);
                    assert!(tracker.health().bootstrap_progress.is_none_or(|p| p <= 100));
                }
                messages.push(message);
            }
        }
    }
    (messages, buffer.stats())
}

proptest! {
    // PROPTEST_CASES cases, 4096 when unset (about a second in a debug build); failures are
    // persisted in tests/fuzz.proptest-regressions and replayed first on every run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|cases| cases.parse().ok())
            .unwrap_or(4096),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn control_port_bytes_never_panic_stay_bounded_and_counters_only_grow(
        pieces in proptest::collection::vec(piece(), 1..48),
        chunks in proptest::collection::vec(1usize..300, 1..8),
    ) {
        let segments = segments(&pieces);
        let (chunked, chunked_stats) = run(&segments, &chunks);
        // The same bytes pushed one segment at a time give the same messages and stats.
        let (whole, whole_stats) = run(&segments, &[usize::MAX]);
        prop_assert_eq!(chunked, whole);
        prop_assert_eq!(chunked_stats, whole_stats);
    }
}
