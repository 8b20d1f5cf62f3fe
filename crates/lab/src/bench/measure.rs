//! The exporter bench's measurements: CPU readings before and after a phase, and the scrape
//! loop that times every server over its keep-alive connection.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::Rng;

use super::http::{self, KeepAlive};
use super::procfs;
use super::relay::AdminApi;
use super::report::{ExporterPhase, Phase};

/// One exporter's counters at one moment.
struct ExporterReading {
    polls: u64,
    stat: procfs::ProcessStat,
    threads: BTreeMap<String, f64>,
}

/// CPU readings at one moment: each exporter's (whole and per thread) with the polls its
/// relay connection answered, the bench's own processes' (this one and the floors), and the
/// whole machine's.
pub struct Readings {
    at: Instant,
    exporters: Vec<ExporterReading>,
    bench: f64,
    machine_busy: f64,
}

impl Readings {
    /// `exporters`: each exporter's admin API (its poll counter) and pid.
    pub fn take(exporters: &[(&AdminApi, u32)], bench_pids: &[u32]) -> Result<Readings> {
        let mut bench = procfs::process_cpu_seconds(std::process::id())?;
        for pid in bench_pids {
            bench += procfs::process_cpu_seconds(*pid)?;
        }
        let exporters = exporters
            .iter()
            .map(|(admin, pid)| {
                Ok(ExporterReading {
                    polls: admin.polls(),
                    stat: procfs::process_stat(*pid)?,
                    threads: procfs::thread_cpu_seconds(*pid)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Readings {
            at: Instant::now(),
            exporters,
            bench,
            machine_busy: procfs::machine_busy_seconds()?,
        })
    }
}

/// The machine's and each exporter's figures over the phase between two readings.
pub fn phase(before: &Readings, after: &Readings) -> Result<(Phase, Vec<ExporterPhase>)> {
    let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
    let exporters: Vec<ExporterPhase> = before
        .exporters
        .iter()
        .zip(&after.exporters)
        .map(|(was, now)| ExporterPhase {
            polls: now.polls - was.polls,
            process_cpu: (now.stat.user_seconds + now.stat.system_seconds)
                - (was.stat.user_seconds + was.stat.system_seconds),
            system_cpu: now.stat.system_seconds - was.stat.system_seconds,
            minor_faults: now.stat.minor_faults - was.stat.minor_faults,
            threads: now
                .threads
                .iter()
                .map(|(name, cpu)| {
                    let before = was.threads.get(name).copied().unwrap_or(0.0);
                    (name.clone(), cpu - before)
                })
                .collect(),
        })
        .collect();
    let exporters_cpu: f64 = exporters.iter().map(|phase| phase.process_cpu).sum();
    let busy = (after.machine_busy - before.machine_busy) / seconds;
    let ours = (exporters_cpu + after.bench - before.bench) / seconds;
    let machine = Phase {
        seconds,
        load_after: procfs::load_average()?,
        machine_busy_cpus: busy,
        others_busy_cpus: busy - ours,
    };
    Ok((machine, exporters))
}

/// One server's scrapes: when each was sent, and its milliseconds.
pub type Taken = Vec<(Instant, f64)>;

/// What the scrape loop saw of one exporter besides latency.
#[derive(Default)]
pub struct Seen {
    /// Distinct values of relaywatch_source_poll_duration_seconds, in ms: a new value is a
    /// new poll.
    pub relay_poll_ms: Vec<f64>,
    pub sockets_poll_ms: Vec<f64>,
    pub last_body: Vec<u8>,
}

/// The value of the first sample line starting with `series ` in an exposition body.
pub fn sample_in(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn note_poll_durations(seen: &mut Seen) {
    let text = String::from_utf8_lossy(&seen.last_body);
    for (source, values) in [
        ("relay", &mut seen.relay_poll_ms),
        ("sockets", &mut seen.sockets_poll_ms),
    ] {
        let series = format!("relaywatch_source_poll_duration_seconds{{source=\"{source}\"}}");
        if let Some(ms) = sample_in(&text, &series).map(|seconds| seconds * 1000.0) {
            if values.last() != Some(&ms) {
                values.push(ms);
            }
        }
    }
}

/// Scrapes every client, back to back in rotating order (so no server is always first after
/// the sleep), at uniformly random gaps of 0.5–1.5× `every` for `duration`: a fixed grid of
/// 100 ms is commensurate with 1 s polls and missed every poll for a whole trial run.
/// The first `seen.len()` clients are exporters.
pub fn scrape_loop(
    clients: &mut [(String, KeepAlive)],
    seen: &mut [Seen],
    every: Duration,
    duration: Duration,
) -> Result<Vec<Taken>> {
    let started = Instant::now();
    let mut rng = rand::thread_rng();
    let mut taken: Vec<Taken> = vec![Vec::new(); clients.len()];
    let every = every.as_micros() as u64;
    let mut due = started;
    let mut tick = 0usize;
    while started.elapsed() < duration {
        due += Duration::from_micros(rng.gen_range(every / 2..=every * 3 / 2));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        for turn in 0..clients.len() {
            let index = (turn + tick) % clients.len();
            let (name, client) = &mut clients[index];
            let sent = Instant::now();
            let (status, body) = client.get("/metrics")?;
            let millis = sent.elapsed().as_secs_f64() * 1000.0;
            http::expect_ok(status, name)?;
            taken[index].push((sent, millis));
            if let Some(exporter) = seen.get_mut(index) {
                exporter.last_body = body;
                note_poll_durations(exporter);
            }
        }
        tick += 1;
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_sample_by_series() {
        let body = "a{source=\"relay\"} 0.5\na{source=\"sockets\"} 0.25\n";
        assert_eq!(sample_in(body, "a{source=\"sockets\"}"), Some(0.25));
        assert_eq!(sample_in(body, "a{source=\"tor\"}"), None);
    }

    #[test]
    fn a_new_poll_duration_is_noted_once() {
        let mut seen = Seen {
            last_body: b"relaywatch_source_poll_duration_seconds{source=\"relay\"} 0.002\n"
                .to_vec(),
            ..Seen::default()
        };
        note_poll_durations(&mut seen);
        note_poll_durations(&mut seen);
        assert_eq!(seen.relay_poll_ms, vec![2.0]);
        assert!(seen.sockets_poll_ms.is_empty());
    }
}
