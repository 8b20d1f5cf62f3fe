//! The monitoring pieces put together from the repository's deploy bundle: Alertmanager with
//! its two sinks, and Prometheus with the scaled rule file. The lab's orchestration and the
//! integration tests start them the same way through here.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::alertmanager::{lab_config, secret_contents, Alertmanager};
use super::prometheus::{prometheus_config, Prometheus, Target};
use super::sinks::{SmtpSink, WebhookSink};

/// Where the sources live, relative to the repository root.
pub const ALERTMANAGER_YAML: &str = "deploy/alertmanager/alertmanager.yaml";
pub const SERVICEMONITOR_YAML: &str = "deploy/kustomize/base/servicemonitor.yaml";
pub const RULES_YAML: &str = "deploy/rules/gethrelay.rules.yaml";

fn read(repo: &Path, path: &str) -> Result<String> {
    let full = repo.join(path);
    std::fs::read_to_string(&full).with_context(|| format!("cannot read {}", full.display()))
}

/// Alertmanager with the deploy config, notifying the Slack and SMTP sinks.
pub struct Alerting {
    pub slack: WebhookSink,
    pub email: SmtpSink,
    pub alertmanager: Alertmanager,
    /// How the running config differs from deploy/alertmanager/alertmanager.yaml.
    pub changes: Vec<String>,
}

impl Alerting {
    /// Starts both sinks (recording under `<dir>/sinks/`), writes the secrets the config reads
    /// into `<dir>/secrets/`, and starts Alertmanager on `listen` with its state in
    /// `<dir>/alertmanager/`.
    pub fn start(dir: &Path, repo: &Path, listen: SocketAddr, time_scale: f64) -> Result<Alerting> {
        let source = read(repo, ALERTMANAGER_YAML)?;
        let slack = WebhookSink::start(dir)?;
        let email = SmtpSink::start(dir)?;
        let secrets = dir.join("secrets");
        std::fs::create_dir_all(&secrets)
            .with_context(|| format!("cannot create {}", secrets.display()))?;
        for (file_name, content) in secret_contents(&source, &slack.url())? {
            let path = secrets.join(file_name);
            std::fs::write(&path, content)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let (config, changes) = lab_config(&source, &secrets, email.addr(), time_scale)?;
        let alertmanager = Alertmanager::start(&dir.join("alertmanager"), &config, listen)?;
        Ok(Alerting {
            slack,
            email,
            alertmanager,
            changes,
        })
    }

    /// False if a sink's accept loop died or Alertmanager exited.
    pub fn is_healthy(&mut self) -> bool {
        self.slack.is_healthy() && self.email.is_healthy() && self.alertmanager.is_running()
    }
}

/// Prometheus scraping `targets` as the ServiceMonitor says, with the rule file scaled by
/// `time_scale` (written to `<dir>/rules.yaml`) and alerts sent to `alertmanager`; returns it
/// with the list of how it differs from the cluster.
pub fn start_prometheus(
    dir: &Path,
    repo: &Path,
    targets: &[Target],
    alertmanager: SocketAddr,
    listen: SocketAddr,
    time_scale: f64,
) -> Result<(Prometheus, Vec<String>)> {
    // The rule scaler divides by a whole factor (crate::timescale).
    if time_scale.fract() != 0.0 || !(1.0..=f64::from(u32::MAX)).contains(&time_scale) {
        bail!("time scale {time_scale} must be a whole number ≥ 1 to scale the rule file");
    }
    let rules = crate::timescale::scale_rules(&read(repo, RULES_YAML)?, time_scale as u32)
        .with_context(|| format!("cannot scale {RULES_YAML}"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let rule_file = dir.join("rules.yaml");
    std::fs::write(&rule_file, rules)
        .with_context(|| format!("cannot write {}", rule_file.display()))?;
    let (config, differences) = prometheus_config(
        &read(repo, SERVICEMONITOR_YAML)?,
        targets,
        &rule_file,
        alertmanager,
        time_scale,
    )?;
    let prometheus = Prometheus::start(dir, &config, listen)?;
    Ok((prometheus, differences))
}
