//! A real Prometheus (Debian's `prometheus`) for the lab, with a config derived from the
//! deploy bundle's ServiceMonitor ([`prometheus_config`]).

mod config;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

pub use config::{prometheus_config, Target};

use super::daemon::{self, Daemon};

/// One alerting or recording rule as Prometheus last evaluated it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHealth {
    pub group: String,
    pub name: String,
    /// `ok`, `err` or `unknown` (not evaluated yet).
    pub health: String,
    pub last_error: Option<String>,
}

/// A running Prometheus, stopped when dropped.
pub struct Prometheus {
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    daemon: Daemon,
}

impl Prometheus {
    /// Writes `config_yaml` into `dir`, checks it with `promtool check config` when promtool is
    /// installed, starts Prometheus on `listen` with its TSDB in `dir`, and waits for `/-/ready`.
    ///
    /// Ready is not scraping yet: Prometheus' discovery manager hands targets to the scrape
    /// manager on a 5 s tick, even static ones, so the first `up` comes about 5 s after ready
    /// whatever the time scale.
    pub fn start(dir: &Path, config_yaml: &str, listen: SocketAddr) -> Result<Prometheus> {
        let binary = daemon::require_on_path("prometheus", "prometheus")?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config_yaml)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        if let Some(promtool) = daemon::find_on_path("promtool") {
            let mut check = Command::new(promtool);
            check.args(["check", "config"]).arg(&config_path);
            daemon::run_check("promtool check config", check, &dir.join("promtool.log"))?;
        }
        daemon::check_port_free(listen)?;
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"));
        let log_path = dir.join("prometheus.log");
        let daemon = Daemon::start("prometheus", command, listen, log_path.clone())?;
        Ok(Prometheus {
            addr: listen,
            config_path,
            log_path,
            daemon,
        })
    }

    /// An instant query: the `result` list (vector samples with `metric` and `value`).
    pub fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let body = daemon::get_json(self.addr, "/api/v1/query", &[("query", expr)])
            .with_context(|| format!("query `{expr}`"))?;
        let data = api_data(&body).with_context(|| format!("query `{expr}`"))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// Alerts pending or firing (`/api/v1/alerts`).
    pub fn alerts(&self) -> Result<Vec<Value>> {
        let body = daemon::get_json(self.addr, "/api/v1/alerts", &[])?;
        Ok(api_data(&body)?["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Every rule of every loaded group with its last evaluation's health (`/api/v1/rules`).
    pub fn rules_health(&self) -> Result<Vec<RuleHealth>> {
        let body = daemon::get_json(self.addr, "/api/v1/rules", &[])?;
        let mut rules = Vec::new();
        for group in api_data(&body)?["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                rules.push(RuleHealth {
                    group: group["name"].as_str().unwrap_or_default().to_string(),
                    name: rule["name"].as_str().unwrap_or_default().to_string(),
                    health: rule["health"].as_str().unwrap_or("unknown").to_string(),
                    last_error: rule["lastError"]
                        .as_str()
                        .filter(|error| !error.is_empty())
                        .map(str::to_string),
                });
            }
        }
        Ok(rules)
    }

    /// Scrape targets (`/api/v1/targets`, the `activeTargets` list).
    pub fn targets(&self) -> Result<Vec<Value>> {
        let body = daemon::get_json(self.addr, "/api/v1/targets", &[])?;
        Ok(api_data(&body)?["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default())
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

/// The `data` of a Prometheus API answer, or its error.
fn api_data(body: &Value) -> Result<&Value> {
    if body["status"] != "success" {
        bail!(
            "Prometheus API error {}: {}",
            body["errorType"].as_str().unwrap_or("?"),
            body["error"].as_str().unwrap_or("?")
        );
    }
    Ok(&body["data"])
}
