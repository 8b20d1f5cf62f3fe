//! `<dir>/lab.json`: what a running lab is, for commands run beside it (`relaywatch-lab drill`).
//!
//! The lab process owns every child; another process cannot signal them safely (a pid may be
//! reused once the lab reaped it). So the file names addresses, never pids, and faults that
//! need the lab's hands (stopping a relay, an exporter or a tor) go through its control port
//! (`control.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::relays::Mode;

/// The file name inside the lab directory.
pub const FILE_NAME: &str = "lab.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabFile {
    /// Every rule duration and Alertmanager timer is divided by this (1 = production timing).
    pub time_scale: f64,
    /// Prometheus' and Alertmanager's HTTP addresses.
    pub prometheus: SocketAddr,
    pub alertmanager: SocketAddr,
    /// The lab's control port (`control.rs`) and the token it wants (this file is written
    /// readable by its owner only).
    pub control: SocketAddr,
    pub control_token: String,
    /// One JSON line per notification received, per sink.
    pub slack_log: PathBuf,
    pub email_log: PathBuf,
    /// The monitored pods.
    pub relays: Vec<LabRelay>,
    /// Lab nodes standing for the public network (not monitored).
    pub public: Vec<PublicNode>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabRelay {
    /// The lab's own name (`only-onion-1`).
    pub name: String,
    /// Kubernetes labels the lab's Prometheus gives its targets.
    pub namespace: String,
    pub pod: String,
    pub mode: String,
    pub admin: SocketAddr,
    pub p2p: SocketAddr,
    pub exporter: SocketAddr,
    /// The pod tor's SOCKS port (gethrelay's `--tor-proxy`).
    pub tor_proxy: SocketAddr,
    /// The pod's onion service, if it has one.
    pub onion: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicNode {
    pub name: String,
    pub admin: SocketAddr,
    pub p2p: SocketAddr,
    pub onion: Option<String>,
}

impl LabRelay {
    pub fn mode(&self) -> Option<Mode> {
        Mode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == self.mode)
    }
}

impl LabFile {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// Reads `<dir>/lab.json`, with the fix in the error when there is no running lab there.
    pub fn read(dir: &Path) -> Result<LabFile> {
        let path = LabFile::path(dir);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: is a lab running with `--dir {}`? Start one with `cargo xtask lab -- --dir {}`",
                path.display(),
                dir.display(),
                dir.display()
            )
        })?;
        let file: LabFile = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a lab file of this version; restart the lab",
                path.display()
            )
        })?;
        file.validate()
            .with_context(|| format!("{} is not a lab file a drill may use", path.display()))?;
        Ok(file)
    }

    /// A drill acts on every address in the file: all must be on this machine, and the time
    /// scale must be one the lab could have run with.
    pub fn validate(&self) -> Result<()> {
        if !(self.time_scale >= 1.0 && self.time_scale <= 100.0) {
            anyhow::bail!("time_scale {} is outside 1..=100", self.time_scale);
        }
        let mut addrs = vec![
            ("prometheus", self.prometheus),
            ("alertmanager", self.alertmanager),
            ("control", self.control),
        ];
        for relay in &self.relays {
            addrs.extend([
                ("admin", relay.admin),
                ("p2p", relay.p2p),
                ("exporter", relay.exporter),
            ]);
        }
        for node in &self.public {
            addrs.extend([("admin", node.admin), ("p2p", node.p2p)]);
        }
        for (what, addr) in addrs {
            if !addr.ip().is_loopback() {
                anyhow::bail!("{what} address {addr} is not on this machine (loopback)");
            }
        }
        Ok(())
    }

    /// Writes the file atomically (a reader never sees half of it).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = LabFile::path(dir);
        let temp = dir.join(format!(".{FILE_NAME}.tmp"));
        // Owner-only: it holds the control port's token.
        let _ = std::fs::remove_file(&temp);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .with_context(|| format!("cannot write {}", temp.display()))?;
        out.write_all(&serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", temp.display()))?;
        std::fs::rename(&temp, &path)
            .with_context(|| format!("cannot rename {} to {}", temp.display(), path.display()))
    }

    pub fn relay(&self, pod: &str) -> Result<&LabRelay> {
        self.relays
            .iter()
            .find(|relay| relay.pod == pod || relay.name == pod)
            .with_context(|| {
                let pods: Vec<&str> = self.relays.iter().map(|r| r.pod.as_str()).collect();
                format!("no relay {pod:?} in this lab; its pods are {pods:?}")
            })
    }

    pub fn first_of_mode(&self, mode: Mode) -> Result<&LabRelay> {
        self.relays
            .iter()
            .find(|relay| relay.mode == mode.as_str())
            .with_context(|| {
                format!(
                    "this lab has no {} relay; start it with at least one (`--{} 1`)",
                    mode.as_str(),
                    mode.as_str()
                )
            })
    }
}

/// The Kubernetes pod name the StatefulSet `gethrelay-<mode>` gives its `index`-th pod (from 0).
pub fn pod_name(mode: Mode, index: usize) -> String {
    format!("gethrelay-{}-{index}", mode.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LabFile {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        LabFile {
            time_scale: 20.0,
            prometheus: addr,
            alertmanager: addr,
            control: addr,
            control_token: "t".into(),
            slack_log: "/x/slack.jsonl".into(),
            email_log: "/x/email.jsonl".into(),
            relays: vec![LabRelay {
                name: "only-onion-1".into(),
                namespace: "gethrelay".into(),
                pod: pod_name(Mode::OnlyOnion, 0),
                mode: "only-onion".into(),
                admin: addr,
                p2p: addr,
                exporter: addr,
                tor_proxy: addr,
                onion: None,
            }],
            public: vec![],
        }
    }

    #[test]
    fn round_trips_and_finds_relays_by_pod_or_name() {
        let dir = tempfile::tempdir().unwrap();
        sample().write(dir.path()).unwrap();
        let file = LabFile::read(dir.path()).unwrap();
        assert_eq!(
            file.relay("gethrelay-only-onion-0").unwrap().name,
            "only-onion-1"
        );
        assert_eq!(
            file.relay("only-onion-1").unwrap().mode(),
            Some(Mode::OnlyOnion)
        );
        let error = file.relay("nope").unwrap_err().to_string();
        assert!(error.contains("gethrelay-only-onion-0"), "{error}");
        let error = file.first_of_mode(Mode::Clearnet).unwrap_err().to_string();
        assert!(error.contains("--clearnet 1"), "{error}");
    }

    #[test]
    fn a_file_with_remote_addresses_or_a_bad_scale_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = sample();
        file.relays[0].admin = "192.0.2.1:8546".parse().unwrap();
        file.write(dir.path()).unwrap();
        let error = format!("{:#}", LabFile::read(dir.path()).unwrap_err());
        assert!(
            error.contains("192.0.2.1:8546 is not on this machine"),
            "{error}"
        );
        let mut file = sample();
        file.time_scale = 0.0;
        file.write(dir.path()).unwrap();
        let error = format!("{:#}", LabFile::read(dir.path()).unwrap_err());
        assert!(error.contains("time_scale 0"), "{error}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(LabFile::path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "lab.json holds a token: owner only");
    }

    #[test]
    fn a_missing_file_says_how_to_start_a_lab() {
        let dir = tempfile::tempdir().unwrap();
        let error = format!("{:#}", LabFile::read(dir.path()).unwrap_err());
        assert!(error.contains("cargo xtask lab -- --dir"), "{error}");
    }
}
