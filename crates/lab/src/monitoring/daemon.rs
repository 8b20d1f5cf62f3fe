//! What Prometheus and Alertmanager share: finding the binary, a config check before start,
//! waiting for `/-/ready` while watching the process, and small JSON-over-HTTP calls.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::process::{self, Child};
use crate::relays::tail;

/// How long a daemon may take to answer `/-/ready` (a cold Prometheus on a busy 2-core machine
/// takes a few seconds to open its TSDB).
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// The full path of `binary` if it is an executable file on PATH.
pub(crate) fn find_on_path(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

/// Like [`find_on_path`], as an error that says how to install it.
pub(crate) fn require_on_path(binary: &str, package: &str) -> Result<PathBuf> {
    find_on_path(binary).with_context(|| {
        format!("`{binary}` is not on PATH; install Debian's `{package}` package (apt-get install {package})")
    })
}

/// Fails if something already listens on `addr`: the lab checks each chosen port right before
/// a daemon binds it, so a clash is reported as such instead of as a daemon that died.
pub fn check_port_free(addr: SocketAddr) -> Result<()> {
    TcpListener::bind(addr).map(drop).with_context(|| {
        format!("{addr} is already in use; pick another port (crate::tornet::free_port gives one)")
    })
}

/// Runs a config checker (`promtool check config`, `amtool check-config`) to completion;
/// its output goes to `log`, and a failure is an error carrying that output.
pub(crate) fn run_check(name: &str, command: Command, log: &Path) -> Result<()> {
    let _ = std::fs::remove_file(log);
    let mut child = process::spawn(name, command, log)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.is_running() {
        if Instant::now() > deadline {
            child.kill();
            bail!(
                "{name} did not finish within 30 s; its output:\n{}",
                tail(log, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match child.exit_status() {
        Some(status) if status.success() => Ok(()),
        status => bail!(
            "{name} rejects the lab config ({}):\n{}",
            describe(status),
            tail(log, 30)
        ),
    }
}

fn describe(status: Option<std::process::ExitStatus>) -> String {
    status.map_or_else(
        || "exit status unknown".to_string(),
        |status| status.to_string(),
    )
}

/// A long-running daemon with an HTTP API on `addr`.
pub(crate) struct Daemon {
    pub log_path: PathBuf,
    child: Child,
}

impl Daemon {
    /// Spawns `command` and waits until `GET /-/ready` answers 200; an early exit is an error
    /// with the last lines of the log.
    pub fn start(
        name: &str,
        command: Command,
        addr: SocketAddr,
        log_path: PathBuf,
    ) -> Result<Daemon> {
        let child = process::spawn(name, command, &log_path)?;
        let mut daemon = Daemon { log_path, child };
        let started = Instant::now();
        loop {
            if !daemon.child.is_running() {
                bail!(
                    "{name} exited ({}) before it was ready; last lines of {}:\n{}",
                    describe(daemon.child.exit_status()),
                    daemon.log_path.display(),
                    daemon.log_tail(20)
                );
            }
            if get(addr, "/-/ready", Duration::from_secs(2)).is_ok() {
                return Ok(daemon);
            }
            if started.elapsed() > READY_DEADLINE {
                bail!(
                    "{name} on {addr} was not ready within {READY_DEADLINE:?}; last lines of {}:\n{}",
                    daemon.log_path.display(),
                    daemon.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path, lines)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn stop(&mut self) {
        self.child.stop(Duration::from_secs(5));
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    crate::rpc::agent(timeout, false)
}

/// `GET http://addr<path>` as text; a non-2xx status is an error with the body.
pub(crate) fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String> {
    get_query(addr, path, &[], timeout)
}

/// `GET` with URL-encoded query parameters.
pub(crate) fn get_query(
    addr: SocketAddr,
    path: &str,
    query: &[(&str, &str)],
    timeout: Duration,
) -> Result<String> {
    let url = format!("http://{addr}{path}");
    let mut request = agent(timeout).get(&url);
    for (key, value) in query {
        request = request.query(*key, *value);
    }
    let mut response = request.call().with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("GET {url}: body"))?;
    if !status.is_success() {
        bail!("GET {url}: HTTP {status}: {}", body.trim());
    }
    Ok(body)
}

/// `GET` a JSON document.
pub(crate) fn get_json(addr: SocketAddr, path: &str, query: &[(&str, &str)]) -> Result<Value> {
    let body = get_query(addr, path, query, Duration::from_secs(10))?;
    serde_json::from_str(&body).with_context(|| format!("GET {path} on {addr}: not JSON: {body}"))
}

/// `POST` a JSON document; a non-2xx status is an error with the body.
pub(crate) fn post_json(addr: SocketAddr, path: &str, body: &Value) -> Result<String> {
    let url = format!("http://{addr}{path}");
    let mut response = agent(Duration::from_secs(10))
        .post(&url)
        .header("Content-Type", "application/json")
        .send_json(body)
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    if !status.is_success() {
        bail!("POST {url}: HTTP {status}: {}", text.trim());
    }
    Ok(text)
}
