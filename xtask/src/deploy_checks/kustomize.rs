//! `kubectl kustomize deploy/kustomize`: it renders, the CRs fit their CRD schemas, and the core
//! kinds pass our own structural checks (there is no cluster or kubeconform here).
//! The submodules check what every rendered pod must be (versioned images, Pod Security
//! "restricted"), the torrc on a fresh volume, and the monitoring Component over an existing fleet.

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::Result;
use serde_json::Value as Json;

use super::KUSTOMIZE_DIR;

pub mod images;
pub mod overlay;
pub mod pod_security;
#[cfg(test)]
mod tor_volume;

/// CRDs in `../shared/reference/k8s-schemas`, by kind.
pub const CRDS: &[(&str, &str)] = &[
    (
        "ServiceMonitor",
        "k8s-schemas/monitoring.coreos.com_servicemonitors.yaml",
    ),
    (
        "PrometheusRule",
        "k8s-schemas/monitoring.coreos.com_prometheusrules.yaml",
    ),
];

/// Renders the bundle and returns its objects as JSON.
pub fn render() -> Result<Vec<Json>> {
    let mut kubectl = Command::new("kubectl");
    kubectl.args(["kustomize", KUSTOMIZE_DIR]);
    let text = super::run(kubectl)?;
    let documents = super::parse_yaml_documents(&text, "kubectl kustomize output")?;
    Ok(documents
        .into_iter()
        .map(|document| serde_json::to_value(document).unwrap_or_default())
        .collect())
}

pub(super) fn name(object: &Json) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

pub(super) fn of_kind<'a>(
    objects: &'a [Json],
    kind: &'a str,
) -> impl Iterator<Item = &'a Json> + 'a {
    objects.iter().filter(move |object| object["kind"] == kind)
}

pub(super) fn strings(value: &Json) -> Vec<&str> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .collect()
}

fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// Structural checks of the core kinds, in place of the API server's validation.
pub fn check_core(objects: &[Json]) -> Vec<String> {
    let mut problems = Vec::new();
    let known: BTreeSet<(&str, &str)> = [
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("v1", "Service"),
        ("apps/v1", "StatefulSet"),
        ("policy/v1", "PodDisruptionBudget"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
    ]
    .into();
    let mut seen = BTreeSet::new();
    for object in objects {
        let api = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let shown = name(object);
        if !known.contains(&(api, kind)) {
            problems.push(format!("{shown}: unexpected apiVersion/kind {api}/{kind}"));
        }
        if !seen.insert(shown.clone()) {
            problems.push(format!("{shown}: defined twice"));
        }
        let object_name = object["metadata"]["name"].as_str().unwrap_or_default();
        if !is_dns_label(object_name) {
            problems.push(format!("{shown}: name is not a DNS-1123 label"));
        }
        if kind != "Namespace" && object["metadata"]["namespace"] != "gethrelay" {
            problems.push(format!("{shown}: not in namespace gethrelay"));
        }
    }
    for set in of_kind(objects, "StatefulSet") {
        let shown = name(set);
        let service = set["spec"]["serviceName"].as_str().unwrap_or_default();
        let governing = of_kind(objects, "Service").find(|svc| svc["metadata"]["name"] == service);
        match governing {
            Some(svc) if svc["spec"]["clusterIP"] == "None" => {}
            _ => problems.push(format!(
                "{shown}: serviceName {service:?} is not a headless Service here"
            )),
        }
        let pod = &set["spec"]["template"]["spec"];
        for container in containers(pod) {
            let place = format!("{shown} container {}", container["name"]);
            if container["image"]
                .as_str()
                .is_none_or(|image| !image.contains('/'))
            {
                problems.push(format!(
                    "{place}: image not set to a registry path (kustomize images:)"
                ));
            }
            for key in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    if container["resources"][key][resource].is_null() {
                        problems.push(format!("{place}: resources.{key}.{resource} missing"));
                    }
                }
            }
            let security = &container["securityContext"];
            if security["allowPrivilegeEscalation"] != false
                || security["readOnlyRootFilesystem"] != true
                || strings(&security["capabilities"]["drop"]) != ["ALL"]
            {
                problems.push(format!("{place}: must drop ALL capabilities, forbid privilege escalation and use a read-only root fs"));
            }
        }
        if pod["securityContext"]["runAsNonRoot"] != true {
            problems.push(format!(
                "{shown}: pod securityContext.runAsNonRoot must be true"
            ));
        }
    }
    problems.extend(check_references(objects));
    problems
}

/// The workloads' pod templates (StatefulSets and Deployments), with the workload's name.
pub(super) fn workloads(objects: &[Json]) -> impl Iterator<Item = &Json> {
    objects
        .iter()
        .filter(|object| matches!(object["kind"].as_str(), Some("StatefulSet" | "Deployment")))
}

/// A pod spec's init and app containers.
pub(super) fn containers(pod: &Json) -> impl Iterator<Item = &Json> {
    ["initContainers", "containers"]
        .into_iter()
        .flat_map(move |key| pod[key].as_array().into_iter().flatten())
}

/// What refers to what across the rendered objects, for any workload: selectors match their
/// templates, every volume mount, label read by the downward API, ConfigMap, probe port and
/// Service target port exists.
pub fn check_references(objects: &[Json]) -> Vec<String> {
    let mut problems = Vec::new();
    let config_maps: BTreeSet<&str> = of_kind(objects, "ConfigMap")
        .filter_map(|cm| cm["metadata"]["name"].as_str())
        .collect();
    // Containers of every pod template, by the template's labels.
    let mut pods: Vec<(String, &Json, &Json)> = Vec::new();
    for workload in workloads(objects) {
        let shown = name(workload);
        let spec = &workload["spec"];
        let template_labels = &spec["template"]["metadata"]["labels"];
        for (key, value) in spec["selector"]["matchLabels"]
            .as_object()
            .into_iter()
            .flatten()
        {
            if template_labels[key] != *value {
                problems.push(format!(
                    "{shown}: selector {key}={value} does not match the template"
                ));
            }
        }
        let pod = &spec["template"]["spec"];
        let mut volumes: BTreeSet<&str> = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|volume| volume["name"].as_str())
            .collect();
        for claim in spec["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
        {
            volumes.extend(claim["metadata"]["name"].as_str());
        }
        for volume in pod["volumes"].as_array().into_iter().flatten() {
            if let Some(config_map) = volume["configMap"]["name"].as_str() {
                if !config_maps.contains(config_map) {
                    problems.push(format!("{shown}: ConfigMap {config_map} not in the bundle"));
                }
            }
        }
        for container in containers(pod) {
            let place = format!("{shown} container {}", container["name"]);
            let ports: BTreeSet<&str> = container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|port| port["name"].as_str())
                .collect();
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                let probe_port = &container[probe]["httpGet"]["port"];
                let probe_port = if probe_port.is_null() {
                    &container[probe]["tcpSocket"]["port"]
                } else {
                    probe_port
                };
                if let Some(port) = probe_port.as_str() {
                    if !ports.contains(port) {
                        problems.push(format!(
                            "{place}: {probe} port {port} is not a named port of the container"
                        ));
                    }
                }
            }
            for mount in container["volumeMounts"].as_array().into_iter().flatten() {
                let volume = mount["name"].as_str().unwrap_or_default();
                if !volumes.contains(volume) {
                    problems.push(format!("{place}: volumeMount {volume} has no volume"));
                }
            }
            for env in container["env"].as_array().into_iter().flatten() {
                if let Some(path) = env["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                    if let Some(label) = path
                        .strip_prefix("metadata.labels['")
                        .and_then(|rest| rest.strip_suffix("']"))
                    {
                        if template_labels[label].is_null() {
                            problems.push(format!(
                                "{place}: env {} reads label {label}, which the pod lacks",
                                env["name"]
                            ));
                        }
                    }
                }
                let key_ref = &env["valueFrom"]["configMapKeyRef"];
                if let Some(config_map) = key_ref["name"].as_str() {
                    let key = key_ref["key"].as_str().unwrap_or_default();
                    let has_key = of_kind(objects, "ConfigMap").any(|cm| {
                        cm["metadata"]["name"] == config_map && !cm["data"][key].is_null()
                    });
                    if !has_key {
                        problems.push(format!(
                            "{place}: env {} reads key {key} of ConfigMap {config_map}, which the bundle does not have",
                            env["name"]
                        ));
                    }
                }
            }
        }
        pods.push((shown, template_labels, pod));
    }
    for service in of_kind(objects, "Service") {
        let shown = name(service);
        let selector = service["spec"]["selector"].as_object();
        let selected: Vec<&(String, &Json, &Json)> = pods
            .iter()
            .filter(|(_, labels, _)| {
                selector.is_some_and(|selector| {
                    selector.iter().all(|(key, value)| labels[key] == *value)
                })
            })
            .collect();
        if selected.is_empty() {
            problems.push(format!("{shown}: selects no pod template"));
        }
        for port in service["spec"]["ports"].as_array().into_iter().flatten() {
            let port_name = port["name"].as_str().unwrap_or_default();
            if !is_dns_label(port_name) {
                problems.push(format!("{shown}: every port needs a name"));
            }
            if let Some(target) = port["targetPort"].as_str() {
                for (pod_name, _, pod) in &selected {
                    let has = containers(pod).any(|container| {
                        container["ports"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|p| p["name"] == target)
                    });
                    if !has {
                        problems.push(format!(
                            "{shown}: targetPort {target} is not a container port of {pod_name}"
                        ));
                    }
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::super::schema;
    use super::*;

    #[test]
    fn kustomize_renders_valid_objects() {
        if !super::super::tool("kubectl", "kubectl kustomize deploy/kustomize") {
            return;
        }
        let started = std::time::Instant::now();
        let objects = render().unwrap();
        println!("kubectl kustomize took {:?}", started.elapsed());
        let mut problems = check_core(&objects);
        problems.extend(super::super::fleet::check_contract(&objects));
        problems.extend(images::check_images(&objects));
        problems.extend(images::check_release_version(&objects));
        problems.extend(pod_security::check_restricted(&objects));
        for (kind, crd) in CRDS {
            let Some(path) = super::super::reference(crd, "CRD schema check") else {
                continue;
            };
            let schema = schema::crd_schema(&std::fs::read_to_string(path).unwrap(), "v1").unwrap();
            let mut checked = 0;
            for object in of_kind(&objects, kind) {
                checked += 1;
                for error in schema::validate(&schema, object) {
                    problems.push(format!("{} vs {crd}: {error}", name(object)));
                }
            }
            assert!(checked > 0, "no {kind} in the bundle");
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        // The PrometheusRule in the cluster is exactly the file promtool tests.
        let rule = of_kind(&objects, "PrometheusRule").next().unwrap();
        let plain: Json =
            serde_json::to_value(super::super::read_yaml(super::super::RULES_FILE).unwrap())
                .unwrap();
        assert_eq!(rule["spec"], plain);
    }
}
