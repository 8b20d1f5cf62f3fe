//! Core Kubernetes kinds of the rendered bundle against the Kubernetes OpenAPI schemas.
//!
//! No API server, kubeconform or kubeval runs here, so this uses PyPI's `kubernetes-validate`
//! (it carries the schemas), installed by the test itself into a venv under `target/`.
//! It does not know CRDs; ServiceMonitor and PrometheusRule are checked in `kustomize.rs`
//! against the CRD schemas from `../shared/reference`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Pinned, so that a new release cannot change the verdict under us.
const PACKAGE: &str = "kubernetes-validate==1.37.0";
/// The Kubernetes version whose schemas are used.
const KUBERNETES_VERSION: &str = "1.37.0";

/// The venv's `kubernetes-validate`, created on first use. Tests run in parallel and several
/// want it: one creates it while the others wait (two creating one venv saw it half made).
pub fn validator() -> Result<PathBuf> {
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = CREATING.lock().unwrap_or_else(|poison| poison.into_inner());
    let venv = super::root().join("target/kubernetes-validate-venv");
    let program = venv.join("bin/kubernetes-validate");
    if program.is_file() {
        return Ok(program);
    }
    let mut create = Command::new("python3");
    create.args(["-m", "venv"]).arg(&venv);
    super::run(create).context("cannot create a Python venv (python3 -m venv)")?;
    let mut install = Command::new(venv.join("bin/pip"));
    install.args(["install", "--quiet", "--disable-pip-version-check", PACKAGE]);
    super::run(install).with_context(|| format!("cannot pip install {PACKAGE}"))?;
    Ok(program)
}

/// Validates every object of `manifest`; returns the kinds that passed, or the tool's complaints.
pub fn validate(program: &Path, manifest: &Path) -> Result<Vec<String>> {
    let output = Command::new(program)
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .arg(manifest)
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "kubernetes-validate rejected {}:\n{text}",
            manifest.display()
        );
    }
    Ok(text
        .lines()
        .filter_map(|line| {
            let rest = line.split(" passed for resource ").nth(1)?;
            Some(rest.split('/').next()?.to_string())
        })
        .collect())
}

/// The validator, or a printed skip (a CI panic) when python3, kubectl or PyPI is missing.
pub fn validator_or_skip() -> Option<PathBuf> {
    if !super::tool("python3", "Kubernetes schema check")
        || !super::tool("kubectl", "Kubernetes schema check")
    {
        return None;
    }
    match validator() {
        Ok(program) => Some(program),
        Err(error) if std::env::var_os("CI").is_some() => panic!("{error:#}"),
        Err(error) => {
            println!("skipped: Kubernetes schema check: {error:#}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_kinds_match_the_kubernetes_schemas() {
        let Some(program) = validator_or_skip() else {
            return;
        };
        let mut kubectl = Command::new("kubectl");
        kubectl.args(["kustomize", super::super::KUSTOMIZE_DIR]);
        let rendered = super::super::run(kubectl).unwrap();
        let dir = tempfile_dir();
        let manifest = dir.join("rendered.yaml");
        std::fs::write(&manifest, rendered).unwrap();
        let passed = validate(&program, &manifest).unwrap();
        for kind in [
            "namespace",
            "statefulset",
            "service",
            "configmap",
            "networkpolicy",
            "poddisruptionbudget",
        ] {
            assert!(
                passed.iter().any(|k| k == kind),
                "no {kind} validated: {passed:?}"
            );
        }

        // The check can fail: a StatefulSet with a string where an integer belongs is rejected.
        let broken = dir.join("broken.yaml");
        std::fs::write(
            &broken,
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\n\
             spec: {replicas: three, serviceName: x, selector: {matchLabels: {a: b}},\n\
             template: {metadata: {labels: {a: b}}, spec: {containers: [{name: x, image: x}]}}}\n",
        )
        .unwrap();
        assert!(validate(&program, &broken).is_err());
    }

    /// A fresh directory under target/ (xtask has no tempfile dependency).
    fn tempfile_dir() -> PathBuf {
        let dir = super::super::root()
            .join("target/k8s-schema-check")
            .join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
