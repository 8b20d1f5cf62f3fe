//! Waits until every directory cache of the network serves the same complete directory.
//!
//! Node tors must not start earlier. Before the first consensus they get 404s and back off
//! exponentially; and a node whose directory guard is a relay still holding an older,
//! partial consensus (or lacking microdescriptors) cannot build some paths for ~10 s,
//! which shows up as stuck onion pairs. So the check covers all 6 DirPorts, not just the
//! authorities': each must serve a consensus listing every relay, and every microdescriptor
//! that consensus names.
//!
//! The relays start with the authorities, so they too collect 404s and back off; one of
//! them sometimes fetches the consensus 20 s after the authorities publish it. A SIGHUP
//! resets tor's download backoff and fetches at once, so a lagging cache gets one.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::start::AUTHORITIES;
use super::TorNetwork;

const POLL: Duration = Duration::from_millis(250);
const STATUS_EVERY: Duration = Duration::from_secs(10);
/// How long a cache may lag behind the authorities before it gets a SIGHUP, and between two.
const HUP_AFTER: Duration = Duration::from_secs(1);
const HUP_EVERY: Duration = Duration::from_secs(3);

/// Returns the seconds since `start` when the directory was complete everywhere.
pub(super) fn wait_directory(network: &TorNetwork) -> Result<f64> {
    let deadline = network.started + network.deadline;
    let agent = crate::rpc::agent(Duration::from_secs(2), false);
    let relays = network.network_procs.len();
    let mut first_consensus_reported = false;
    let mut next_status = Instant::now() + STATUS_EVERY;
    let mut authorities_complete_since: Option<Instant> = None;
    let mut last_hup: Vec<Option<Instant>> = vec![None; relays];
    loop {
        for process in &network.network_procs {
            process.check_running()?;
        }
        let states: Vec<Result<CacheState>> = network
            .network_dir_ports
            .iter()
            .map(|port| cache_state(&agent, *port, relays))
            .collect();
        let complete = |state: &Result<CacheState>| matches!(state, Ok(CacheState::Complete));
        if let Ok(CacheState::Partial { relays: listed }) = &states[0] {
            if !first_consensus_reported {
                first_consensus_reported = true;
                eprintln!(
                    "tornet: first consensus lists {listed}/{relays} relays after {:.1}s; waiting for a complete one",
                    network.started.elapsed().as_secs_f64()
                );
            }
        }
        if states.iter().all(complete) {
            let secs = network.started.elapsed().as_secs_f64();
            eprintln!("tornet: consensus with all {relays} relays on all {relays} directory caches after {secs:.1}s");
            return Ok(secs);
        }

        let now = Instant::now();
        if states[..AUTHORITIES].iter().all(complete) {
            let since = *authorities_complete_since.get_or_insert(now);
            for (index, state) in states.iter().enumerate() {
                let due = last_hup[index]
                    .map_or(now >= since + HUP_AFTER, |last| now >= last + HUP_EVERY);
                if !complete(state) && due {
                    last_hup[index] = Some(now);
                    network.network_procs[index].signal(libc::SIGHUP);
                }
            }
        }

        let missing: Vec<String> = network
            .network_procs
            .iter()
            .zip(&states)
            .filter(|(_, state)| !complete(state))
            .map(|(process, state)| match state {
                Ok(state) => format!("{} {}", process.name, state.describe(relays)),
                Err(error) => format!("{}: {error:#}", process.name),
            })
            .collect();
        if now >= next_status {
            next_status += STATUS_EVERY;
            eprintln!(
                "tornet: waiting ({:.0}s) for the directory: {}",
                network.started.elapsed().as_secs_f64(),
                missing.join(", ")
            );
        }
        if now > deadline {
            bail!(
                "no complete directory on every cache before the deadline ({}); {}",
                missing.join(", "),
                network.network_procs[0].log_tails()
            );
        }
        std::thread::sleep(POLL);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum CacheState {
    NoConsensus,
    Partial { relays: usize },
    MissingMicrodescs { have: usize },
    Complete,
}

impl CacheState {
    fn describe(&self, relays: usize) -> String {
        match self {
            CacheState::NoConsensus => "has no consensus yet".into(),
            CacheState::Partial { relays: listed } => {
                format!("serves a consensus with {listed}/{relays} relays")
            }
            CacheState::MissingMicrodescs { have } => {
                format!("has {have}/{relays} microdescriptors")
            }
            CacheState::Complete => "is complete".into(),
        }
    }
}

fn cache_state(agent: &ureq::Agent, dir_port: u16, relays: usize) -> Result<CacheState> {
    let base = format!("http://127.0.0.1:{dir_port}/tor");
    let Some(consensus) = get(
        agent,
        &format!("{base}/status-vote/current/consensus-microdesc"),
    )?
    else {
        return Ok(CacheState::NoConsensus);
    };
    let (listed, digests) = parse_consensus(&consensus);
    if listed < relays {
        return Ok(CacheState::Partial { relays: listed });
    }
    // tor's own clients fetch microdescriptors the same way: digests joined by '-'.
    let url = format!("{base}/micro/d/{}", digests.join("-"));
    let have = get(agent, &url)?.map_or(0, |body| count_microdescs(&body));
    if have < digests.len() {
        return Ok(CacheState::MissingMicrodescs { have });
    }
    Ok(CacheState::Complete)
}

/// The body on HTTP 200, None on any other status (tor answers 404 for "not yet").
fn get(agent: &ureq::Agent, url: &str) -> Result<Option<String>> {
    let mut response = agent.get(url).call()?;
    if response.status() != 200 {
        return Ok(None);
    }
    Ok(Some(response.body_mut().read_to_string()?))
}

/// The number of relays and their microdescriptor digests.
fn parse_consensus(consensus: &str) -> (usize, Vec<String>) {
    let relays = consensus
        .lines()
        .filter(|line| line.starts_with("r "))
        .count();
    let digests = consensus
        .lines()
        .filter_map(|line| line.strip_prefix("m "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect();
    (relays, digests)
}

/// Every current microdescriptor has exactly one ntor key (the TAP `onion-key` is going away).
fn count_microdescs(body: &str) -> usize {
    body.lines()
        .filter(|line| line.starts_with("ntor-onion-key "))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_microdesc_consensus() {
        let consensus = "network-status-version 3 microdesc\n\
            r auth00 3YExk4RaztGw0dRgPDxG/c2VB6o 2026-11-26 15:03:40 127.0.0.1 40103 0\n\
            m u7ZyXfX0+Wgh/0r4ESf4EM5x6ZZfRGk0o2sF10bNRbU\n\
            s Exit Fast Guard HSDir Running Stable V2Dir Valid\n\
            r relay03 mNfa0S6m8pB1x5mQbJm8Fz8Kk9c 2026-11-26 15:03:40 127.0.0.1 45721 0\n\
            m 1hbCeaoi0Y7QJw3dX4f6n0Rd9Wc8Wb0xF0VxWyxJy0Q\n";
        let (relays, digests) = parse_consensus(consensus);
        assert_eq!(relays, 2);
        assert_eq!(
            digests,
            [
                "u7ZyXfX0+Wgh/0r4ESf4EM5x6ZZfRGk0o2sF10bNRbU",
                "1hbCeaoi0Y7QJw3dX4f6n0Rd9Wc8Wb0xF0VxWyxJy0Q"
            ]
        );
    }

    #[test]
    fn counts_microdescs() {
        let body = "onion-key\n-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\nntor-onion-key x\nid ed25519 y\nonion-key\nntor-onion-key z\n";
        assert_eq!(count_microdescs(body), 2);
    }
}
