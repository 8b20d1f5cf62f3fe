//! Checks of the deploy bundle (deploy/, docs/runbooks/): rules, routing, manifests, dashboards.
//!
//! Every check is a `#[test]` next to the code it checks with. External tools (promtool, amtool,
//! kubectl) and the reference files in `../shared/reference` are required when `CI` is set;
//! without `CI` a check that lacks them prints `skipped: …` and passes.

pub mod alertmanager;
pub mod codegen;
pub mod dashboards;
pub mod fleet;
pub mod k8s_schemas;
pub mod kustomize;
pub mod promql;
pub mod rules;
pub mod schema;
pub mod values;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_norway::Value;

/// Where `runbook_url` annotations point: `<RUNBOOK_BASE_URL>/<AlertName>.md`.
/// Change it here and run `cargo xtask codegen` to rewrite the rules and their tests.
pub const RUNBOOK_BASE_URL: &str =
    "https://github.com/igor53627/relaywatch/blob/main/docs/runbooks";

/// The plain Prometheus rule file that promtool reads and the PrometheusRule embeds.
pub const RULES_FILE: &str = "deploy/rules/gethrelay.rules.yaml";
/// promtool unit tests, one file per rule group: `<group>_test.yaml`.
pub const RULE_TESTS_DIR: &str = "deploy/rules/tests";
pub const RUNBOOKS_DIR: &str = "docs/runbooks";
pub const ALERTMANAGER_FILE: &str = "deploy/alertmanager/alertmanager.yaml";
pub const KUSTOMIZE_DIR: &str = "deploy/kustomize";
pub const VALUES_FILE: &str = "deploy/kube-prometheus-stack/values.yaml";
pub const DASHBOARDS_DIR: &str = "deploy/dashboards";

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    crate::workspace_root()
}

pub fn read(relative: &str) -> Result<String> {
    let path = root().join(relative);
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn parse_yaml(text: &str, what: &str) -> Result<Value> {
    serde_norway::from_str(text).with_context(|| format!("{what}: not valid YAML"))
}

pub fn read_yaml(relative: &str) -> Result<Value> {
    parse_yaml(&read(relative)?, relative)
}

/// Every document of a multi-document YAML stream (empty documents skipped).
pub fn parse_yaml_documents(text: &str, what: &str) -> Result<Vec<Value>> {
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let value = serde::Deserialize::deserialize(document)
            .with_context(|| format!("{what}: not valid YAML"))?;
        if !matches!(value, Value::Null) {
            documents.push(value);
        }
    }
    Ok(documents)
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|value| !value.is_empty())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Whether `program` can run; without it a check skips with a printed reason, or panics under CI.
pub fn tool(program: &str, check: &str) -> bool {
    if on_path(program) {
        return true;
    }
    if in_ci() {
        panic!("{check}: {program} not found on PATH, and CI is set (`cargo xtask test` installs it or says where to get it)");
    }
    println!("skipped: {check}: {program} not found on PATH (CI unset)");
    false
}

/// A file of `../shared/reference` (beside the repository), or a printed skip / a CI panic.
pub fn reference(relative: &str, check: &str) -> Option<PathBuf> {
    let path = root().join("../shared/reference").join(relative);
    if path.is_file() {
        return Some(path);
    }
    if in_ci() {
        panic!(
            "{check}: reference file {} not found, and CI is set",
            path.display()
        );
    }
    println!(
        "skipped: {check}: reference file {} not found (CI unset)",
        path.display()
    );
    None
}

/// Runs a command in the workspace root and returns its stdout; fails with its output otherwise.
pub fn run(mut command: Command) -> Result<String> {
    command.current_dir(root());
    let shown = format!("{command:?}");
    let output = command
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "{shown} failed with {}:\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// Files under `relative` ending in `suffix`, sorted.
pub fn files(relative: &str, suffix: &str) -> Result<Vec<PathBuf>> {
    let dir = root().join(relative);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    Ok(found)
}

/// The path relative to the workspace root, for messages.
pub fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `value[key]` for a mapping, by string key.
pub fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.as_mapping().and_then(|mapping| mapping.get(key))
}

pub fn get_str<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    get(value, key).and_then(Value::as_str)
}

pub fn seq(value: Option<&Value>) -> &[Value] {
    value
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}
