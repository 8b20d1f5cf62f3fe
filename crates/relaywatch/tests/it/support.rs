use std::time::{Duration, Instant};

use lab::exporters::Samples;

/// Polls `check` until it returns Some, or panics with `what` after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One sample's value, 0 when the series is absent.
pub fn value(samples: &Samples, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

/// The counters whose values must never go down.
pub const COUNTERS: [&str; 6] = [
    "p2p_ingress_tor",
    "p2p_egress_tor",
    "p2p_ingress_clearnet",
    "p2p_egress_clearnet",
    "relaywatch_clearnet_leaks_total",
    "relaywatch_leak_removals_total{result=\"ok\"}",
];

/// Asserts that no counter of `after` is below its value in `before`.
pub fn assert_monotonic(before: &Samples, after: &Samples, context: &str) {
    for counter in COUNTERS {
        assert!(
            value(after, counter) >= value(before, counter),
            "{context}: {counter} went down from {} to {}",
            value(before, counter),
            value(after, counter)
        );
    }
}
