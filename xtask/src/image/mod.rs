//! `cargo xtask image`: the three container images, built FROM scratch with buildah from local
//! files only (no registry is reachable here), into podman's default local store:
//!
//! - `localhost/relaywatch:<version>`: the static sidecar binary;
//! - `localhost/relaywatch-tor:<version>`: Debian's tor as installed on this host, with the
//!   shared libraries `ldd` lists;
//! - `localhost/labrelay:<version>`: the static gethrelay stand-in, for pod rehearsals.
//!
//! `<version>` is the workspace version. Builds are reproducible: `--timestamp 0` pins every
//! date, so the same inputs give the same image ID.

mod context;
pub mod ldd;
pub mod podman;
#[cfg(test)]
mod release_lint;

use anyhow::{Context, Result};

/// The workspace version (xtask inherits it from `[workspace.package]`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The images, by name; each has `deploy/images/<name>.Containerfile`.
pub const NAMES: [&str; 3] = ["relaywatch", "relaywatch-tor", "labrelay"];

/// `localhost/<name>:<version>`.
pub fn reference(name: &str) -> String {
    format!("localhost/{name}:{VERSION}")
}

/// One built image.
#[derive(Debug, Clone)]
pub struct Built {
    pub reference: String,
    pub id: String,
    pub size_bytes: u64,
}

/// `cargo xtask image`: builds the three images and prints each one's ID and size.
pub fn command(args: &[String]) -> Result<()> {
    if let Some(extra) = args.iter().find(|arg| arg.as_str() != "--") {
        anyhow::bail!("cargo xtask image takes no arguments (got {extra:?})");
    }
    let started = std::time::Instant::now();
    let built = build_all()?;
    for image in &built {
        println!(
            "{:<36} {}  {:>6.2} MB",
            image.reference,
            &image.id[..12.min(image.id.len())],
            image.size_bytes as f64 / 1e6
        );
    }
    println!("built in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Installs the tools if missing, builds the static binaries, then every image.
pub fn build_all() -> Result<Vec<Built>> {
    crate::packages::ensure(crate::packages::IMAGE)?;
    context::build_static_binaries()?;
    NAMES.iter().map(|name| build(name)).collect()
}

/// Builds one image from a fresh context (binaries must be built already).
pub fn build(name: &str) -> Result<Built> {
    let context = context::prepare(name)?;
    let containerfile = crate::workspace_root().join(format!("deploy/images/{name}.Containerfile"));
    let reference = reference(name);
    let mut buildah = podman::command("buildah")?;
    buildah
        .args(["bud", "--quiet", "--layers=false", "--timestamp", "0"])
        .args([
            "--label",
            &format!("org.opencontainers.image.version={VERSION}"),
        ])
        .arg("-f")
        .arg(&containerfile)
        .args(["-t", &reference])
        .arg(&context);
    podman::capture(buildah).with_context(|| format!("building {reference}"))?;
    inspect(&reference)
}

/// The ID and size of an image in the local store.
pub fn inspect(reference: &str) -> Result<Built> {
    let text = podman::output(
        "podman",
        &[
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{.Size}}",
            reference,
        ],
    )?;
    let (id, size) = text
        .split_once(' ')
        .with_context(|| format!("podman image inspect {reference}: unexpected {text:?}"))?;
    Ok(Built {
        reference: reference.to_owned(),
        id: id.to_owned(),
        size_bytes: size
            .parse()
            .with_context(|| format!("podman image inspect {reference}: size {size:?}"))?,
    })
}
