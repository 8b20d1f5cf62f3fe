//! The faults: how each scenario is injected, kept up and cleared.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::control::{self, Action};
use crate::exporters::parse_exposition;
use crate::labfile::{LabFile, LabRelay};
use crate::relays::{peer_route, Mode, PeerRoute};
use crate::rpc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    ClearnetLeak,
    RelayDown,
    ExporterDown,
    TorDown,
    NoTorPeers,
    TorDialFailures,
    LowPeers,
}

impl Scenario {
    /// In the order `drill all` runs them.
    pub const ALL: [Scenario; 7] = [
        Scenario::ClearnetLeak,
        Scenario::RelayDown,
        Scenario::ExporterDown,
        Scenario::TorDown,
        Scenario::NoTorPeers,
        Scenario::TorDialFailures,
        Scenario::LowPeers,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::ClearnetLeak => "clearnet-leak",
            Scenario::RelayDown => "relay-down",
            Scenario::ExporterDown => "exporter-down",
            Scenario::TorDown => "tor-down",
            Scenario::NoTorPeers => "no-tor-peers",
            Scenario::TorDialFailures => "tor-dial-failures",
            Scenario::LowPeers => "low-peers",
        }
    }

    pub fn parse(text: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The alert (and its severity in deploy/rules) this scenario must raise, by the pod's mode.
    pub fn alert(self, mode: Mode) -> (&'static str, &'static str) {
        match self {
            Scenario::ClearnetLeak => ("GethRelayClearnetLeak", "critical"),
            Scenario::RelayDown => ("GethRelayDown", "critical"),
            Scenario::ExporterDown => ("RelaywatchExporterDown", "warning"),
            Scenario::TorDown => ("GethRelayTorControlPortDown", "warning"),
            Scenario::NoTorPeers if mode == Mode::OnlyOnion => ("GethRelayNoTorPeers", "critical"),
            Scenario::NoTorPeers => ("GethRelayNoTorPeers", "warning"),
            Scenario::TorDialFailures => ("GethRelayTorDialFailureRateHigh", "warning"),
            Scenario::LowPeers => ("GethRelayLowPeerCount", "warning"),
        }
    }

    /// Which pod the fault hits: each scenario prefers a different pod, so that drills run one
    /// after another never wait on each other's alerts.
    fn target(self, file: &LabFile) -> Result<LabRelay> {
        let of = |mode: Mode, nth: usize| -> Option<&LabRelay> {
            let list: Vec<&LabRelay> = file
                .relays
                .iter()
                .filter(|r| r.mode() == Some(mode))
                .collect();
            list.get(nth.min(list.len().saturating_sub(1))).copied()
        };
        let pick = match self {
            Scenario::ClearnetLeak => of(Mode::OnlyOnion, 0),
            Scenario::RelayDown => of(Mode::Clearnet, 0).or(of(Mode::PreferTor, 0)),
            Scenario::ExporterDown => of(Mode::PreferTor, 0).or(file.relays.first()),
            Scenario::TorDown => of(Mode::PreferTor, 1),
            Scenario::NoTorPeers => of(Mode::PreferTor, 2),
            Scenario::TorDialFailures => of(Mode::PreferTor, 3),
            Scenario::LowPeers => of(Mode::Clearnet, 1),
        };
        pick.cloned().with_context(|| {
            format!(
                "the lab has no relay for drill {} (it needs {})",
                self.as_str(),
                match self {
                    Scenario::ClearnetLeak => "an only-onion relay",
                    Scenario::RelayDown | Scenario::LowPeers => "a clearnet relay",
                    _ => "a prefer-tor relay",
                }
            )
        })
    }

    /// How long the fault stays after the expected notification, to see what else fires:
    /// a dead tor should also end in GethRelayNoTorPeers (`for: 10m`), and in which order
    /// the alerts arrive is what an operator reading the page needs to know.
    pub fn hold(self, time_scale: f64) -> std::time::Duration {
        match self {
            Scenario::TorDown => std::time::Duration::from_secs_f64(700.0 / time_scale + 5.0),
            _ => std::time::Duration::ZERO,
        }
    }

    pub fn plan(self, file: &LabFile) -> Result<Plan> {
        let relay = self.target(file)?;
        let mode = relay.mode().context("relay with an unknown mode")?;
        let (alert, severity) = self.alert(mode);
        let fault = match self {
            Scenario::ClearnetLeak => "an inbound clearnet peer (guard on)",
            Scenario::RelayDown => "relay process stopped",
            Scenario::ExporterDown => "exporter process stopped",
            Scenario::TorDown => "the pod's tor stopped",
            Scenario::NoTorPeers => "every Tor peer removed (both sides)",
            Scenario::TorDialFailures => "static peers at onions that do not exist",
            Scenario::LowPeers => "every peer removed (both sides)",
        };
        Ok(Plan {
            pod: relay.pod.clone(),
            relay,
            alert,
            severity,
            fault,
        })
    }

    pub fn inject(self, file: &LabFile, plan: &Plan) -> Result<Active> {
        let relay = plan.relay.clone();
        let mut active = Active {
            scenario: self,
            relay,
            added: Vec::new(),
            dialer: None,
            before: None,
            last_tick: None,
        };
        match self {
            Scenario::ClearnetLeak => {
                // A node of the public network (or a clearnet relay) dials the only-onion
                // relay's clearnet address: gethrelay accepts inbound clearnet in only-onion mode.
                let dialer = file
                    .public
                    .iter()
                    .find(|node| node.onion.is_none())
                    .map(|node| node.admin)
                    .or_else(|| file.first_of_mode(Mode::Clearnet).ok().map(|r| r.admin))
                    .context("drill clearnet-leak needs a clearnet node to dial in")?;
                let url = format!(
                    "enode://{}@{}",
                    pubkey(active.relay.admin)?,
                    active.relay.p2p
                );
                active.before = Some(scrape_leaks(&active.relay)?);
                rpc::call(dialer, "admin_addPeer", json!([url]))?;
                active.dialer = Some(dialer);
                active.added.push(url);
            }
            Scenario::RelayDown => act(file, Action::StopRelay, &plan.pod)?,
            Scenario::ExporterDown => act(file, Action::StopExporter, &plan.pod)?,
            Scenario::TorDown => act(file, Action::StopTor, &plan.pod)?,
            Scenario::NoTorPeers | Scenario::LowPeers => active.tick(file)?,
            Scenario::TorDialFailures => {
                for _ in 0..12 {
                    let url = format!(
                        "enode://{}@{}:30303",
                        random_pubkey(),
                        crate::tornet::fresh_onion_address()
                    );
                    if let Err(error) = rpc::call(active.relay.admin, "admin_addPeer", json!([url]))
                    {
                        // Half a fault would redial for ever: take back what was added.
                        let _ = active.clear(file);
                        return Err(error);
                    }
                    active.added.push(url);
                }
            }
        }
        Ok(active)
    }
}

/// One scenario's choice of pod and expectation.
pub struct Plan {
    pub pod: String,
    pub relay: LabRelay,
    pub alert: &'static str,
    pub severity: &'static str,
    pub fault: &'static str,
}

/// A fault in place.
pub struct Active {
    scenario: Scenario,
    relay: LabRelay,
    /// enode URLs this drill added (to remove again).
    added: Vec<String>,
    dialer: Option<SocketAddr>,
    /// Leak and removal counters before the fault.
    before: Option<(f64, f64)>,
    /// When the fault was last re-applied (no faster than relays redial).
    last_tick: Option<std::time::Instant>,
}

impl Active {
    /// Keeps the fault up while waiting (peers removed come back by redial).
    pub fn tick(&mut self, file: &LabFile) -> Result<()> {
        let redial = std::time::Duration::from_secs_f64((35.0 / file.time_scale).max(1.0));
        if self.last_tick.is_some_and(|at| at.elapsed() < redial) {
            return Ok(());
        }
        self.last_tick = Some(std::time::Instant::now());
        match self.scenario {
            Scenario::NoTorPeers => isolate(file, &self.relay, true),
            Scenario::LowPeers => isolate(file, &self.relay, false),
            _ => Ok(()),
        }
    }

    /// Facts worth reporting, checked while the fault is up.
    pub fn notes(&mut self, _file: &LabFile) -> Vec<String> {
        let mut notes = Vec::new();
        if let (Scenario::ClearnetLeak, Some((leaks, removed))) = (self.scenario, self.before) {
            match scrape_leaks(&self.relay) {
                Ok((now_leaks, now_removed)) => notes.push(format!(
                    "leaks counted {:.0}, removed by the guard {:.0} times",
                    now_leaks - leaks,
                    now_removed - removed
                )),
                Err(error) => notes.push(format!("exporter unreadable: {error:#}")),
            }
        }
        notes
    }

    /// clearnet-leak only: what is wrong with the guard's work, if anything. The removal
    /// counter alone proves nothing (admin_removePeer answers true whatever it did), so the
    /// only-onion relay's own peer list must be seen without a clearnet peer while the dialer
    /// keeps redialing, after the guard counted a removal.
    pub fn guard_problem(&self, _file: &LabFile) -> Option<String> {
        let (_, removed_before) = self.before?;
        let removed_now = match scrape_leaks(&self.relay) {
            Ok((_, removed)) => removed,
            Err(error) => return Some(format!("cannot read the only-onion exporter: {error:#}")),
        };
        if removed_now <= removed_before {
            return Some("the leak guard never removed the clearnet peer".into());
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Value::Array(peers)) = rpc::call(self.relay.admin, "admin_peers", json!([])) {
                let clearnet = peers
                    .iter()
                    .filter(|peer| peer_route(peer, self.relay.tor_proxy) == PeerRoute::Clearnet)
                    .count();
                if clearnet == 0 {
                    return None;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Some("the clearnet peer stayed in the only-onion relay's admin_peers for 10 s".into())
    }

    /// Undoes the fault and leaves the lab as it was.
    pub fn clear(&mut self, file: &LabFile) -> Result<()> {
        let pod = self.relay.pod.clone();
        match self.scenario {
            Scenario::ClearnetLeak => {
                // Without this the dialer would redial every 35 s and leak again.
                if let Some(dialer) = self.dialer {
                    for url in &self.added {
                        rpc::call(dialer, "admin_removePeer", json!([url]))?;
                    }
                }
            }
            Scenario::RelayDown => act(file, Action::StartRelay, &pod)?,
            Scenario::ExporterDown => act(file, Action::StartExporter, &pod)?,
            Scenario::TorDown => {
                act(file, Action::StartTor, &pod)?;
                act(file, Action::Repeer, &pod)?;
            }
            Scenario::NoTorPeers | Scenario::LowPeers => act(file, Action::Repeer, &pod)?,
            Scenario::TorDialFailures => {
                for url in &self.added {
                    rpc::call(self.relay.admin, "admin_removePeer", json!([url]))?;
                }
            }
        }
        Ok(())
    }
}

fn act(file: &LabFile, action: Action, pod: &str) -> Result<()> {
    control::request(file.control, &file.control_token, action, pod).map(drop)
}

/// The public key part of a node's enode URL.
fn pubkey(admin: SocketAddr) -> Result<String> {
    let info = rpc::call(admin, "admin_nodeInfo", json!([]))?;
    let enode = info["enode"].as_str().unwrap_or_default();
    let key = enode
        .trim_start_matches("enode://")
        .split('@')
        .next()
        .unwrap_or_default();
    if key.len() != 128 {
        bail!("admin_nodeInfo of {admin} has no usable enode");
    }
    Ok(key.to_string())
}

/// A fresh secp256k1 public key in enode form (nobody has its private key).
fn random_pubkey() -> String {
    use k256::elliptic_curve::sec1::ToEncodedPoint;
    let secret = k256::SecretKey::random(&mut rand::thread_rng());
    let point = secret.public_key().to_encoded_point(false);
    hex::encode(&point.as_bytes()[1..])
}

/// (leaks counted, removals that succeeded) from the relay's exporter.
fn scrape_leaks(relay: &LabRelay) -> Result<(f64, f64)> {
    let samples = parse_exposition(&rpc::get_text(relay.exporter, "/metrics")?);
    let leaks = samples
        .get("relaywatch_clearnet_leaks_total")
        .copied()
        .unwrap_or(0.0);
    let removed = samples
        .get("relaywatch_leak_removals_total{result=\"ok\"}")
        .copied()
        .unwrap_or(0.0);
    Ok((leaks, removed))
}

/// Removes the relay's peers (only Tor ones when `tor_only`) on both ends, so that neither side
/// redials: `admin_removePeer` forgets the static node on the side that dialed. Only the far
/// ends of removed peers are asked (by node id), so clearnet links stay up in `tor_only`.
fn isolate(file: &LabFile, relay: &LabRelay, tor_only: bool) -> Result<()> {
    let peers = match rpc::call(relay.admin, "admin_peers", json!([]))? {
        Value::Array(peers) => peers,
        other => bail!("admin_peers of {} is not an array: {other}", relay.pod),
    };
    let own = format!("enode://{}@{}", pubkey(relay.admin)?, relay.p2p);
    let mut far_ids = BTreeSet::new();
    for peer in &peers {
        if tor_only && peer_route(peer, relay.tor_proxy) == PeerRoute::Clearnet {
            continue;
        }
        if let Some(enode) = peer["enode"].as_str() {
            let _ = rpc::call(relay.admin, "admin_removePeer", json!([enode]));
        }
        if let Some(id) = peer["id"].as_str() {
            far_ids.insert(id.to_string());
        }
    }
    if far_ids.is_empty() {
        return Ok(());
    }
    let mut nodes: Vec<SocketAddr> = file.relays.iter().map(|r| r.admin).collect();
    nodes.extend(file.public.iter().map(|n| n.admin));
    for admin in nodes {
        if admin == relay.admin {
            continue;
        }
        let id = rpc::call(admin, "admin_nodeInfo", json!([]))
            .ok()
            .and_then(|info| info["id"].as_str().map(str::to_string));
        if id.is_some_and(|id| far_ids.contains(&id)) {
            let _ = rpc::call(admin, "admin_removePeer", json!([own]));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (alert, severity) a drill expects is one the rule file defines.
    #[test]
    fn expected_alerts_exist_in_the_rules() {
        let rules = std::fs::read_to_string(
            crate::stack::repo_root().join("deploy/rules/gethrelay.rules.yaml"),
        )
        .unwrap();
        let rules: serde_norway::Value = serde_norway::from_str(&rules).unwrap();
        let mut defined = BTreeSet::new();
        for group in rules["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                if let (Some(alert), Some(severity)) =
                    (rule["alert"].as_str(), rule["labels"]["severity"].as_str())
                {
                    defined.insert((alert.to_string(), severity.to_string()));
                }
            }
        }
        for scenario in Scenario::ALL {
            for mode in Mode::ALL {
                let (alert, severity) = scenario.alert(mode);
                assert!(
                    defined.contains(&(alert.to_string(), severity.to_string())),
                    "{}: {alert} ({severity}) is not in the rules",
                    scenario.as_str()
                );
            }
        }
    }

    #[test]
    fn random_pubkeys_are_enode_keys() {
        let key = random_pubkey();
        assert_eq!(key.len(), 128);
        assert_ne!(key, random_pubkey());
    }

    #[test]
    fn scenarios_parse_by_name() {
        for scenario in Scenario::ALL {
            assert_eq!(Scenario::parse(scenario.as_str()), Some(scenario));
        }
        assert_eq!(Scenario::parse("meteor"), None);
    }
}
