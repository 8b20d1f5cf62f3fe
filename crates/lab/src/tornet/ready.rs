//! Readiness: every node bootstrapped, every onion published, every pair of nodes connected.
//!
//! The probe policy follows lab-scale.md: dial a target only after its first descriptor
//! upload; after a failure reply (0xF0 while HSDirs lack the descriptor) retry after 1 s;
//! after 2 SOCKS timeouts in a row on one pair, `SIGNAL NEWNYM` the source, which frees
//! clients stuck on circuits built from an older consensus.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use super::socks::{socks5_connect, SocksError};
use super::{TorNetwork, PROBE_VIRTUAL_PORT};

/// Per SOCKS attempt; tor itself would wait up to 120 s.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
const RETRY_PAUSE: Duration = Duration::from_secs(1);
const TIMEOUTS_BEFORE_NEWNYM: u32 = 2;
const STATUS_EVERY: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);
/// Set this variable to print every probe attempt.
pub const VERBOSE_ENV: &str = "TORNET_VERBOSE";

/// Seconds since `start` was called, measured during `start`.
#[derive(Debug, Clone, Default)]
pub(super) struct StartTimings {
    pub keys_secs: f64,
    pub consensus_secs: f64,
    pub nodes_started_secs: f64,
}

/// Timings of a successful `wait_ready`, all in seconds since `start` was called.
#[derive(Debug, Clone)]
pub struct ReadyReport {
    pub keys_secs: f64,
    pub consensus_secs: f64,
    pub nodes_started_secs: f64,
    pub bootstrapped_secs: f64,
    /// None when no node has an onion service.
    pub uploaded_secs: Option<f64>,
    /// When the last pair became reachable: the network's ready time.
    pub ready_secs: f64,
    pub pairs: usize,
    pub probe_attempts: u32,
    pub newnyms: u32,
}

impl fmt::Display for ReadyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tornet ready after {:.1}s: keys {:.1}s, consensus {:.1}s, nodes started {:.1}s, bootstrapped {:.1}s",
            self.ready_secs, self.keys_secs, self.consensus_secs, self.nodes_started_secs, self.bootstrapped_secs
        )?;
        if let Some(uploaded) = self.uploaded_secs {
            write!(f, ", descriptors uploaded {uploaded:.1}s")?;
        }
        write!(
            f,
            ", {} onion pairs reachable {:.1}s ({} probe attempts, {} NEWNYM)",
            self.pairs, self.ready_secs, self.probe_attempts, self.newnyms
        )
    }
}

/// One (source node, target onion) probe and how it went.
#[derive(Debug, Clone)]
struct PairState {
    source: usize,
    target: usize,
    reachable: Option<Instant>,
    attempts: u32,
    newnyms: u32,
    last_error: String,
}

impl PairState {
    fn new(source: usize, target: usize) -> Self {
        PairState {
            source,
            target,
            reachable: None,
            attempts: 0,
            newnyms: 0,
            last_error: String::new(),
        }
    }
}

fn lock<T: Clone>(mutex: &Mutex<T>) -> T {
    mutex
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .clone()
}

impl TorNetwork {
    /// Waits until every node has bootstrapped and published its onion, and every node
    /// reaches every other node's onion with an echo round-trip.
    ///
    /// The first call shares the builder's deadline with `start`; later calls get a fresh
    /// one. On failure the error lists the missing nodes and pairs, and the directory is kept.
    pub fn wait_ready(&self) -> Result<ReadyReport> {
        let deadline = if self.waited.swap(true, Ordering::SeqCst) {
            Instant::now() + self.deadline
        } else {
            self.started + self.deadline
        };
        let onion_nodes: Vec<usize> = (0..self.nodes.len())
            .filter(|&index| self.nodes[index].onion_hostname.is_some())
            .collect();
        let pairs: Vec<Mutex<PairState>> = (0..self.nodes.len())
            .flat_map(|source| {
                onion_nodes
                    .iter()
                    .filter(move |&&target| target != source)
                    .map(move |&target| Mutex::new(PairState::new(source, target)))
            })
            .collect();
        let give_up = AtomicBool::new(false);
        let result = std::thread::scope(|scope| {
            for pair in &pairs {
                let give_up = &give_up;
                scope.spawn(move || self.run_pair(pair, deadline, give_up));
            }
            let result = self.monitor(&pairs, onion_nodes.len(), deadline);
            give_up.store(true, Ordering::SeqCst);
            result
        });
        result.map_err(|error| anyhow!("{error:#}\n{}", self.keep_dir()))
    }

    /// Waits until `source` reaches `target`'s onion (its echo probe port), e.g. after
    /// `start_node`. Like `wait_ready`, but sends NEWNYM after every SOCKS timeout: after a
    /// target restarts, the source's tor keeps dialing with stale intro/rendezvous state and
    /// stays silent (up to 120 s) until NEWNYM purges it. Note that this NEWNYM also affects
    /// the relay's own dials through `source`.
    pub fn wait_reachable(
        &self,
        source: &str,
        target: &str,
        timeout: Duration,
    ) -> Result<Duration> {
        let started = Instant::now();
        let state = Mutex::new(PairState::new(
            self.node_index(source)?,
            self.node_index(target)?,
        ));
        if self.probe_pair(&state, started + timeout, &AtomicBool::new(false), 1) {
            return Ok(started.elapsed());
        }
        let state = lock(&state);
        bail!(
            "{source} cannot reach {target}'s onion within {timeout:?}: {} attempts, {} NEWNYM, last: {}",
            state.attempts,
            state.newnyms,
            state.last_error
        )
    }

    fn run_pair(&self, pair: &Mutex<PairState>, deadline: Instant, give_up: &AtomicBool) {
        let (source, target) = {
            let pair = lock(pair);
            (pair.source, pair.target)
        };
        loop {
            if give_up.load(Ordering::SeqCst) || Instant::now() > deadline {
                return;
            }
            let nodes = self.progress.snapshot();
            if nodes[source].bootstrapped.is_some() && nodes[target].uploaded.is_some() {
                break;
            }
            std::thread::sleep(POLL);
        }
        self.probe_pair(pair, deadline, give_up, TIMEOUTS_BEFORE_NEWNYM);
    }

    /// Probes until success (true), the deadline, or `give_up`.
    fn probe_pair(
        &self,
        pair: &Mutex<PairState>,
        deadline: Instant,
        give_up: &AtomicBool,
        timeouts_before_newnym: u32,
    ) -> bool {
        let (source, target) = {
            let pair = lock(pair);
            (pair.source, pair.target)
        };
        let probe_socks = self.nodes[source].probe_socks_addr;
        let Some(onion) = self.nodes[target].onion_hostname.clone() else {
            pair.lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .last_error = "the target has no onion service".into();
            return false;
        };
        let mut timeouts_in_row = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if give_up.load(Ordering::SeqCst) || remaining < POLL {
                return false;
            }
            let attempt_started = Instant::now();
            let outcome = probe_once(probe_socks, &onion, remaining.min(PROBE_TIMEOUT));
            if std::env::var_os(VERBOSE_ENV).is_some() {
                eprintln!(
                    "tornet: probe {} -> {} at {:.1}s took {:.1}s: {}",
                    self.nodes[source].name,
                    self.nodes[target].name,
                    attempt_started
                        .saturating_duration_since(self.started)
                        .as_secs_f64(),
                    attempt_started.elapsed().as_secs_f64(),
                    outcome
                        .as_ref()
                        .map_or_else(ToString::to_string, |()| "ok".into())
                );
            }
            let mut state = pair.lock().unwrap_or_else(|poison| poison.into_inner());
            state.attempts += 1;
            match outcome {
                Ok(()) => {
                    state.reachable = Some(Instant::now());
                    return true;
                }
                Err(ProbeError::Socks(SocksError::Timeout)) => {
                    timeouts_in_row += 1;
                    state.last_error = "no SOCKS reply within the probe timeout".into();
                    if timeouts_in_row >= timeouts_before_newnym {
                        timeouts_in_row = 0;
                        state.newnyms += 1;
                        // Not under the lock: the monitor reads the pair meanwhile.
                        drop(state);
                        if let Err(error) = self.newnym(source) {
                            pair.lock()
                                .unwrap_or_else(|poison| poison.into_inner())
                                .last_error = format!("NEWNYM failed: {error:#}");
                        }
                    }
                }
                Err(error) => {
                    timeouts_in_row = 0;
                    state.last_error = error.to_string();
                    drop(state);
                    std::thread::sleep(RETRY_PAUSE.min(remaining));
                }
            }
        }
    }

    fn newnym(&self, index: usize) -> Result<()> {
        self.control(&self.nodes[index].name)?
            .command("SIGNAL NEWNYM")
            .map(drop)
    }

    /// The main thread's loop: prints progress, checks the tors still run, builds the result.
    fn monitor(
        &self,
        pairs: &[Mutex<PairState>],
        onion_count: usize,
        deadline: Instant,
    ) -> Result<ReadyReport> {
        let node_count = self.nodes.len();
        let secs = |instants: &[Instant]| {
            instants
                .iter()
                .max()
                .copied()
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(self.started)
                .as_secs_f64()
        };
        let mut printed = [false; 3];
        let mut next_status = Instant::now() + STATUS_EVERY;
        loop {
            let nodes = self.progress.snapshot();
            let bootstrapped: Vec<Instant> = nodes
                .iter()
                .filter_map(|state| state.bootstrapped)
                .collect();
            let uploaded: Vec<Instant> = nodes
                .iter()
                .zip(&self.nodes)
                .filter(|(_, node)| node.onion_hostname.is_some())
                .filter_map(|(state, _)| state.uploaded)
                .collect();
            let pair_states: Vec<PairState> = pairs.iter().map(lock).collect();
            let reachable: Vec<Instant> = pair_states
                .iter()
                .filter_map(|pair| pair.reachable)
                .collect();
            let milestones = [
                (
                    bootstrapped.len(),
                    node_count,
                    "nodes bootstrapped",
                    &bootstrapped,
                ),
                (
                    uploaded.len(),
                    onion_count,
                    "onion descriptors uploaded",
                    &uploaded,
                ),
                (
                    reachable.len(),
                    pairs.len(),
                    "onion pairs reachable",
                    &reachable,
                ),
            ];
            for (index, (done, total, what, instants)) in milestones.iter().enumerate() {
                if !printed[index] && done == total {
                    printed[index] = true;
                    eprintln!("tornet: {done}/{total} {what} after {:.1}s", secs(instants));
                }
            }
            if printed.iter().all(|&printed| printed) {
                return Ok(ReadyReport {
                    keys_secs: self.timings.keys_secs,
                    consensus_secs: self.timings.consensus_secs,
                    nodes_started_secs: self.timings.nodes_started_secs,
                    bootstrapped_secs: secs(&bootstrapped),
                    uploaded_secs: (onion_count > 0).then(|| secs(&uploaded)),
                    ready_secs: secs(&[bootstrapped, uploaded, reachable].concat()),
                    pairs: pairs.len(),
                    probe_attempts: pair_states.iter().map(|pair| pair.attempts).sum(),
                    newnyms: pair_states.iter().map(|pair| pair.newnyms).sum(),
                });
            }
            for process in self.all_procs() {
                process.check_running()?;
            }
            let now = Instant::now();
            if now > deadline {
                bail!(self.not_ready(&nodes, &pair_states, &milestones.map(|m| (m.0, m.1))));
            }
            if now >= next_status {
                next_status += STATUS_EVERY;
                eprintln!(
                    "tornet: waiting ({:.0}s): {}/{} nodes bootstrapped, {}/{} descriptors uploaded, {}/{} pairs reachable",
                    now.saturating_duration_since(self.started).as_secs_f64(),
                    bootstrapped.len(), node_count, uploaded.len(), onion_count, reachable.len(), pairs.len()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn not_ready(
        &self,
        nodes: &[super::watch::NodeState],
        pairs: &[PairState],
        counts: &[(usize, usize); 3],
    ) -> String {
        let step = ["node bootstrap", "onion descriptor upload", "onion pairs"][counts
            .iter()
            .position(|(done, total)| done < total)
            .unwrap_or(2)];
        let mut lines = vec![format!(
            "tornet: not ready after {:.1}s, still waiting for {step}",
            self.started.elapsed().as_secs_f64()
        )];
        for (state, node) in nodes.iter().zip(&self.nodes) {
            if state.bootstrapped.is_none() {
                lines.push(format!(
                    "  not bootstrapped: {} (phase: {:?}; control port: {:?}; log {})",
                    node.name,
                    state.phase,
                    state.note,
                    node.log_path.display()
                ));
            } else if node.onion_hostname.is_some() && state.uploaded.is_none() {
                lines.push(format!(
                    "  no HS_DESC UPLOADED yet: {} (log {})",
                    node.name,
                    node.log_path.display()
                ));
            }
        }
        for pair in pairs.iter().filter(|pair| pair.reachable.is_none()) {
            let (source, target) = (&self.nodes[pair.source].name, &self.nodes[pair.target].name);
            if pair.attempts == 0 {
                lines.push(format!("  not tried yet: {source} -> {target}"));
            } else {
                lines.push(format!(
                    "  unreachable: {source} -> {target} ({} attempts, {} NEWNYM, last: {})",
                    pair.attempts, pair.newnyms, pair.last_error
                ));
            }
        }
        lines.join("\n")
    }
}

#[derive(Debug)]
enum ProbeError {
    Socks(SocksError),
    Echo(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Socks(error) => error.fmt(f),
            ProbeError::Echo(what) => write!(f, "connected, but the echo failed: {what}"),
        }
    }
}

/// CONNECTs to the onion's echo port and checks that a line comes back.
fn probe_once(socks: SocketAddr, onion: &str, timeout: Duration) -> Result<(), ProbeError> {
    let mut stream =
        socks5_connect(socks, onion, PROBE_VIRTUAL_PORT, timeout).map_err(ProbeError::Socks)?;
    let line = format!("tornet probe {:016x}\n", rand::random::<u64>());
    let echo = (|| -> std::io::Result<String> {
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(line.as_bytes())?;
        let mut answer = String::new();
        BufReader::new(&stream).read_line(&mut answer)?;
        Ok(answer)
    })()
    .map_err(|error| ProbeError::Echo(error.to_string()))?;
    if echo != line {
        return Err(ProbeError::Echo(format!("got {echo:?} back")));
    }
    Ok(())
}
