//! Finds tor and tor-gencert, and creates the authorities' keys before their first start.
//!
//! Keys are fresh for every network: identities are cheap (about 1.2 CPU-s per authority,
//! 0.2 s per relay) and reusing them across parallel networks would mix their consensuses.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::proc::run_tool;

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// The `tor` binary, with the install hint as the error when it is missing.
///
/// Tests use this to decide whether to skip, so that the check and the harness agree.
pub fn find_tor() -> Result<PathBuf> {
    find_tool("tor")
}

/// Looks on PATH, then in Debian's install directories: `tor` lives in /usr/sbin, which is
/// not on a normal user's PATH.
pub(crate) fn find_tool(name: &str) -> Result<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let fallbacks = [PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")];
    for dir in path_dirs.iter().chain(fallbacks.iter()) {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    bail!("`{name}` not found on PATH: install Debian's `tor` package (apt-get install tor)")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The relay's RSA identity fingerprint (40 hex digits); creates the keys in `data_dir`.
pub(crate) fn relay_fingerprint(tor: &Path, data_dir: &Path) -> Result<String> {
    let mut command = Command::new(tor);
    command
        .args(["--ignore-missing-torrc", "-f", "/dev/null", "--quiet"])
        .arg("--DataDirectory")
        .arg(data_dir)
        .args(["--ORPort", "1", "--list-fingerprint"]);
    run_tool(
        "tor --list-fingerprint",
        command,
        &data_dir.join("keygen.log"),
        TOOL_TIMEOUT,
    )?;
    // tor writes "<nickname> <fingerprint>" to <data_dir>/fingerprint as well as to stdout.
    let path = data_dir.join("fingerprint");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("tor --list-fingerprint wrote no {}", path.display()))?;
    parse_fingerprint_file(&text)
        .with_context(|| format!("unexpected content in {}: {text:?}", path.display()))
}

fn parse_fingerprint_file(text: &str) -> Option<String> {
    let fingerprint = text.split_whitespace().nth(1)?;
    (fingerprint.len() == 40 && fingerprint.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| fingerprint.to_string())
}

/// Creates the authority's v3 identity, signing key and certificate in `<data_dir>/keys`,
/// and returns the v3 identity fingerprint (the `v3ident` of its DirAuthority line).
///
/// Unlike the recipe, no `-a <address:port>`: the certificate's optional `dir-address`
/// would pin the DirPort before it is picked, and ports are picked as late as possible.
pub(crate) fn authority_v3ident(gencert: &Path, data_dir: &Path) -> Result<String> {
    let keys = data_dir.join("keys");
    std::fs::create_dir_all(&keys).with_context(|| format!("cannot create {}", keys.display()))?;
    let certificate = keys.join("authority_certificate");
    let mut command = Command::new(gencert);
    // The passphrase is read from fd 0, which `process::spawn` points at /dev/null:
    // EOF right away means an empty passphrase, as the recipe's `echo "" |` does.
    command
        .args(["--create-identity-key", "--passphrase-fd", "0", "-m", "12"])
        .arg("-i")
        .arg(keys.join("authority_identity_key"))
        .arg("-s")
        .arg(keys.join("authority_signing_key"))
        .arg("-c")
        .arg(&certificate);
    run_tool(
        "tor-gencert",
        command,
        &data_dir.join("gencert.log"),
        TOOL_TIMEOUT,
    )?;
    let text = std::fs::read_to_string(&certificate)
        .with_context(|| format!("tor-gencert wrote no {}", certificate.display()))?;
    parse_certificate_fingerprint(&text)
        .with_context(|| format!("no fingerprint line in {}", certificate.display()))
}

fn parse_certificate_fingerprint(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("fingerprint "))
        .map(|fingerprint| fingerprint.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fingerprint_file() {
        assert_eq!(
            parse_fingerprint_file("Unnamed 07656B45C560912E146C55D77E8CDF646B865DAE\n").as_deref(),
            Some("07656B45C560912E146C55D77E8CDF646B865DAE")
        );
        assert_eq!(parse_fingerprint_file("Unnamed 0765 6B45"), None);
    }

    #[test]
    fn parses_certificate() {
        let text = "dir-key-certificate-version 3\ndir-address 127.0.0.1:5000\nfingerprint 3223F12B11543448E7B8A8F49C667ECEAF981600\ndir-key-published 2026-01-01 00:00:00\n";
        assert_eq!(
            parse_certificate_fingerprint(text).as_deref(),
            Some("3223F12B11543448E7B8A8F49C667ECEAF981600")
        );
    }

    #[test]
    fn missing_tool_names_the_package() {
        let error = find_tool("tor-gencert-does-not-exist").unwrap_err();
        assert_eq!(
            error.to_string(),
            "`tor-gencert-does-not-exist` not found on PATH: install Debian's `tor` package (apt-get install tor)"
        );
    }
}
