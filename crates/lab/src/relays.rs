//! Lab relays: `labrelay` processes, one per simulated pod, each on its own loopback address.
//!
//! In a pod, clearnet peers arrive from other IPs and the Tor sidecar connects from 127.0.0.1.
//! On one machine everything is loopback, so each relay gets its own address `127.A.B.N`
//! (listener and source of its clearnet dials) while tor keeps connecting from 127.0.0.1.
//! With its own address a relay can also use gethrelay's standard ports, as a pod does.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::pod;
use crate::process::{self, Child};
use crate::rpc;

/// gethrelay's deployment modes, as the `mode` label spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Clearnet,
    PreferTor,
    OnlyOnion,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Clearnet, Mode::PreferTor, Mode::OnlyOnion];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Clearnet => "clearnet",
            Mode::PreferTor => "prefer-tor",
            Mode::OnlyOnion => "only-onion",
        }
    }
}

/// gethrelay's default ports; every lab relay has its own IP, so each can use them.
pub const P2P_PORT: u16 = 30303;
pub const ADMIN_PORT: u16 = 8546;
pub const RPC_PROXY_PORT: u16 = 8545;
pub const PPROF_PORT: u16 = 6060;

/// A random `127.A.B.0/24` block for one lab, so that parallel labs do not collide.
pub fn random_subnet() -> [u8; 3] {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    // 127.0.x.x is avoided: 127.0.0.1 is tor's (and the harness's) address.
    [127, rng.gen_range(1..=254), rng.gen_range(0..=255)]
}

/// What to start for one relay.
#[derive(Debug, Clone)]
pub struct RelaySpec {
    pub name: String,
    pub mode: Mode,
    pub ip: Ipv4Addr,
    /// The pod tor's SOCKS address (`--tor-proxy`).
    pub socks: SocketAddr,
    /// The onion address of the pod's hidden service, if it has one.
    pub onion: Option<String>,
    /// Further labrelay flags (e.g. `--lab.redial-ms 2000`).
    pub extra_args: Vec<String>,
    /// The pod tor's control port and cookie file, for the pod's exporter.
    pub tor_control: Option<(SocketAddr, PathBuf)>,
}

impl RelaySpec {
    pub fn p2p_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip), P2P_PORT)
    }
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip), ADMIN_PORT)
    }
    pub fn pprof_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip), PPROF_PORT)
    }
}

/// A running labrelay process.
pub struct Relay {
    pub spec: RelaySpec,
    pub log_path: PathBuf,
    child: Child,
    /// `admin_nodeInfo` as read at start.
    pub node_info: Value,
}

impl Relay {
    /// Starts the relay as its pod's gethrelay (flags from [`crate::pod`]) and waits until its
    /// admin API answers.
    pub fn start(binary: &Path, spec: RelaySpec, dir: &Path) -> Result<Relay> {
        let flags = pod::gethrelay_args(&spec);
        Relay::start_with_flags(binary, spec, flags, dir)
    }

    /// Starts labrelay with these gethrelay flags (plus the lab's wiring and `extra_args`) and
    /// waits until its admin API answers: for nodes that are not pods, such as public ones.
    pub fn start_with_flags(
        binary: &Path,
        spec: RelaySpec,
        flags: Vec<String>,
        dir: &Path,
    ) -> Result<Relay> {
        let log_path = dir.join(format!("{}.log", spec.name));
        // Checked right before the relay binds them: a clash is reported as such, not as a
        // relay that died at start.
        for addr in [
            spec.p2p_addr(),
            spec.admin_addr(),
            spec.pprof_addr(),
            SocketAddr::new(IpAddr::V4(spec.ip), RPC_PROXY_PORT),
        ] {
            crate::monitoring::check_port_free(addr)
                .with_context(|| format!("labrelay {} cannot start", spec.name))?;
        }
        let mut command = Command::new(binary);
        command
            .args(flags)
            .args(pod::lab_wiring_args(&spec))
            .args(&spec.extra_args);
        let mut child = process::spawn(&spec.name, command, &log_path)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        let node_info = loop {
            match rpc::call(spec.admin_addr(), "admin_nodeInfo", json!([])) {
                Ok(info) => break info,
                Err(error) => {
                    if !child.is_running() {
                        bail!(
                            "labrelay {} exited at start ({:?}); log {}:\n{}",
                            spec.name,
                            child.exit_status(),
                            log_path.display(),
                            tail(&log_path, 20)
                        );
                    }
                    if Instant::now() > deadline {
                        return Err(error).context(format!(
                            "labrelay {} did not answer admin_nodeInfo within 15 s (log {})",
                            spec.name,
                            log_path.display()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        Ok(Relay {
            spec,
            log_path,
            child,
            node_info,
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The enode URL as gethrelay prints it (`@onion:port` when the relay has an onion).
    pub fn enode(&self) -> String {
        self.node_info["enode"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The signed ENR: onion3 plus IP for relays with an onion service (dual-stack).
    pub fn enr(&self) -> String {
        self.node_info["enr"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `enode://<id>@<ip>:<port>`: how a peer that knows only the clearnet address names it.
    pub fn clearnet_enode(&self) -> String {
        let enode = self.enode();
        let id = enode
            .trim_start_matches("enode://")
            .split('@')
            .next()
            .unwrap_or_default();
        format!("enode://{id}@{}", self.spec.p2p_addr())
    }

    /// The node id (keccak of the public key), as admin_peers' `id` shows it.
    pub fn id(&self) -> String {
        self.node_info["id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn admin(&self, method: &str, params: Value) -> Result<Value> {
        rpc::call(self.spec.admin_addr(), method, params)
    }

    pub fn add_peer(&self, url: &str) -> Result<()> {
        self.admin("admin_addPeer", json!([url])).map(drop)
    }

    pub fn peers(&self) -> Result<Vec<Value>> {
        match self.admin("admin_peers", json!([]))? {
            Value::Array(peers) => Ok(peers),
            other => bail!("admin_peers of {} is not an array: {other}", self.name()),
        }
    }

    /// The lab extension: every connection with its exact byte counts.
    pub fn connections(&self) -> Result<Vec<Value>> {
        match self.admin("labrelay_connections", json!([]))? {
            Value::Array(connections) => Ok(connections),
            other => bail!(
                "labrelay_connections of {} is not an array: {other}",
                self.name()
            ),
        }
    }

    /// Lab extension: pause (false) or resume (true) traffic frames on every session.
    pub fn set_traffic(&self, enabled: bool) -> Result<()> {
        self.admin("labrelay_setTraffic", json!([enabled]))
            .map(drop)
    }

    pub fn metrics_text(&self) -> Result<String> {
        rpc::get_text(self.spec.pprof_addr(), "/debug/metrics/prometheus")
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    pub fn stop(&mut self) {
        self.child.stop(Duration::from_secs(3));
    }

    /// The exit status once the process has exited (reaping it), `None` while it runs.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.exit_status()
    }
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// How a peer entry reached this relay, judged from `network.remoteAddress` as gethrelay shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRoute {
    TorOutbound,
    TorInbound,
    Clearnet,
}

/// Classifies one admin_peers entry for display: outbound through the pod's SOCKS address,
/// or inbound from tor's 127.0.0.1, is Tor; anything else is clearnet.
pub fn peer_route(peer: &Value, socks: SocketAddr) -> PeerRoute {
    let network = &peer["network"];
    let remote = network["remoteAddress"].as_str().unwrap_or_default();
    let inbound = network["inbound"].as_bool().unwrap_or(false);
    let remote: Option<SocketAddr> = remote.parse().ok();
    match (inbound, remote) {
        (false, Some(addr)) if addr == socks => PeerRoute::TorOutbound,
        (true, Some(addr)) if addr.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST) => PeerRoute::TorInbound,
        _ => PeerRoute::Clearnet,
    }
}
