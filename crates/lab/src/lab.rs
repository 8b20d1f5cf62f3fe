//! A whole lab: the private Tor network, one lab relay per simulated pod, and the fleet's peering.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::relays::{self, peer_route, Mode, PeerRoute, Relay, RelaySpec};
use crate::tornet::{NodeSpec, ReadyReport, TorNetwork};

/// What to start.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Relays per mode, in the order they are named and numbered.
    pub relays: Vec<(Mode, usize)>,
    /// Keep logs and torrcs here instead of a temporary directory.
    pub dir: Option<PathBuf>,
    /// Extra flags for every labrelay (e.g. a shorter `--lab.redial-ms` in tests).
    pub relay_args: Vec<String>,
    /// The labrelay binary; default: found next to the running executable.
    pub labrelay_binary: Option<PathBuf>,
    /// tor's `SocksTimeout` on every pod tor (default 120 s), to bound failing dials in tests.
    pub socks_timeout: Option<Duration>,
}

impl LabSpec {
    /// The production fleet's shape: clearnet ×3, prefer-tor ×4, only-onion ×3.
    pub fn fleet() -> LabSpec {
        LabSpec {
            relays: vec![
                (Mode::Clearnet, 3),
                (Mode::PreferTor, 4),
                (Mode::OnlyOnion, 3),
            ],
            dir: None,
            relay_args: Vec::new(),
            labrelay_binary: None,
            socks_timeout: None,
        }
    }
}

/// A running lab. Dropping it stops the relays, then the Tor network.
pub struct Lab {
    // Field order is drop order: relays must go before the tors they talk through.
    pub relays: Vec<Relay>,
    pub tor: TorNetwork,
    pub ready: ReadyReport,
    pub started: Instant,
    _temp: Option<tempfile::TempDir>,
}

impl Lab {
    /// Starts the network, then the relays with their onion addresses, then waits until every
    /// onion is reachable from every pod tor.
    pub fn start(spec: LabSpec) -> Result<Lab> {
        let started = Instant::now();
        let (temp, dir) = match &spec.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create lab directory {}", dir.display()))?;
                (None, dir.clone())
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("relaywatch-lab-")
                    .tempdir()?;
                let path = temp.path().to_path_buf();
                (Some(temp), path)
            }
        };
        let binary = match &spec.labrelay_binary {
            Some(binary) => binary.clone(),
            None => crate::workspace_binary("labrelay")?,
        };
        let subnet = relays::random_subnet();
        let mut plans = Vec::new();
        for (mode, count) in &spec.relays {
            for index in 1..=*count {
                let host = plans.len() as u8 + 1;
                let ip = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], host);
                plans.push((format!("{}-{index}", mode.as_str()), *mode, ip));
            }
        }
        let mut builder = TorNetwork::builder().dir(dir.join("tor"));
        for (name, mode, ip) in &plans {
            let mut node = NodeSpec::new(name.clone());
            if let Some(timeout) = spec.socks_timeout {
                node = node.socks_timeout(timeout);
            }
            // Clearnet pods run a Tor sidecar too (gethrelay's default mode with --tor-proxy) but
            // publish no onion service.
            if *mode != Mode::Clearnet {
                let target = SocketAddr::new(IpAddr::V4(*ip), relays::P2P_PORT);
                node = node.onion(relays::P2P_PORT, target);
            }
            builder = builder.node(node);
        }
        let tor = builder.start()?;
        let mut relays = Vec::new();
        for (name, mode, ip) in plans {
            let node = tor.node(&name);
            let spec = RelaySpec {
                name: name.clone(),
                mode,
                ip,
                socks: node.socks_addr,
                onion: node.onion_hostname.clone(),
                extra_args: spec.relay_args.clone(),
                tor_control: Some((node.control_addr, node.cookie_path.clone())),
            };
            relays.push(Relay::start(&binary, spec, &dir)?);
        }
        let ready = tor.wait_ready()?;
        Ok(Lab {
            relays,
            tor,
            ready,
            started,
            _temp: temp,
        })
    }

    pub fn dir(&self) -> &Path {
        self.tor.dir().parent().unwrap_or(self.tor.dir())
    }

    pub fn relay(&self, name: &str) -> &Relay {
        self.relays
            .iter()
            .find(|relay| relay.name() == name)
            .unwrap_or_else(|| panic!("no lab relay named {name}"))
    }

    fn of_mode(&self, mode: Mode) -> Vec<&Relay> {
        self.relays
            .iter()
            .filter(|relay| relay.spec.mode == mode)
            .collect()
    }

    /// Peers the fleet the way operators do, each pair dialed once (by the earlier relay):
    /// clearnet relays dial each other and the prefer-tor relays' ENRs (dual-stack, so
    /// clearnet in default mode); prefer-tor relays dial each other's ENRs (Tor) and the
    /// only-onion relays' onion enodes (Tor); only-onion relays dial each other's onion
    /// enodes, and the first one is also given a clearnet-only peer, which it must refuse.
    /// Returns the number of peer connections expected.
    pub fn connect_fleet(&self) -> Result<usize> {
        let clearnet = self.of_mode(Mode::Clearnet);
        let prefer = self.of_mode(Mode::PreferTor);
        let only = self.of_mode(Mode::OnlyOnion);
        let mut expected = 0;
        for (i, relay) in clearnet.iter().enumerate() {
            for other in &clearnet[i + 1..] {
                relay.add_peer(&other.clearnet_enode())?;
                expected += 1;
            }
            for other in &prefer {
                relay.add_peer(&other.enr())?;
                expected += 1;
            }
        }
        for (i, relay) in prefer.iter().enumerate() {
            for other in &prefer[i + 1..] {
                relay.add_peer(&other.enr())?;
                expected += 1;
            }
            for other in &only {
                relay.add_peer(&other.enode())?;
                expected += 1;
            }
        }
        for (i, relay) in only.iter().enumerate() {
            for other in &only[i + 1..] {
                relay.add_peer(&other.enode())?;
                expected += 1;
            }
        }
        if let (Some(first), Some(target)) = (only.first(), clearnet.first()) {
            first.add_peer(&target.clearnet_enode())?;
        }
        Ok(expected)
    }

    /// Total peer entries over all relays (each connection shows up on both ends).
    pub fn peer_entries(&self) -> Result<usize> {
        let mut total = 0;
        for relay in &self.relays {
            total += relay.peers()?.len();
        }
        Ok(total)
    }

    /// Polls until `connections` peerings are up on both ends, or `timeout` passes.
    pub fn wait_for_connections(&self, connections: usize, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let entries = self.peer_entries()?;
            if entries >= 2 * connections {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!(
                    "only {entries} of {} peer entries after {timeout:?}; relay logs are in {}",
                    2 * connections,
                    self.dir().display()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// One line per relay, then one per peer: who, which direction, Tor or clearnet.
    pub fn report(&self) -> Result<String> {
        let names: HashMap<String, &str> = self
            .relays
            .iter()
            .map(|relay| (relay.id(), relay.name()))
            .collect();
        let mut out = String::new();
        for relay in &self.relays {
            let peers = relay.peers()?;
            let tor = peers
                .iter()
                .filter(|peer| peer_route(peer, relay.spec.socks) != PeerRoute::Clearnet)
                .count();
            out.push_str(&format!(
                "{:<13} {:<15} admin {}  peers {:>2} (tor {:>2}, clearnet {:>2}){}\n",
                relay.name(),
                relay.spec.ip,
                relay.spec.admin_addr(),
                peers.len(),
                tor,
                peers.len() - tor,
                relay
                    .spec
                    .onion
                    .as_deref()
                    .map(|onion| format!("  onion {}…", &onion[..12]))
                    .unwrap_or_default(),
            ));
            for peer in &peers {
                let id = peer["id"].as_str().unwrap_or_default();
                let network = &peer["network"];
                let route = match peer_route(peer, relay.spec.socks) {
                    PeerRoute::TorOutbound => "tor      (outbound via SOCKS)",
                    PeerRoute::TorInbound => "tor      (inbound from tor) ",
                    PeerRoute::Clearnet => "clearnet                     ",
                };
                out.push_str(&format!(
                    "    {} {:<13} {} remoteAddress {}\n",
                    if network["inbound"].as_bool() == Some(true) {
                        "<-"
                    } else {
                        "->"
                    },
                    names.get(id).copied().unwrap_or("?"),
                    route,
                    network["remoteAddress"].as_str().unwrap_or_default(),
                ));
            }
        }
        Ok(out)
    }
}
