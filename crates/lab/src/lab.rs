//! A whole lab: the private Tor network, one lab relay per simulated pod, the public-network
//! nodes around them, the peering between them all (`topology`), and the lifecycle drills use.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use crate::relays::{self, Mode, Relay, RelaySpec};
use crate::topology::{self, Edge, Kind, PublicNodes, Url};
use crate::tornet::{rss_of, NodeSpec, ReadyReport, TorNetwork};

/// What to start.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Relays per mode, in the order they are named and numbered.
    pub relays: Vec<(Mode, usize)>,
    /// Public-network nodes around the fleet; `None`: [`PublicNodes::needed`] for `relays`
    /// (computed at start, so a changed `relays` gets its own count).
    pub public: Option<PublicNodes>,
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
    /// The production fleet's shape: clearnet ×3, prefer-tor ×4, only-onion ×3, with the public
    /// nodes it needs.
    pub fn fleet() -> LabSpec {
        LabSpec {
            relays: vec![
                (Mode::Clearnet, 3),
                (Mode::PreferTor, 4),
                (Mode::OnlyOnion, 3),
            ],
            public: None,
            dir: None,
            relay_args: Vec::new(),
            labrelay_binary: None,
            socks_timeout: None,
        }
    }

    /// The reduced shape CI runs: one relay per mode, with the public nodes it needs.
    pub fn reduced() -> LabSpec {
        LabSpec {
            relays: Mode::ALL.iter().map(|mode| (*mode, 1)).collect(),
            ..LabSpec::fleet()
        }
    }

    /// The public nodes this spec starts.
    pub fn public_nodes(&self) -> PublicNodes {
        self.public
            .unwrap_or_else(|| PublicNodes::needed(&self.relays))
    }
}

/// A running lab. Dropping it stops the relays and public nodes, then the Tor network.
pub struct Lab {
    // Field order is drop order: relays must go before the tors they talk through.
    /// The monitored relay pods only.
    pub relays: Vec<Relay>,
    /// The public-network nodes (not monitored), `public-clearnet-N` then `public-dual-N`.
    pub public: Vec<Relay>,
    pub tor: TorNetwork,
    pub ready: ReadyReport,
    pub started: Instant,
    binary: PathBuf,
    kinds: HashMap<String, Kind>,
    edges: Vec<Edge>,
    /// The one refused dial: the first only-onion relay is given the first clearnet relay's
    /// clearnet-only enode, which it must refuse (a check, not a peering).
    decoy: Option<(String, String)>,
    /// Relays and public nodes stopped on purpose, or reported dead.
    down: HashSet<String>,
    _temp: Option<tempfile::TempDir>,
}

/// gethrelay's flags for a public node: the admin API (for the lab's admin_addPeer) and, for a
/// dual-stack node, its tor's SOCKS port (default mode: Tor only for onion-only peers).
fn public_flags(kind: Kind, spec: &RelaySpec) -> Vec<String> {
    let mut flags = vec!["--admin".to_string()];
    if kind.has_tor_proxy() {
        flags.push(format!("--tor-proxy={}", spec.socks));
    }
    flags
}

impl Lab {
    /// Starts the network, then the relays and public nodes with their onion addresses, then
    /// waits until every onion is reachable from every node tor.
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
        let public = spec.public_nodes();
        let mut plans: Vec<(String, Kind)> = Vec::new();
        for (mode, count) in &spec.relays {
            for index in 1..=*count {
                plans.push((format!("{}-{index}", mode.as_str()), Kind::Pod(*mode)));
            }
        }
        for index in 1..=public.clearnet {
            plans.push((format!("public-clearnet-{index}"), Kind::PublicClearnet));
        }
        for index in 1..=public.dual {
            plans.push((format!("public-dual-{index}"), Kind::PublicDual));
        }
        if plans.len() > 254 {
            bail!(
                "the lab has room for 254 nodes on its /24, asked for {} (relays plus {public:?} public nodes)",
                plans.len()
            );
        }
        let subnet = relays::random_subnet();
        let ip_of = |index: usize| Ipv4Addr::new(subnet[0], subnet[1], subnet[2], index as u8 + 1);
        let mut builder = TorNetwork::builder().dir(dir.join("tor"));
        for (index, (name, kind)) in plans.iter().enumerate() {
            // Clearnet-only public nodes have no tor; every pod has a Tor sidecar, though
            // clearnet pods publish no onion (gethrelay's default mode with --tor-proxy).
            if *kind == Kind::PublicClearnet {
                continue;
            }
            let mut node = NodeSpec::new(name.clone());
            if let Some(timeout) = spec.socks_timeout {
                node = node.socks_timeout(timeout);
            }
            if kind.has_onion() {
                let target = SocketAddr::new(IpAddr::V4(ip_of(index)), relays::P2P_PORT);
                node = node.onion(relays::P2P_PORT, target);
            }
            builder = builder.node(node);
        }
        let tor = builder.start()?;
        let mut lab_relays = Vec::new();
        let mut lab_public = Vec::new();
        for (index, (name, kind)) in plans.iter().enumerate() {
            let node = tor.nodes().iter().find(|node| &node.name == name);
            let relay_spec = RelaySpec {
                name: name.clone(),
                mode: match kind {
                    Kind::Pod(mode) => *mode,
                    Kind::PublicClearnet | Kind::PublicDual => Mode::Clearnet,
                },
                ip: ip_of(index),
                // The discard port: a node without tor never dials through it.
                socks: node.map_or(SocketAddr::from(([127, 0, 0, 1], 9)), |n| n.socks_addr),
                onion: node.and_then(|n| n.onion_hostname.clone()),
                extra_args: spec.relay_args.clone(),
                tor_control: node.map(|n| (n.control_addr, n.cookie_path.clone())),
            };
            match kind {
                Kind::Pod(_) => lab_relays.push(Relay::start(&binary, relay_spec, &dir)?),
                _ => {
                    let flags = public_flags(*kind, &relay_spec);
                    lab_public.push(Relay::start_with_flags(&binary, relay_spec, flags, &dir)?);
                }
            }
        }
        let ready = tor.wait_ready()?;
        let first = |mode: Mode| {
            plans
                .iter()
                .find(|(_, kind)| *kind == Kind::Pod(mode))
                .map(|(name, _)| name.clone())
        };
        let decoy = first(Mode::OnlyOnion).zip(first(Mode::Clearnet));
        Ok(Lab {
            relays: lab_relays,
            public: lab_public,
            tor,
            ready,
            started,
            binary,
            edges: topology::plan(&plans),
            kinds: plans.into_iter().collect(),
            decoy,
            down: HashSet::new(),
            _temp: temp,
        })
    }

    pub fn dir(&self) -> &Path {
        self.tor.dir().parent().unwrap_or(self.tor.dir())
    }

    /// The relay or public node named `name`.
    ///
    /// # Panics
    /// If there is none: names come from the caller's own spec.
    pub fn relay(&self, name: &str) -> &Relay {
        self.node(name).unwrap_or_else(|error| panic!("{error}"))
    }

    /// The relay or public node named `name`.
    pub fn node(&self, name: &str) -> Result<&Relay> {
        self.relays
            .iter()
            .chain(&self.public)
            .find(|relay| relay.name() == name)
            .ok_or_else(|| anyhow!("the lab has no relay or public node named {name:?}"))
    }

    fn node_mut(&mut self, name: &str) -> Result<&mut Relay> {
        self.relays
            .iter_mut()
            .chain(self.public.iter_mut())
            .find(|relay| relay.name() == name)
            .ok_or_else(|| anyhow!("the lab has no relay or public node named {name:?}"))
    }

    /// What `name` is: a pod of some mode, or a public node.
    pub fn kind(&self, name: &str) -> Option<Kind> {
        self.kinds.get(name).copied()
    }

    /// The planned peerings (see [`topology::plan`]).
    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }

    fn url(&self, name: &str, url: Url) -> Result<String> {
        let node = self.node(name)?;
        Ok(match url {
            Url::ClearnetEnode => node.clearnet_enode(),
            Url::Enr => node.enr(),
            Url::Enode => node.enode(),
        })
    }

    /// Applies the planned peerings (each pair dialed once, see [`topology::plan`]) and gives the
    /// first only-onion relay a clearnet-only peer, which it must refuse. Returns the number of
    /// peer connections expected.
    pub fn connect_fleet(&self) -> Result<usize> {
        for edge in &self.edges {
            self.node(&edge.from)?
                .add_peer(&self.url(&edge.to, edge.url)?)?;
        }
        if let Some((only_onion, clearnet)) = &self.decoy {
            self.node(only_onion)?
                .add_peer(&self.url(clearnet, Url::ClearnetEnode)?)?;
        }
        Ok(self.edges.len())
    }

    /// Re-applies the peerings touching `name`, in both directions (admin_addPeer of a known
    /// peer is a no-op); peerings whose dialer is down are skipped, its start re-applies them.
    /// Returns how many were applied. A dialer that died unnoticed fails the call: run
    /// `dead_children` first.
    pub fn repeer(&self, name: &str) -> Result<usize> {
        self.node(name)?;
        let mut applied = 0;
        for edge in self.edges.iter().filter(|e| e.from == name || e.to == name) {
            if self.down.contains(&edge.from) {
                continue;
            }
            self.node(&edge.from)?
                .add_peer(&self.url(&edge.to, edge.url)?)?;
            applied += 1;
        }
        if let Some((only_onion, clearnet)) = &self.decoy {
            if only_onion == name {
                self.node(name)?
                    .add_peer(&self.url(clearnet, Url::ClearnetEnode)?)?;
            }
        }
        Ok(applied)
    }

    /// Stops a relay (or public node) like a pod that goes away: SIGTERM, then SIGKILL.
    pub fn stop_relay(&mut self, name: &str) -> Result<()> {
        self.node_mut(name)?.stop();
        self.down.insert(name.to_string());
        Ok(())
    }

    /// Starts a stopped (or dead) relay again. Like gethrelay, the new process has a new node
    /// key, so the peers that dialed it forget the old enode and dial the new one, and it dials
    /// its own peers again. Returns once its admin API answers and the peerings are re-applied.
    pub fn start_relay(&mut self, name: &str) -> Result<()> {
        let kind = self
            .kind(name)
            .ok_or_else(|| anyhow!("the lab has no relay or public node named {name:?}"))?;
        let old = self.node_mut(name)?;
        if old.is_running() {
            bail!("{name} is running; stop it with stop_relay first");
        }
        let old_urls: Vec<(String, String)> = self
            .edges
            .iter()
            .filter(|edge| edge.to == name)
            .map(|edge| Ok((edge.from.clone(), self.url(name, edge.url)?)))
            .collect::<Result<_>>()?;
        let spec = self.node(name)?.spec.clone();
        let fresh = match kind {
            Kind::Pod(_) => Relay::start(&self.binary, spec, self.dir())?,
            _ => {
                let flags = public_flags(kind, &spec);
                Relay::start_with_flags(&self.binary, spec, flags, self.dir())?
            }
        };
        *self.node_mut(name)? = fresh;
        self.down.remove(name);
        for (dialer, old_url) in old_urls {
            if self.down.contains(&dialer) {
                continue;
            }
            // The old static node would be dialed forever and fail the handshake (new key).
            self.node(&dialer)?
                .admin("admin_removePeer", json!([old_url]))?;
        }
        self.repeer(name)?;
        Ok(())
    }

    /// Stops the tor of a pod (or dual-stack public node); its onion key stays. The relay's Tor
    /// peers drop; once the tor is back, the dialing side of each peering redials it after
    /// labrelay's redial delay (geth's 35 s unless `--lab.redial-ms` says otherwise).
    pub fn stop_tor(&mut self, name: &str) -> Result<()> {
        self.tor.stop_node(name)
    }

    /// Starts a stopped tor again; returns once its control port answers and it has written
    /// its onion hostname file, after checking that the onion is the same as before.
    pub fn start_tor(&mut self, name: &str) -> Result<()> {
        let node = self.tor.node(name).clone();
        let path = node.data_dir.join("hs").join("hostname");
        if node.onion_hostname.is_some() {
            // tor derives the file from the key it loads, and writes it only when missing: so
            // what it writes now says which key it serves.
            match std::fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error).context(format!("cannot remove {}", path.display()))
                }
                _ => {}
            }
        }
        self.tor.start_node(name)?;
        let Some(expected) = &node.onion_hostname else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let written = loop {
            match std::fs::read_to_string(&path) {
                Ok(text) if text.ends_with('\n') => break text,
                _ if Instant::now() > deadline => bail!(
                    "tor {name} did not write {} within 10 s of starting",
                    path.display()
                ),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        if written.trim() != expected {
            bail!(
                "tor {name} came back with onion {} instead of {expected}",
                written.trim()
            );
        }
        Ok(())
    }

    /// Relays, public nodes and tors whose process exited without being stopped, each reaped
    /// and reported once with its exit status (`relay prefer-tor-2 exited: signal: 9 (SIGKILL)`).
    pub fn dead_children(&mut self) -> Vec<String> {
        let mut dead = Vec::new();
        for relay in self.relays.iter_mut().chain(self.public.iter_mut()) {
            if self.down.contains(relay.name()) {
                continue;
            }
            if let Some(status) = relay.exit_status() {
                dead.push(format!("relay {} exited: {status}", relay.name()));
                self.down.insert(relay.name().to_string());
            }
        }
        for (name, status) in self.tor.take_exited() {
            dead.push(format!("tor {name} exited: {status}"));
        }
        dead
    }

    /// VmRSS of every tor, relay and public node, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let nodes: u64 = self
            .relays
            .iter()
            .chain(&self.public)
            .map(|relay| rss_of(relay.pid()))
            .sum();
        self.tor.rss_bytes() + nodes
    }

    /// Total peer entries over all relays and public nodes (each connection shows up on both ends).
    pub fn peer_entries(&self) -> Result<usize> {
        let mut total = 0;
        for relay in self.relays.iter().chain(&self.public) {
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

    /// One line per relay, then one per peer: who, which direction, Tor or clearnet; then one
    /// line per public node.
    pub fn report(&self) -> Result<String> {
        crate::report::report(self)
    }
}
