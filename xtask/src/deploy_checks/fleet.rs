//! The rendered bundle's contract: fleet shape, gethrelay flags per mode, the exporter's wiring,
//! the scrape labels the rules rely on, selectors for kube-prometheus-stack, NetworkPolicies.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use super::kustomize::{name, of_kind, strings};

/// The fleet's shape (contract): StatefulSet name → replicas.
pub const FLEET: &[(&str, &str, u64)] = &[
    ("gethrelay-clearnet", "clearnet", 3),
    ("gethrelay-prefer-tor", "prefer-tor", 4),
    ("gethrelay-only-onion", "only-onion", 3),
];

/// The bundle's contract: fleet shape, flags per mode, scrape labels, selectors, policies.
pub fn check_contract(objects: &[Json]) -> Vec<String> {
    let mut problems = Vec::new();
    for (set_name, mode, replicas) in FLEET {
        let Some(set) =
            of_kind(objects, "StatefulSet").find(|set| set["metadata"]["name"] == *set_name)
        else {
            problems.push(format!("StatefulSet {set_name} missing"));
            continue;
        };
        if set["spec"]["replicas"] != *replicas {
            problems.push(format!(
                "{set_name}: replicas {}, want {replicas}",
                set["spec"]["replicas"]
            ));
        }
        let template = &set["spec"]["template"];
        if template["metadata"]["labels"]["relaywatch.io/mode"] != *mode {
            problems.push(format!(
                "{set_name}: pod label relaywatch.io/mode must be {mode}"
            ));
        }
        let containers: BTreeMap<&str, &Json> = template["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|container| Some((container["name"].as_str()?, container)))
            .collect();
        let args = containers
            .get("gethrelay")
            .map(|c| strings(&c["args"]))
            .unwrap_or_default();
        let mut want = vec![
            "--pprof",
            "--pprof.addr=0.0.0.0",
            "--pprof.port=6060",
            "--admin",
            "--tor-proxy=127.0.0.1:9050",
        ];
        let mut forbidden = vec![];
        match *mode {
            "clearnet" => forbidden.extend(["--prefer-tor", "--only-onion"]),
            "prefer-tor" => {
                want.push("--prefer-tor");
                forbidden.push("--only-onion");
            }
            _ => want.extend(["--only-onion", "--prefer-tor", "--nodiscover"]),
        }
        for flag in want {
            if !args.contains(&flag) {
                problems.push(format!("{set_name}: gethrelay flag {flag} missing"));
            }
        }
        for flag in forbidden {
            if args.contains(&flag) {
                problems.push(format!(
                    "{set_name}: gethrelay flag {flag} does not belong to mode {mode}"
                ));
            }
        }
        let env = |name: &str| -> Json {
            containers
                .get("relaywatch")
                .and_then(|c| {
                    c["env"]
                        .as_array()?
                        .iter()
                        .find(|e| e["name"] == name)
                        .cloned()
                })
                .unwrap_or_default()
        };
        if env("RELAYWATCH_MODE")["valueFrom"]["fieldRef"]["fieldPath"]
            != "metadata.labels['relaywatch.io/mode']"
        {
            problems.push(format!(
                "{set_name}: RELAYWATCH_MODE must come from the pod label (downward API)"
            ));
        }
        let enforce = if *mode == "only-onion" {
            "true"
        } else {
            "false"
        };
        if env("RELAYWATCH_ENFORCE")["value"] != enforce {
            problems.push(format!("{set_name}: RELAYWATCH_ENFORCE must be {enforce}"));
        }
        if !containers.contains_key("tor") {
            problems.push(format!("{set_name}: Tor sidecar missing"));
        }
    }
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        for object in of_kind(objects, kind) {
            if object["metadata"]["labels"][super::codegen::RELEASE_LABEL.0]
                != super::codegen::RELEASE_LABEL.1
            {
                problems.push(format!(
                    "{}: label release: kube-prometheus-stack missing",
                    name(object)
                ));
            }
        }
    }
    let service_ports: BTreeSet<&str> = of_kind(objects, "Service")
        .filter(|svc| svc["metadata"]["labels"]["relaywatch.io/metrics"] == "true")
        .flat_map(|svc| svc["spec"]["ports"].as_array().into_iter().flatten())
        .filter_map(|port| port["name"].as_str())
        .collect();
    let mut jobs = BTreeSet::new();
    for monitor in of_kind(objects, "ServiceMonitor") {
        for endpoint in monitor["spec"]["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let port = endpoint["port"].as_str().unwrap_or_default();
            if !service_ports.contains(port) {
                problems.push(format!(
                    "{}: endpoint port {port} is not a named port of the metrics Service",
                    name(monitor)
                ));
            }
            let relabelings = endpoint["relabelings"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let target = |label: &str| {
                relabelings
                    .iter()
                    .find(|r| r["targetLabel"] == label)
                    .cloned()
            };
            for (label, source) in [
                ("mode", "__meta_kubernetes_pod_label_relaywatch_io_mode"),
                ("pod", "__meta_kubernetes_pod_name"),
                ("namespace", "__meta_kubernetes_namespace"),
            ] {
                if target(label).is_none_or(|r| strings(&r["sourceLabels"]) != [source]) {
                    problems.push(format!(
                        "{}: endpoint {port} must set {label} from {source}",
                        name(monitor)
                    ));
                }
            }
            jobs.extend(target("job").and_then(|r| r["replacement"].as_str().map(str::to_string)));
        }
        if monitor["spec"]["sampleLimit"].as_u64().is_none() {
            problems.push(format!("{}: sampleLimit missing", name(monitor)));
        }
    }
    if jobs != BTreeSet::from(["gethrelay".to_string(), "relaywatch".to_string()]) {
        problems.push(format!("ServiceMonitor jobs {jobs:?}, want gethrelay and relaywatch (the rules select on them)"));
    }
    // Ingress allowed to only-onion pods: only metrics ports, only from the monitoring namespace.
    for policy in of_kind(objects, "NetworkPolicy") {
        let selector = &policy["spec"]["podSelector"];
        let selects_only_onion = selector["matchLabels"]["relaywatch.io/mode"]
            .as_str()
            .is_none_or(|m| m == "only-onion")
            && selector["matchExpressions"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|e| strings(&e["values"]).contains(&"only-onion") == (e["operator"] == "In"));
        if !selects_only_onion {
            continue;
        }
        for rule in policy["spec"]["ingress"].as_array().into_iter().flatten() {
            let ports: Vec<String> = rule["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| p["port"].to_string())
                .collect();
            let from_monitoring = rule["from"].as_array().is_some_and(|from| {
                !from.is_empty()
                    && from.iter().all(|peer| {
                        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                            == "monitoring"
                    })
            });
            if ports.is_empty()
                || ports
                    .iter()
                    .any(|p| p != "\"metrics\"" && p != "\"relaywatch\"")
                || !from_monitoring
            {
                problems.push(format!(
                    "{}: lets traffic other than monitoring scrapes into only-onion pods",
                    name(policy)
                ));
            }
        }
    }
    let dashboards = of_kind(objects, "ConfigMap")
        .filter(|cm| cm["metadata"]["labels"]["grafana_dashboard"] == "1")
        .count();
    if dashboards
        != super::files(super::DASHBOARDS_DIR, ".json")
            .map(|f| f.len())
            .unwrap_or(0)
    {
        problems.push(format!("{dashboards} dashboard ConfigMaps labelled grafana_dashboard=1, want one per deploy/dashboards/*.json"));
    }
    problems
}
