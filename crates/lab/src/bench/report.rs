//! The exporter bench's figures and how they are printed: one block of text, each figure
//! beside what it is compared against and the goal from issue 9.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// The machine over one phase of the run.
#[derive(Debug, Default)]
pub struct Phase {
    pub seconds: f64,
    /// 1-minute load average at the end of the phase.
    pub load_after: [f64; 3],
    /// CPUs the whole machine kept busy on average (from /proc/stat), and how many of them
    /// went to processes other than the exporters, the bench and its floors.
    pub machine_busy_cpus: f64,
    pub others_busy_cpus: f64,
}

/// One exporter over one phase.
#[derive(Debug, Default)]
pub struct ExporterPhase {
    /// admin_peers calls its relay connection answered: one per poll.
    pub polls: u64,
    /// CPU seconds (whole process, /proc/<pid>/stat), and the part of it spent in the kernel.
    pub process_cpu: f64,
    pub system_cpu: f64,
    /// Minor page faults of the whole process.
    pub minor_faults: f64,
    /// CPU seconds per thread name (schedstat).
    pub threads: BTreeMap<String, f64>,
}

impl ExporterPhase {
    fn ms_per_poll(&self, cpu_seconds: f64) -> f64 {
        cpu_seconds * 1000.0 / self.polls.max(1) as f64
    }
}

/// Bytes on the relay's ends of the peer connections during the scrape phase: what the bench
/// sent and what the exporter's counters grew by.
#[derive(Debug, Default)]
pub struct Bytes {
    pub ingress_sent: f64,
    pub ingress_counted: f64,
    pub egress_sent: f64,
    pub egress_counted: f64,
}

/// One server the latency loop scrapes.
#[derive(Debug, Default)]
pub struct Target {
    pub name: String,
    /// Milliseconds per scrape, in the order taken.
    pub ms: Vec<f64>,
    /// The same, split by whether the scrape overlapped a poll: (during, between).
    pub by_poll: (Vec<f64>, Vec<f64>),
    /// Connections the keep-alive client opened (1: every scrape reused the first).
    pub connections: u32,
}

/// What one exporter did over the run.
#[derive(Debug, Default)]
pub struct ExporterFigures {
    /// `exporter`, or `exporter A`, `exporter B` … when several run side by side.
    pub label: String,
    pub binary: String,
    /// Peers its gauges counted when the run began (fewer than N if it caps admin_peers).
    pub peers_seen: usize,
    pub polls_only: ExporterPhase,
    pub scrapes: ExporterPhase,
    /// Distinct values of its relaywatch_source_poll_duration_seconds, in ms.
    pub relay_poll_ms: Vec<f64>,
    pub sockets_poll_ms: Vec<f64>,
    pub rss: u64,
    pub rss_peak: u64,
    pub bytes: Bytes,
    pub destroy_overruns: f64,
}

/// Everything one run of the exporter bench measured.
#[derive(Debug, Default)]
pub struct Figures {
    pub peers: usize,
    pub outbound: usize,
    pub unrelated: usize,
    pub churn_per_second: usize,
    pub poll_interval: String,
    pub cpus: usize,
    pub load_before: [f64; 3],
    /// Which network namespace: the bench's own, or the machine's (shared with neighbours).
    pub namespace: String,
    pub namespace_sockets: usize,
    pub namespace_sockets_end: usize,
    pub bench_sockets: usize,
    pub reply_bytes: usize,
    pub metrics_bytes: usize,
    pub polls_only: Phase,
    pub scrapes: Phase,
    pub scrape_every_ms: u64,
    pub exporters: Vec<ExporterFigures>,
    /// The exporters first (in the same order), then the floors, each scraped once per tick.
    pub targets: Vec<Target>,
    pub pump_errors: u64,
    pub churned: u64,
}

/// Nearest-rank percentile (p in 0..=1) of unsorted samples; NaN when empty.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Splits scrapes (start, milliseconds) into those that overlapped a poll and the others.
/// A poll is taken to run from its admin_peers call for `window` (the median poll duration).
pub fn split_by_polls(
    scrapes: &[(Instant, f64)],
    poll_starts: &[Instant],
    window: Duration,
) -> (Vec<f64>, Vec<f64>) {
    let mut during = Vec::new();
    let mut between = Vec::new();
    for (start, millis) in scrapes {
        let end = *start + Duration::from_secs_f64(millis / 1000.0);
        // Polls are sorted: the last one that began before the scrape ended is the only
        // candidate (polls are far longer apart than one scrape).
        let index = poll_starts.partition_point(|poll| *poll <= end);
        let overlaps = index > 0 && poll_starts[index - 1] + window > *start;
        if overlaps {
            during.push(*millis);
        } else {
            between.push(*millis);
        }
    }
    (during, between)
}

fn short_stats(samples: &[f64]) -> String {
    format!(
        "n={} median {:.3} p99 {:.3} max {:.3} ms",
        samples.len(),
        percentile(samples, 0.5),
        percentile(samples, 0.99),
        percentile(samples, 1.0)
    )
}

fn latency_line(name: &str, samples: &[f64]) -> String {
    format!(
        "  {name:<20} median {:>6.3} ms   p99 {:>6.3} ms   max {:>7.3} ms   ({} scrapes)",
        percentile(samples, 0.5),
        percentile(samples, 0.99),
        percentile(samples, 1.0),
        samples.len()
    )
}

fn load(load: [f64; 3]) -> String {
    format!("{:.2} {:.2} {:.2}", load[0], load[1], load[2])
}

fn per_thread(phase: &ExporterPhase) -> String {
    let mut threads: Vec<(&String, &f64)> = phase.threads.iter().collect();
    threads.sort_by(|a, b| b.1.total_cmp(a.1));
    let sum: f64 = threads.iter().map(|(_, cpu)| **cpu).sum();
    let each = threads
        .iter()
        .filter(|(_, cpu)| **cpu > 0.0)
        .map(|(name, cpu)| format!("{name} {:.2}", phase.ms_per_poll(**cpu)))
        .collect::<Vec<_>>()
        .join(" + ");
    format!("{:.2} = {each}", phase.ms_per_poll(sum))
}

/// How far one clock tick of /proc/<pid>/stat moves a per-poll figure.
fn tick_resolution(phase: &ExporterPhase) -> f64 {
    10.0 / phase.polls.max(1) as f64
}

fn ratio(counted: f64, sent: f64) -> String {
    if sent > 0.0 {
        format!("{:.1} %", counted / sent * 100.0)
    } else {
        "n/a".into()
    }
}

impl Figures {
    /// True when the 1-minute load went above the CPU count at any checkpoint, or other
    /// processes kept more than half a CPU busy during a phase (the load average alone
    /// missed that: figures of identical runs moved by 2× at a load below 2).
    pub fn noisy(&self) -> bool {
        let limit = self.cpus as f64;
        [
            self.load_before,
            self.polls_only.load_after,
            self.scrapes.load_after,
        ]
        .iter()
        .any(|load| load[0] > limit)
            || [&self.polls_only, &self.scrapes]
                .iter()
                .any(|phase| phase.others_busy_cpus > 0.5)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; that is why results are ignored below.
        self.render_setting(&mut out);
        self.render_polls_only(&mut out);
        self.render_scrapes(&mut out);
        let memory: Vec<String> = self
            .exporters
            .iter()
            .map(|exporter| {
                format!(
                    "{} RSS {:.1} MB, peak {:.1} MB",
                    exporter.label,
                    exporter.rss as f64 / 1e6,
                    exporter.rss_peak as f64 / 1e6
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "memory: {} (goal ≤ 8 MB at 1,000 peers)",
            memory.join("; ")
        );
        for exporter in &self.exporters {
            let bytes = &exporter.bytes;
            let _ = writeln!(
                out,
                "check: during the scrape phase {} counted {} of the bytes the relay's ends received ({:.0} B) and {} of those they sent ({:.0} B; within one socket dump, every 5 s by default); destroy overruns {}",
                exporter.label,
                ratio(bytes.ingress_counted, bytes.ingress_sent),
                bytes.ingress_sent,
                ratio(bytes.egress_counted, bytes.egress_sent),
                bytes.egress_sent,
                exporter.destroy_overruns,
            );
        }
        let _ = write!(
            out,
            "bench: pump errors {}; churned connections {}",
            self.pump_errors, self.churned
        );
        out
    }

    fn render_setting(&self, out: &mut String) {
        let noisy = if self.noisy() {
            format!(
                "   NOISY: 1-minute load above {} (the CPU count) or other processes busy on more than half a CPU; compare only figures of this run",
                self.cpus
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "exporter bench: {} peers ({} inbound, {} outbound), {} unrelated sockets, churn {}/s, --poll-interval {}",
            self.peers,
            self.peers - self.outbound,
            self.outbound,
            self.unrelated,
            self.churn_per_second,
            self.poll_interval,
        );
        for exporter in &self.exporters {
            let capped = if exporter.peers_seen == self.peers {
                String::new()
            } else {
                format!(
                    " (counts {} of the {} peers: it decodes no more admin_peers entries)",
                    exporter.peers_seen, self.peers
                )
            };
            let _ = writeln!(out, "{}: {}{capped}", exporter.label, exporter.binary);
        }
        if self.exporters.len() > 1 {
            let _ = writeln!(
                out,
                "(side by side: each exporter has its own connection to the relay and the same sockets; each one's polls load the machine for the others)"
            );
        }
        let _ = writeln!(
            out,
            "machine: {} CPUs; load {} at start, {} after polls-only, {} at end; CPUs busy {:.2} during polls-only ({:.2} by other processes), {:.2} during scrapes ({:.2} by others){noisy}",
            self.cpus,
            load(self.load_before),
            load(self.polls_only.load_after),
            load(self.scrapes.load_after),
            self.polls_only.machine_busy_cpus,
            self.polls_only.others_busy_cpus,
            self.scrapes.machine_busy_cpus,
            self.scrapes.others_busy_cpus
        );
        let _ = writeln!(
            out,
            "network namespace: {}; {} TCP sockets at start, {} at end; {} of them the bench's (both ends of each peer connection, unrelated sockets, listeners)",
            self.namespace, self.namespace_sockets, self.namespace_sockets_end, self.bench_sockets
        );
        let _ = writeln!(
            out,
            "sizes: admin_peers reply {:.1} kB ({} B per peer); /metrics {:.1} kB",
            self.reply_bytes as f64 / 1000.0,
            self.reply_bytes / self.peers.max(1),
            self.metrics_bytes as f64 / 1000.0
        );
    }

    fn render_polls_only(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "polls only ({:.0} s, no scrapes); CPU per poll (goal ≤ 3 ms at 1,000 peers with 5,000 unrelated sockets):",
            self.polls_only.seconds
        );
        for exporter in &self.exporters {
            let phase = &exporter.polls_only;
            let _ = writeln!(
                out,
                "  {}: {:.2} ms per poll over {} polls (process, /proc stat, ±{:.2} ms; kernel {:.2} ms; {:.0} minor page faults per poll); threads (schedstat), ms per poll: {}",
                exporter.label,
                phase.ms_per_poll(phase.process_cpu),
                phase.polls,
                tick_resolution(phase),
                phase.ms_per_poll(phase.system_cpu),
                phase.minor_faults / phase.polls.max(1) as f64,
                per_thread(phase)
            );
        }
    }

    fn render_scrapes(&self, out: &mut String) {
        let connections: Vec<String> = self
            .targets
            .iter()
            .map(|target| format!("{} {}", target.name, target.connections))
            .collect();
        let _ = writeln!(
            out,
            "scrapes ({:.0} s, at random gaps of {}–{} ms, all servers back to back in rotating order, one keep-alive connection each; connections opened: {}):",
            self.scrapes.seconds,
            self.scrape_every_ms / 2,
            self.scrape_every_ms * 3 / 2,
            connections.join(", ")
        );
        for target in &self.targets {
            let _ = writeln!(out, "{}", latency_line(&target.name, &target.ms));
        }
        let (exporters, floors) = self.targets.split_at(self.exporters.len());
        for exporter in exporters {
            for floor in floors {
                let _ = writeln!(
                    out,
                    "  {} / {}: p99 {:.2}×, median {:.2}×",
                    exporter.name,
                    floor.name,
                    percentile(&exporter.ms, 0.99) / percentile(&floor.ms, 0.99),
                    percentile(&exporter.ms, 0.5) / percentile(&floor.ms, 0.5)
                );
            }
        }
        let _ = writeln!(
            out,
            "  (goal: exporter p99 ≤ 1.5× the floor on the exporter's own stack, axum, at 1,000 peers with 1 s polls)"
        );
        for (label, during) in [
            (
                "overlapping a poll (admin_peers call + median poll duration)",
                true,
            ),
            ("between polls", false),
        ] {
            let split: Vec<String> = self
                .targets
                .iter()
                .map(|target| {
                    let (overlapping, others) = &target.by_poll;
                    let samples = if during { overlapping } else { others };
                    format!("{} {}", target.name, short_stats(samples))
                })
                .collect();
            let _ = writeln!(out, "  scrapes {label}: {}", split.join("; "));
        }
        for exporter in &self.exporters {
            let phase = &exporter.scrapes;
            let _ = writeln!(
                out,
                "  {}: relaywatch_source_poll_duration_seconds over {} polls: relay median {:.2} ms, max {:.2} ms; sockets median {:.2} ms, max {:.2} ms",
                exporter.label,
                exporter.relay_poll_ms.len(),
                percentile(&exporter.relay_poll_ms, 0.5),
                percentile(&exporter.relay_poll_ms, 1.0),
                percentile(&exporter.sockets_poll_ms, 0.5),
                percentile(&exporter.sockets_poll_ms, 1.0)
            );
            let _ = writeln!(
                out,
                "  {}: CPU {:.2} % of one core (polls and scrapes), {:.2} ms per poll over {} polls; threads (schedstat), ms per poll: {}",
                exporter.label,
                phase.process_cpu / self.scrapes.seconds.max(f64::EPSILON) * 100.0,
                phase.ms_per_poll(phase.process_cpu),
                phase.polls,
                per_thread(phase)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&samples, 0.5), 50.0);
        assert_eq!(percentile(&samples, 0.99), 99.0);
        assert_eq!(percentile(&samples, 1.0), 100.0);
        assert_eq!(percentile(&samples, 0.0), 1.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn splits_scrapes_by_poll_overlap() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let polls = [at(1000), at(2000)];
        let scrapes = [
            (at(990), 20.0), // ends inside the first poll
            (at(1005), 1.0), // starts inside it
            (at(1100), 1.0), // after it (window 50 ms)
            (at(500), 1.0),  // before any poll
            (at(2049), 1.0), // inside the second
        ];
        let (during, between) = split_by_polls(&scrapes, &polls, Duration::from_millis(50));
        assert_eq!(during, vec![20.0, 1.0, 1.0]);
        assert_eq!(between, vec![1.0, 1.0]);
    }

    #[test]
    fn renders_and_flags_noise() {
        let target = |name: &str, ms: Vec<f64>| Target {
            name: name.into(),
            ms,
            ..Target::default()
        };
        let mut figures = Figures {
            peers: 10,
            cpus: 2,
            exporters: vec![ExporterFigures {
                label: "exporter".into(),
                peers_seen: 10,
                ..ExporterFigures::default()
            }],
            targets: vec![
                target("exporter", vec![1.0, 2.0]),
                target("floor", vec![1.0, 1.0]),
            ],
            ..Figures::default()
        };
        let quiet = figures.render();
        assert!(quiet.contains("exporter / floor: p99 2.00×"), "{quiet}");
        assert!(!quiet.contains("NOISY"));
        figures.scrapes.load_after = [3.5, 2.0, 1.0];
        assert!(figures.render().contains("NOISY"));
        figures.scrapes.load_after = [1.0, 1.0, 1.0];
        figures.polls_only.others_busy_cpus = 0.9;
        assert!(figures.noisy());
    }
}
