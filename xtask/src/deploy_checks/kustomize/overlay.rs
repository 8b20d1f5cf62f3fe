//! The monitoring Component (`deploy/kustomize/components/monitoring`) over a fleet an operator
//! already runs: rendered over gethrelay's own former manifests in
//! `../shared/reference/gethrelay-k8s` (10 Deployments, `mode=default|prefer-tor|only-onion`),
//! read in place by a temporary kustomization under `target/`, and checked like the fleet.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value as Json;

use super::{check_references, containers, name, of_kind, pod_security, strings, workloads};
use crate::deploy_checks::fleet;

pub const COMPONENT_DIR: &str = "deploy/kustomize/components/monitoring";
/// gethrelay's former manifests, in `../shared/reference`.
pub const FORMER_FLEET: &[&str] = &[
    "gethrelay-k8s/namespace.yaml",
    "gethrelay-k8s/deployments.yaml",
    "gethrelay-k8s/services.yaml",
];

/// relaywatch's mode for a workload's `mode` label; gethrelay's manifests call clearnet `default`.
pub fn relaywatch_mode(theirs: &str) -> Option<&'static str> {
    match theirs {
        "default" | "clearnet" => Some("clearnet"),
        "prefer-tor" => Some("prefer-tor"),
        "only-onion" => Some("only-onion"),
        _ => None,
    }
}

/// gethrelay flags the Component or a fleet may give as `GETHRELAY_<FLAG>` variables.
const GETHRELAY_FLAGS: &[&str] = &[
    "pprof",
    "pprof.addr",
    "pprof.port",
    "admin",
    "admin.addr",
    "admin.port",
    "tor-proxy",
    "prefer-tor",
    "only-onion",
    "nodiscover",
    "staticnodes",
    "port",
];

/// The variable gethrelay reads a flag from (`flags.AutoEnvVars(app.Flags, "GETHRELAY")`).
pub fn env_name(flag: &str) -> String {
    format!("GETHRELAY_{}", flag.replace(['.', '-'], "_").to_uppercase())
}

/// gethrelay's flags as the process sees them: its arguments plus `GETHRELAY_*` variables with a
/// literal value (`true` is a bare flag, `false` none). An unknown variable is an error.
pub fn gethrelay_flags(container: &Json) -> Result<Vec<String>, String> {
    let mut flags: Vec<String> = strings(&container["args"])
        .into_iter()
        .map(String::from)
        .collect();
    for env in container["env"].as_array().into_iter().flatten() {
        let variable = env["name"].as_str().unwrap_or_default();
        if !variable.starts_with("GETHRELAY_") {
            continue;
        }
        let flag = GETHRELAY_FLAGS
            .iter()
            .find(|flag| env_name(flag) == variable)
            .ok_or_else(|| {
                format!("{variable} is not a gethrelay flag variable this check knows")
            })?;
        match env["value"].as_str() {
            Some("true") => flags.push(format!("--{flag}")),
            Some("false") => {}
            Some(value) => flags.push(format!("--{flag}={value}")),
            None => {} // from a ConfigMap (static peers): not a monitoring flag
        }
    }
    Ok(flags)
}

/// Renders the Component over `files` (absolute paths, read in place).
pub fn render_over(files: &[PathBuf]) -> Result<(Vec<Json>, PathBuf)> {
    // One directory per call: tests render concurrently within one process.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = crate::deploy_checks::root()
        .join("target/overlay-check")
        .join(format!("{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Three levels below the workspace root; kustomize wants a Component by relative path.
    let mut text = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for file in files {
        text.push_str(&format!("  - {}\n", file.display()));
    }
    text.push_str(&format!("components:\n  - ../../../{COMPONENT_DIR}\n"));
    std::fs::write(dir.join("kustomization.yaml"), text)?;
    let mut kubectl = Command::new("kubectl");
    // Files outside the kustomization's directory: the reference files stay where they are.
    kubectl
        .args(["kustomize", "--load-restrictor", "LoadRestrictionsNone"])
        .arg(&dir);
    let rendered = crate::deploy_checks::run(kubectl)?;
    let manifest = dir.join("rendered.yaml");
    std::fs::write(&manifest, &rendered)?;
    let documents =
        crate::deploy_checks::parse_yaml_documents(&rendered, "kubectl kustomize output")?;
    let objects = documents
        .into_iter()
        .map(|document| serde_json::to_value(document).unwrap_or_default())
        .collect();
    Ok((objects, manifest))
}

/// Prometheus `replace` relabelings (the only action our ServiceMonitors use) on `labels`.
pub fn relabel(labels: &mut BTreeMap<String, String>, rules: &[Json]) -> Result<(), String> {
    for rule in rules {
        if !rule["action"].is_null() && rule["action"] != "replace" {
            return Err(format!("relabel action {} not simulated", rule["action"]));
        }
        let source: Vec<&str> = strings(&rule["sourceLabels"])
            .into_iter()
            .map(|label| labels.get(label).map(String::as_str).unwrap_or_default())
            .collect();
        let value = source.join(rule["separator"].as_str().unwrap_or(";"));
        let pattern = rule["regex"].as_str().unwrap_or("(.*)");
        let regex = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| e.to_string())?;
        let Some(captures) = regex.captures(&value) else {
            continue;
        };
        let mut result = String::new();
        captures.expand(rule["replacement"].as_str().unwrap_or("$1"), &mut result);
        let target = rule["targetLabel"].as_str().unwrap_or_default().to_string();
        if result.is_empty() {
            labels.remove(&target);
        } else {
            labels.insert(target, result);
        }
    }
    Ok(())
}

/// The labels Prometheus's Kubernetes discovery gives a pod target.
fn pod_target(namespace: &str, pod: &str, pod_labels: &Json) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (
            "__meta_kubernetes_namespace".to_string(),
            namespace.to_string(),
        ),
        ("__meta_kubernetes_pod_name".to_string(), pod.to_string()),
    ]);
    for (key, value) in pod_labels.as_object().into_iter().flatten() {
        let key: String = key
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        labels.insert(
            format!("__meta_kubernetes_pod_label_{key}"),
            value.as_str().unwrap_or_default().to_string(),
        );
    }
    labels
}

/// A list of named items sorted by name (other values as they are), for order-free comparison.
fn by_name(value: &Json) -> Json {
    match value.as_array() {
        Some(items) if items.iter().all(|item| item["name"].is_string()) => {
            let mut items = items.clone();
            items.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            Json::Array(items)
        }
        _ => value.clone(),
    }
}

/// The fleet's relaywatch container of `mode`, as `deploy/kustomize` renders it.
fn fleet_exporter<'a>(fleet_objects: &'a [Json], mode: &str) -> Option<&'a Json> {
    of_kind(fleet_objects, "StatefulSet")
        .find(|set| set["metadata"]["name"] == format!("gethrelay-{mode}"))
        .and_then(|set| {
            containers(&set["spec"]["template"]["spec"]).find(|c| c["name"] == "relaywatch")
        })
}

/// The Component's result (`output`) against its input and the complete fleet's rendering.
pub fn check_overlay(input: &[Json], output: &[Json], fleet_objects: &[Json]) -> Vec<String> {
    let mut problems = check_references(output);
    problems.extend(fleet::check_scrape(output));
    problems.extend(fleet::check_only_onion_ingress(output));
    let monitors: Vec<&Json> = of_kind(output, "ServiceMonitor").collect();
    let fleet_monitor = of_kind(fleet_objects, "ServiceMonitor").next();
    for monitor in &monitors {
        if fleet_monitor.is_some_and(|f| f["spec"]["endpoints"] != monitor["spec"]["endpoints"]) {
            problems.push(format!("{}: endpoints differ from the fleet's ServiceMonitor (deploy/kustomize/base/servicemonitor.yaml)", name(monitor)));
        }
    }
    let relays: Vec<&Json> = workloads(input)
        .filter(|w| w["metadata"]["labels"]["app"] == "gethrelay")
        .collect();
    if relays.is_empty() {
        problems.push("no workload labelled app=gethrelay in the input".to_string());
    }
    for before in relays {
        let shown = name(before);
        let Some(after) = workloads(output).find(|w| name(w) == shown) else {
            problems.push(format!("{shown}: missing after the Component"));
            continue;
        };
        problems.extend(check_relay(
            &shown,
            before,
            after,
            output,
            fleet_objects,
            &monitors,
        ));
    }
    problems
}

fn check_relay(
    shown: &str,
    before: &Json,
    after: &Json,
    output: &[Json],
    fleet_objects: &[Json],
    monitors: &[&Json],
) -> Vec<String> {
    let mut problems = Vec::new();
    for key in ["selector", "replicas"] {
        if before["spec"][key] != after["spec"][key] {
            problems.push(format!(
                "{shown}: spec.{key} changed; the Component must keep it"
            ));
        }
    }
    let theirs = before["metadata"]["labels"]["mode"]
        .as_str()
        .unwrap_or_default();
    let Some(mode) = relaywatch_mode(theirs) else {
        problems.push(format!(
            "{shown}: mode label {theirs:?} is none of default, prefer-tor, only-onion"
        ));
        return problems;
    };
    let labels = &after["spec"]["template"]["metadata"]["labels"];
    if labels["relaywatch.io/mode"] != mode {
        problems.push(format!(
            "{shown}: mode={theirs} must become the pod label relaywatch.io/mode={mode}, got {}",
            labels["relaywatch.io/mode"]
        ));
    }
    let pod = &after["spec"]["template"]["spec"];
    let find = |spec: &Json, wanted: &str| containers(spec).find(|c| c["name"] == wanted).cloned();
    for original in containers(&before["spec"]["template"]["spec"]) {
        let wanted = original["name"].as_str().unwrap_or_default();
        let Some(now) = find(pod, wanted) else {
            problems.push(format!("{shown}: container {wanted} gone"));
            continue;
        };
        for key in ["image", "args", "command", "volumeMounts", "resources"] {
            if original[key] != now[key] {
                problems.push(format!("{shown} container {wanted}: {key} changed"));
            }
        }
    }
    match find(pod, "gethrelay").map(|c| gethrelay_flags(&c)) {
        Some(Ok(flags)) => {
            let mut want = vec![
                "--pprof",
                "--pprof.addr=0.0.0.0",
                "--pprof.port=6060",
                "--admin",
                "--tor-proxy=127.0.0.1:9050",
            ];
            match mode {
                "prefer-tor" => want.push("--prefer-tor"),
                "only-onion" => want.push("--only-onion"),
                _ => {}
            }
            for flag in want {
                if !flags.iter().any(|f| f == flag) {
                    problems.push(format!("{shown}: gethrelay runs without {flag}"));
                }
            }
            if mode == "clearnet"
                && flags
                    .iter()
                    .any(|f| f == "--only-onion" || f == "--prefer-tor")
            {
                problems.push(format!(
                    "{shown}: a {theirs} relay runs with a Tor mode flag"
                ));
            }
        }
        Some(Err(error)) => problems.push(format!("{shown}: {error}")),
        None => problems.push(format!("{shown}: no container named gethrelay")),
    }
    match (find(pod, "relaywatch"), fleet_exporter(fleet_objects, mode)) {
        (Some(exporter), Some(fleet_exporter)) => {
            for key in [
                "image",
                "args",
                "env",
                "ports",
                "livenessProbe",
                "readinessProbe",
                "resources",
                "volumeMounts",
            ] {
                // Variables in any order: strategic merge appends what a later patch adds.
                if by_name(&exporter[key]) != by_name(&fleet_exporter[key]) {
                    problems.push(format!(
                        "{shown}: relaywatch {key} differs from the fleet's {mode} exporter: {} vs {}",
                        exporter[key], fleet_exporter[key]
                    ));
                }
            }
            let place = format!("{shown} container relaywatch");
            problems.extend(pod_security::check_container(
                &place,
                &exporter,
                &Json::Null,
            ));
            problems.extend(super::images::check_image(
                &place,
                exporter["image"].as_str().unwrap_or_default(),
            ));
        }
        (None, _) => problems.push(format!("{shown}: no relaywatch sidecar")),
        (_, None) => problems.push(format!("the fleet has no {mode} exporter to compare with")),
    }
    // What Prometheus would label this relay's series with.
    let namespace = after["metadata"]["namespace"].as_str().unwrap_or_default();
    let pod_name = format!(
        "{}-5d8f9c7b6-x2x4q",
        after["metadata"]["name"].as_str().unwrap_or_default()
    );
    let selected_by_metrics = of_kind(output, "Service").any(|svc| {
        svc["metadata"]["labels"]["relaywatch.io/metrics"] == "true"
            && svc["spec"]["selector"]
                .as_object()
                .is_some_and(|s| s.iter().all(|(k, v)| labels[k] == *v))
    });
    if !selected_by_metrics {
        problems.push(format!("{shown}: no metrics Service selects its pods"));
    }
    for monitor in monitors {
        for endpoint in monitor["spec"]["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let mut target = pod_target(namespace, &pod_name, labels);
            if let Err(error) = relabel(
                &mut target,
                endpoint["relabelings"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
            ) {
                problems.push(format!("{}: {error}", name(monitor)));
                continue;
            }
            for (label, want) in [
                ("mode", mode),
                ("namespace", namespace),
                ("pod", pod_name.as_str()),
            ] {
                if target.get(label).map(String::as_str) != Some(want) {
                    problems.push(format!(
                        "{shown}: endpoint {} labels its series {label}={:?}, want {want:?}",
                        endpoint["port"],
                        target.get(label)
                    ));
                }
            }
        }
    }
    problems
}

/// The reference files, or `None` after a printed skip (a panic under CI).
pub fn former_fleet() -> Option<Vec<PathBuf>> {
    FORMER_FLEET
        .iter()
        .map(|file| {
            crate::deploy_checks::reference(
                file,
                "monitoring Component over gethrelay's former manifests",
            )
        })
        .collect()
}

/// The objects of the former manifests, as kubectl reads them.
pub fn read_objects(files: &[PathBuf]) -> Result<Vec<Json>> {
    let mut objects = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        for document in
            crate::deploy_checks::parse_yaml_documents(&text, &file.display().to_string())?
        {
            objects.push(serde_json::to_value(document)?);
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests;
