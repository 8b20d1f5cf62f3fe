//! A real Alertmanager (Debian's `prometheus-alertmanager`) for the lab, loading the deploy
//! bundle's config with the lab's changes ([`lab_config`]).

mod config;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

pub use config::{lab_config, secret_contents, secret_files, SecretFile, LAB_SMTP_PASSWORD};

use super::daemon::{self, Daemon};

/// A running Alertmanager, stopped when dropped.
pub struct Alertmanager {
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    daemon: Daemon,
}

impl Alertmanager {
    /// Writes `config_yaml` into `dir`, checks it with `amtool check-config` (when amtool is
    /// installed), and starts Alertmanager on `listen` without clustering, its state in `dir`.
    pub fn start(dir: &Path, config_yaml: &str, listen: SocketAddr) -> Result<Alertmanager> {
        let binary = daemon::require_on_path("prometheus-alertmanager", "prometheus-alertmanager")?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let config_path = dir.join("alertmanager.yml");
        std::fs::write(&config_path, config_yaml)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        if let Some(amtool) = daemon::find_on_path("amtool") {
            let mut check = Command::new(amtool);
            check.arg("check-config").arg(&config_path);
            daemon::run_check("amtool check-config", check, &dir.join("amtool.log"))?;
        }
        daemon::check_port_free(listen)?;
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={listen}"))
            // An empty cluster address disables gossip: one Alertmanager, no extra port.
            .arg("--cluster.listen-address=");
        let log_path = dir.join("alertmanager.log");
        let daemon = Daemon::start("alertmanager", command, listen, log_path.clone())?;
        Ok(Alertmanager {
            addr: listen,
            config_path,
            log_path,
            daemon,
        })
    }

    /// Alerts Alertmanager holds (`GET /api/v2/alerts`), with their status and receivers.
    pub fn alerts(&self) -> Result<Vec<Value>> {
        let body = daemon::get_json(self.addr, "/api/v2/alerts", &[])?;
        Ok(body.as_array().cloned().unwrap_or_default())
    }

    /// `GET /api/v2/status`: the loaded config (`config.original`), uptime and version.
    pub fn status(&self) -> Result<Value> {
        daemon::get_json(self.addr, "/api/v2/status", &[])
    }

    /// The receivers' names (`GET /api/v2/receivers`).
    pub fn receivers(&self) -> Result<Vec<String>> {
        let body = daemon::get_json(self.addr, "/api/v2/receivers", &[])?;
        Ok(body
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|receiver| receiver["name"].as_str().map(str::to_string))
            .collect())
    }

    /// Posts alerts as Prometheus does (`POST /api/v2/alerts`, a list of
    /// `{labels, annotations, startsAt?, endsAt?}`); an `endsAt` in the past resolves them.
    pub fn post_alerts(&self, alerts: &Value) -> Result<()> {
        daemon::post_json(self.addr, "/api/v2/alerts", alerts).map(drop)
    }

    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }

    /// SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&mut self) {
        self.daemon.stop();
    }
}
