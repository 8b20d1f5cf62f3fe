//! Build contexts under target/images/<name>/, made fresh for every build so that nothing left
//! over from an earlier build can reach an image.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The Rust target whose static-pie build needs no extra toolchain (see container-image.md).
const TARGET: &str = "x86_64-unknown-linux-gnu";
/// Where Debian's tor package puts the binary.
const TOR: &str = "/usr/sbin/tor";

/// Static builds of relaywatch and labrelay in the `image` profile (release with LTO, one
/// codegen unit, stripped: see Cargo.toml). `--target` keeps `crt-static` away from build
/// scripts and proc-macros, which it would break.
pub fn build_static_binaries() -> Result<()> {
    let mut cargo = crate::cargo();
    cargo
        .args([
            "build",
            "--profile",
            "image",
            "--locked",
            "--target",
            TARGET,
        ])
        .args(["--package", "relaywatch", "--package", "labrelay"])
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    crate::run(cargo)
}

fn binary(name: &str) -> PathBuf {
    crate::workspace_root().join(format!("target/{TARGET}/image/{name}"))
}

/// A fresh context directory for image `name`, holding what its Containerfile copies.
pub fn prepare(name: &str) -> Result<PathBuf> {
    let root = crate::workspace_root();
    let dir = root.join("target/images").join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    make_dir(&dir)?;
    for file in ["passwd", "group", "nsswitch.conf"] {
        copy(
            &root.join("deploy/images").join(file),
            &dir.join(file),
            0o444,
        )?;
    }
    match name {
        "relaywatch" | "labrelay" => copy(&binary(name), &dir.join(name), 0o555)?,
        "relaywatch-tor" => tor_rootfs(&dir.join("rootfs"))?,
        other => bail!("no image named {other:?} (known: relaywatch, relaywatch-tor, labrelay)"),
    }
    Ok(dir)
}

/// tor and every file `ldd` says it loads, each at the path the loader looks for it.
fn tor_rootfs(rootfs: &Path) -> Result<()> {
    if !Path::new(TOR).is_file() {
        bail!("{TOR} not found: install Debian's tor package (apt-get install tor)");
    }
    let ldd = crate::image::podman::capture({
        let mut ldd = Command::new("ldd");
        ldd.arg(TOR);
        ldd
    })?;
    let files = super::ldd::needed_files(&ldd).map_err(anyhow::Error::msg)?;
    if files.is_empty() {
        bail!("ldd {TOR} named no library; is tor really dynamically linked?");
    }
    copy(Path::new(TOR), &rootfs.join("usr/bin/tor"), 0o555)?;
    for file in files {
        let inside = rootfs.join(file.strip_prefix("/").unwrap_or(&file));
        // Copying follows symlinks: the image holds the real library under the name asked for.
        // The loader must be executable (the kernel opens it like a program); libraries too, as
        // Debian ships them.
        copy(&file, &inside, 0o555)?;
    }
    Ok(())
}

/// Creates `dir` and its parents with mode 0755 whatever the umask, so images do not vary.
fn make_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot chmod {}", dir.display()))
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(parent) = to.parent() {
        let mut missing = Vec::new();
        let mut at = parent;
        while !at.exists() {
            missing.push(at.to_path_buf());
            at = at.parent().unwrap_or(Path::new("/"));
        }
        for dir in missing.iter().rev() {
            make_dir(dir)?;
        }
    }
    fs::copy(from, to).with_context(|| {
        format!(
            "cannot copy {} to {} (did the build run?)",
            from.display(),
            to.display()
        )
    })?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", to.display()))
}
