//! Tests of the pure pod transform (pod.rs).
use super::*;

fn rendered() -> Vec<Json> {
    let torrc = "SocksPort 127.0.0.1:9050\nDataDirectory /var/lib/tor\nHiddenServiceDir /var/lib/tor/hidden_service\n";
    let set = json!({
        "kind": "StatefulSet",
        "metadata": {"name": "gethrelay-clearnet", "namespace": "gethrelay"},
        "spec": {
            "template": {
                "metadata": {"labels": {"relaywatch.io/mode": "clearnet"}},
                "spec": {
                    "securityContext": {"fsGroup": 10002, "fsGroupChangePolicy": "OnRootMismatch"},
                    "containers": [
                        {"name": "gethrelay", "image": "ghcr.io/x/gethrelay:latest",
                         "ports": [{"name": "metrics", "containerPort": 6060}],
                         "readinessProbe": {"httpGet": {"path": "/debug/metrics/prometheus", "port": "metrics"}}},
                        {"name": "tor", "image": "tor:latest",
                         "volumeMounts": [{"name": "tor-config", "mountPath": "/etc/tor"},
                                          {"name": "tor-data", "mountPath": "/var/lib/tor"}]},
                        {"name": "relaywatch", "image": "ghcr.io/x/relaywatch:latest",
                         "livenessProbe": {"tcpSocket": {"port": 9476}},
                         "volumeMounts": [{"name": "tor-data", "mountPath": "/var/lib/tor", "readOnly": true}]}
                    ],
                    "volumes": [{"name": "tor-config", "configMap": {"name": "gethrelay-tor"}}]
                }
            },
            "volumeClaimTemplates": [{"metadata": {"name": "tor-data"}}]
        }
    });
    let config_map = json!({"kind": "ConfigMap", "metadata": {"name": "gethrelay-tor", "namespace": "gethrelay"}, "data": {"torrc": torrc}});
    vec![config_map, set]
}

fn options(fix: bool) -> Options {
    Options {
        images: [
            ("gethrelay", "l/labrelay:1"),
            ("tor", "l/tor:1"),
            ("relaywatch", "l/rw:1"),
        ]
        .map(|(c, i)| (c.to_owned(), i.to_owned()))
        .into(),
        network: "net".into(),
        owner: 42,
        temporary_datadir_fix: fix,
    }
}

fn documents(plan: &Plan) -> Vec<Json> {
    plan.yaml
        .split("---\n")
        .filter(|doc| !doc.trim().is_empty())
        .map(|doc| serde_norway::from_str(doc).unwrap())
        .collect()
}

#[test]
fn the_template_becomes_a_pod_with_local_images_volumes_and_no_public_tor() {
    let plan = plan(&rendered(), "clearnet", &options(false)).unwrap();
    assert_eq!(plan.pod_name, "rehearsal-clearnet-42");
    assert_eq!(owner_of(&plan.pod_name), Some(42));
    assert_eq!(
        plan.claims,
        [(
            "rehearsal-clearnet-42-tor-data".to_owned(),
            "/var/lib/tor".to_owned()
        )]
    );
    assert!(plan.datadir_at_volume_root);
    assert_eq!(plan.fs_group, Some((10002, true)));
    let docs = documents(&plan);
    let torrc = docs[0]["data"]["torrc"].as_str().unwrap();
    assert!(torrc.ends_with("DisableNetwork 1\n"), "{torrc}");
    assert!(torrc.contains("DataDirectory /var/lib/tor\n"));
    let pod = &docs[1];
    assert_eq!(pod["kind"], "Pod");
    let images: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["image"].as_str().unwrap())
        .collect();
    assert_eq!(images, ["l/labrelay:1", "l/tor:1", "l/rw:1"]);
    assert!(pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ports"].is_null()
            && c["readinessProbe"].is_null()
            && c["livenessProbe"].is_null()));
    assert_eq!(
        pod["spec"]["securityContext"]["supplementalGroups"],
        json!([10002])
    );
    assert_eq!(
        pod["spec"]["volumes"][1],
        json!({"name": "tor-data", "persistentVolumeClaim": {"claimName": "rehearsal-clearnet-42-tor-data"}})
    );
    assert_eq!(
        plan.probes,
        [
            Probe {
                container: "gethrelay".into(),
                kind: "readinessProbe".into(),
                port: 6060,
                http_path: Some("/debug/metrics/prometheus".into())
            },
            Probe {
                container: "relaywatch".into(),
                kind: "livenessProbe".into(),
                port: 9476,
                http_path: None
            },
        ]
    );
}

#[test]
fn the_temporary_fix_moves_the_data_directory_and_says_so() {
    let plan = plan(&rendered(), "clearnet", &options(true)).unwrap();
    let torrc = documents(&plan)[0]["data"]["torrc"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        torrc.contains("DataDirectory /var/lib/tor/data\n"),
        "{torrc}"
    );
    assert!(plan.differences.iter().any(|d| d.starts_with("TEMPORARY")));
    assert_eq!(
        plan.hidden_service_dir.as_deref(),
        Some("/var/lib/tor/hidden_service")
    );
}

#[test]
fn a_container_without_a_local_image_or_an_unknown_mode_is_an_error() {
    let mut missing = options(false);
    missing.images.remove("tor");
    let error = plan(&rendered(), "clearnet", &missing)
        .unwrap_err()
        .to_string();
    assert!(error.contains("container tor"), "{error}");
    let error = plan(&rendered(), "only-onion", &options(false))
        .unwrap_err()
        .to_string();
    assert!(error.contains("relaywatch.io/mode=only-onion"), "{error}");
}

#[test]
fn a_bundle_with_a_data_subdirectory_needs_no_temporary_fix() {
    let mut objects = rendered();
    let torrc = objects[0]["data"]["torrc"].as_str().unwrap().replace(
        "DataDirectory /var/lib/tor\n",
        "DataDirectory /var/lib/tor/data\n",
    );
    objects[0]["data"]["torrc"] = json!(torrc);
    let plan = plan(&objects, "clearnet", &options(true)).unwrap();
    assert!(!plan.datadir_at_volume_root);
    assert!(!plan.differences.iter().any(|d| d.starts_with("TEMPORARY")));
    let played = documents(&plan)[0]["data"]["torrc"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        played.contains("DataDirectory /var/lib/tor/data\n"),
        "{played}"
    );
}
