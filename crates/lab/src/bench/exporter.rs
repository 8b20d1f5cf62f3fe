//! `relaywatch-lab --bench-exporter N`: `relaywatch exporter` beside a synthetic relay with
//! N real peer connections, measured in two phases of one run.
//!
//! 1. Polls only: no scrapes, so an exporter's CPU divided by the polls the relay answered
//!    it is the cost of a poll (admin_peers, socket dump, accounting).
//! 2. Scrapes: every ~100 ms each exporter is scraped on one keep-alive connection, and so
//!    are two static "floor" servers serving an exporter's own /metrics bytes (`floor.rs`),
//!    back to back, so all see the same machine (`measure.rs`).
//!
//! With several `--relaywatch` binaries the exporters run side by side against the same
//! sockets, each with its own admin API connection: on this shared VM, figures of the same
//! build moved by 2× between runs, so a before/after comparison belongs in one run.
//!
//! The synthetic relay replaces one labrelay process per peer (the previous harness): 1,000
//! labrelays do not fit a /24 or a 2-core machine, and their own CPU would be in every figure.
//! Correctness against labrelay's ground truth stays in the integration tests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::floor::{Floor, FloorKind};
use super::http::{self, KeepAlive};
use super::measure::{phase, scrape_loop, Readings, Seen};
use super::procfs;
use super::relay::AdminApi;
use super::report::{percentile, split_by_polls, Bytes, ExporterFigures, Figures, Target};
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
    /// The exporter binaries to measure, side by side; empty: the one next to relaywatch-lab.
    pub relaywatch: Vec<PathBuf>,
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
            relaywatch: Vec::new(),
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

/// One exporter process and its own connection to the synthetic relay.
struct Running {
    label: String,
    binary: PathBuf,
    admin: AdminApi,
    listen: SocketAddr,
    log: PathBuf,
    child: Child,
}

impl Running {
    /// `relaywatch exporter` with the flags main's exporter takes, polling its own admin API.
    fn start(
        label: String,
        binary: PathBuf,
        sockets: &Sockets,
        ip: Ipv4Addr,
        poll_interval: &str,
        dir: &Path,
    ) -> Result<Running> {
        let p2p = sockets.listeners[0].local_addr().context("p2p address")?;
        let admin_listener = TcpListener::bind((ip, 0)).context("admin API listener")?;
        let admin = AdminApi::start(admin_listener, &sockets.peers, p2p)?;
        // A port free on the relay's address; the exporter binds it a moment later.
        let listen = TcpListener::bind((ip, 0))
            .and_then(|probe| probe.local_addr())
            .context("finding a port for the exporter")?;
        let mut command = Command::new(&binary);
        command
            .arg("exporter")
            .args(["--mode", "clearnet"])
            .args(["--relay-admin-url", &format!("http://{}", admin.addr)])
            .args(["--tor-control", "off"])
            .args(["--listen", &listen.to_string()])
            .args(["--poll-interval", poll_interval]);
        let name = format!("relaywatch-bench-{}", label.replace(' ', "-"));
        let log = dir.join(format!("{name}.log"));
        let child = process::spawn(&name, command, &log)
            .with_context(|| format!("starting the exporter {}", binary.display()))?;
        Ok(Running {
            label,
            binary,
            admin,
            listen,
            log,
            child,
        })
    }

    /// Waits until the exporter counts every peer and some bytes, or, after 10 s, a peer count
    /// that has stopped changing (main's exporter decodes at most 4,096 admin_peers entries);
    /// returns the peers it counts. Fails after `within`, with the log.
    fn wait_for_peers(&mut self, peers: usize, within: Duration) -> Result<usize> {
        let started = Instant::now();
        let mut last: Option<(f64, Instant)> = None;
        loop {
            if let Ok(text) = crate::rpc::get_text(self.listen, "/metrics") {
                let samples = parse_exposition(&text);
                let seen = family_sum(&samples, "p2p_peers_clearnet")
                    + family_sum(&samples, "p2p_peers_tor");
                let bytes = family_sum(&samples, "p2p_ingress_clearnet") > 0.0;
                if bytes && seen == peers as f64 {
                    return Ok(peers);
                }
                match last {
                    Some((count, since)) if count == seen => {
                        let settled = since.elapsed() > Duration::from_secs(3);
                        if bytes && seen > 0.0 && settled && started.elapsed() > within / 6 {
                            return Ok(seen as usize);
                        }
                    }
                    _ => last = Some((seen, Instant::now())),
                }
            }
            if !self.child.is_running() || started.elapsed() > within {
                bail!(
                    "{} ({}) did not see peers and their bytes within {within:?}; log {}:\n{}",
                    self.label,
                    self.binary.display(),
                    self.log.display(),
                    crate::relays::tail(&self.log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The byte counters of a scrape: (ingress, egress) summed over routes.
fn counted(body: &[u8]) -> (f64, f64) {
    let samples = parse_exposition(&String::from_utf8_lossy(body));
    let sum = |families: [&str; 2]| families.iter().map(|f| family_sum(&samples, f)).sum();
    (
        sum(["p2p_ingress_clearnet", "p2p_ingress_tor"]),
        sum(["p2p_egress_clearnet", "p2p_egress_tor"]),
    )
}

/// Runs the bench and returns the printed report.
pub fn exporter_bench(bench: &ExporterBench) -> Result<String> {
    if bench.peers == 0 || bench.peers > 20_000 {
        bail!("--bench-exporter takes 1 to 20,000 peers");
    }
    let binaries = match bench.relaywatch.as_slice() {
        [] => vec![crate::workspace_binary("relaywatch")?],
        paths => paths.to_vec(),
    };
    if binaries.len() > 4 {
        bail!("--relaywatch: at most 4 exporters side by side");
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
    let pump = Pump::start(Arc::clone(&sockets), bench.churn_per_second)?;

    let mut running = Vec::new();
    for (index, binary) in binaries.into_iter().enumerate() {
        let label = if bench.relaywatch.len() > 1 {
            format!("exporter {}", (b'A' + index as u8) as char)
        } else {
            "exporter".into()
        };
        let poll = &bench.poll_interval;
        running.push(Running::start(
            label,
            binary,
            &sockets,
            relay_ip,
            poll,
            dir.path(),
        )?);
    }
    figures.reply_bytes = running[0].admin.reply_bytes;
    let mut peers_seen = Vec::new();
    for exporter in &mut running {
        peers_seen.push(exporter.wait_for_peers(bench.peers, Duration::from_secs(60))?);
    }
    let pids: Vec<(&AdminApi, u32)> = running
        .iter()
        .map(|exporter| (&exporter.admin, exporter.child.pid()))
        .collect();

    // Phase 1: polls only.
    let before = Readings::take(&pids, &[])?;
    std::thread::sleep(bench.polls_only);
    let (machine, polls_only) = phase(&before, &Readings::take(&pids, &[])?)?;
    figures.polls_only = machine;

    // Phase 2: scrapes beside the floors, which serve the first exporter's bytes.
    let mut clients = Vec::new();
    let mut seen: Vec<Seen> = Vec::new();
    for exporter in &running {
        let mut client = KeepAlive::connect(exporter.listen)?;
        let (status, body) = client.get("/metrics")?;
        http::expect_ok(status, &exporter.label)?;
        seen.push(Seen {
            last_body: body,
            ..Seen::default()
        });
        clients.push((exporter.label.clone(), client));
    }
    figures.metrics_bytes = seen[0].last_body.len();
    let floors = [FloorKind::Axum, FloorKind::Std]
        .into_iter()
        .map(|kind| Floor::start(kind, &seen[0].last_body, IpAddr::V4(relay_ip), dir.path()))
        .collect::<Result<Vec<Floor>>>()?;
    for floor in &floors {
        let name = format!("floor ({})", floor.kind.as_str());
        clients.push((name, KeepAlive::connect(floor.addr)?));
    }
    // The counters now, next to the pump's: the floors took a moment to start.
    let mut counted_before = Vec::new();
    for (_, client) in clients.iter_mut().take(running.len()) {
        let (status, body) = client.get("/metrics")?;
        http::expect_ok(status, "exporter /metrics")?;
        counted_before.push(counted(&body));
    }
    let sent_before = (
        pump.counters.relay_received.load(Ordering::Relaxed),
        pump.counters.relay_sent.load(Ordering::Relaxed),
    );
    let floor_pids: Vec<u32> = floors.iter().map(Floor::pid).collect();
    let before = Readings::take(&pids, &floor_pids)?;
    let taken = scrape_loop(
        &mut clients,
        &mut seen,
        bench.scrape_every,
        bench.scrapes_for,
    )?;
    let (machine, scrapes) = phase(&before, &Readings::take(&pids, &floor_pids)?)?;
    figures.scrapes = machine;
    let sent = (
        (pump.counters.relay_received.load(Ordering::Relaxed) - sent_before.0) as f64,
        (pump.counters.relay_sent.load(Ordering::Relaxed) - sent_before.1) as f64,
    );

    // Scrapes are split by whether they overlapped any exporter's poll.
    let mut poll_starts: Vec<Instant> = running
        .iter()
        .flat_map(|exporter| exporter.admin.poll_starts())
        .collect();
    poll_starts.sort();
    let window_ms = seen
        .iter()
        .map(|exporter| percentile(&exporter.relay_poll_ms, 0.5))
        .fold(0.0, f64::max);
    let window = Duration::from_secs_f64(window_ms / 1000.0);
    figures.targets = clients
        .into_iter()
        .zip(&taken)
        .map(|((name, client), taken)| Target {
            name,
            ms: taken.iter().map(|(_, ms)| *ms).collect(),
            by_poll: split_by_polls(taken, &poll_starts, window),
            connections: client.connections,
        })
        .collect();
    figures.namespace_sockets_end = procfs::namespace_tcp_sockets()?;
    let phases = polls_only.into_iter().zip(scrapes);
    for ((((exporter, seen), (polls_only, scrapes)), before), peers_seen) in running
        .iter_mut()
        .zip(seen)
        .zip(phases)
        .zip(counted_before)
        .zip(peers_seen)
    {
        if !exporter.child.is_running() {
            bail!(
                "{} exited during the bench; log {}:\n{}",
                exporter.label,
                exporter.log.display(),
                crate::relays::tail(&exporter.log, 20)
            );
        }
        let pid = exporter.child.pid();
        let after = counted(&seen.last_body);
        let samples = parse_exposition(&String::from_utf8_lossy(&seen.last_body));
        figures.exporters.push(ExporterFigures {
            label: exporter.label.clone(),
            binary: exporter.binary.display().to_string(),
            peers_seen,
            polls_only,
            scrapes,
            relay_poll_ms: seen.relay_poll_ms,
            sockets_poll_ms: seen.sockets_poll_ms,
            rss: procfs::rss_bytes(pid),
            rss_peak: procfs::status_bytes(pid, "VmHWM"),
            bytes: Bytes {
                ingress_sent: sent.0,
                ingress_counted: after.0 - before.0,
                egress_sent: sent.1,
                egress_counted: after.1 - before.1,
            },
            destroy_overruns: family_sum(&samples, "relaywatch_socket_destroy_overruns_total"),
        });
    }
    figures.pump_errors = pump.counters.errors.load(Ordering::Relaxed);
    figures.churned = pump.counters.churned.load(Ordering::Relaxed);
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
    fn counts_bytes_over_routes() {
        let body = b"p2p_ingress_tor 5\np2p_ingress_clearnet 7\np2p_egress_clearnet 2\n";
        assert_eq!(counted(body), (12.0, 2.0));
    }
}
