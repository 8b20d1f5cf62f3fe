//! `relaywatch-lab --bench-exporter N`: the exporter's cost beside a relay with N clearnet peers.
//!
//! Prints figures instead of asserting them: timings on a shared 2-core machine belong in a
//! benchmark, not in a test.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::exporters::Exporter;
use crate::relays::{random_subnet, Mode, Relay, RelaySpec};

/// CPU seconds (user + system) a process has used, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> Result<f64> {
        Ok(fields
            .get(index)
            .context("short /proc stat")?
            .parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15 of stat; here 0-based after the name: 11 and 12.
    let clock_ticks = 100.0; // sysconf(_SC_CLK_TCK) is 100 on Linux x86_64
    Ok((ticks(11)? + ticks(12)?) / clock_ticks)
}

/// Resident memory of a process in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Starts a hub relay, `peers` client relays dialing it, and an exporter on the hub; measures.
pub fn exporter_bench(peers: usize, measure_for: Duration) -> Result<String> {
    if peers == 0 || peers > 250 {
        bail!("--bench-exporter takes 1 to 250 peers (one /24 of loopback addresses)");
    }
    let dir = tempfile::Builder::new()
        .prefix("relaywatch-bench-")
        .tempdir()?;
    let labrelay = crate::workspace_binary("labrelay")?;
    let relaywatch: PathBuf = crate::workspace_binary("relaywatch")?;
    let subnet = random_subnet();
    let spec = |name: String, host: u8, extra: &[&str]| RelaySpec {
        name,
        mode: Mode::Clearnet,
        ip: Ipv4Addr::new(subnet[0], subnet[1], subnet[2], host),
        socks: "127.0.0.1:9".parse().expect("literal address"),
        onion: None,
        extra_args: extra.iter().map(|arg| arg.to_string()).collect(),
        tor_control: None,
    };
    let max_peers = (peers * 3 / 2 + 10).to_string();
    let hub = Relay::start(
        &labrelay,
        spec("hub".into(), 1, &["--maxpeers", &max_peers]),
        dir.path(),
    )?;
    let mut clients = Vec::new();
    for index in 0..peers {
        let client = Relay::start(
            &labrelay,
            spec(format!("client-{index}"), index as u8 + 2, &[]),
            dir.path(),
        )?;
        client.add_peer(&hub.clearnet_enode())?;
        clients.push(client);
    }
    let exporter = Exporter::start(&relaywatch, &hub, &[], dir.path())?;
    let wait_start = Instant::now();
    loop {
        let samples = exporter.scrape()?;
        let seen = samples
            .get("p2p_peers_clearnet{direction=\"inbound\"}")
            .copied()
            .unwrap_or(0.0);
        if seen as usize == peers {
            break;
        }
        if wait_start.elapsed() > Duration::from_secs(60) {
            bail!("the exporter saw {seen} of {peers} peers after 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = exporter.pid();
    let cpu_start = cpu_seconds(pid)?;
    let wall_start = Instant::now();
    let mut latencies = Vec::new();
    while wall_start.elapsed() < measure_for {
        let started = Instant::now();
        exporter.metrics_text()?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu = (cpu_seconds(pid)? - cpu_start) / wall_start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let samples = exporter.scrape()?;
    let poll = |source: &str| {
        samples
            .get(&format!(
                "relaywatch_source_poll_duration_seconds{{source=\"{source}\"}}"
            ))
            .copied()
            .unwrap_or(f64::NAN)
            * 1000.0
    };
    Ok(format!(
        "exporter with {peers} peers: RSS {:.1} MB, CPU {:.2} % of one core over {:.0} s (1 s polls, a scrape every 100 ms), \
         /metrics latency median {:.2} ms p99 {:.2} ms ({} scrapes), last poll: admin_peers {:.2} ms, sock_diag {:.2} ms",
        rss_bytes(pid) as f64 / 1e6,
        cpu * 100.0,
        measure_for.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.len(),
        poll("relay"),
        poll("sockets"),
    ))
}

/// Starts a small lab, attaches an exporter to one pod tor, and makes that tor emit events as
/// fast as it can (dials to unpublished onions through its SOCKS port); prints the exporter's CPU.
pub fn tor_events_bench(measure_for: Duration) -> Result<String> {
    use crate::lab::{Lab, LabSpec};
    use crate::tornet::{fresh_onion_address, socks5_connect};
    let lab = Lab::start(LabSpec {
        relays: vec![(Mode::PreferTor, 1), (Mode::OnlyOnion, 1)],
        dir: None,
        relay_args: Vec::new(),
        labrelay_binary: None,
        socks_timeout: None,
    })?;
    let relay = &lab.relays[0];
    let relaywatch = crate::workspace_binary("relaywatch")?;
    let exporter = Exporter::start(&relaywatch, relay, &[], lab.dir())?;
    let pid = exporter.pid();
    let dials_before = exporter
        .scrape()?
        .get("p2p_dials_tor_total")
        .copied()
        .unwrap_or(0.0);
    let cpu_start = cpu_seconds(pid)?;
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let socks = relay.spec.socks;
            std::thread::spawn(move || {
                while started.elapsed() < measure_for {
                    let _ = socks5_connect(
                        socks,
                        &fresh_onion_address(),
                        30303,
                        Duration::from_secs(10),
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu_seconds(pid)? - cpu_start) / elapsed;
    // Let the last dials settle before reading the counters.
    std::thread::sleep(Duration::from_secs(2));
    let samples = exporter.scrape()?;
    let dials = samples.get("p2p_dials_tor_total").copied().unwrap_or(0.0) - dials_before;
    let not_found = samples
        .get("p2p_dials_tor_errors_total{reason=\"descriptor_not_found\"}")
        .copied()
        .unwrap_or(0.0);
    Ok(format!(
        "exporter while its tor failed {dials:.0} onion dials in {elapsed:.0} s ({:.1}/s, each ~8 control events; {not_found:.0} counted descriptor_not_found): \
         CPU {:.2} % of one core, RSS {:.1} MB",
        dials / elapsed,
        cpu * 100.0,
        rss_bytes(pid) as f64 / 1e6
    ))
}
