//! `TorNetworkBuilder::start`: directory, ports, keys, torrcs, then the staged launch.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::echo::EchoServer;
use super::keys::{authority_v3ident, find_tool, relay_fingerprint};
use super::ports::free_port;
use super::proc::TorProcess;
use super::ready::StartTimings;
use super::watch::{spawn_watcher, Progress};
use super::torrc::{self, NodeOnion, NodeTorrc, RelayTorrc};
use super::{TorNetwork, TorNetworkBuilder, TorNode, PROBE_VIRTUAL_PORT};

const AUTHORITIES: usize = 3;
const RELAYS: usize = 3;

/// One authority or relay before it runs.
struct RelaySetup {
    nickname: String,
    data_dir: PathBuf,
    or_port: u16,
    dir_port: u16,
    control_port: u16,
    authority: bool,
}

pub(super) fn start(builder: TorNetworkBuilder) -> Result<TorNetwork> {
    let started = Instant::now();
    check_names(&builder)?;
    let tor = find_tool("tor")?;
    let gencert = find_tool("tor-gencert")?;
    let (mut temp, dir) = match &builder.dir {
        Some(dir) => (None, prepare_dir(dir)?),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("tornet-")
                .tempdir()
                .context("cannot create a temporary directory for the tor network")?;
            let dir = temp.path().to_path_buf();
            (Some(temp), dir)
        }
    };
    let echo = EchoServer::start()?;
    let prepared = prepare(&builder, &tor, &gencert, &dir, echo.addr());
    let (relays, nodes, node_procs, network_procs) = match prepared {
        Ok(parts) => parts,
        Err(error) => {
            if let Some(temp) = temp.as_mut() {
                temp.disable_cleanup(true);
            }
            return Err(error.context(format!(
                "tornet: setup failed; files kept in {}",
                dir.display()
            )));
        }
    };
    let keys_secs = started.elapsed().as_secs_f64();
    eprintln!("tornet: keys and torrcs for {} tors in {keys_secs:.1}s", relays.len() + nodes.len());

    let mut network = TorNetwork {
        progress: Arc::new(Progress::new(nodes.len())),
        nodes,
        node_procs,
        network_procs,
        authority_dir_ports: relays
            .iter()
            .filter(|relay| relay.authority)
            .map(|relay| relay.dir_port)
            .collect(),
        dir,
        temp: Mutex::new(temp),
        _echo: echo,
        watchers: Mutex::new(Vec::new()),
        started,
        deadline: builder.deadline,
        timings: StartTimings {
            keys_secs,
            ..StartTimings::default()
        },
        waited: AtomicBool::new(false),
    };
    if let Err(error) = launch(&mut network) {
        let kept = network.keep_dir();
        return Err(error.context(format!("tornet: start failed; {kept}")));
    }
    Ok(network)
}

fn check_names(builder: &TorNetworkBuilder) -> Result<()> {
    let mut seen = HashSet::new();
    for spec in &builder.nodes {
        let name = &spec.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("tornet node name {name:?} must be non-empty letters, digits, '-' or '_'");
        }
        if !seen.insert(name) {
            bail!("tornet node name {name:?} is used twice");
        }
    }
    Ok(())
}

/// An explicit directory must be absent or empty: old keys or datadirs would mix networks.
fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "tornet directory {} is not empty; remove it or pick another",
            dir.display()
        );
    }
    // torrc paths must be absolute: tor resolves relative ones against its own cwd.
    dir.canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))
}

/// tor refuses a DataDirectory that others can read.
fn private_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot chmod 700 {}", path.display()))
}

type Prepared = (
    Vec<RelaySetup>,
    Vec<TorNode>,
    Vec<TorProcess>,
    Vec<TorProcess>,
);

fn prepare(
    builder: &TorNetworkBuilder,
    tor: &Path,
    gencert: &Path,
    dir: &Path,
    echo: SocketAddr,
) -> Result<Prepared> {
    let mut relays = Vec::new();
    for index in 0..AUTHORITIES + RELAYS {
        let authority = index < AUTHORITIES;
        let nickname = if authority {
            format!("auth{index:02}")
        } else {
            format!("relay{index:02}")
        };
        let data_dir = dir.join(&nickname);
        private_dir(&data_dir)?;
        relays.push(RelaySetup {
            nickname,
            data_dir,
            or_port: free_port()?,
            dir_port: free_port()?,
            control_port: free_port()?,
            authority,
        });
    }

    // Only the authorities need keys up front (their DirAuthority lines name them); plain
    // relays create theirs on first start. Key generation is CPU-bound RSA, so all six
    // jobs run at once on the available cores.
    let authorities: Vec<&RelaySetup> = relays.iter().filter(|relay| relay.authority).collect();
    let keys: Vec<Result<String>> = std::thread::scope(|scope| {
        let jobs: Vec<_> = authorities
            .iter()
            .flat_map(|relay| {
                [
                    scope.spawn(move || authority_v3ident(gencert, &relay.data_dir, relay.dir_port)),
                    scope.spawn(move || relay_fingerprint(tor, &relay.data_dir)),
                ]
            })
            .collect();
        jobs.into_iter()
            .map(|job| job.join().unwrap_or_else(|_| bail!("key generation panicked")))
            .collect()
    });
    let mut dir_authorities = Vec::new();
    let mut keys = keys.into_iter();
    for relay in &authorities {
        let context = || format!("cannot create the keys of {}", relay.nickname);
        let v3ident = keys.next().context("missing key job")?.with_context(context)?;
        let fingerprint = keys.next().context("missing key job")?.with_context(context)?;
        dir_authorities.push(torrc::dir_authority_line(
            &relay.nickname,
            relay.or_port,
            relay.dir_port,
            &v3ident,
            &fingerprint,
        ));
    }

    let mut network_procs = Vec::new();
    for relay in &relays {
        let text = torrc::relay(
            &RelayTorrc {
                nickname: &relay.nickname,
                data_dir: &relay.data_dir,
                or_port: relay.or_port,
                dir_port: relay.dir_port,
                control_port: relay.control_port,
                authority: relay.authority,
            },
            &dir_authorities,
        )?;
        let process = TorProcess::new(&relay.nickname, tor, &relay.data_dir);
        write(process.torrc(), &text)?;
        network_procs.push(process);
    }

    let mut nodes = Vec::new();
    let mut node_procs = Vec::new();
    let loopback = |port: u16| -> SocketAddr { ([127, 0, 0, 1], port).into() };
    for spec in &builder.nodes {
        let data_dir = dir.join("nodes").join(&spec.name);
        private_dir(&data_dir)?;
        let node = TorNode {
            name: spec.name.clone(),
            socks_addr: loopback(free_port()?),
            probe_socks_addr: loopback(free_port()?),
            control_addr: loopback(free_port()?),
            cookie_path: data_dir.join("control_auth_cookie"),
            onion: spec.onion,
            onion_hostname: None,
            log_path: data_dir.join("notice.log"),
            data_dir,
        };
        let text = torrc::node(
            &NodeTorrc {
                data_dir: &node.data_dir,
                control_port: node.control_addr.port(),
                relay_socks_port: node.socks_addr.port(),
                probe_socks_port: node.probe_socks_addr.port(),
                socks_timeout: spec.socks_timeout,
                onion: spec.onion.map(|onion| NodeOnion {
                    virtual_port: onion.virtual_port,
                    target: onion.target,
                    probe_virtual_port: PROBE_VIRTUAL_PORT,
                    echo,
                }),
            },
            &dir_authorities,
        )?;
        let process = TorProcess::new(&spec.name, tor, &node.data_dir);
        write(process.torrc(), &text)?;
        node_procs.push(process);
        nodes.push(node);
    }
    Ok((relays, nodes, node_procs, network_procs))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Starts the network tors, waits for the consensus, then starts the nodes.
fn launch(network: &mut TorNetwork) -> Result<()> {
    for process in &network.network_procs {
        process.start()?;
    }
    network.timings.consensus_secs = wait_consensus(network)?;
    for (index, process) in network.node_procs.iter().enumerate() {
        process.start()?;
        let watcher = spawn_watcher(index, &network.nodes[index], network.progress.clone())?;
        network.watchers.lock().unwrap().push(watcher);
    }
    network.timings.nodes_started_secs = network.started.elapsed().as_secs_f64();
    wait_hostnames(network)?;
    Ok(())
}

/// tor writes `hs/hostname` within a second of starting; callers want it before readiness.
fn wait_hostnames(network: &mut TorNetwork) -> Result<()> {
    let deadline = network.started + network.deadline;
    loop {
        let mut missing = Vec::new();
        for (node, process) in network.nodes.iter_mut().zip(&network.node_procs) {
            if node.onion.is_none() || node.onion_hostname.is_some() {
                continue;
            }
            process.check_running()?;
            let path = node.data_dir.join("hs").join("hostname");
            match std::fs::read_to_string(&path) {
                Ok(text) if text.trim().ends_with(".onion") => {
                    node.onion_hostname = Some(text.trim().to_string());
                }
                _ => missing.push(node.name.clone()),
            }
        }
        if missing.is_empty() {
            eprintln!(
                "tornet: {} node tors started, onion hostnames known after {:.1}s",
                network.nodes.len(),
                network.started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no onion hostname file for nodes {missing:?} before the deadline");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls every authority's DirPort until all serve a consensus listing every relay.
///
/// Nodes started earlier get 404s and back off exponentially; nodes started on a partial
/// consensus fetch microdescriptors twice and some then fail to reach some onions.
fn wait_consensus(network: &TorNetwork) -> Result<f64> {
    let deadline = network.started + network.deadline;
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .build(),
    );
    let expected = network.network_procs.len();
    let mut reported_partial = false;
    loop {
        for process in &network.network_procs {
            process.check_running()?;
        }
        let mut missing = Vec::new();
        for port in &network.authority_dir_ports {
            match consensus_relays(&agent, *port) {
                Ok(Some(relays)) if relays >= expected => {}
                Ok(Some(relays)) => {
                    if !reported_partial {
                        reported_partial = true;
                        eprintln!(
                            "tornet: first consensus lists {relays}/{expected} relays after {:.1}s; waiting for a complete one",
                            network.started.elapsed().as_secs_f64()
                        );
                    }
                    missing.push(format!("127.0.0.1:{port} lists {relays}/{expected} relays"));
                }
                Ok(None) => missing.push(format!("127.0.0.1:{port} has no consensus yet")),
                Err(error) => missing.push(format!("127.0.0.1:{port}: {error:#}")),
            }
        }
        if missing.is_empty() {
            let secs = network.started.elapsed().as_secs_f64();
            eprintln!("tornet: consensus with all {expected} relays after {secs:.1}s");
            return Ok(secs);
        }
        if Instant::now() > deadline {
            bail!(
                "no complete consensus before the deadline ({}); {}",
                missing.join(", "),
                network.network_procs[0].log_tails()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The number of relays in the authority's current microdesc consensus; None on a 404.
fn consensus_relays(agent: &ureq::Agent, dir_port: u16) -> Result<Option<usize>> {
    let url = format!("http://127.0.0.1:{dir_port}/tor/status-vote/current/consensus-microdesc");
    let mut response = agent.get(&url).call()?;
    if response.status() != 200 {
        return Ok(None);
    }
    let body = response.body_mut().read_to_string()?;
    Ok(Some(body.lines().filter(|line| line.starts_with("r ")).count()))
}
