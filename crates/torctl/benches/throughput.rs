//! Throughput of framing + parser + tracker on one core: `cargo bench -p torctl`.
//!
//! Input: every line of the real tor transcripts in tests/fixtures, replayed until about a
//! million events, pushed in 8 KiB chunks as a socket read would deliver them. Prints
//! events per second; asserts nothing (a measurement, not a test).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use torctl::{parse_event, DialTracker, LineBuffer};

fn fixture_lines() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| !path.ends_with("safecookie.txt"))
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|path| {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .filter_map(|l| l.strip_prefix('+').and_then(|r| r.split_once('\t')))
                .map(|(_, raw)| raw.to_string())
                .filter(|raw| raw.starts_with("650"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `name` from the environment, or `default`.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let lines = fixture_lines();
    // TORCTL_BENCH_EVENTS / TORCTL_BENCH_RUNS shrink the run, e.g. under callgrind.
    let events = env_or("TORCTL_BENCH_EVENTS", 1_000_000);
    let runs = env_or("TORCTL_BENCH_RUNS", 3);
    let rounds = events / lines.len() + 1;
    let mut bytes = Vec::new();
    for _ in 0..rounds {
        for line in &lines {
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
    }
    let events_expected = (rounds * lines.len()) as u64;
    println!(
        "input: {} events, {:.1} MB, mean line {} bytes",
        events_expected,
        bytes.len() as f64 / 1e6,
        bytes.len() / events_expected as usize
    );

    for run in 0..runs {
        // Framing + parsing only.
        let started = Instant::now();
        let mut buffer = LineBuffer::new();
        let mut parsed = 0u64;
        for chunk in bytes.chunks(8192) {
            buffer.push(chunk);
            while let Some(message) = buffer.next_message() {
                parsed += u64::from(black_box(parse_event(&message)).is_some());
            }
        }
        let parse_time = started.elapsed();

        // The whole pipeline, as the exporter runs it.
        let started = Instant::now();
        let mut buffer = LineBuffer::new();
        let mut tracker = DialTracker::new();
        let t0 = Instant::now();
        let mut observed = 0u64;
        for chunk in bytes.chunks(8192) {
            buffer.push(chunk);
            while let Some(message) = buffer.next_message() {
                if let Some(event) = parse_event(&message) {
                    observed += 1;
                    // One simulated millisecond per event, so hints and sweeps run.
                    tracker.observe(&event, t0 + Duration::from_millis(observed));
                }
            }
        }
        let total_time = started.elapsed();
        assert_eq!((parsed, observed), (events_expected, events_expected));
        black_box(tracker.counters());
        println!(
            "run {run}: framing+parse {:.0} events/s ({:.0} MB/s); framing+parse+tracker {:.0} events/s; dials counted {}",
            parsed as f64 / parse_time.as_secs_f64(),
            bytes.len() as f64 / 1e6 / parse_time.as_secs_f64(),
            observed as f64 / total_time.as_secs_f64(),
            tracker.counters().dials_total,
        );
    }
}
