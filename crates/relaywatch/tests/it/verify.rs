//! `relaywatch verify` against a mini lab (one relay per mode, real private Tor network, a real
//! Prometheus and Alertmanager): all seven criteria pass, then an exporter is killed and
//! criterion 1 fails naming its pod. Plus the exit code of a bad configuration.
//!
//! The lab test is slow (~1 min): it runs where `CI` or `RUN_LAB_TESTS` is set, otherwise it
//! prints why it skipped. The Prometheus wiring is copied from xtask's `deploy_checks/live.rs`
//! (the sidecar's tests may not link xtask) until the lab starts its own Prometheus.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lab::exporters::{self, Exporter};
use lab::lab::{Lab, LabSpec};
use lab::relays::{Mode, Relay};
use serde_json::{json, Value as Json};

use crate::support::eventually;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `relaywatch verify` with every proxy variable pointing at the discard port: a client
/// that used one would fail every request, so a passing run also shows that none is used.
fn verify(config: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relaywatch"));
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        command.env(var, "http://127.0.0.1:9");
    }
    command
        .arg("verify")
        .arg("--config")
        .arg(config)
        .output()
        .expect("relaywatch runs")
}

#[test]
fn a_bad_configuration_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verify.yaml");
    std::fs::write(
        &path,
        "prometheus: http://127.0.0.1:9090\nalertmanager: http://127.0.0.1:9093\nrelays:\n  - {namespace: gethrelay, pod: p-0, mode: only-onion, admin: 'http://127.0.0.1:8545'}\n",
    )
    .unwrap();
    let output = verify(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("relays[0].admin") && stderr.contains("8546"),
        "{stderr}"
    );
    let output = verify(&dir.path().join("missing.yaml"));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
}

/// Prometheus refuses connections; Alertmanager and the relay's admin API accept and never
/// answer. Every criterion fails with a line naming what failed, within the timeouts.
#[test]
fn unreachable_and_hanging_sources_fail_every_criterion_without_a_panic() {
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging_address = hanging.local_addr().unwrap();
    // Accepted connections are kept open, unanswered, until the test binary exits.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hanging.incoming() {
            held.push(stream);
        }
    });
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_address = refused.local_addr().unwrap();
    drop(refused);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verify.yaml");
    std::fs::write(
        &path,
        format!("prometheus: http://{refused_address}\nalertmanager: http://{hanging_address}\nrelays:\n  - {{namespace: gethrelay, pod: gethrelay-only-onion-0, mode: only-onion, admin: 'http://{hanging_address}'}}\n"),
    )
    .unwrap();
    let started = Instant::now();
    let output = verify(&path);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!(
        "hostile sources, verify took {:?}:\n{stdout}",
        started.elapsed()
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|line| !line.starts_with(' '))
        .collect();
    assert_eq!(lines.len(), 7, "{stdout}");
    assert!(
        lines.iter().all(|line| line.starts_with("FAIL ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("gethrelay/gethrelay-only-onion-0: admin_peers could not be read"),
        "{stdout}"
    );
    assert!(
        stdout.contains("admin_peers failed: unreachable"),
        "{stdout}"
    );
    assert!(stdout.contains("Alertmanager unreachable"), "{stdout}");
    assert!(
        stdout.contains("65 queries failed: cannot reach"),
        "{stdout}"
    );
}

fn get(address: SocketAddr, path: &str) -> Option<Json> {
    serde_json::from_str(&lab::rpc::get_text(address, path).ok()?).ok()
}

/// Series of an instant query.
fn query(address: SocketAddr, expr: &str) -> Vec<Json> {
    let path = format!(
        "/api/v1/query?query={}",
        relaywatch::verify::client::percent_encode(expr)
    );
    get(address, &path)
        .and_then(|reply| reply["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

/// The ServiceMonitor endpoint's metricRelabelings as Prometheus metric_relabel_configs.
fn metric_relabel_configs(port: &str) -> Json {
    let text =
        std::fs::read_to_string(root().join("deploy/kustomize/base/servicemonitor.yaml")).unwrap();
    let monitor: Json = serde_norway::from_str(&text).unwrap();
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

/// Prometheus with the ServiceMonitor's scrape config (static targets instead of pods) and
/// the project's rules; Alertmanager with the bundle's configuration (Prometheus sends it
/// nothing: no notification may leave the machine).
fn start_monitoring(
    lab: &Lab,
    exporters: &[Exporter],
) -> (SocketAddr, SocketAddr, Vec<lab::process::Child>) {
    let dir = lab.dir();
    let target = |address: String, relay: &Relay| json!({"targets": [address], "labels": {"mode": relay.spec.mode.as_str(), "pod": relay.name(), "namespace": "gethrelay"}});
    let gethrelay: Vec<Json> = lab
        .relays
        .iter()
        .map(|relay| target(relay.spec.pprof_addr().to_string(), relay))
        .collect();
    let relaywatch: Vec<Json> = lab
        .relays
        .iter()
        .zip(exporters)
        .map(|(relay, exporter)| target(exporter.listen.to_string(), relay))
        .collect();
    let config = json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [root().join("deploy/rules/gethrelay.rules.yaml")],
        "scrape_configs": [
            {"job_name": "gethrelay", "metrics_path": "/debug/metrics/prometheus", "static_configs": gethrelay,
             "metric_relabel_configs": metric_relabel_configs("metrics")},
            {"job_name": "relaywatch", "metrics_path": "/metrics", "static_configs": relaywatch,
             "metric_relabel_configs": metric_relabel_configs("relaywatch")},
        ],
    });
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, serde_norway::to_string(&config).unwrap()).unwrap();
    let free = || lab::tornet::free_port().unwrap();
    let prometheus: SocketAddr = format!("127.0.0.1:{}", free()).parse().unwrap();
    let mut command = Command::new("prometheus");
    command
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prometheus-data").display()
        ))
        .arg(format!("--web.listen-address={prometheus}"));
    let prometheus_child =
        lab::process::spawn("prometheus", command, &dir.join("prometheus.log")).unwrap();
    let alertmanager: SocketAddr = format!("127.0.0.1:{}", free()).parse().unwrap();
    let mut command = Command::new("prometheus-alertmanager");
    command
        .arg(format!(
            "--config.file={}",
            root()
                .join("deploy/alertmanager/alertmanager.yaml")
                .display()
        ))
        .arg(format!(
            "--storage.path={}",
            dir.join("alertmanager-data").display()
        ))
        .arg(format!("--web.listen-address={alertmanager}"))
        // No gossip port: only loopback, and one Alertmanager needs no cluster.
        .arg("--cluster.listen-address=");
    let alertmanager_child =
        lab::process::spawn("alertmanager", command, &dir.join("alertmanager.log")).unwrap();
    (
        prometheus,
        alertmanager,
        vec![prometheus_child, alertmanager_child],
    )
}

fn write_config(lab: &Lab, prometheus: SocketAddr, alertmanager: SocketAddr) -> PathBuf {
    let mut yaml =
        format!("prometheus: http://{prometheus}\nalertmanager: http://{alertmanager}\nrelays:\n");
    for relay in &lab.relays {
        yaml.push_str(&format!(
            "  - namespace: gethrelay\n    pod: {}\n    mode: {}\n    admin: http://{}\n    tor_proxy: {}\n",
            relay.name(),
            relay.spec.mode.as_str(),
            relay.spec.admin_addr(),
            relay.spec.socks
        ));
    }
    let path = lab.dir().join("verify.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn verify_passes_on_a_healthy_mini_lab_and_names_a_killed_exporter() {
    let wanted = ["CI", "RUN_LAB_TESTS"]
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()));
    if !wanted {
        println!(
            "skipped: relaywatch verify against a mini lab: RUN_LAB_TESTS unset (and CI unset)"
        );
        return;
    }
    for tool in ["prometheus", "prometheus-alertmanager"] {
        let found = Command::new(tool).arg("--version").output().is_ok();
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "{tool} not found and CI is set"
            );
            println!("skipped: relaywatch verify against a mini lab: {tool} not found; `cargo xtask test` installs it");
            return;
        }
    }
    if !lab::tor_available_or_skip("relaywatch verify against a mini lab") {
        return;
    }
    let started = Instant::now();
    let lab = Lab::start(LabSpec {
        relays: vec![
            (Mode::Clearnet, 1),
            (Mode::PreferTor, 1),
            (Mode::OnlyOnion, 1),
        ],
        ..LabSpec::fleet()
    })
    .expect("the lab starts");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_relaywatch"));
    let mut exporters: Vec<Exporter> = lab
        .relays
        .iter()
        .map(|relay| {
            Exporter::start(
                &binary,
                relay,
                exporters::default_args(relay.spec.mode),
                lab.dir(),
            )
            .expect("exporter starts")
        })
        .collect();
    let expected = lab.connect_fleet().expect("admin_addPeer");
    lab.wait_for_connections(expected, Duration::from_secs(90))
        .expect("fleet peers");
    println!(
        "lab with {expected} peer connections up in {:?}",
        started.elapsed()
    );
    let (prometheus, alertmanager, _children) = start_monitoring(&lab, &exporters);
    eventually(
        "every target up, rated and the rules evaluated",
        Duration::from_secs(60),
        || {
            let up = query(prometheus, "up == 1").len();
            // rate() and increase() need two samples per series in their window.
            let rated = query(
                prometheus,
                "rate(p2p_dials[4s]) or rate(p2p_ingress_tor[4s])",
            )
            .len();
            let rules = lab::rpc::get_text(prometheus, "/api/v1/rules").unwrap_or_default();
            let evaluated = rules.contains("lastEvaluation") && !rules.contains("0001-01-01");
            let alertmanager_up = get(alertmanager, "/api/v2/status").is_some();
            (up == 6 && rated == 6 && evaluated && alertmanager_up).then_some(())
        },
    );
    println!(
        "Prometheus scraping every target after {:?}",
        started.elapsed()
    );
    let config = write_config(&lab, prometheus, alertmanager);

    let run = Instant::now();
    let output = verify(&config);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("healthy lab, verify took {:?}:\n{stdout}", run.elapsed());
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|line| !line.starts_with(' '))
        .collect();
    assert_eq!(lines.len(), 7, "{stdout}");
    assert!(
        lines.iter().all(|line| line.starts_with("PASS ")),
        "{stdout}"
    );
    for relay in &lab.relays {
        // Pod names and counts only: no node id, no relay address (a peer's, seen from others).
        assert!(!stdout.contains(&relay.id()), "{stdout}");
        assert!(!stdout.contains(&relay.spec.ip.to_string()), "{stdout}");
    }

    // Kill the only-onion relay's exporter: criterion 1 must fail and name that pod.
    let victim = lab
        .relays
        .iter()
        .position(|relay| relay.spec.mode == Mode::OnlyOnion)
        .unwrap();
    let pod = lab.relays[victim].name().to_string();
    // SAFETY: kill(2) on the pid of a child this test started.
    unsafe { libc::kill(exporters[victim].pid() as libc::pid_t, libc::SIGKILL) };
    eventually(
        "the killed exporter's target down",
        Duration::from_secs(30),
        || {
            let down = query(
                prometheus,
                &format!("up{{job=\"relaywatch\", pod=\"{pod}\"}} == 0"),
            );
            (!down.is_empty() && !exporters[victim].is_running()).then_some(())
        },
    );
    let run = Instant::now();
    let output = verify(&config);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!(
        "exporter of {pod} killed, verify took {:?}:\n{stdout}",
        run.elapsed()
    );
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let first = stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("FAIL 1 targets up: 2 of 3"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "gethrelay/{pod}: job=\"relaywatch\" target down (up 0)"
        )),
        "{stdout}"
    );
    println!("verify lab test took {:?}", started.elapsed());
}
