//! The project's commands: `cargo xtask lab` (the local lab), `cargo xtask test` (every test), `cargo xtask image`, `cargo xtask codegen`.
//!
//! xtask is the only place that installs system packages (Debian's, with apt-get); the
//! relaywatch binary never does.

// The deploy checks run as `#[test]`s; outside tests only `codegen` uses this module.
#[cfg_attr(not(test), allow(dead_code))]
mod deploy_checks;
mod image;
mod packages;
#[cfg(test)]
mod rehearsal;

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  lab     start the local lab: a private Tor network, lab relays in the three modes, a
          relaywatch exporter beside each, Prometheus, Alertmanager and notification sinks
          (extra arguments are passed to the lab, e.g. `cargo xtask lab -- --help`,
          `cargo xtask lab -- drill all --dir DIR`)
  test    install what the tests need, then run every test of the workspace
  image   build the container images with buildah into podman's local store:
          localhost/relaywatch, localhost/relaywatch-tor, localhost/labrelay, each tagged
          with the workspace version (FROM scratch, reproducible), and print their sizes
  codegen regenerate the deploy bundle's generated files (PrometheusRule, dashboard
          ConfigMaps, runbook_url annotations, normalised dashboards)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("lab") => lab(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("image") => image::command(&args[1..]),
        Some("codegen") => deploy_checks::codegen::generate_all(false),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => {
            eprint!("xtask: unknown command {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
        None => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> std::path::PathBuf {
    let manifest_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

fn run(mut command: Command) -> Result<()> {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn lab(args: &[String]) -> Result<()> {
    packages::ensure(packages::LAB)?;
    let mut build = cargo();
    build.args([
        "build",
        "--package",
        "labrelay",
        "--package",
        "lab",
        "--package",
        "relaywatch",
    ]);
    run(build)?;
    let mut lab = Command::new(workspace_root().join("target/debug/relaywatch-lab"));
    lab.args(args.iter().filter(|arg| arg.as_str() != "--"));
    // exec, not spawn: the lab takes xtask's place, so a signal meant for `cargo xtask lab`
    // (an IDE's stop button, a CI timeout) reaches the lab and nothing is orphaned.
    use std::os::unix::process::CommandExt;
    let error = lab.exec();
    Err(error).context("cannot start target/debug/relaywatch-lab")
}

fn test(args: &[String]) -> Result<()> {
    packages::ensure(packages::TEST)?;
    packages::ensure(packages::IMAGE)?;
    packages::require_kubectl()?;
    let mut test = cargo();
    test.args(["test", "--workspace", "--locked"]);
    test.args(args.iter().filter(|arg| arg.as_str() != "--"));
    run(test)
}
