//! A real Alertmanager (Debian's `prometheus-alertmanager`) for the lab, loading the deploy
//! bundle's config with the lab's changes ([`lab_config`]).

mod config;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// Milliseconds since the Unix epoch.
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// RFC 3339 in UTC, as Alertmanager's API wants (`2026-12-02T01:02:03.456Z`).
pub fn rfc3339(time: SystemTime) -> String {
    let ms = unix_ms(time);
    let (days, of_day) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1000 % 60,
        of_day % 1000
    )
}

#[cfg(test)]
mod time_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_764_637_323_456)),
            "2025-12-02T01:02:03.456Z"
        );
    }
}
