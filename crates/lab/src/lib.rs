//! The local lab: a private Tor network on loopback (`tornet`), lab relays, and child-process supervision.
//!
//! Used by integration tests and by `cargo xtask lab`; never linked into the relaywatch sidecar.

pub mod bench;
pub mod control;
pub mod drill;
pub mod exporters;
pub mod lab;
pub mod labfile;
pub mod monitoring;
pub mod pod;
pub mod process;
pub mod relays;
pub mod report;
pub mod rpc;
pub mod signals;
pub mod stack;
pub mod summary;
pub mod timescale;
pub mod topology;
pub mod tornet;

use std::path::PathBuf;

use anyhow::{bail, Result};

/// Finds a workspace binary (`labrelay`, `relaywatch`) next to the running executable.
///
/// Test executables live in `target/<profile>/deps/`, binaries in `target/<profile>/`.
/// `LAB_BIN_DIR` overrides the directory.
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("LAB_BIN_DIR") {
        candidates.push(PathBuf::from(dir).join(name));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join(name));
            if let Some(up) = dir.parent() {
                candidates.push(up.join(name));
            }
        }
    }
    for candidate in &candidates {
        if candidate.is_file() {
            return Ok(candidate.clone());
        }
    }
    bail!(
        "cannot find the `{name}` binary (looked in {candidates:?}); build it with `cargo build -p {name}` or set LAB_BIN_DIR"
    )
}

/// Whether a test that needs Debian's `tor` can run: prints why it skips when `tor` is
/// missing, and panics instead when `CI` is set (a skipped test in CI would hide a failure).
pub fn tor_available_or_skip(test: &str) -> bool {
    match tornet::find_tor() {
        Ok(_) => true,
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!("{test}: {error:#} (CI is set, so this test may not be skipped)")
        }
        Err(error) => {
            eprintln!("skipped: {test}: {error:#}; `cargo xtask test` installs it");
            false
        }
    }
}
