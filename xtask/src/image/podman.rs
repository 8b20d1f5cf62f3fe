//! Running podman and buildah the way this machine kind needs (see
//! ../shared/reference/container-image.md): runc, not crun (crun refuses hybrid cgroups), and
//! ulimits no higher than the host's, because root lacks CAP_SYS_RESOURCE to raise them.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// containers.conf for every podman call of xtask: the runtime and limits that work here.
const CONTAINERS_CONF: &str = "\
# Written by cargo xtask (xtask/src/image/podman.rs). crun cannot run on a cgroup v1 hybrid
# host, and podman's default nofile=1048576 cannot be set without CAP_SYS_RESOURCE.
[containers]
default_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]
[engine]
runtime = \"runc\"
cgroup_manager = \"cgroupfs\"
";

/// The containers.conf file, written under target/ (idempotent).
pub fn containers_conf() -> Result<PathBuf> {
    let dir = crate::workspace_root().join("target/podman");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("containers.conf");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(CONTAINERS_CONF) {
        std::fs::write(&path, CONTAINERS_CONF)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}

/// A `podman` (or `buildah`) command with xtask's containers.conf.
pub fn command(program: &str) -> Result<Command> {
    let mut command = Command::new(program);
    command.env("CONTAINERS_CONF", containers_conf()?);
    Ok(command)
}

/// Runs `program args…` and returns its trimmed stdout; fails with its stderr.
pub fn output(program: &str, args: &[&str]) -> Result<String> {
    let mut command = command(program)?;
    command.args(args);
    capture(command)
}

/// Runs a prepared command and returns its trimmed stdout; fails with its stderr.
pub fn capture(mut command: Command) -> Result<String> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !output.status.success() {
        bail!(
            "{shown} failed with {}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[cfg_attr(not(test), allow(dead_code))]
/// Runs `podman args…`, ignoring failure (clean-up of things that may not exist).
pub fn quietly(args: &[&str]) {
    if let Ok(mut command) = command("podman") {
        command.args(args);
        let _ = command.output();
    }
}
