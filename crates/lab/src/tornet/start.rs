//! `TorNetworkBuilder::start`: directory and keys, then the staged launch on late-picked ports.
//!
//! Ports are picked right before the tor that binds them starts, to keep the window in which
//! another process (say, a second network in a parallel test binary) can take them small.
//! A tor that still loses a port exits at once with "Address already in use"; it is then
//! restarted on fresh ports (all 6 network tors together, since every torrc names the
//! authorities' ports).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::directory::wait_directory;
use super::echo::EchoServer;
use super::keys::{authority_v3ident, find_tool, relay_fingerprint};
use super::ports::free_port;
use super::proc::TorProcess;
use super::ready::StartTimings;
use super::torrc::{self, NodeOnion, NodeTorrc, RelayTorrc};
use super::watch::{spawn_watcher, Progress};
use super::{TorNetwork, TorNetworkBuilder, TorNode, PROBE_VIRTUAL_PORT};

pub(super) const AUTHORITIES: usize = 3;
const RELAYS: usize = 3;
/// Start attempts of a tor whose port another process took in between.
const PORT_ATTEMPTS: u32 = 3;

/// One authority or relay; ports are 0 until `start_network` picks them.
struct RelaySetup {
    nickname: String,
    data_dir: PathBuf,
    authority: bool,
    or_port: u16,
    dir_port: u16,
    control_port: u16,
    /// For authorities: the v3 identity and the relay identity fingerprint.
    keys: Option<(String, String)>,
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
    let (mut relays, nodes) = match prepare(&builder, &gencert, &tor, &dir) {
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
    eprintln!("tornet: authority keys in {keys_secs:.1}s");

    let mut network = TorNetwork {
        progress: Arc::new(Progress::new(nodes.len())),
        node_procs: nodes
            .iter()
            .map(|node| TorProcess::new(&node.name, &tor, &node.data_dir))
            .collect(),
        nodes,
        network_procs: relays
            .iter()
            .map(|relay| TorProcess::new(&relay.nickname, &tor, &relay.data_dir))
            .collect(),
        network_dir_ports: Vec::new(),
        dir_authority_lines: Vec::new(),
        dir,
        temp: Mutex::new(temp),
        echo: EchoServer::start()?,
        watchers: Mutex::new(Vec::new()),
        started,
        deadline: builder.deadline,
        timings: StartTimings {
            keys_secs,
            ..StartTimings::default()
        },
        waited: AtomicBool::new(false),
    };
    let launched = start_network(&mut network, &mut relays)
        .and_then(|()| start_nodes(&mut network))
        .and_then(|()| wait_hostnames(&mut network));
    if let Err(error) = launched {
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

/// Creates the data directories and the authorities' keys; picks no ports yet.
fn prepare(
    builder: &TorNetworkBuilder,
    gencert: &Path,
    tor: &Path,
    dir: &Path,
) -> Result<(Vec<RelaySetup>, Vec<TorNode>)> {
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
            authority,
            or_port: 0,
            dir_port: 0,
            control_port: 0,
            keys: None,
        });
    }

    // Only the authorities need keys up front (their DirAuthority lines name them); plain
    // relays create theirs on first start. Key generation is CPU-bound RSA, so all six
    // jobs run at once on the available cores.
    let keys: Vec<Result<String>> = std::thread::scope(|scope| {
        let jobs: Vec<_> = relays
            .iter()
            .filter(|relay| relay.authority)
            .flat_map(|relay| {
                [
                    scope.spawn(move || authority_v3ident(gencert, &relay.data_dir)),
                    scope.spawn(move || relay_fingerprint(tor, &relay.data_dir)),
                ]
            })
            .collect();
        jobs.into_iter()
            .map(|job| {
                job.join()
                    .unwrap_or_else(|_| bail!("key generation panicked"))
            })
            .collect()
    });
    let mut keys = keys.into_iter();
    for relay in relays.iter_mut().filter(|relay| relay.authority) {
        let context = || format!("cannot create the keys of {}", relay.nickname);
        let mut next = || {
            keys.next()
                .context("missing key job")?
                .with_context(context)
        };
        relay.keys = Some((next()?, next()?));
    }

    let mut nodes = Vec::new();
    for spec in &builder.nodes {
        let data_dir = dir.join("nodes").join(&spec.name);
        private_dir(&data_dir)?;
        let unset: SocketAddr = ([127, 0, 0, 1], 0).into();
        nodes.push(TorNode {
            name: spec.name.clone(),
            socks_addr: unset,
            probe_socks_addr: unset,
            control_addr: unset,
            cookie_path: data_dir.join("control_auth_cookie"),
            onion: spec.onion,
            onion_hostname: None,
            socks_timeout: spec.socks_timeout,
            log_path: data_dir.join("notice.log"),
            data_dir,
        });
    }
    Ok((relays, nodes))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Whether a tor died because another process held one of its ports.
fn lost_a_port(error: &anyhow::Error) -> bool {
    format!("{error:#}").contains("Address already in use")
}

/// Starts the 6 network tors and waits for a complete directory everywhere.
fn start_network(network: &mut TorNetwork, relays: &mut [RelaySetup]) -> Result<()> {
    let mut attempt = 1;
    loop {
        for relay in relays.iter_mut() {
            relay.or_port = free_port()?;
            relay.dir_port = free_port()?;
            relay.control_port = free_port()?;
        }
        network.dir_authority_lines = relays
            .iter()
            .filter_map(|relay| {
                let (v3ident, fingerprint) = relay.keys.as_ref()?;
                Some(torrc::dir_authority_line(
                    &relay.nickname,
                    relay.or_port,
                    relay.dir_port,
                    v3ident,
                    fingerprint,
                ))
            })
            .collect();
        network.network_dir_ports = relays.iter().map(|relay| relay.dir_port).collect();
        for (relay, process) in relays.iter().zip(&network.network_procs) {
            let text = torrc::relay(
                &RelayTorrc {
                    nickname: &relay.nickname,
                    data_dir: &relay.data_dir,
                    or_port: relay.or_port,
                    dir_port: relay.dir_port,
                    control_port: relay.control_port,
                    authority: relay.authority,
                },
                &network.dir_authority_lines,
            )?;
            write(process.torrc(), &text)?;
            process.start()?;
        }
        match wait_directory(network) {
            Ok(secs) => {
                network.timings.consensus_secs = secs;
                return Ok(());
            }
            Err(error) if attempt < PORT_ATTEMPTS && lost_a_port(&error) => {
                eprintln!("tornet: a network tor lost a port to another process; restarting all 6 on fresh ports");
                attempt += 1;
                for process in &network.network_procs {
                    process.stop();
                }
                for relay in relays.iter() {
                    clear_state(&relay.data_dir)?;
                }
            }
            Err(error) => return Err(error),
        }
    }
}

/// Removes what a short-lived tor left besides its keys and logs, so a restart on new
/// ports does not start from state that names the old ones.
fn clear_state(data_dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "keys" || name.ends_with(".log") {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

/// Starts the node tors, waits until each control port accepts its cookie (so every
/// listener is bound), then starts their watchers.
fn start_nodes(network: &mut TorNetwork) -> Result<()> {
    let deadline = network.started + network.deadline;
    let mut pending: Vec<usize> = (0..network.nodes.len()).collect();
    let mut attempt = 1;
    while !pending.is_empty() {
        for &index in &pending {
            write_node_torrc(network, index)?;
            network.node_procs[index].start()?;
        }
        let mut lost = Vec::new();
        for &index in &pending {
            match network.wait_control(index, deadline) {
                Ok(()) => {}
                Err(error) if attempt < PORT_ATTEMPTS && lost_a_port(&error) => {
                    network.node_procs[index].stop();
                    lost.push(index);
                }
                Err(error) => return Err(error),
            }
        }
        if !lost.is_empty() {
            let names: Vec<&str> = lost
                .iter()
                .map(|&i| network.nodes[i].name.as_str())
                .collect();
            eprintln!("tornet: node tors {names:?} lost a port to another process; restarting them on fresh ports");
        }
        pending = lost;
        attempt += 1;
    }
    network.timings.nodes_started_secs = network.started.elapsed().as_secs_f64();
    for (index, node) in network.nodes.iter().enumerate() {
        let watcher = spawn_watcher(index, node, network.progress.clone())?;
        network
            .watchers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(watcher);
    }
    Ok(())
}

/// Picks the node's ports and writes its torrc.
fn write_node_torrc(network: &mut TorNetwork, index: usize) -> Result<()> {
    let loopback = |port: u16| -> SocketAddr { ([127, 0, 0, 1], port).into() };
    let echo = network.echo.addr();
    let node = &mut network.nodes[index];
    node.socks_addr = loopback(free_port()?);
    node.probe_socks_addr = loopback(free_port()?);
    node.control_addr = loopback(free_port()?);
    let text = torrc::node(
        &NodeTorrc {
            data_dir: &node.data_dir,
            control_port: node.control_addr.port(),
            relay_socks_port: node.socks_addr.port(),
            probe_socks_port: node.probe_socks_addr.port(),
            socks_timeout: node.socks_timeout,
            onion: node.onion.map(|onion| NodeOnion {
                virtual_port: onion.virtual_port,
                target: onion.target,
                probe_virtual_port: PROBE_VIRTUAL_PORT,
                echo,
            }),
        },
        &network.dir_authority_lines,
    )?;
    write(network.node_procs[index].torrc(), &text)
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
