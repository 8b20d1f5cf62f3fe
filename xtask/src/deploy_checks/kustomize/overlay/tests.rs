use super::*;
use crate::deploy_checks::{k8s_schemas, schema, tool};

#[test]
fn relabelings_follow_prometheus() {
    let mut labels = BTreeMap::from([(
        "__meta_kubernetes_pod_label_mode".to_string(),
        "default".to_string(),
    )]);
    let rules: Vec<Json> = serde_json::from_str(
        r#"[{"targetLabel": "job", "replacement": "gethrelay"},
            {"sourceLabels": ["__meta_kubernetes_pod_label_mode"], "targetLabel": "mode"},
            {"sourceLabels": ["mode"], "regex": "def", "targetLabel": "mode", "replacement": "x"},
            {"sourceLabels": ["mode"], "regex": "default", "targetLabel": "mode", "replacement": "clearnet"},
            {"sourceLabels": ["absent"], "targetLabel": "gone"}]"#,
    )
    .unwrap();
    relabel(&mut labels, &rules).unwrap();
    assert_eq!(labels["job"], "gethrelay");
    // Anchored: "def" does not match "default"; the empty result removes the label.
    assert_eq!(labels["mode"], "clearnet");
    assert!(!labels.contains_key("gone"));
    let drop: Vec<Json> = serde_json::from_str(r#"[{"action": "drop", "regex": "x"}]"#).unwrap();
    assert!(relabel(&mut labels, &drop).is_err());
}

#[test]
fn flags_come_from_arguments_and_gethrelay_variables() {
    assert_eq!(env_name("pprof.addr"), "GETHRELAY_PPROF_ADDR");
    assert_eq!(env_name("tor-proxy"), "GETHRELAY_TOR_PROXY");
    let container: Json = serde_json::from_str(
        r#"{"args": ["--port=30303"], "env": [
            {"name": "GETHRELAY_PPROF", "value": "true"},
            {"name": "GETHRELAY_NODISCOVER", "value": "false"},
            {"name": "GETHRELAY_PPROF_PORT", "value": "6060"},
            {"name": "OTHER", "value": "1"}]}"#,
    )
    .unwrap();
    assert_eq!(
        gethrelay_flags(&container).unwrap(),
        ["--port=30303", "--pprof", "--pprof.port=6060"]
    );
    let unknown: Json =
        serde_json::from_str(r#"{"env": [{"name": "GETHRELAY_METRICS", "value": "true"}]}"#)
            .unwrap();
    assert!(gethrelay_flags(&unknown)
        .unwrap_err()
        .contains("GETHRELAY_METRICS"));
}

/// The former manifests, the Component over them, the complete fleet, the rendered file.
struct Rendered {
    input: Vec<Json>,
    output: Vec<Json>,
    fleet_objects: Vec<Json>,
    manifest: PathBuf,
}

/// The Component over gethrelay's former fleet, with the fleet rendered to compare against.
fn rendered() -> Option<Rendered> {
    if !tool(
        "kubectl",
        "monitoring Component over gethrelay's former manifests",
    ) {
        return None;
    }
    let files = former_fleet()?;
    let started = std::time::Instant::now();
    let (output, manifest) = render_over(&files).unwrap();
    println!(
        "kubectl kustomize of the Component over {} files took {:?}",
        files.len(),
        started.elapsed()
    );
    let input = read_objects(&files).unwrap();
    let fleet_objects = super::super::render().unwrap();
    Some(Rendered {
        input,
        output,
        fleet_objects,
        manifest,
    })
}

#[test]
fn the_component_monitors_gethrelays_former_fleet() {
    let Some(Rendered {
        input,
        output,
        fleet_objects,
        manifest,
    }) = rendered()
    else {
        return;
    };
    let mut problems = check_overlay(&input, &output, &fleet_objects);
    for (kind, crd) in super::super::CRDS {
        let Some(path) = crate::deploy_checks::reference(crd, "CRD schema check") else {
            continue;
        };
        let schema = schema::crd_schema(&std::fs::read_to_string(path).unwrap(), "v1").unwrap();
        for object in of_kind(&output, kind) {
            for error in schema::validate(&schema, object) {
                problems.push(format!("{} vs {crd}: {error}", name(object)));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let mut modes: BTreeMap<String, usize> = BTreeMap::new();
    for workload in workloads(&output) {
        let labels = &workload["spec"]["template"]["metadata"]["labels"];
        *modes
            .entry(
                labels["relaywatch.io/mode"]
                    .as_str()
                    .unwrap_or("none")
                    .to_string(),
            )
            .or_default() += 1;
    }
    assert_eq!(
        modes,
        BTreeMap::from([
            ("clearnet".into(), 3),
            ("only-onion".into(), 3),
            ("prefer-tor".into(), 4)
        ])
    );
    assert_eq!(of_kind(&output, "ServiceMonitor").count(), 1);
    assert_eq!(of_kind(&output, "NetworkPolicy").count(), 2);

    if let Some(program) = k8s_schemas::validator_or_skip() {
        let passed = k8s_schemas::validate(&program, &manifest).unwrap();
        for kind in [
            "deployment",
            "service",
            "networkpolicy",
            "namespace",
            "configmap",
        ] {
            assert!(
                passed.iter().any(|k| k == kind),
                "no {kind} validated: {passed:?}"
            );
        }
    }
}

#[test]
fn a_component_that_loses_the_mode_or_the_metrics_is_reported() {
    let Some(Rendered {
        input,
        mut output,
        fleet_objects,
        ..
    }) = rendered()
    else {
        return;
    };
    for object in output.iter_mut() {
        match (object["kind"].as_str(), object["metadata"]["name"].as_str()) {
            (Some("Deployment"), Some("gethrelay-default-2")) => {
                object["spec"]["template"]["metadata"]["labels"]
                    .as_object_mut()
                    .unwrap()
                    .remove("relaywatch.io/mode");
            }
            (Some("Deployment"), Some("gethrelay-prefer-tor-1")) => {
                for container in object["spec"]["template"]["spec"]["containers"]
                    .as_array_mut()
                    .unwrap()
                {
                    if container["name"] == "gethrelay" {
                        container["env"]
                            .as_array_mut()
                            .unwrap()
                            .retain(|e| e["name"] != "GETHRELAY_PPROF");
                    }
                }
            }
            (Some("ServiceMonitor"), _) => {
                // Their own label, unmapped: default relays would be mode="default".
                object["spec"]["endpoints"][1]["relabelings"][1]["sourceLabels"] =
                    serde_json::json!(["__meta_kubernetes_pod_label_mode"]);
            }
            _ => {}
        }
    }
    let problems = check_overlay(&input, &output, &fleet_objects);
    let shown = problems.join("\n");
    for expected in [
        "gethrelay-default-2: mode=default must become the pod label relaywatch.io/mode=clearnet",
        "Deployment/gethrelay-default-2 container \"relaywatch\": env \"RELAYWATCH_MODE\" reads label relaywatch.io/mode, which the pod lacks",
        "Deployment/gethrelay-prefer-tor-1: gethrelay runs without --pprof",
        "endpoints differ from the fleet's ServiceMonitor",
        "endpoint relaywatch must set mode from __meta_kubernetes_pod_label_relaywatch_io_mode",
        "Deployment/gethrelay-default-1: endpoint \"relaywatch\" labels its series mode=Some(\"default\"), want \"clearnet\"",
    ] {
        assert!(shown.contains(expected), "missing {expected:?} in:\n{shown}");
    }
}
