//! One tor of the network as a restartable child process, plus short-lived tool runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::process::{self, Child};

/// How long tor gets to exit on SIGTERM before SIGKILL; with `ShutdownWaitLength 0` it needs far less.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A tor with a fixed torrc; the child slot is empty while stopped.
pub(crate) struct TorProcess {
    pub name: String,
    tor: PathBuf,
    torrc: PathBuf,
    /// tor's own log (`Log notice file`).
    pub notice_log: PathBuf,
    /// stdout/stderr, where tor reports config errors before its own log is open.
    stdout_log: PathBuf,
    child: Mutex<Option<Child>>,
}

impl TorProcess {
    pub fn new(name: &str, tor: &Path, data_dir: &Path) -> Self {
        TorProcess {
            name: name.to_string(),
            tor: tor.to_path_buf(),
            torrc: data_dir.join("torrc"),
            notice_log: data_dir.join("notice.log"),
            stdout_log: data_dir.join("stdout.log"),
            child: Mutex::new(None),
        }
    }

    pub fn torrc(&self) -> &Path {
        &self.torrc
    }

    fn slot(&self) -> MutexGuard<'_, Option<Child>> {
        self.child
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Starts tor unless it already runs.
    pub fn start(&self) -> Result<()> {
        let mut slot = self.slot();
        if let Some(child) = slot.as_mut() {
            if child.is_running() {
                return Ok(());
            }
        }
        let mut command = Command::new(&self.tor);
        // An empty defaults file keeps a system-wide /etc/tor/torrc-defaults out of the lab.
        command
            .arg("--defaults-torrc")
            .arg("/dev/null")
            .arg("-f")
            .arg(&self.torrc);
        *slot = Some(process::spawn(
            &format!("tor {}", self.name),
            command,
            &self.stdout_log,
        )?);
        Ok(())
    }

    /// Stops tor and waits until it has exited; a no-op when it is not running.
    pub fn stop(&self) {
        if let Some(mut child) = self.slot().take() {
            child.stop(STOP_GRACE);
        }
    }

    /// Sends `signal` if tor runs (SIGHUP: reload and retry downloads now).
    pub fn signal(&self, signal: libc::c_int) {
        if let Some(child) = self.slot().as_mut() {
            child.signal(signal);
        }
    }

    pub fn pid(&self) -> Option<u32> {
        let mut slot = self.slot();
        let child = slot.as_mut()?;
        child.is_running().then(|| child.pid())
    }

    /// The exit status of a tor that exited without being stopped, once: the child is reaped
    /// and taken out, so the tor counts as stopped (and `start` starts it again).
    pub fn take_exited(&self) -> Option<std::process::ExitStatus> {
        let mut slot = self.slot();
        let status = slot.as_mut()?.exit_status()?;
        *slot = None;
        Some(status)
    }

    /// Fails when tor was started and has exited since, showing why from its logs.
    pub fn check_running(&self) -> Result<()> {
        let mut slot = self.slot();
        let Some(child) = slot.as_mut() else {
            return Ok(());
        };
        match child.exit_status() {
            None => Ok(()),
            Some(status) => bail!(
                "tor `{}` exited early ({status}); {}",
                self.name,
                self.log_tails()
            ),
        }
    }

    /// The last lines of both logs, for error messages.
    pub fn log_tails(&self) -> String {
        format!(
            "tail of {}:\n{}\ntail of {}:\n{}",
            self.stdout_log.display(),
            log_tail(&self.stdout_log, 10),
            self.notice_log.display(),
            log_tail(&self.notice_log, 15)
        )
    }
}

/// The last `lines` lines of a log file, indented, or a note that it is missing.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..]
                .iter()
                .map(|line| format!("    {line}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Err(error) => format!("    (cannot read: {error})"),
    }
}

/// Runs a short tool (key generation) to completion as a supervised child.
///
/// It goes through `process::spawn` like every tor, so it too dies with the test process.
pub(crate) fn run_tool(name: &str, command: Command, log: &Path, timeout: Duration) -> Result<()> {
    let mut child = process::spawn(name, command, log)?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.exit_status() {
            if status.success() {
                return Ok(());
            }
            bail!(
                "{name} failed ({status}); tail of {}:\n{}",
                log.display(),
                log_tail(log, 15)
            );
        }
        if Instant::now() > deadline {
            child.kill();
            bail!(
                "{name} did not finish within {timeout:?}; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
