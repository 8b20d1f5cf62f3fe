//! Child processes that can never outlive the lab: killed on drop, and by the kernel when we die.
//!
//! Every child is started from one long-lived "spawner" thread with `PR_SET_PDEATHSIG`.
//! The kernel sends the death signal when the *thread* that forked the child exits, not the
//! process, so forking from a test thread (which ends with its test) or a tokio blocking
//! thread (which ends when idle) would kill children early. The spawner thread lives as long
//! as the process, so the signal fires exactly when the process dies, even by SIGKILL.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<std::process::Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("lab-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
                // The channel lives in a static and is never closed: park instead of exiting,
                // because exiting would fire PDEATHSIG on every child.
                loop {
                    std::thread::park();
                }
            })
            .expect("cannot start the lab's spawner thread");
        Mutex::new(tx)
    })
}

/// A supervised child process: stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Child {
    name: String,
    inner: std::process::Child,
    exited: Option<std::process::ExitStatus>,
}

/// Starts `command` with its stdout and stderr appended to `log`, as a child that dies with us.
pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Child> {
    let log_file = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open log file {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    let parent_pid = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect: then nobody would kill us.
            if libc::getppid() != parent_pid {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()
        .lock()
        .map_err(|_| anyhow!("the lab's spawner lock is poisoned"))?
        .send((command, reply_tx))
        .map_err(|_| anyhow!("the lab's spawner thread is gone"))?;
    let inner = reply_rx
        .recv()
        .map_err(|_| anyhow!("the lab's spawner thread is gone"))?
        .with_context(|| format!("cannot start {name}"))?;
    Ok(Child {
        name: name.to_string(),
        inner,
        exited: None,
    })
}

impl Child {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.inner.try_wait() {
            Ok(Some(status)) => {
                self.exited = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// The exit status, if the process has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.is_running();
        self.exited
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the process if it still runs.
    pub fn signal(&mut self, signal: libc::c_int) {
        if self.is_running() {
            // SAFETY: kill(2) with a pid we own and have not reaped yet.
            unsafe {
                libc::kill(self.inner.id() as libc::pid_t, signal);
            }
        }
    }

    /// SIGTERM, up to `grace` for a clean exit, then SIGKILL; always reaps the process.
    pub fn stop(&mut self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// SIGKILL and reap, at once.
    pub fn kill(&mut self) {
        if self.is_running() {
            let _ = self.inner.kill();
        }
        if self.exited.is_none() {
            self.exited = self.inner.wait().ok();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reaps_and_reports_exit() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("sleep");
        command.arg("30");
        let mut child = spawn("sleep", command, &dir.path().join("sleep.log")).unwrap();
        assert!(child.is_running());
        let pid = child.pid();
        child.stop(Duration::from_secs(2));
        assert!(!child.is_running());
        // The pid is reaped: no zombie is left behind.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn missing_program_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = spawn(
            "nope",
            Command::new("/nonexistent/program"),
            &dir.path().join("x.log"),
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("cannot start nope"),
            "{error:#}"
        );
    }
}
