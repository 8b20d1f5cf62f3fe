//! The lab's copy of the bundle's pods and alert thresholds (`crates/lab/src/pod.rs`) against the
//! bundle itself, so that the lab keeps running relays and sidecars as the bundle configures them.

use std::collections::{BTreeMap, BTreeSet};

use lab::pod::{role_of, symbolic, Role};
use lab::relays::Mode;
use serde_json::Value as Json;

use crate::deploy_checks::kustomize::{of_kind, strings};
use crate::deploy_checks::rules::Rule;

/// The lab's copy of what a pod runs (`crates/lab/src/pod.rs`) against the rendered StatefulSets:
/// gethrelay's arguments, the exporter's arguments and environment, per mode, as sets.
///
/// Values the lab fills per relay (`lab::pod::Role`) are compared as placeholders: in a pod they
/// are the pod's own addresses (`--tor-proxy=127.0.0.1:9050`, `--pprof.addr=0.0.0.0`,
/// `--relay-admin-url=http://127.0.0.1:8546`, `--listen=0.0.0.0:9476`, the control port
/// `127.0.0.1:9051` and cookie path, the mode from the pod label), which ten lab relays on one
/// machine cannot share, so the lab substitutes each relay's own IP and its tor's ports and cookie.
/// Within one pod, every use of a role must have the same value (gethrelay and the exporter
/// use the same SOCKS port). Everything else (bare flags, ports, `RELAYWATCH_ENFORCE`) must be
/// equal.
pub fn check_lab_pods(objects: &[Json]) -> Vec<String> {
    let mut problems = Vec::new();
    for mode in Mode::ALL {
        let set_name = format!("gethrelay-{}", mode.as_str());
        let Some(set) =
            of_kind(objects, "StatefulSet").find(|set| set["metadata"]["name"] == *set_name)
        else {
            problems.push(format!("StatefulSet {set_name} missing"));
            continue;
        };
        let container = |name: &str| -> Json {
            set["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"] == name)
                .cloned()
                .unwrap_or_default()
        };
        let mut role_values: BTreeMap<Role, BTreeSet<String>> = BTreeMap::new();
        let mut normalize = |name: &str, value: Option<String>| -> String {
            match (value, role_of(mode, name)) {
                (Some(value), Some(role)) => {
                    role_values.entry(role).or_default().insert(value);
                    format!("{name}={}", role.placeholder())
                }
                (Some(value), None) => format!("{name}={value}"),
                (None, _) => name.to_string(),
            }
        };
        let mut args = |container: &Json| -> Vec<String> {
            let mut args: Vec<String> = strings(&container["args"])
                .into_iter()
                .map(|arg| match arg.split_once('=') {
                    Some((name, value)) if name.starts_with("--") => {
                        normalize(name, Some(value.to_string()))
                    }
                    _ => normalize(arg, None),
                })
                .collect();
            args.sort();
            args
        };
        let gethrelay = args(&container("gethrelay"));
        let exporter = container("relaywatch");
        let exporter_args = args(&exporter);
        let mut exporter_env: Vec<String> = exporter["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|env| {
                let name = env["name"].as_str().unwrap_or_default();
                let value = match env["value"].as_str() {
                    Some(value) => value.to_string(),
                    // The mode comes from the pod's label (the downward API); whether the label
                    // is right is check_contract's.
                    None if env["valueFrom"]["fieldRef"]["fieldPath"]
                        == "metadata.labels['relaywatch.io/mode']" =>
                    {
                        mode.as_str().to_string()
                    }
                    None => format!("valueFrom {}", env["valueFrom"]),
                };
                normalize(name, Some(value))
            })
            .collect();
        exporter_env.sort();
        for (role, values) in role_values {
            if values.len() > 1 {
                problems.push(format!(
                    "{set_name}: one pod address ({}) with different values {values:?}",
                    role.placeholder()
                ));
            }
        }
        let lab = symbolic(mode);
        for (what, bundle, mut table) in [
            ("gethrelay argument", gethrelay, lab.gethrelay),
            ("relaywatch argument", exporter_args, lab.exporter_args),
            ("relaywatch variable", exporter_env, lab.exporter_env),
        ] {
            table.sort();
            for item in bundle.iter().filter(|item| !table.contains(item)) {
                problems.push(format!("{set_name}: the bundle passes {what} {item}, the lab's table (crates/lab/src/pod.rs) does not"));
            }
            for item in table.iter().filter(|item| !bundle.contains(item)) {
                problems.push(format!("{set_name}: the lab's table (crates/lab/src/pod.rs) passes {what} {item}, the bundle does not"));
            }
        }
    }
    problems
}

/// `gethrelay:low_peer_threshold` per mode, from `label_replace(vector(N), "mode", "<mode>", …)`.
pub fn low_peer_thresholds(rules: &[Rule]) -> BTreeMap<String, u64> {
    let pattern =
        regex::Regex::new(r#"label_replace\(\s*vector\((\d+)\)\s*,\s*"mode"\s*,\s*"([a-z-]+)""#)
            .expect("a valid regex");
    rules
        .iter()
        .filter(|rule| rule.record.as_deref() == Some("gethrelay:low_peer_threshold"))
        .flat_map(|rule| pattern.captures_iter(&rule.expr).collect::<Vec<_>>())
        .filter_map(|captures| Some((captures[2].to_string(), captures[1].parse().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_labs_pods_are_the_bundles() {
        if !crate::deploy_checks::tool("kubectl", "lab pods against the bundle") {
            return;
        }
        let objects = crate::deploy_checks::kustomize::render().unwrap();
        let problems = check_lab_pods(&objects);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn drift_between_the_lab_and_the_bundle_is_reported() {
        if !crate::deploy_checks::tool("kubectl", "lab pods against the bundle") {
            return;
        }
        let mut objects = crate::deploy_checks::kustomize::render().unwrap();
        for set in objects.iter_mut().filter(|o| o["kind"] == "StatefulSet") {
            let mode = set["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let containers = set["spec"]["template"]["spec"]["containers"]
                .as_array_mut()
                .unwrap();
            let gethrelay = containers[0]["args"].as_array_mut().unwrap();
            match mode.as_str() {
                "gethrelay-only-onion" => gethrelay.retain(|arg| arg != "--nodiscover"),
                "gethrelay-clearnet" => gethrelay.push("--maxpeers=50".into()),
                _ => {
                    // The exporter judges Tor by a SOCKS port gethrelay does not use.
                    let exporter = containers[2]["args"].as_array_mut().unwrap();
                    for arg in exporter.iter_mut() {
                        if arg.as_str().is_some_and(|a| a.starts_with("--tor-proxy=")) {
                            *arg = "--tor-proxy=127.0.0.1:9150".into();
                        }
                    }
                }
            }
        }
        let problems = check_lab_pods(&objects);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(
            problems[0]
                .contains("gethrelay-clearnet: the bundle passes gethrelay argument --maxpeers=50"),
            "{problems:#?}"
        );
        assert!(
            problems[1].contains("gethrelay-prefer-tor: one pod address (<tor-socks>)"),
            "{problems:#?}"
        );
        assert!(problems[2].contains("gethrelay-only-onion: the lab's table (crates/lab/src/pod.rs) passes gethrelay argument --nodiscover"), "{problems:#?}");
    }

    #[test]
    fn the_labs_thresholds_are_the_rules() {
        let rules = crate::deploy_checks::rules::rules().unwrap();
        let thresholds = low_peer_thresholds(&rules);
        let lab: BTreeMap<String, u64> = lab::relays::Mode::ALL
            .iter()
            .map(|mode| {
                (
                    mode.as_str().to_string(),
                    lab::pod::low_peer_threshold(*mode) as u64,
                )
            })
            .collect();
        assert_eq!(
            thresholds,
            lab,
            "gethrelay:low_peer_threshold in {} against lab::pod::low_peer_threshold",
            crate::deploy_checks::RULES_FILE
        );
    }
}
