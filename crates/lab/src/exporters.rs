//! relaywatch exporters attached to lab relays, one per relay, as the sidecar of its pod.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::process::{self, Child};
use crate::relays::{tail, Mode, Relay};
use crate::rpc;

/// relaywatch's default port, which the deploy bundle names `relaywatch`.
pub const EXPORTER_PORT: u16 = 9476;

/// A running `relaywatch exporter`.
pub struct Exporter {
    pub name: String,
    pub listen: SocketAddr,
    pub log_path: PathBuf,
    child: Child,
}

/// Samples of one scrape, keyed `name{label="value",…}` exactly as exposed.
pub type Samples = BTreeMap<String, f64>;

/// Parses Prometheus text format into samples (comments skipped).
pub fn parse_exposition(text: &str) -> Samples {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

impl Exporter {
    /// Starts an exporter for `relay` (mode, admin API, SOCKS address from the relay's spec)
    /// and waits until /readyz answers.
    pub fn start(
        binary: &Path,
        relay: &Relay,
        extra_args: &[&str],
        dir: &Path,
    ) -> Result<Exporter> {
        let name = format!("relaywatch-{}", relay.name());
        let listen = SocketAddr::new(IpAddr::V4(relay.spec.ip), EXPORTER_PORT);
        let log_path = dir.join(format!("{name}.log"));
        let mut command = Command::new(binary);
        command
            .arg("exporter")
            .args(["--mode", relay.spec.mode.as_str()])
            .args([
                "--relay-admin-url",
                &format!("http://{}", relay.spec.admin_addr()),
            ])
            .args(["--tor-proxy", &relay.spec.socks.to_string()])
            .args(["--listen", &listen.to_string()]);
        match &relay.spec.tor_control {
            Some((control, cookie)) => {
                command.args(["--tor-control", &control.to_string()]);
                command.arg("--tor-cookie").arg(cookie);
            }
            None => {
                command.args(["--tor-control", "off"]);
            }
        }
        command.args(extra_args);
        let mut child = process::spawn(&name, command, &log_path)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if rpc::get_text(listen, "/readyz").is_ok() {
                break;
            }
            if !child.is_running() {
                bail!(
                    "{name} exited at start; log {}:\n{}",
                    log_path.display(),
                    tail(&log_path, 20)
                );
            }
            if Instant::now() > deadline {
                bail!("{name} not ready within 15 s; log {}", log_path.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Exporter {
            name,
            listen,
            log_path,
            child,
        })
    }

    pub fn metrics_text(&self) -> Result<String> {
        rpc::get_text(self.listen, "/metrics")
    }

    pub fn scrape(&self) -> Result<Samples> {
        Ok(parse_exposition(&self.metrics_text()?))
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }
}

/// The flags the deploy bundle gives each mode's exporter: only-onion pods enforce.
pub fn default_args(mode: Mode) -> &'static [&'static str] {
    match mode {
        Mode::OnlyOnion => &["--enforce"],
        Mode::Clearnet | Mode::PreferTor => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples() {
        let samples = parse_exposition(
            "# HELP a x\n# TYPE a gauge\na{direction=\"inbound\"} 2\nb 1.5e3\n\nbad\n",
        );
        assert_eq!(samples["a{direction=\"inbound\"}"], 2.0);
        assert_eq!(samples["b"], 1500.0);
        assert_eq!(samples.len(), 2);
    }
}
