//! `relaywatch-lab --bench-tor-events`: the exporter's CPU while its pod tor emits control-port
//! events as fast as failing onion dials make it. Needs Debian's `tor` (a private network).
//!
//! The parser's own throughput on one core is `cargo bench -p torctl` (no network, no IO).

use std::time::{Duration, Instant};

use anyhow::Result;

use super::procfs::{process_cpu_seconds, rss_bytes};
use crate::exporters::Exporter;
use crate::relays::Mode;

/// Starts a small lab, attaches an exporter to one pod tor, and makes that tor emit events as
/// fast as it can (dials to unpublished onions through its SOCKS port); prints the exporter's CPU.
pub fn tor_events_bench(measure_for: Duration) -> Result<String> {
    use crate::lab::{Lab, LabSpec};
    use crate::tornet::{fresh_onion_address, socks5_connect};
    let lab = Lab::start(LabSpec {
        relays: vec![(Mode::PreferTor, 1), (Mode::OnlyOnion, 1)],
        // Only the relays under test, no public-network nodes.
        public: Some(crate::topology::PublicNodes::NONE),
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
    let cpu_start = process_cpu_seconds(pid)?;
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
    let cpu = (process_cpu_seconds(pid)? - cpu_start) / elapsed;
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
