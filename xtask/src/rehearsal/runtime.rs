//! The rehearsal's IO: podman volumes, networks and pods, and what the host sees of a pod's
//! processes (/proc). Every podman call goes through `image::podman` (runc, host ulimits).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::image::podman;

/// Creates the rehearsal's network unless it exists: internal, so nothing in it can route off
/// this machine (the host still reaches the pods through the bridge).
pub fn ensure_network(name: &str) -> Result<()> {
    if podman::output("podman", &["network", "exists", name]).is_err() {
        // Another run may create it at the same moment; what counts is that it exists after.
        let created = podman::output("podman", &["network", "create", "--internal", name]);
        if podman::output("podman", &["network", "exists", name]).is_err() {
            created?;
        }
    }
    let internal = podman::output(
        "podman",
        &["network", "inspect", "--format", "{{.Internal}}", name],
    )?;
    if internal != "true" {
        bail!("podman network {name} exists but is not internal (its pods could route off this machine); remove it with `podman network rm {name}`");
    }
    Ok(())
}

/// Removes rehearsal pods and volumes whose test process is gone (a run killed mid-way).
pub fn remove_orphans() {
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    for (kind, list) in [
        ("pod", ["pod", "ps", "--format", "{{.Name}}"]),
        ("volume", ["volume", "ls", "--format", "{{.Name}}"]),
    ] {
        let Ok(names) = podman::output("podman", &list) else {
            continue;
        };
        for name in names.lines() {
            if super::pod::owner_of(name).is_some_and(|pid| !alive(pid)) {
                podman::quietly(&[kind, "rm", "--force", name]);
            }
        }
    }
}

/// A new podman volume that looks like a fresh block volume: its root is root:root 0755.
/// podman chowns an unused volume to the first container's user; a throwaway root container
/// uses it first, so the pod finds it as Kubernetes would.
pub fn fresh_root_volume(name: &str, any_image: &str) -> Result<PathBuf> {
    podman::quietly(&["volume", "rm", "--force", name]);
    podman::output("podman", &["volume", "create", name])?;
    podman::output(
        "podman",
        &[
            "run",
            "--rm",
            "--user",
            "0:0",
            "--network",
            "none",
            "--volume",
            &format!("{name}:/volume"),
            "--entrypoint",
            "/usr/bin/relaywatch",
            any_image,
            "--version",
        ],
    )?;
    let mountpoint = PathBuf::from(podman::output(
        "podman",
        &["volume", "inspect", "--format", "{{.Mountpoint}}", name],
    )?);
    std::os::unix::fs::chown(&mountpoint, Some(0), Some(0))?;
    std::fs::set_permissions(&mountpoint, std::fs::Permissions::from_mode(0o755))?;
    Ok(mountpoint)
}

/// `uid:gid mode` of a path, for messages.
pub fn owner(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(meta) => format!("{}:{} {:o}", meta.uid(), meta.gid(), meta.mode() & 0o7777),
        Err(error) => format!("({error})"),
    }
}

pub fn remove_pod(pod: &str) {
    podman::quietly(&["pod", "rm", "--force", "--time", "5", pod]);
}

pub fn play(file: &Path, network: &str) -> Result<()> {
    let file = file.to_string_lossy();
    podman::output("podman", &["kube", "play", "--network", network, &file]).map(drop)
}

/// A container of the pod, as the host sees it.
#[derive(Debug, Clone)]
pub struct Container {
    /// The template's container name.
    pub name: String,
    pub full_name: String,
    pub running: bool,
    pub pid: u32,
    pub read_only_root: bool,
}

/// The pod's containers (not the infra one), by the template's names.
pub fn containers(pod: &str, names: &[String]) -> Result<Vec<Container>> {
    names
        .iter()
        .map(|name| {
            let full_name = format!("{pod}-{name}");
            let text = podman::output(
                "podman",
                &[
                    "inspect",
                    "--format",
                    "{{.State.Running}} {{.State.Pid}} {{.HostConfig.ReadonlyRootfs}}",
                    &full_name,
                ],
            )?;
            let words: Vec<&str> = text.split_whitespace().collect();
            if words.len() != 3 {
                bail!("podman inspect {full_name}: unexpected {text:?}");
            }
            Ok(Container {
                name: name.clone(),
                full_name,
                running: words[0] == "true",
                pid: words[1].parse().unwrap_or(0),
                read_only_root: words[2] == "true",
            })
        })
        .collect()
}

pub fn logs(container: &str) -> String {
    let mut command = match podman::command("podman") {
        Ok(command) => command,
        Err(error) => return format!("({error})"),
    };
    command.args(["logs", container]);
    match command.output() {
        Ok(output) => {
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr)
        }
        Err(error) => format!("({error})"),
    }
}

/// The pod's IP on the rehearsal network (its infra container's).
pub fn pod_ip(pod: &str) -> Result<std::net::IpAddr> {
    let infra = podman::output(
        "podman",
        &["pod", "inspect", "--format", "{{.InfraContainerID}}", pod],
    )?;
    let ip = podman::output(
        "podman",
        &[
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            &infra,
        ],
    )?;
    ip.split_whitespace()
        .next()
        .with_context(|| format!("pod {pod} has no IP address"))?
        .parse()
        .with_context(|| format!("pod {pod}: IP {ip:?}"))
}

/// A plain HTTP/1.0 GET: status code and body.
pub fn http_get(address: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("GET {path}: no status line"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_default();
    Ok((status, body.to_owned()))
}

/// The fields of /proc/<pid>/status the rehearsal asserts on.
#[derive(Debug)]
pub struct ProcessStatus {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    pub groups: Vec<u32>,
    /// CapInh, CapPrm, CapEff, CapBnd, CapAmb.
    pub capabilities: Vec<(String, u64)>,
    pub no_new_privs: bool,
    /// 2 when a seccomp filter is loaded (the template asks for RuntimeDefault).
    pub seccomp: u8,
}

pub fn process_status(pid: u32) -> Result<ProcessStatus> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(parse_status(&text))
}

/// Parses /proc/<pid>/status. Pure.
pub fn parse_status(text: &str) -> ProcessStatus {
    let field = |name: &str| -> Vec<&str> {
        text.lines()
            .find_map(|line| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(':'))
            })
            .map(|rest| rest.split_whitespace().collect())
            .unwrap_or_default()
    };
    let numbers = |name: &str| field(name).iter().filter_map(|n| n.parse().ok()).collect();
    ProcessStatus {
        uids: numbers("Uid"),
        gids: numbers("Gid"),
        groups: numbers("Groups"),
        capabilities: ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
            .iter()
            .map(|name| {
                let hex = field(name).first().copied().unwrap_or("ffffffffffffffff");
                (
                    (*name).to_owned(),
                    u64::from_str_radix(hex, 16).unwrap_or(u64::MAX),
                )
            })
            .collect(),
        no_new_privs: field("NoNewPrivs").first() == Some(&"1"),
        seccomp: field("Seccomp")
            .first()
            .and_then(|mode| mode.parse().ok())
            .unwrap_or(0),
    }
}

/// Whether the process's root mount is read-only (from /proc/<pid>/mountinfo).
pub fn root_read_only(pid: u32) -> Result<bool> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    Ok(text.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(4) == Some(&"/")
            && fields
                .get(5)
                .is_some_and(|options| options.split(',').any(|o| o == "ro"))
    }))
}

/// Local ports of TCP sockets in the network namespace of `pid` (/proc/<pid>/net/tcp{,6}).
pub fn tcp_local_ports(pid: u32) -> Result<Vec<u16>> {
    let mut ports = Vec::new();
    for file in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{file}"))?;
        for line in text.lines().skip(1) {
            if let Some(port) = line
                .split_whitespace()
                .nth(1)
                .and_then(|local| local.rsplit_once(':'))
                .and_then(|(_, port)| u16::from_str_radix(port, 16).ok())
            {
                ports.push(port);
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let status = parse_status(
            "Name:\ttor\nUid:\t10001\t10001\t10001\t10001\nGid:\t10002\t10002\t10002\t10002\n\
             Groups:\t10002 \nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n\
             CapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n",
        );
        assert_eq!(status.uids, [10001; 4]);
        assert_eq!(status.groups, [10002]);
        assert!(status.capabilities.iter().all(|(_, value)| *value == 0));
        assert!(status.no_new_privs);
        assert_eq!(status.seccomp, 2);
        // A missing capability line reads as "all", never as none.
        assert!(parse_status("Uid:\t1\n")
            .capabilities
            .iter()
            .all(|(_, v)| *v == u64::MAX));
    }
}
