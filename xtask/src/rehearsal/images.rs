//! The images themselves: built once per test run, reproducible, small, non-root, no shell, and
//! relaywatch stops promptly on SIGTERM as a container's PID 1.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::image::{self, podman, Built};

/// The sidecar image's size budget (issue 11).
const RELAYWATCH_MAX_BYTES: u64 = 10_000_000;

/// `cargo xtask image`, once per test process.
pub fn built() -> Result<&'static [Built]> {
    static BUILT: OnceLock<Result<Vec<Built>, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| image::build_all().map_err(|error| format!("{error:#}")))
        .as_deref()
        .map_err(|error| anyhow::anyhow!("cargo xtask image failed: {error}"))
}

pub fn check_images() -> Result<()> {
    for first in built()? {
        let name = first
            .reference
            .trim_start_matches("localhost/")
            .split(':')
            .next()
            .unwrap_or_default();
        let started = Instant::now();
        let again = image::build(name)?;
        println!(
            "{:<36} {:>6.2} MB  id {}  rebuilt in {:.1} s: {}",
            first.reference,
            first.size_bytes as f64 / 1e6,
            &first.id[..12],
            started.elapsed().as_secs_f64(),
            if again.id == first.id {
                "same id"
            } else {
                "DIFFERENT id"
            }
        );
        ensure!(
            again.id == first.id,
            "{}: not reproducible: {} then {}",
            first.reference,
            first.id,
            again.id
        );
        let user = podman::output(
            "podman",
            &[
                "image",
                "inspect",
                "--format",
                "{{.Config.User}}",
                &first.reference,
            ],
        )?;
        let uid: u32 = user
            .split(':')
            .next()
            .and_then(|uid| uid.parse().ok())
            .with_context(|| format!("{}: USER {user:?} is not numeric", first.reference))?;
        ensure!(uid != 0, "{}: runs as root", first.reference);
        let mount = podman::output("podman", &["image", "mount", &first.reference])?;
        let shells: Vec<String> = ["bin/sh", "usr/bin/sh", "bin/bash", "bin/busybox"]
            .iter()
            .filter(|shell| std::path::Path::new(&mount).join(shell).exists())
            .map(|shell| shell.to_string())
            .collect();
        podman::quietly(&["image", "unmount", &first.reference]);
        ensure!(
            shells.is_empty(),
            "{}: has a shell: {shells:?}",
            first.reference
        );
    }
    let relaywatch = built()?
        .iter()
        .find(|built| built.reference == image::reference("relaywatch"))
        .context("no relaywatch image")?;
    ensure!(
        relaywatch.size_bytes <= RELAYWATCH_MAX_BYTES,
        "relaywatch image is {} bytes, over {RELAYWATCH_MAX_BYTES}",
        relaywatch.size_bytes
    );
    Ok(())
}

pub fn check_sigterm() -> Result<()> {
    built()?;
    let name = &format!("rehearsal-sigterm-{}", std::process::id());
    podman::quietly(&["rm", "--force", name]);
    podman::output(
        "podman",
        &[
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            "none",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            &image::reference("relaywatch"),
            "exporter",
            "--mode",
            "clearnet",
        ],
    )?;
    let result = (|| -> Result<()> {
        // Stop only once the exporter runs (it logs its listen address first).
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid: u32 = loop {
            let pid = podman::output("podman", &["inspect", "--format", "{{.State.Pid}}", name])?;
            let logs = super::runtime::logs(name);
            if pid != "0" && logs.contains("9476") {
                break pid.parse()?;
            }
            if Instant::now() > deadline {
                bail!("relaywatch did not start in 30 s:\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let ns_pid = status
            .lines()
            .find(|l| l.starts_with("NSpid:"))
            .unwrap_or_default()
            .to_owned();
        ensure!(
            ns_pid.split_whitespace().last() == Some("1"),
            "relaywatch is not PID 1 in its container: {ns_pid}"
        );
        let started = Instant::now();
        podman::output("podman", &["stop", "--time", "10", name])?;
        let took = started.elapsed();
        let code = podman::output(
            "podman",
            &["inspect", "--format", "{{.State.ExitCode}}", name],
        )?;
        println!(
            "relaywatch as PID 1: podman stop (SIGTERM) took {:.2} s, exit code {code}",
            took.as_secs_f64()
        );
        ensure!(
            code != "137",
            "relaywatch ignored SIGTERM and was killed after 10 s:\n{}",
            super::runtime::logs(name)
        );
        Ok(())
    })();
    podman::quietly(&["rm", "--force", name]);
    result
}
