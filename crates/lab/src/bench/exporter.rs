//! `relaywatch-lab --bench-exporter N`: one `relaywatch exporter` beside a synthetic relay
//! with N real peer connections, measured in two phases of one run.
//!
//! 1. Polls only: no scrapes, so the exporter's CPU divided by the polls the relay answered
//!    is the cost of a poll (admin_peers, socket dump, accounting).
//! 2. Scrapes: a scrape every ~100 ms on one keep-alive connection, and the same request to
//!    two static "floor" servers serving the exporter's own /metrics bytes (see `floor.rs`),
//!    back to back, so all see the same machine. Random gaps keep scrapes from phase-locking
//!    with the polls.
//!
//! The synthetic relay replaces one labrelay process per peer (the previous harness): 1,000
//! labrelays do not fit a /24 or a 2-core machine, and their own CPU would be in every figure.
//! Correctness against labrelay's ground truth stays in the integration tests.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::Rng;

use super::floor::{Floor, FloorKind};
use super::http::{self, KeepAlive};
use super::procfs;
use super::relay::AdminApi;
use super::report::{percentile, split_by_polls, Bytes, Figures, Phase, Target};
use super::sockets::{descriptors_needed, Pump, Sockets};
use crate::exporters::{parse_exposition, Samples};
use crate::process::{self, Child};

/// What to run; `relaywatch-lab --bench-exporter` fills it from its flags.
#[derive(Debug, Clone)]
pub struct ExporterBench {
    pub peers: usize,
    pub unrelated_sockets: usize,
    pub churn_per_second: usize,
    /// Passed to the exporter's `--poll-interval` as written (e.g. `1s`).
    pub poll_interval: String,
    pub polls_only: Duration,
    pub scrapes_for: Duration,
    pub scrape_every: Duration,
    /// Which network namespace the run is in, for the report (see `netns.rs`).
    pub namespace: String,
    /// The exporter binary to measure (another branch's build, say); default: the one
    /// next to relaywatch-lab.
    pub relaywatch: Option<PathBuf>,
}

impl ExporterBench {
    pub fn new(peers: usize) -> ExporterBench {
        ExporterBench {
            peers,
            unrelated_sockets: 0,
            churn_per_second: 0,
            poll_interval: "1s".into(),
            polls_only: Duration::from_secs(20),
            // A p99 from 1,200 scrapes rests on its 12 worst; from 300, on 3.
            scrapes_for: Duration::from_secs(120),
            scrape_every: Duration::from_millis(100),
            namespace: "shared with the machine".into(),
            relaywatch: None,
        }
    }
}

/// Sum of every sample of a family (`name` alone or `name{…}`).
fn family_sum(samples: &Samples, name: &str) -> f64 {
    samples
        .iter()
        .filter(|(key, _)| {
            key.strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
        })
        .map(|(_, value)| value)
        .sum()
}

/// `relaywatch exporter` with the flags main's exporter takes, on `listen`.
fn start_exporter(
    bench: &ExporterBench,
    admin: SocketAddr,
    listen: SocketAddr,
    dir: &Path,
) -> Result<Child> {
    let binary = match &bench.relaywatch {
        Some(path) => path.clone(),
        None => crate::workspace_binary("relaywatch")?,
    };
    let mut command = Command::new(&binary);
    command
        .arg("exporter")
        .args(["--mode", "clearnet"])
        .args(["--relay-admin-url", &format!("http://{admin}")])
        .args(["--tor-control", "off"])
        .args(["--listen", &listen.to_string()])
        .args(["--poll-interval", &bench.poll_interval]);
    let log = dir.join("relaywatch.log");
    process::spawn("relaywatch-bench", command, &log)
        .with_context(|| format!("starting the exporter {}", binary.display()))
}

/// Scrapes until `ready` accepts the samples, or fails after `within` with the exporter's log.
fn wait_for(
    exporter: &mut Child,
    listen: SocketAddr,
    log: &Path,
    within: Duration,
    what: &str,
    ready: impl Fn(&Samples) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(text) = crate::rpc::get_text(listen, "/metrics") {
            if ready(&parse_exposition(&text)) {
                return Ok(());
            }
        }
        if !exporter.is_running() || Instant::now() > deadline {
            bail!(
                "the exporter did not {what} within {within:?}; log {}:\n{}",
                log.display(),
                crate::relays::tail(log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// CPU readings at one moment: the exporter's (whole and per thread), the bench's own
/// processes' (this one and the floors), and the whole machine's.
struct Snapshot {
    polls: u64,
    exporter: f64,
    threads: BTreeMap<String, f64>,
    bench: f64,
    machine_busy: f64,
}

impl Snapshot {
    fn take(admin: &AdminApi, exporter: u32, bench_pids: &[u32]) -> Result<Snapshot> {
        let mut bench = procfs::process_cpu_seconds(std::process::id())?;
        for pid in bench_pids {
            bench += procfs::process_cpu_seconds(*pid)?;
        }
        Ok(Snapshot {
            polls: admin.polls(),
            exporter: procfs::process_cpu_seconds(exporter)?,
            threads: procfs::thread_cpu_seconds(exporter)?,
            bench,
            machine_busy: procfs::machine_busy_seconds()?,
        })
    }
}

/// A phase's figures from the readings at its start and end.
fn phase(started: Instant, before: &Snapshot, after: &Snapshot) -> Result<Phase> {
    let seconds = started.elapsed().as_secs_f64();
    let threads = after
        .threads
        .iter()
        .map(|(name, cpu)| {
            let was = before.threads.get(name).copied().unwrap_or(0.0);
            (name.clone(), cpu - was)
        })
        .collect();
    let exporter = after.exporter - before.exporter;
    let busy = (after.machine_busy - before.machine_busy) / seconds;
    Ok(Phase {
        seconds,
        polls: after.polls - before.polls,
        process_cpu: exporter,
        threads,
        load_after: procfs::load_average()?,
        machine_busy_cpus: busy,
        others_busy_cpus: busy - (exporter + after.bench - before.bench) / seconds,
    })
}

/// The value of the first sample line starting with `series ` in an exposition body.
fn sample_in(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// One client's scrapes: when each was sent, and its milliseconds.
type Taken = Vec<(Instant, f64)>;

/// Scrapes every client at random gaps for `bench.scrapes_for`; returns each client's
/// (start, milliseconds) and the exporter's (client 0's) last body. Collects the exporter's
/// own poll durations into `figures` as it goes.
fn scrape_loop(
    clients: &mut [(String, KeepAlive)],
    bench: &ExporterBench,
    figures: &mut Figures,
) -> Result<(Vec<Taken>, Vec<u8>)> {
    let started = Instant::now();
    let mut rng = rand::thread_rng();
    let mut last_body = Vec::new();
    let mut scrapes: Vec<Taken> = vec![Vec::new(); clients.len()];
    let mut tick = 0usize;
    let mut due = started;
    let every = bench.scrape_every.as_micros() as u64;
    while started.elapsed() < bench.scrapes_for {
        // Uniformly random gaps of 0.5–1.5× the interval: a fixed grid of 100 ms is
        // commensurate with 1 s polls and can miss every poll for a whole run.
        due += Duration::from_micros(rng.gen_range(every / 2..=every * 3 / 2));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        // Rotating order, so no server is always first after the sleep.
        for turn in 0..clients.len() {
            let index = (turn + tick) % clients.len();
            let (name, client) = &mut clients[index];
            let sent = Instant::now();
            let (status, body) = client.get("/metrics")?;
            let millis = sent.elapsed().as_secs_f64() * 1000.0;
            http::expect_ok(status, name)?;
            scrapes[index].push((sent, millis));
            if index == 0 {
                last_body = body;
                let text = String::from_utf8_lossy(&last_body);
                for (series, seen) in [
                    (
                        "relaywatch_source_poll_duration_seconds{source=\"relay\"}",
                        &mut figures.relay_poll_ms,
                    ),
                    (
                        "relaywatch_source_poll_duration_seconds{source=\"sockets\"}",
                        &mut figures.sockets_poll_ms,
                    ),
                ] {
                    // A new value means a new poll; equal consecutive values are the same poll.
                    if let Some(ms) = sample_in(&text, series).map(|seconds| seconds * 1000.0) {
                        if seen.last() != Some(&ms) {
                            seen.push(ms);
                        }
                    }
                }
            }
        }
        tick += 1;
    }
    Ok((scrapes, last_body))
}

/// Runs the bench and returns the printed report.
pub fn exporter_bench(bench: &ExporterBench) -> Result<String> {
    if bench.peers == 0 || bench.peers > 20_000 {
        bail!("--bench-exporter takes 1 to 20,000 peers");
    }
    let mut figures = Figures {
        peers: bench.peers,
        unrelated: bench.unrelated_sockets,
        churn_per_second: bench.churn_per_second,
        poll_interval: bench.poll_interval.clone(),
        cpus: procfs::cpus(),
        load_before: procfs::load_average()?,
        scrape_every_ms: bench.scrape_every.as_millis() as u64,
        namespace: bench.namespace.clone(),
        exporter_binary: match &bench.relaywatch {
            Some(path) => path.display().to_string(),
            None => crate::workspace_binary("relaywatch")?.display().to_string(),
        },
        ..Figures::default()
    };
    procfs::raise_nofile(descriptors_needed(bench.peers, bench.unrelated_sockets))?;
    let dir = tempfile::Builder::new()
        .prefix("relaywatch-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let subnet = crate::relays::random_subnet();
    let relay_ip = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 1);
    let sockets = Arc::new(Sockets::open(subnet, bench.peers, bench.unrelated_sockets)?);
    figures.outbound = sockets.peers.iter().filter(|peer| !peer.inbound).count();
    figures.bench_sockets = sockets.count();
    figures.namespace_sockets = procfs::namespace_tcp_sockets()?;
    let p2p = sockets.listeners[0].local_addr().context("p2p address")?;
    let admin_listener = TcpListener::bind((relay_ip, 0)).context("admin API listener")?;
    let admin = AdminApi::start(admin_listener, &sockets.peers, p2p)?;
    figures.reply_bytes = admin.reply_bytes;
    let pump = Pump::start(Arc::clone(&sockets), bench.churn_per_second)?;

    // A port free on the relay's address; the exporter binds it a moment later.
    let listen = TcpListener::bind((relay_ip, 0))
        .and_then(|probe| probe.local_addr())
        .context("finding a port for the exporter")?;
    let mut exporter = start_exporter(bench, admin.addr, listen, dir.path())?;
    let log = dir.path().join("relaywatch.log");
    let peers = bench.peers as f64;
    wait_for(
        &mut exporter,
        listen,
        &log,
        Duration::from_secs(60),
        "see every peer and its bytes",
        |samples| {
            family_sum(samples, "p2p_peers_clearnet") + family_sum(samples, "p2p_peers_tor")
                == peers
                && family_sum(samples, "p2p_ingress_clearnet") > 0.0
        },
    )?;
    let pid = exporter.pid();

    // Phase 1: polls only.
    let started = Instant::now();
    let before = Snapshot::take(&admin, pid, &[])?;
    std::thread::sleep(bench.polls_only);
    let after = Snapshot::take(&admin, pid, &[])?;
    figures.polls_only = phase(started, &before, &after)?;

    // Phase 2: scrapes beside the floors, which serve the exporter's own bytes.
    let mut exporter_client = KeepAlive::connect(listen)?;
    let (status, body) = exporter_client.get("/metrics")?;
    http::expect_ok(status, "exporter /metrics")?;
    figures.metrics_bytes = body.len();
    let floors = [FloorKind::Axum, FloorKind::Std]
        .into_iter()
        .map(|kind| Floor::start(kind, &body, IpAddr::V4(relay_ip), dir.path()))
        .collect::<Result<Vec<Floor>>>()?;
    let mut clients = vec![("exporter /metrics".to_string(), exporter_client)];
    for floor in &floors {
        let name = format!("floor ({})", floor.kind.as_str());
        clients.push((name, KeepAlive::connect(floor.addr)?));
    }
    // The counters now, next to the pump's: the floors took a moment to start.
    let (status, latest) = clients[0].1.get("/metrics")?;
    http::expect_ok(status, "exporter /metrics")?;
    let counted_before = parse_exposition(&String::from_utf8_lossy(&latest));
    let (received_before, sent_before) = (
        pump.counters.relay_received.load(Ordering::Relaxed),
        pump.counters.relay_sent.load(Ordering::Relaxed),
    );
    let floor_pids: Vec<u32> = floors.iter().map(Floor::pid).collect();
    let started = Instant::now();
    let before = Snapshot::take(&admin, pid, &floor_pids)?;
    let (scrapes, last_body) = scrape_loop(&mut clients, bench, &mut figures)?;
    let after = Snapshot::take(&admin, pid, &floor_pids)?;
    figures.scrapes = phase(started, &before, &after)?;
    let polls = admin.poll_starts();
    let window = Duration::from_secs_f64(percentile(&figures.relay_poll_ms, 0.5).max(0.0) / 1000.0);
    figures.targets = clients
        .into_iter()
        .zip(&scrapes)
        .map(|((name, client), taken)| Target {
            name,
            ms: taken.iter().map(|(_, ms)| *ms).collect(),
            by_poll: split_by_polls(taken, &polls, window),
            connections: client.connections,
        })
        .collect();
    figures.namespace_sockets_end = procfs::namespace_tcp_sockets()?;
    figures.rss = procfs::rss_bytes(pid);
    figures.rss_peak = procfs::status_bytes(pid, "VmHWM");

    let counted_after = parse_exposition(&String::from_utf8_lossy(&last_body));
    let grew =
        |family: &str| family_sum(&counted_after, family) - family_sum(&counted_before, family);
    figures.bytes = Bytes {
        ingress_sent: (pump.counters.relay_received.load(Ordering::Relaxed) - received_before)
            as f64,
        ingress_counted: grew("p2p_ingress_clearnet") + grew("p2p_ingress_tor"),
        egress_sent: (pump.counters.relay_sent.load(Ordering::Relaxed) - sent_before) as f64,
        egress_counted: grew("p2p_egress_clearnet") + grew("p2p_egress_tor"),
    };
    figures.destroy_overruns =
        family_sum(&counted_after, "relaywatch_socket_destroy_overruns_total");
    figures.pump_errors = pump.counters.errors.load(Ordering::Relaxed);
    figures.churned = pump.counters.churned.load(Ordering::Relaxed);
    if !exporter.is_running() {
        bail!(
            "the exporter exited during the bench; log {}:\n{}",
            log.display(),
            crate::relays::tail(&log, 20)
        );
    }
    Ok(figures.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_families_not_prefixes() {
        let samples = parse_exposition(
            "p2p_peers_clearnet{direction=\"inbound\"} 2\np2p_peers_clearnet{direction=\"outbound\"} 1\np2p_peers_clearnet_x 9\n",
        );
        assert_eq!(family_sum(&samples, "p2p_peers_clearnet"), 3.0);
    }

    #[test]
    fn finds_a_sample_by_series() {
        let body = "a{source=\"relay\"} 0.5\na{source=\"sockets\"} 0.25\n";
        assert_eq!(sample_in(body, "a{source=\"sockets\"}"), Some(0.25));
        assert_eq!(sample_in(body, "a{source=\"tor\"}"), None);
    }
}
