//! The real-Prometheus check: a Prometheus loads the rules, scrapes lab relays and their
//! relaywatch exporters with the ServiceMonitor's target labels and metric relabelings, and
//! answers every dashboard query.
//!
//! Slow (a private Tor network, ~30 s): runs where `CI` or `RUN_LAB_TESTS` is set, otherwise it
//! prints why it skipped.

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use lab::exporters::Exporter;
    use lab::lab::{Lab, LabSpec};
    use serde_json::{json, Value as Json};

    use super::super::{dashboards, promql, read, read_yaml, root, RULES_FILE};

    /// Metrics whose series only appear once something happens (labelled counters whose label
    /// values are not pre-initialised): their queries may legitimately return nothing.
    const EVENT_ONLY: &[&str] = &[
        "relaywatch_leak_removals_total",
        "p2p_dials_tor_errors_total",
        "tor_circuits_failed_total",
        "tor_orconn_failed_total",
    ];

    fn percent_encode(text: &str) -> String {
        text.bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (byte as char).to_string()
                }
                _ => format!("%{byte:02X}"),
            })
            .collect()
    }

    fn query(prometheus: SocketAddr, expr: &str) -> anyhow::Result<Vec<Json>> {
        let text = lab::rpc::get_text(
            prometheus,
            &format!("/api/v1/query?query={}", percent_encode(expr)),
        )?;
        let reply: Json = serde_json::from_str(&text)?;
        anyhow::ensure!(reply["status"] == "success", "{expr}: {reply}");
        Ok(reply["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The ServiceMonitor endpoint's metricRelabelings as Prometheus metric_relabel_configs.
    fn metric_relabel_configs(port: &str) -> Json {
        let monitor = read_yaml("deploy/kustomize/base/servicemonitor.yaml").unwrap();
        let monitor: Json = serde_json::to_value(monitor).unwrap();
        let endpoint = monitor["spec"]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|endpoint| endpoint["port"] == port)
            .unwrap()
            .clone();
        let configs: Vec<Json> = endpoint["metricRelabelings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|relabel| json!({"source_labels": relabel["sourceLabels"], "regex": relabel["regex"], "action": relabel["action"]}))
            .collect();
        Json::Array(configs)
    }

    fn free_port() -> u16 {
        lab::tornet::free_port().unwrap()
    }

    #[test]
    fn prometheus_loads_rules_scrapes_the_lab_and_answers_every_dashboard_query() {
        let wanted = ["CI", "RUN_LAB_TESTS"]
            .iter()
            .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()));
        if !wanted {
            println!("skipped: real-Prometheus check: RUN_LAB_TESTS unset (and CI unset)");
            return;
        }
        if !super::super::tool("prometheus", "real-Prometheus check")
            || !lab::tor_available_or_skip("real-Prometheus check")
        {
            return;
        }
        let started = Instant::now();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "labrelay", "-p", "relaywatch"]);
        super::super::run(build).unwrap();
        println!("built labrelay and relaywatch in {:?}", started.elapsed());
        let relaywatch = lab::workspace_binary("relaywatch").unwrap();

        // One relay per mode; no public nodes: this check needs targets, not a peered fleet.
        let spec = LabSpec {
            public: Some(lab::topology::PublicNodes::NONE),
            ..LabSpec::reduced()
        };
        let lab = Lab::start(spec).unwrap();
        println!("lab up in {:?}", started.elapsed());
        let dir = lab.dir().to_path_buf();
        let exporters: Vec<Exporter> = lab
            .relays
            .iter()
            // Exporter::start configures each exporter as the bundle does (lab::pod), wired to
            // its pod's relay and tor (control port and cookie).
            .map(|relay| Exporter::start(&relaywatch, relay, &[], &dir).unwrap())
            .collect();

        // The scrape config the ServiceMonitor produces, with static targets instead of pods.
        let target = |address: String, relay: &lab::relays::Relay| json!({"targets": [address], "labels": {"mode": relay.spec.mode.as_str(), "pod": relay.name(), "namespace": "gethrelay"}});
        let gethrelay_targets: Vec<Json> = lab
            .relays
            .iter()
            .map(|relay| target(relay.spec.pprof_addr().to_string(), relay))
            .collect();
        let relaywatch_targets: Vec<Json> = lab
            .relays
            .iter()
            .zip(&exporters)
            .map(|(relay, exporter)| target(exporter.listen.to_string(), relay))
            .collect();
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [root().join(RULES_FILE)],
            "scrape_configs": [
                {"job_name": "gethrelay", "metrics_path": "/debug/metrics/prometheus", "static_configs": gethrelay_targets,
                 "metric_relabel_configs": metric_relabel_configs("metrics")},
                {"job_name": "relaywatch", "metrics_path": "/metrics", "static_configs": relaywatch_targets,
                 "metric_relabel_configs": metric_relabel_configs("relaywatch")},
            ],
        });
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, serde_norway::to_string(&config).unwrap()).unwrap();
        let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address={address}"));
        let _prometheus =
            lab::process::spawn("prometheus", command, &dir.join("prometheus.log")).unwrap();

        // Every target up, and the rules evaluated at least once.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = query(address, "up == 1").unwrap_or_default();
            // rate() and increase() need two samples per series in their window.
            let rated = query(address, "rate(p2p_dials[1m]) or rate(p2p_ingress_tor[1m])")
                .unwrap_or_default();
            let rules = lab::rpc::get_text(address, "/api/v1/rules").unwrap_or_default();
            if up.len() == 6
                && rated.len() == 6
                && rules.contains("lastEvaluation")
                && !rules.contains("0001-01-01")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "targets not all up within 60 s: {up:?}; log {}",
                dir.join("prometheus.log").display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        println!(
            "Prometheus scraping every target after {:?}",
            started.elapsed()
        );
        let rules: Json =
            serde_json::from_str(&lab::rpc::get_text(address, "/api/v1/rules").unwrap()).unwrap();
        let mut problems = Vec::new();
        let mut n_rules = 0;
        for group in rules["data"]["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                n_rules += 1;
                if rule["health"] != "ok" {
                    problems.push(format!(
                        "rule {}: health {} {}",
                        rule["name"], rule["health"], rule["lastError"]
                    ));
                }
            }
        }
        assert!(n_rules > 10, "Prometheus loaded only {n_rules} rules");

        // Every dashboard query, with the variables as Grafana would substitute them.
        let catalog = read(promql::CATALOG_FILE).unwrap();
        let catalog_names = promql::catalog_names(&catalog);
        let values = BTreeMap::from([("namespace", "gethrelay"), ("mode", ".*"), ("pod", ".*")]);
        let mut empty_allowed = Vec::new();
        let mut n_queries = 0;
        for (stem, dashboard) in dashboards::dashboards().unwrap() {
            let mode = dashboard["templating"]["list"][1]["query"]
                .as_str()
                .filter(|_| stem != "overview")
                .unwrap_or(".*");
            let mut values = values.clone();
            values.insert("mode", mode);
            for (title, expr) in dashboards::queries(&dashboard) {
                n_queries += 1;
                let expr = dashboards::substitute(&expr, &values);
                let names = promql::metric_names(&expr);
                let always_present = names.iter().all(|name| {
                    (catalog_names.contains(name)
                        || promql::GETHRELAY.contains(&name.as_str())
                        || name == "up")
                        && !EVENT_ONLY.contains(&name.as_str())
                });
                match query(address, &expr) {
                    Ok(result) if result.is_empty() && always_present => {
                        problems.push(format!("{stem}.json {title:?}: no data from `{expr}`"))
                    }
                    Ok(result) if result.is_empty() => {
                        empty_allowed.push(format!("{stem}.json {title:?} ({names:?})"))
                    }
                    Ok(_) => {}
                    Err(error) => problems.push(format!("{stem}.json {title:?}: {error:#}")),
                }
            }
        }
        println!(
            "{n_queries} dashboard queries in {:?}; empty, which event-only counters may be:",
            started.elapsed()
        );
        for line in &empty_allowed {
            println!("  {line}");
        }
        // The always-zero series are gone, gethrelay's live ones are there.
        let names: Vec<String> = query(address, r#"count by (__name__) ({job="gethrelay"})"#)
            .unwrap()
            .iter()
            .filter_map(|series| series["metric"]["__name__"].as_str().map(str::to_string))
            .collect();
        for dead in [
            "p2p_ingress",
            "p2p_egress",
            "rpc_requests",
            "p2p_dials_error_useless",
        ] {
            if names.iter().any(|name| name == dead) {
                problems.push(format!(
                    "{dead} should have been dropped by metricRelabelings"
                ));
            }
        }
        for live in promql::GETHRELAY {
            if !names.iter().any(|name| name == live) {
                problems.push(format!("{live} missing from the gethrelay scrape"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        println!("real-Prometheus check took {:?}", started.elapsed());
    }
}
