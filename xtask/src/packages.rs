//! System tools the lab and the tests need, and installing the missing ones from Debian.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// A program the project runs, and the Debian package that provides it.
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

const fn tool(program: &'static str, package: &'static str) -> Tool {
    Tool { program, package }
}

/// What `cargo xtask lab` needs: the private Tor network and the monitoring stack it runs.
pub const LAB: &[Tool] = &[
    tool("tor", "tor"),
    tool("tor-gencert", "tor"),
    tool("prometheus", "prometheus"),
    tool("promtool", "prometheus"),
    tool("prometheus-alertmanager", "prometheus-alertmanager"),
    tool("amtool", "prometheus-alertmanager"),
];

/// What `cargo xtask test` needs: the same as the lab (the tests run a reduced lab).
pub const TEST: &[Tool] = LAB;

/// What `cargo xtask image` and the pod rehearsal need: buildah builds, podman runs with runc
/// (crun cannot run on this machine kind's hybrid cgroups), netavark gives pods their networks;
/// uidmap, fuse-overlayfs and slirp4netns let a non-root developer run podman too.
pub const IMAGE: &[Tool] = &[
    tool("buildah", "buildah"),
    tool("podman", "podman"),
    tool("runc", "runc"),
    tool("/usr/lib/podman/netavark", "netavark"),
    // netavark sets up pod networks with iptables and fails with a bare ENOENT without it.
    tool("iptables", "iptables"),
    // A pod's infra ("pause") image is built locally from catatonit: no registry is reachable.
    tool("catatonit", "catatonit"),
    tool("newuidmap", "uidmap"),
    tool("fuse-overlayfs", "fuse-overlayfs"),
    tool("slirp4netns", "slirp4netns"),
    tool("ldd", "libc-bin"),
];

fn on_path(program: &str) -> bool {
    if program.starts_with('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
        // Debian puts tor in /usr/sbin, which a non-root PATH may lack.
        || Path::new("/usr/sbin").join(program).is_file()
}

/// Installs the Debian packages of every missing tool, saying so; fails with the command to run by hand.
pub fn ensure(tools: &[Tool]) -> Result<()> {
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|tool| !on_path(tool.program))
        .map(|tool| tool.package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let packages = missing.join(" ");
    eprintln!("xtask: installing Debian packages with apt-get: {packages}");
    let as_root = is_root();
    let apt = |args: &[&str]| -> Result<()> {
        let mut command = if as_root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        let status = command
            .status()
            .context("cannot run apt-get (is this a Debian machine?)")?;
        if !status.success() {
            bail!(
                "apt-get {} failed ({status}); install the packages by hand: sudo apt-get install -y {packages}",
                args.join(" ")
            );
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(missing.iter().copied());
    apt(&install)?;
    let still_missing: Vec<&str> = tools
        .iter()
        .filter(|tool| !on_path(tool.program))
        .map(|tool| tool.program)
        .collect();
    if !still_missing.is_empty() {
        bail!(
            "still missing after apt-get install: {}",
            still_missing.join(", ")
        );
    }
    eprintln!("xtask: installed {packages}");
    Ok(())
}

fn is_root() -> bool {
    // Reading /proc avoids a libc dependency: the effective uid is the second field of Uid.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// kubectl comes with the machine image and cannot be installed here: only check for it.
pub fn require_kubectl() -> Result<()> {
    if on_path("kubectl") {
        return Ok(());
    }
    bail!(
        "kubectl not found on PATH: the deploy-bundle tests render manifests with `kubectl kustomize`; \
         kubectl is part of the machine image and is not installed by xtask (install it from \
         https://kubernetes.io/docs/tasks/tools/ and re-run)"
    )
}
