use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::*;

fn servicemonitor() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/kustomize/base/servicemonitor.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn targets() -> Vec<Target> {
    vec![
        Target {
            namespace: "gethrelay".into(),
            pod: "gethrelay-only-onion-0".into(),
            mode: "only-onion".into(),
            gethrelay: "127.0.0.1:6060".parse().unwrap(),
            relaywatch: Some("127.0.0.1:9476".parse().unwrap()),
        },
        Target {
            namespace: "gethrelay".into(),
            pod: "gethrelay-clearnet-0".into(),
            mode: "clearnet".into(),
            gethrelay: "127.0.0.2:6060".parse().unwrap(),
            relaywatch: None,
        },
    ]
}

fn alertmanager() -> SocketAddr {
    "127.0.0.1:9093".parse().unwrap()
}

fn config(yaml: &str, time_scale: f64) -> anyhow::Result<(Json, Vec<String>)> {
    let (text, differences) = prometheus_config(
        yaml,
        &targets(),
        Path::new("/tmp/lab/rules.yaml"),
        alertmanager(),
        time_scale,
    )?;
    Ok((serde_norway::from_str(&text).unwrap(), differences))
}

fn job<'c>(config: &'c Json, name: &str) -> &'c Json {
    config["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|job| job["job_name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {config:#}"))
}

#[test]
fn real_servicemonitor_gives_both_jobs() {
    let (config, differences) = config(&servicemonitor(), 20.0).unwrap();
    assert_eq!(config["scrape_configs"].as_array().unwrap().len(), 2);
    assert_eq!(config["global"]["evaluation_interval"], "1s500ms");
    assert_eq!(config["rule_files"][0], "/tmp/lab/rules.yaml");
    assert_eq!(
        config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0],
        "127.0.0.1:9093"
    );

    let gethrelay = job(&config, "gethrelay");
    assert_eq!(gethrelay["metrics_path"], "/debug/metrics/prometheus");
    // 15s / 20 is below the 1 s floor; the 10 s timeout follows it down.
    assert_eq!(gethrelay["scrape_interval"], "1s");
    assert_eq!(gethrelay["scrape_timeout"], "1s");
    assert_eq!(gethrelay["sample_limit"], 2000);
    let drop = &gethrelay["metric_relabel_configs"][0];
    assert_eq!(drop["source_labels"][0], "__name__");
    assert_eq!(drop["action"], "drop");
    assert!(drop["regex"].as_str().unwrap().contains("p2p_handle"));
    let statics = gethrelay["static_configs"].as_array().unwrap();
    assert_eq!(statics.len(), 2);
    assert_eq!(statics[0]["targets"][0], "127.0.0.1:6060");
    assert_eq!(statics[0]["labels"]["namespace"], "gethrelay");
    assert_eq!(statics[0]["labels"]["pod"], "gethrelay-only-onion-0");
    assert_eq!(statics[0]["labels"]["mode"], "only-onion");

    let relaywatch = job(&config, "relaywatch");
    assert_eq!(relaywatch["metrics_path"], "/metrics");
    assert!(relaywatch.get("metric_relabel_configs").is_none());
    // The clearnet pod has no sidecar in this lab, so only one target.
    let statics = relaywatch["static_configs"].as_array().unwrap();
    assert_eq!(statics.len(), 1);
    assert_eq!(statics[0]["targets"][0], "127.0.0.1:9476");
    assert_eq!(statics[0]["labels"]["mode"], "only-onion");

    let differences = differences.join("\n");
    assert!(differences.contains("static labels"), "{differences}");
    assert!(
        differences.contains("evaluation_interval is 1s500ms"),
        "{differences}"
    );
}

#[test]
fn time_scale_one_keeps_production_timing() {
    let (config, differences) = config(&servicemonitor(), 1.0).unwrap();
    let gethrelay = job(&config, "gethrelay");
    assert_eq!(gethrelay["scrape_interval"], "15s");
    assert_eq!(gethrelay["scrape_timeout"], "10s");
    assert_eq!(config["global"]["evaluation_interval"], "30s");
    assert!(
        !differences
            .iter()
            .any(|line| line.contains("scrape_interval")),
        "{differences:?}"
    );
}

#[test]
fn moderate_scale_keeps_timeout_below_interval() {
    let (config, _) = config(&servicemonitor(), 3.0).unwrap();
    let gethrelay = job(&config, "gethrelay");
    assert_eq!(gethrelay["scrape_interval"], "5s");
    assert_eq!(gethrelay["scrape_timeout"], "3s333ms");
}

fn error(yaml: &str) -> String {
    format!("{:#}", config(yaml, 20.0).unwrap_err())
}

#[test]
fn hostile_servicemonitors_are_clear_errors() {
    let real = servicemonitor();
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "kind"),
        ("{{{".into(), "not valid YAML"),
        ("kind: Deployment".into(), "expected ServiceMonitor"),
        ("kind: ServiceMonitor".into(), "no `spec:`"),
        (
            "kind: ServiceMonitor\nspec: {}".into(),
            "endpoints is missing or empty",
        ),
        (
            "kind: ServiceMonitor\nspec: {endpoints: []}".into(),
            "endpoints is missing or empty",
        ),
        (
            real.replace("port: relaywatch", "port: tor-metrics"),
            "port `tor-metrics` is unknown",
        ),
        (
            real.replace("interval: 15s", "interval: 15 seconds"),
            "not a Prometheus duration",
        ),
        (real.replace("interval: 15s", "interval: 0s"), "is zero"),
        (
            real.replace("scrapeTimeout: 10s", "scrapeTimeout: soon"),
            "scrapeTimeout",
        ),
        (
            real.replace("sampleLimit: 2000", "sampleLimit: lots"),
            "not a whole number",
        ),
        (
            real.replace("replacement: gethrelay", "replacement_: gethrelay"),
            "replacement_",
        ),
        (
            real.replace(
                "        - targetLabel: job\n          replacement: relaywatch\n",
                "",
            ),
            "targetLabel: job",
        ),
        (
            real.replace(
                "__meta_kubernetes_pod_name]",
                "__meta_kubernetes_pod_node_name]",
            ),
            "no value for",
        ),
        (
            real.replace("action: drop", "action: drop\n          extra: 1"),
            "not a RelabelConfig field",
        ),
        (
            real.replace(
                "      path: /metrics",
                "      path: /metrics\n      bearerTokenFile: /x",
            ),
            "bearerTokenFile",
        ),
        (
            real.replace("  sampleLimit: 2000", "  jobLabel: app"),
            "spec.jobLabel",
        ),
        (
            real.replace("replacement: relaywatch", "replacement: gethrelay"),
            "unique job names",
        ),
    ];
    for (yaml, expected) in cases {
        let message = error(&yaml);
        assert!(
            message.contains(expected),
            "expected `{expected}` in: {message}"
        );
    }
}

#[test]
fn a_bad_time_scale_is_an_error() {
    let message = format!("{:#}", config(&servicemonitor(), 0.0).unwrap_err());
    assert!(message.contains("time scale"), "{message}");
}
