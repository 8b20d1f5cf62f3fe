//! The rendered bundle's contract: fleet shape, gethrelay flags per mode, the exporter's wiring,
//! the scrape labels the rules rely on, selectors for kube-prometheus-stack, NetworkPolicies,
//! placement (PodDisruptionBudgets, anti-affinity, default storage, static peers);
//! and the alert rules' copy of the fleet shape against the kustomization that deploys it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;
use serde_norway::Value;

use super::kustomize::{name, of_kind, strings};
use super::rules::Rule;
use super::{get, get_str, seq};

/// Test-only: the lab crate is a dev-dependency of xtask.
#[cfg(test)]
mod lab_pods;
pub mod placement;

/// The recording rule that tells the alerts how many relays each mode should have.
pub const EXPECTED_PODS: &str = "gethrelay:expected_pods";
/// Where the fleet is sized (`namespace:` and `replicas:`).
pub const KUSTOMIZATION_FILE: &str = "deploy/kustomize/kustomization.yaml";

/// The fleet's shape (contract): StatefulSet name → replicas.
pub const FLEET: &[(&str, &str, u64)] = &[
    ("gethrelay-clearnet", "clearnet", 3),
    ("gethrelay-prefer-tor", "prefer-tor", 4),
    ("gethrelay-only-onion", "only-onion", 3),
];

/// The bundle's contract: fleet shape, flags per mode, scrape labels, selectors, policies.
pub fn check_contract(objects: &[Json]) -> Vec<String> {
    let mut problems = placement::check_placement(objects);
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
    problems.extend(check_scrape(objects));
    problems.extend(check_only_onion_ingress(objects));
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

/// The ServiceMonitor scrapes the metrics Service's named ports and gives every series the
/// labels the rules select on: job (gethrelay, relaywatch), mode, pod and namespace.
pub fn check_scrape(objects: &[Json]) -> Vec<String> {
    let mut problems = Vec::new();
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
    problems
}

/// Ingress allowed to only-onion pods: only the metrics ports, only from Prometheus pods in the
/// monitoring namespace.
pub fn check_only_onion_ingress(objects: &[Json]) -> Vec<String> {
    let mut problems = Vec::new();
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
            // Prometheus pods only (namespace AND pod selector in one peer): port 6060 also
            // serves /debug/pprof, which no other pod of the monitoring namespace may reach.
            let from_monitoring = rule["from"].as_array().is_some_and(|from| {
                !from.is_empty()
                    && from.iter().all(|peer| {
                        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                            == "monitoring"
                            && peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                                == "prometheus"
                    })
            });
            if ports.is_empty()
                || ports
                    .iter()
                    .any(|p| p != "\"metrics\"" && p != "\"relaywatch\"")
                || !from_monitoring
            {
                problems.push(format!(
                    "{}: lets traffic other than Prometheus' scrapes into only-onion pods (a `from` peer needs namespaceSelector monitoring and podSelector app.kubernetes.io/name: prometheus)",
                    name(policy)
                ));
            }
        }
    }
    problems
}
/// The rules' copy of the fleet's shape (`gethrelay:expected_pods`, one `vector(<count>)` per
/// mode, labelled with mode and namespace) against `namespace:` and `replicas:` of the
/// kustomization, so the alerts expect exactly the relays the bundle deploys. The copy exists
/// because the cluster's own replicas are what an accidental scale-down changes.
pub fn check_expected_pods(rules: &[Rule], kustomization: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let namespace = get_str(kustomization, "namespace").unwrap_or_default();
    let deployed: BTreeMap<String, u64> = seq(get(kustomization, "replicas"))
        .iter()
        .filter_map(|entry| {
            let mode = get_str(entry, "name")?.strip_prefix("gethrelay-")?;
            Some((mode.to_string(), get(entry, "count")?.as_u64()?))
        })
        .collect();
    let mut expected = BTreeMap::new();
    for rule in rules
        .iter()
        .filter(|rule| rule.record.as_deref() == Some(EXPECTED_PODS))
    {
        let mode = rule.labels.get("mode").cloned().unwrap_or_default();
        let count = rule
            .expr
            .trim()
            .strip_prefix("vector(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|number| number.trim().parse::<u64>().ok());
        let Some(count) = count else {
            problems.push(format!(
                "{EXPECTED_PODS}{{mode={mode:?}}}: expr must be vector(<count>), not `{}`",
                rule.expr.trim()
            ));
            continue;
        };
        if rule.labels.get("namespace").map(String::as_str) != Some(namespace) {
            problems.push(format!(
                "{EXPECTED_PODS}{{mode={mode:?}}}: label namespace must be {namespace:?}, the kustomization's"
            ));
        }
        if expected.insert(mode.clone(), count).is_some() {
            problems.push(format!("{EXPECTED_PODS}{{mode={mode:?}}}: defined twice"));
        }
    }
    if expected != deployed {
        problems.push(format!(
            "{EXPECTED_PODS} in {} says {expected:?}, {KUSTOMIZATION_FILE} deploys {deployed:?}: change both together",
            super::RULES_FILE
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kustomization() -> Value {
        super::super::read_yaml(KUSTOMIZATION_FILE).unwrap()
    }

    #[test]
    fn expected_pods_match_the_kustomization() {
        let rules = super::super::rules::rules().unwrap();
        let problems = check_expected_pods(&rules, &kustomization());
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn a_copy_that_differs_from_the_kustomization_is_reported() {
        let rules = super::super::rules::rules().unwrap();
        let mut scaled = rules.clone();
        for rule in &mut scaled {
            if rule.record.as_deref() == Some(EXPECTED_PODS)
                && rule.labels.get("mode").map(String::as_str) == Some("prefer-tor")
            {
                rule.expr = "vector(3)".to_string();
                rule.labels.insert("namespace".into(), "elsewhere".into());
            }
        }
        let problems = check_expected_pods(&scaled, &kustomization());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("namespace must be \"gethrelay\""),
            "{problems:?}"
        );
        assert!(problems[1].contains("\"prefer-tor\": 3"), "{problems:?}");
        let none: Vec<Rule> = rules
            .into_iter()
            .filter(|rule| rule.record.as_deref() != Some(EXPECTED_PODS))
            .collect();
        assert_eq!(check_expected_pods(&none, &kustomization()).len(), 1);
    }
}
