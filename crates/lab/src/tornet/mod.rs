//! A private Tor network on loopback for tests and the lab; no internet, no system tor service.
//!
//! Layout: 3 directory authorities and 3 relays (all exits, guards and HSDirs), plus one tor
//! per *node*, the Tor sidecar of one simulated pod. A node tor offers two SOCKS ports with
//! `ExtendedErrors` (one for the relay under test, one for the harness's probes), a control
//! port with cookie auth, and optionally an onion service.
//!
//! ```no_run
//! # use lab::tornet::{NodeSpec, TorNetwork};
//! # fn main() -> anyhow::Result<()> {
//! let backend: std::net::SocketAddr = "127.0.0.1:30303".parse()?;
//! let network = TorNetwork::builder()
//!     .node(NodeSpec::new("a").onion(30303, backend))
//!     .node(NodeSpec::new("b"))
//!     .start()?; // keys, directory, node tors, onion hostnames: ~12-25 s
//! let onion = network.node("a").onion_hostname.clone(); // known before the network is ready
//! let report = network.wait_ready()?; // bootstrap, descriptors, all pairs: ~5 s more
//! eprintln!("{report}");
//! # Ok(()) }
//! ```
//!
//! Readiness is checked, never slept for: the node tors start only once every directory
//! cache serves a consensus listing every relay (see `directory`), and the network is ready
//! when every node reaches every other node's onion through SOCKS with an echo round-trip
//! (see `ready`). `/work/shared/reference/lab-scale.md` has the measurements behind this.
//!
//! Every tor is a child started through [`crate::process::spawn`]: it dies with the network
//! value, and with the test process even when that is SIGKILLed.

mod control;
mod directory;
mod echo;
mod keys;
mod onion;
mod ports;
mod proc;
mod ready;
mod socks;
mod start;
mod torrc;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use tempfile::TempDir;

pub use control::{ControlConnection, Reply};
pub use keys::find_tor;
pub use onion::{fresh_onion_address, malformed_onion, onion_address};
pub use ports::free_port;
pub use ready::{ReadyReport, VERBOSE_ENV};
pub use socks::{reply_meaning, socks5_connect, SocksError};

use echo::EchoServer;
use proc::TorProcess;

/// The onion virtual port that every onion service forwards to the harness's echo server
/// (7 is the classic echo port, and no relay under test uses it).
pub const PROBE_VIRTUAL_PORT: u16 = 7;

/// Time allowed from `start` to the end of the first `wait_ready`; typical is 18-35 s on
/// 2 cores, the worst seen in lab-scale.md ~70 s.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);

/// Set this variable to keep a temporary network directory (logs, torrcs) after the drop.
pub const KEEP_DIR_ENV: &str = "TORNET_KEEP_DIR";

/// What one node tor should offer besides its SOCKS and control ports.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Letters, digits, `-` and `_`: it names the node's directory.
    pub name: String,
    pub onion: Option<OnionSpec>,
    /// tor's `SocksTimeout` (default 120 s): how long a SOCKS request may wait for a circuit.
    pub socks_timeout: Option<Duration>,
}

/// An onion service: `<onion>:virtual_port` forwards to `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnionSpec {
    pub virtual_port: u16,
    pub target: SocketAddr,
}

impl NodeSpec {
    pub fn new(name: impl Into<String>) -> Self {
        NodeSpec {
            name: name.into(),
            onion: None,
            socks_timeout: None,
        }
    }

    pub fn onion(mut self, virtual_port: u16, target: SocketAddr) -> Self {
        self.onion = Some(OnionSpec {
            virtual_port,
            target,
        });
        self
    }

    pub fn socks_timeout(mut self, timeout: Duration) -> Self {
        self.socks_timeout = Some(timeout);
        self
    }
}

/// Where to reach one node tor; fixed for the network's life, across stop/start.
#[derive(Debug, Clone)]
pub struct TorNode {
    pub name: String,
    /// The SOCKS port for the relay under test.
    pub socks_addr: SocketAddr,
    /// The harness's own SOCKS port, so probes never mix with the relay's traffic.
    pub probe_socks_addr: SocketAddr,
    pub control_addr: SocketAddr,
    pub cookie_path: PathBuf,
    pub onion: Option<OnionSpec>,
    /// `<56 chars>.onion`, known once `start` returns; it survives `stop_node`/`start_node`.
    pub onion_hostname: Option<String>,
    pub socks_timeout: Option<Duration>,
    pub data_dir: PathBuf,
    /// tor's notice log.
    pub log_path: PathBuf,
}

/// Configures a network; `start` does the work.
#[derive(Debug, Clone)]
pub struct TorNetworkBuilder {
    dir: Option<PathBuf>,
    deadline: Duration,
    nodes: Vec<NodeSpec>,
}

impl TorNetworkBuilder {
    /// Uses `dir` (absent or empty) instead of a temporary directory, so logs outlive the
    /// network, as the lab wants.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Total time for `start` plus the first `wait_ready`.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    pub fn node(mut self, spec: NodeSpec) -> Self {
        self.nodes.push(spec);
        self
    }

    /// Generates the authority keys, starts the 6 network tors, waits until every directory
    /// cache serves the complete consensus, starts the node tors and waits for their onion
    /// hostnames. Returns after ~12-25 s, before the nodes have bootstrapped, so callers can
    /// start relays with their onion addresses while `wait_ready` runs.
    pub fn start(self) -> Result<TorNetwork> {
        start::start(self)
    }
}

/// A running network; dropping it stops every tor (and deletes a temporary directory).
pub struct TorNetwork {
    nodes: Vec<TorNode>,
    node_procs: Vec<TorProcess>,
    network_procs: Vec<TorProcess>,
    /// The DirPorts of the 6 network tors, authorities first (same order as `network_procs`).
    network_dir_ports: Vec<u16>,
    /// The `DirAuthority` lines every torrc carries.
    dir_authority_lines: Vec<String>,
    dir: PathBuf,
    temp: Mutex<Option<TempDir>>,
    /// Where every onion's probe port forwards.
    echo: EchoServer,
    progress: Arc<watch::Progress>,
    watchers: Mutex<Vec<JoinHandle<()>>>,
    started: Instant,
    deadline: Duration,
    timings: ready::StartTimings,
    waited: AtomicBool,
}

impl TorNetwork {
    pub fn builder() -> TorNetworkBuilder {
        TorNetworkBuilder {
            dir: None,
            deadline: DEFAULT_DEADLINE,
            nodes: Vec::new(),
        }
    }

    /// The node named `name`.
    ///
    /// # Panics
    /// If there is no such node: names come from the caller's own specs.
    pub fn node(&self, name: &str) -> &TorNode {
        match self.node_index(name) {
            Ok(index) => &self.nodes[index],
            Err(error) => panic!("{error}"),
        }
    }

    pub fn nodes(&self) -> &[TorNode] {
        &self.nodes
    }

    /// The network's directory: one subdirectory per tor, with its torrc and notice.log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The authorities' DirPorts, e.g. for fetching the consensus.
    pub fn authority_dir_ports(&self) -> &[u16] {
        &self.network_dir_ports[..start::AUTHORITIES]
    }

    fn node_index(&self, name: &str) -> Result<usize> {
        self.nodes
            .iter()
            .position(|node| node.name == name)
            .ok_or_else(|| anyhow!("tornet has no node named {name:?}"))
    }

    /// Stops one node tor (its data directory, ports and onion key stay).
    pub fn stop_node(&self, name: &str) -> Result<()> {
        let index = self.node_index(name)?;
        self.node_procs[index].stop();
        Ok(())
    }

    /// Starts a stopped node tor again with the same torrc, and returns once its control
    /// port accepts the (new) cookie. The onion hostname stays the same.
    pub fn start_node(&self, name: &str) -> Result<()> {
        const CONTROL_WAIT: Duration = Duration::from_secs(30);
        let index = self.node_index(name)?;
        self.node_procs[index].start()?;
        self.wait_control(index, Instant::now() + CONTROL_WAIT)
    }

    /// Waits until the node's control port accepts its cookie: tor is then past binding
    /// all its listeners. Fails at once when tor exits.
    fn wait_control(&self, index: usize, deadline: Instant) -> Result<()> {
        let node = &self.nodes[index];
        let process = &self.node_procs[index];
        loop {
            process.check_running()?;
            // A stale cookie file from an earlier run stays until tor rewrites it, so a
            // failed AUTHENTICATE just means "not yet".
            let attempt = ControlConnection::connect(
                node.control_addr,
                &node.cookie_path,
                Duration::from_secs(1),
            );
            match attempt {
                Ok(_) => return Ok(()),
                Err(error) if Instant::now() > deadline => bail!(
                    "the control port of tor `{}` did not answer in time: {error:#}; {}",
                    node.name,
                    process.log_tails()
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// A fresh authenticated control connection to a node tor.
    pub fn control(&self, name: &str) -> Result<ControlConnection> {
        let node = &self.nodes[self.node_index(name)?];
        ControlConnection::connect(node.control_addr, &node.cookie_path, Duration::from_secs(5))
    }

    /// Tors (node or network) that exited without `stop_node`, each reported once with its
    /// exit status; a reported node tor counts as stopped, so `start_node` starts it again.
    pub fn take_exited(&self) -> Vec<(String, std::process::ExitStatus)> {
        self.all_procs()
            .filter_map(|process| Some((process.name.clone(), process.take_exited()?)))
            .collect()
    }

    /// The pid of a node tor while it runs.
    pub fn node_pid(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.node_procs[self.node_index(name)?].pid())
    }

    /// The pids of all running tors of this network.
    pub fn pids(&self) -> Vec<u32> {
        self.all_procs().filter_map(TorProcess::pid).collect()
    }

    /// Sum of VmRSS over all running tors, in bytes (0 for tors that vanished meanwhile).
    pub fn rss_bytes(&self) -> u64 {
        self.pids().into_iter().map(rss_of).sum()
    }

    fn all_procs(&self) -> impl Iterator<Item = &TorProcess> {
        self.node_procs.iter().chain(self.network_procs.iter())
    }

    /// Keeps a temporary directory after the drop, so the logs behind an error survive.
    fn keep_dir(&self) -> String {
        let mut temp = self
            .temp
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(temp) = temp.as_mut() {
            temp.disable_cleanup(true);
        }
        format!("logs: {}/*/notice.log (directory kept)", self.dir.display())
    }
}

/// VmRSS of a process in bytes, 0 when it is gone.
pub fn rss_of(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

impl Drop for TorNetwork {
    fn drop(&mut self) {
        self.progress.stopping.store(true, Ordering::SeqCst);
        // SIGTERM all first so the tors shut down in parallel, then reap them one by one.
        for process in self.all_procs() {
            process.signal(libc::SIGTERM);
        }
        for process in self.all_procs() {
            process.stop();
        }
        let watchers = std::mem::take(
            &mut *self
                .watchers
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        );
        for watcher in watchers {
            let _ = watcher.join();
        }
        if std::env::var_os(KEEP_DIR_ENV).is_some() {
            eprintln!("tornet: {}", self.keep_dir());
        }
    }
}
