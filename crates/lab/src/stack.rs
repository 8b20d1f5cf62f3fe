//! The whole system on one machine: the lab (Tor network, relays, public nodes), a relaywatch
//! exporter beside every relay, a real Prometheus and Alertmanager configured from `deploy/`,
//! and local Slack and e-mail sinks. What `cargo xtask lab` runs and drills act on.
//!
//! Start order matters: exporters start before the relays peer, so dials and bytes from the
//! first second are counted; Prometheus starts before peering too, so it sees the fleet come up.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::control::{Action, ControlServer};
use crate::exporters::{self, Exporter};
use crate::lab::{Lab, LabSpec};
use crate::labfile::{self, LabFile, LabRelay, PublicNode};
use crate::monitoring::alertmanager::Alertmanager;
use crate::monitoring::prometheus::{Prometheus, Target};
use crate::monitoring::sinks::{SmtpSink, WebhookSink};
use crate::monitoring::stack::{start_prometheus, Alerting};
use crate::relays::Relay;

/// The namespace every lab target is labelled with, as the bundle's kustomization sets it.
pub const NAMESPACE: &str = "gethrelay";

/// The fastest lab timing: the rules' shortest window (`[2m]`) must keep about four of the
/// lab's 1 s scrapes (Prometheus' floor), or increase() over it is often empty and such
/// alerts can never hold their `for:`.
pub const MAX_TIME_SCALE: f64 = 30.0;

/// What to start.
#[derive(Debug, Clone)]
pub struct StackSpec {
    pub lab: LabSpec,
    /// Rule durations and Alertmanager timers are divided by this (1 = production timing).
    pub time_scale: f64,
    /// The exporter binary; default: found next to the running executable.
    pub relaywatch_binary: Option<PathBuf>,
}

/// The parts a drill may stop and start, behind one lock (the control port's and the summary's).
pub struct Fleet {
    // Field order is drop order: exporters before the relays they watch.
    pub exporters: BTreeMap<String, Option<Exporter>>,
    pub lab: Lab,
    /// relay name → pod label.
    pub pods: BTreeMap<String, String>,
    /// Children a drill stopped on purpose (not reported as died).
    pub stopped: BTreeSet<String>,
    /// Every death seen so far.
    died: Vec<String>,
    relaywatch: PathBuf,
}

/// A running stack. Dropping it stops the control port, the fleet, then monitoring.
pub struct Stack {
    control: Option<ControlServer>,
    pub fleet: Arc<Mutex<Fleet>>,
    pub prometheus: Prometheus,
    pub alertmanager: Alertmanager,
    pub slack: WebhookSink,
    pub email: SmtpSink,
    /// How long each stage took, in order.
    pub stages: Vec<(String, Duration)>,
    /// What differs from a cluster, printed at start.
    pub changes: Vec<String>,
    pub file: LabFile,
    pub dir: PathBuf,
    pub time_scale: f64,
    pub started: Instant,
}

/// The repository root (the lab reads `deploy/` from it).
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// A loopback address with a port that is free right now (checked by binding it).
fn free_addr() -> Result<SocketAddr> {
    Ok(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        crate::tornet::free_port()?,
    ))
}

fn stage(stages: &mut Vec<(String, Duration)>, name: &str, since: &mut Instant, quiet: bool) {
    let took = since.elapsed();
    if !quiet {
        eprintln!("lab: {name}: {:.1} s", took.as_secs_f64());
    }
    stages.push((name.to_string(), took));
    *since = Instant::now();
}

impl Stack {
    /// Starts everything and waits until Prometheus scrapes every target. `progress` lines go
    /// to stderr unless `quiet`.
    pub fn start(spec: StackSpec, quiet: bool) -> Result<Stack> {
        if !(spec.time_scale >= 1.0 && spec.time_scale <= MAX_TIME_SCALE) {
            bail!(
                "--time-scale must be between 1 (production timing) and {MAX_TIME_SCALE}, got {}",
                spec.time_scale
            );
        }
        let started = Instant::now();
        let mut since = started;
        let mut changes = Vec::new();
        let mut stages = Vec::new();
        let relaywatch = match &spec.relaywatch_binary {
            Some(binary) => binary.clone(),
            None => crate::workspace_binary("relaywatch")?,
        };

        let mut lab_spec = spec.lab.clone();
        // Relays redial static peers (gethrelay: every 35 s) as much faster as the rules are
        // scaled, so that a scaled window sees as many dials as a production one.
        let redial_ms = ((35_000.0 / spec.time_scale) as u64).max(1_000);
        lab_spec
            .relay_args
            .extend(["--lab.redial-ms".to_string(), redial_ms.to_string()]);
        if spec.time_scale != 1.0 {
            changes.push(format!(
                "relays redial static peers every {redial_ms} ms instead of 35 s (time scale)"
            ));
        }
        let lab = Lab::start(lab_spec)?;
        let dir = lab.dir().to_path_buf();
        stage(
            &mut stages,
            "private Tor network and relays",
            &mut since,
            quiet,
        );

        let mut pods = BTreeMap::new();
        let mut per_mode: BTreeMap<&str, usize> = BTreeMap::new();
        for relay in &lab.relays {
            let index = per_mode.entry(relay.spec.mode.as_str()).or_default();
            pods.insert(
                relay.name().to_string(),
                labfile::pod_name(relay.spec.mode, *index),
            );
            *index += 1;
        }
        let mut exporters = BTreeMap::new();
        for relay in &lab.relays {
            let exporter = start_exporter(&relaywatch, relay, &dir)?;
            exporters.insert(relay.name().to_string(), Some(exporter));
        }
        stage(&mut stages, "relaywatch exporters", &mut since, quiet);

        let monitoring_dir = dir.join("monitoring");
        let am_addr = free_addr()?;
        let alerting = Alerting::start(&monitoring_dir, &repo_root(), am_addr, spec.time_scale)?;
        changes.extend(alerting.changes.iter().cloned());
        let targets: Vec<Target> = lab
            .relays
            .iter()
            .map(|relay| Target {
                namespace: NAMESPACE.into(),
                pod: pods[relay.name()].clone(),
                mode: relay.spec.mode.as_str().into(),
                gethrelay: relay.spec.pprof_addr(),
                relaywatch: exporters[relay.name()].as_ref().map(|e| e.listen),
            })
            .collect();
        let prom_addr = free_addr()?;
        let (prometheus, prom_changes) = start_prometheus(
            &monitoring_dir.join("prometheus"),
            &repo_root(),
            &targets,
            am_addr,
            prom_addr,
            spec.time_scale,
        )?;
        if spec.time_scale != 1.0 {
            changes.push(format!(
                "rules: every for:, group interval, range and offset of deploy/rules/gethrelay.rules.yaml divided by {}",
                spec.time_scale
            ));
        }
        changes.extend(prom_changes);
        stage(
            &mut stages,
            "sinks, Alertmanager and Prometheus",
            &mut since,
            quiet,
        );

        let expected = lab.connect_fleet()?;
        lab.wait_for_connections(expected, Duration::from_secs(90))?;
        stage(
            &mut stages,
            &format!("peering ({expected} connections)"),
            &mut since,
            quiet,
        );

        wait_scraped(&prometheus, &targets, Duration::from_secs(90))?;
        stage(
            &mut stages,
            "Prometheus scraping every target",
            &mut since,
            quiet,
        );

        let fleet = Fleet {
            exporters,
            lab,
            pods,
            stopped: BTreeSet::new(),
            died: Vec::new(),
            relaywatch,
        };
        let file = lab_file(
            &fleet,
            spec.time_scale,
            prom_addr,
            am_addr,
            &alerting.slack,
            &alerting.email,
        )?;
        let fleet = Arc::new(Mutex::new(fleet));
        let handle = fleet.clone();
        let token = crate::control::new_token();
        let control = ControlServer::start(free_addr()?, token.clone(), move |action, pod| {
            let mut fleet = handle.lock().unwrap_or_else(|p| p.into_inner());
            fleet.act(action, pod)
        })?;
        let file = LabFile {
            control: control.addr,
            control_token: token,
            ..file
        };
        file.write(&dir)?;
        std::fs::write(dir.join("verify.yaml"), verify_yaml(&file))?;
        Ok(Stack {
            control: Some(control),
            fleet,
            prometheus,
            alertmanager: alerting.alertmanager,
            slack: alerting.slack,
            email: alerting.email,
            stages,
            changes,
            file,
            dir,
            time_scale: spec.time_scale,
            started,
        })
    }

    pub fn fleet(&self) -> MutexGuard<'_, Fleet> {
        self.fleet.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many processes the stack runs.
    pub fn process_count(&self) -> usize {
        let fleet = self.fleet();
        fleet.lab.tor.pids().len()
            + fleet.lab.relays.len()
            + fleet.lab.public.len()
            + fleet.exporters.values().flatten().count()
            + 2
    }

    /// RSS of every process the stack started (tors, relays, exporters, Prometheus, Alertmanager).
    pub fn rss_bytes(&self) -> u64 {
        let fleet = self.fleet();
        let mut pids: Vec<u32> = fleet.lab.tor.pids();
        pids.extend(fleet.lab.relays.iter().map(Relay::pid));
        pids.extend(fleet.lab.public.iter().map(Relay::pid));
        pids.extend(fleet.exporters.values().flatten().map(Exporter::pid));
        pids.push(self.prometheus.pid());
        pids.push(self.alertmanager.pid());
        pids.into_iter().map(crate::tornet::rss_of).sum()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.control.take();
    }
}

fn start_exporter(relaywatch: &Path, relay: &Relay, dir: &Path) -> Result<Exporter> {
    Exporter::start(relaywatch, relay, &[], dir)
}

impl Fleet {
    fn relay_name(&self, pod: &str) -> Result<String> {
        self.pods
            .iter()
            .find(|(name, p)| *p == pod || *name == pod)
            .map(|(name, _)| name.clone())
            .with_context(|| {
                let pods: Vec<&String> = self.pods.values().collect();
                format!("no relay {pod:?} in this lab; its pods are {pods:?}")
            })
    }

    /// Does what the control port was asked.
    pub fn act(&mut self, action: Action, pod: &str) -> Result<String> {
        let name = self.relay_name(pod)?;
        let key = |what: &str| format!("{what} {name}");
        match action {
            Action::StopRelay => {
                self.stopped.insert(key("relay"));
                self.lab.stop_relay(&name)?;
            }
            Action::StartRelay => {
                self.lab.start_relay(&name)?;
                self.stopped.remove(&key("relay"));
            }
            Action::StopExporter => {
                self.stopped.insert(key("exporter"));
                if let Some(mut exporter) = self.exporters.get_mut(&name).and_then(Option::take) {
                    exporter.stop();
                }
            }
            Action::StartExporter => {
                let slot = self.exporters.get_mut(&name).context("no exporter slot")?;
                if slot.is_none() {
                    let relay = self.lab.relay(&name);
                    *slot = Some(start_exporter(&self.relaywatch, relay, self.lab.dir())?);
                }
                self.stopped.remove(&key("exporter"));
            }
            Action::StopTor => {
                self.stopped.insert(key("tor"));
                self.lab.stop_tor(&name)?;
            }
            Action::StartTor => {
                self.lab.start_tor(&name)?;
                self.stopped.remove(&key("tor"));
            }
            Action::Repeer => {
                self.lab.repeer(&name)?;
            }
        }
        Ok(format!("{} {pod}: done", action.as_str()))
    }

    /// Children that died without a drill asking for it ("relay only-onion-1 exited: …"),
    /// every one since the start: a death is news until the lab stops, not for one screen.
    pub fn died(&mut self) -> Vec<String> {
        let mut died = self.lab.dead_children();
        for (name, slot) in &mut self.exporters {
            if let Some(exporter) = slot {
                if !exporter.is_running() {
                    died.push(format!("exporter {name} exited"));
                    // Reaped; the slot is free for start-exporter to fill again.
                    *slot = None;
                }
            }
        }
        let stopped = &self.stopped;
        // "relay prefer-tor-1 " must not also match "relay prefer-tor-10 exited".
        died.retain(|line| {
            !stopped
                .iter()
                .any(|key| line.starts_with(&format!("{key} ")))
        });
        self.died.extend(died);
        self.died.clone()
    }
}

/// Waits until every target is scraped (`up == 1`) and rules have been evaluated.
fn wait_scraped(prometheus: &Prometheus, targets: &[Target], timeout: Duration) -> Result<()> {
    let want = targets.len() + targets.iter().filter(|t| t.relaywatch.is_some()).count();
    let deadline = Instant::now() + timeout;
    loop {
        let up = prometheus
            .query(r#"up{job=~"gethrelay|relaywatch"} == 1"#)
            .map(|v| v.len())
            .unwrap_or(0);
        // rate() needs two samples per series: the summary's first screen and the dashboards'
        // rate panels (`verify` runs them at once) want them, for gethrelay's targets too
        // (scraped 3× less often than the sidecars; a CI run once checked a gethrelay target
        // scraped only once and found its dial and serve rates empty).
        let rated = prometheus
            .query(r#"rate(p2p_ingress_tor{job="relaywatch"}[1m])"#)
            .map(|v| v.len())
            .unwrap_or(0);
        let sampled_twice = prometheus
            .query(r#"rate(up{job=~"gethrelay|relaywatch"}[1m])"#)
            .map(|v| v.len())
            .unwrap_or(0);
        if up >= want && sampled_twice >= want && rated >= targets.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("Prometheus scrapes only {up} of {want} targets after {timeout:?}; see its targets page at http://{}/targets", prometheus.addr);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn lab_file(
    fleet: &Fleet,
    time_scale: f64,
    prometheus: SocketAddr,
    alertmanager: SocketAddr,
    slack: &WebhookSink,
    email: &SmtpSink,
) -> Result<LabFile> {
    let relays = fleet
        .lab
        .relays
        .iter()
        .map(|relay| LabRelay {
            name: relay.name().to_string(),
            namespace: NAMESPACE.into(),
            pod: fleet.pods[relay.name()].clone(),
            mode: relay.spec.mode.as_str().into(),
            admin: relay.spec.admin_addr(),
            p2p: relay.spec.p2p_addr(),
            exporter: SocketAddr::new(IpAddr::V4(relay.spec.ip), exporters::EXPORTER_PORT),
            tor_proxy: relay.spec.socks,
            onion: relay.spec.onion.clone(),
        })
        .collect();
    let public = fleet
        .lab
        .public
        .iter()
        .map(|node| PublicNode {
            name: node.name().to_string(),
            admin: node.spec.admin_addr(),
            p2p: node.spec.p2p_addr(),
            onion: node.spec.onion.clone(),
        })
        .collect();
    Ok(LabFile {
        time_scale,
        prometheus,
        alertmanager,
        control: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        control_token: String::new(),
        slack_log: slack.journal_path().to_path_buf(),
        email_log: email.journal_path().to_path_buf(),
        relays,
        public,
    })
}

/// `relaywatch verify`'s configuration for this lab, serialized (not formatted by hand, so an
/// address such as `[::1]:9050` stays a string).
pub fn verify_yaml(file: &LabFile) -> String {
    let relays: Vec<serde_json::Value> = file
        .relays
        .iter()
        .map(|relay| {
            serde_json::json!({
                "namespace": relay.namespace,
                "pod": relay.pod,
                "mode": relay.mode,
                "admin": format!("http://{}", relay.admin),
                "tor_proxy": relay.tor_proxy.to_string(),
            })
        })
        .collect();
    let config = serde_json::json!({
        "prometheus": format!("http://{}", file.prometheus),
        "alertmanager": format!("http://{}", file.alertmanager),
        "relays": relays,
    });
    let yaml = serde_norway::to_string(&config).unwrap_or_default();
    format!("# Written by relaywatch-lab; run: relaywatch verify --config <this file>\n{yaml}")
}
