//! gethrelay's `/debug/metrics/prometheus` text, byte for byte in geth's format.
//!
//! geth's collector (metrics/prometheus/collector.go) turns `/` into `_`, adds no `_total`,
//! writes meters and counters as `# TYPE x gauge` holding cumulative counts, writes no HELP,
//! sorts by name, ends every sample with a blank line, and renders timers as `<name>_count`
//! plus `<name> {quantile="…"}` lines (note the space before `{`). Only the series gethrelay
//! really moves are kept live; the ones it leaves at zero (gated by `metrics.Enabled()`) stay zero.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Cumulative meters of the p2p server (geth marks these even with metrics disabled).
#[derive(Debug, Default)]
pub struct Meters {
    pub dials: AtomicU64,
    pub dials_success: AtomicU64,
    pub dials_error_connection: AtomicU64,
    pub serves: AtomicU64,
    pub serves_success: AtomicU64,
    pub dials_success_1min: AtomicU64,
    pub serves_success_1min: AtomicU64,
}

impl Meters {
    pub fn mark(meter: &AtomicU64) {
        meter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Current peer counts, taken from the peer set at scrape time.
#[derive(Debug, Default, Clone, Copy)]
pub struct PeerGauges {
    pub total: u64,
    pub inbound: u64,
    pub outbound: u64,
}

enum Sample {
    Gauge(u64),
    Timer { count: u64 },
}

const QUANTILES: [&str; 6] = ["0.5", "0.75", "0.95", "0.99", "0.999", "0.9999"];

/// Renders the exposition exactly as geth would for this state.
pub fn render(meters: &Meters, peers: PeerGauges) -> String {
    let load = |meter: &AtomicU64| meter.load(Ordering::Relaxed);
    let mut samples: Vec<(&str, Sample)> = vec![
        ("p2p/peers", Sample::Gauge(peers.total)),
        ("p2p/peers/inbound", Sample::Gauge(peers.inbound)),
        ("p2p/peers/outbound", Sample::Gauge(peers.outbound)),
        ("p2p/dials", Sample::Gauge(load(&meters.dials))),
        (
            "p2p/dials/success",
            Sample::Gauge(load(&meters.dials_success)),
        ),
        (
            "p2p/dials/success/1min",
            Sample::Gauge(load(&meters.dials_success_1min)),
        ),
        (
            "p2p/dials/error/connection",
            Sample::Gauge(load(&meters.dials_error_connection)),
        ),
        ("p2p/serves", Sample::Gauge(load(&meters.serves))),
        (
            "p2p/serves/success",
            Sample::Gauge(load(&meters.serves_success)),
        ),
        (
            "p2p/serves/success/1min",
            Sample::Gauge(load(&meters.serves_success_1min)),
        ),
        // Gated by metrics.Enabled(), which gethrelay never calls: always zero there too.
        ("p2p/ingress", Sample::Gauge(0)),
        ("p2p/egress", Sample::Gauge(0)),
        ("p2p/dials/error/saturated", Sample::Gauge(0)),
        ("p2p/dials/error/useless", Sample::Gauge(0)),
        ("p2p/serves/error/saturated", Sample::Gauge(0)),
        (
            "eth/protocols/eth/ingress/handshake/error/peer",
            Sample::Gauge(0),
        ),
        ("rpc/requests", Sample::Gauge(0)),
        ("rpc/duration/all", Sample::Timer { count: 0 }),
    ];
    // geth sorts the registry's own names, before `/` becomes `_`.
    samples.sort_by_key(|(name, _)| *name);
    let mut out = String::new();
    for (name, sample) in samples {
        let name = name.replace('/', "_");
        match sample {
            Sample::Gauge(value) => {
                let _ = write!(out, "# TYPE {name} gauge\n{name} {value}\n\n");
            }
            Sample::Timer { count } => {
                let _ = write!(out, "# TYPE {name}_count counter\n{name}_count {count}\n\n");
                let _ = writeln!(out, "# TYPE {name} summary");
                for quantile in QUANTILES {
                    let _ = writeln!(out, "{name} {{quantile=\"{quantile}\"}} 0");
                }
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geth_format_quirks_are_reproduced() {
        let meters = Meters::default();
        Meters::mark(&meters.dials);
        Meters::mark(&meters.dials);
        let text = render(
            &meters,
            PeerGauges {
                total: 3,
                inbound: 1,
                outbound: 2,
            },
        );
        assert!(
            text.contains("# TYPE p2p_dials gauge\np2p_dials 2\n\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE p2p_peers_inbound gauge\np2p_peers_inbound 1\n\n"));
        assert!(text.contains("rpc_duration_all_count 0\n"));
        assert!(text.contains("rpc_duration_all {quantile=\"0.9999\"} 0\n"));
        assert!(!text.contains("# HELP") && !text.contains("_total"));
        let names: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .map(|rest| rest.split(' ').next().unwrap())
            // A timer's `_count` family is written just before its summary.
            .filter(|name| !name.ends_with("_count"))
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "geth sorts metrics by name");
    }
}
