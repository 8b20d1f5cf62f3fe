//! relaywatch exporters attached to lab relays, one per relay, as the sidecar of its pod
//! (arguments and environment from [`crate::pod`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::pod;
use crate::process::{self, Child};
use crate::relays::{tail, Relay};
use crate::rpc;

pub use crate::pod::EXPORTER_PORT;

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
    /// Starts `relay`'s pod sidecar as the bundle configures it (`--enforce` in only-onion
    /// pods), wired to the relay's admin API, SOCKS port and tor, plus `extra_args`, and waits
    /// until /readyz answers.
    pub fn start(
        binary: &Path,
        relay: &Relay,
        extra_args: &[&str],
        dir: &Path,
    ) -> Result<Exporter> {
        Exporter::start_with_env(binary, relay, extra_args, &[], dir)
    }

    /// Like [`Exporter::start`], with some of the bundle's environment replaced (e.g.
    /// `RELAYWATCH_ENFORCE=false` for an only-onion sidecar that only counts leaks).
    pub fn start_with_env(
        binary: &Path,
        relay: &Relay,
        extra_args: &[&str],
        env_overrides: &[(&str, &str)],
        dir: &Path,
    ) -> Result<Exporter> {
        let name = format!("relaywatch-{}", relay.name());
        let listen = SocketAddr::new(relay.spec.ip.into(), EXPORTER_PORT);
        let log_path = dir.join(format!("{name}.log"));
        crate::monitoring::check_port_free(listen)
            .with_context(|| format!("{name} cannot start"))?;
        let (args, env) = pod::exporter_command(&relay.spec);
        let mut command = Command::new(binary);
        command.args(args).args(extra_args);
        for (key, value) in &env {
            command.env(key, value);
        }
        for (key, value) in env_overrides {
            command.env(key, value);
        }
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

    /// SIGTERM, then SIGKILL after 3 s; reaped.
    pub fn stop(&mut self) {
        self.child.stop(std::time::Duration::from_secs(3));
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
