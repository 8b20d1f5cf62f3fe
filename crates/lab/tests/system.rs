//! The whole system on one machine, as `cargo xtask lab` runs it but reduced (one relay per
//! mode plus the public nodes they need): `relaywatch verify` passes on the healthy lab, fails
//! on criterion 1 naming the pod whose exporter is stopped, and the `clearnet-leak` and
//! `relay-down` drills notify the right sinks and resolve; the ServiceMonitor's metric
//! relabelings drop gethrelay's dead families. One lab for the whole binary.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lab::control::Action;
use lab::drill::{self, Scenario};
use lab::lab::LabSpec;
use lab::relays::Mode;
use lab::stack::{Stack, StackSpec};

/// Skips with a printed reason where the monitoring stack is missing; fails where `CI` is set.
fn tools_or_skip() -> bool {
    if !lab::tor_available_or_skip("whole-system lab") {
        return false;
    }
    for tool in [
        "prometheus",
        "prometheus-alertmanager",
        "promtool",
        "amtool",
    ] {
        let found = Command::new(tool).arg("--version").output().is_ok();
        if !found {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "whole-system lab: {tool} missing (CI is set, so this test may not be skipped)"
                );
            }
            eprintln!("skipped: whole-system lab: {tool} missing; `cargo xtask test` installs it");
            return false;
        }
    }
    true
}

/// Runs `relaywatch verify`; (exit code, stdout). Every proxy variable points at the discard
/// port: a client that used one would fail every request, so a pass also shows none is used.
fn verify(relaywatch: &Path, config: &Path) -> (i32, String) {
    let mut command = Command::new(relaywatch);
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        command.env(var, "http://127.0.0.1:9");
    }
    let output = command
        .arg("verify")
        .arg("--config")
        .arg(config)
        .output()
        .expect("relaywatch verify runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!(
        "relaywatch verify → {:?}\n{stdout}{stderr}",
        output.status.code()
    );
    (output.status.code().unwrap_or(-1), stdout)
}

/// Waits until Prometheus sees `expr` return something.
fn wait_query(stack: &Stack, expr: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while stack
        .prometheus
        .query(expr)
        .map(|r| r.is_empty())
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "Prometheus never answered {expr} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn whole_system_verify_and_drills() {
    if !tools_or_skip() {
        return;
    }
    let started = Instant::now();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "labrelay", "-p", "relaywatch"])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cargo build of labrelay and relaywatch failed"
    );
    let relaywatch = lab::workspace_binary("relaywatch").unwrap();

    let mut lab_spec = LabSpec::fleet();
    lab_spec.relays = vec![
        (Mode::Clearnet, 1),
        (Mode::PreferTor, 1),
        (Mode::OnlyOnion, 1),
    ];
    let stack = Stack::start(
        StackSpec {
            lab: lab_spec,
            time_scale: 20.0,
            relaywatch_binary: Some(relaywatch.clone()),
        },
        false,
    )
    .expect("the reduced lab starts");
    println!(
        "reduced lab ready in {:.1} s ({} processes, {} MB RSS): {:?}",
        stack.started.elapsed().as_secs_f64(),
        stack.process_count(),
        stack.rss_bytes() / 1_000_000,
        stack.stages
    );
    println!("{}", lab::summary::screen(&stack).unwrap());
    let config = stack.dir.join("verify.yaml");

    // 1. The healthy lab passes every criterion.
    let (code, out) = verify(&relaywatch, &config);
    assert_eq!(code, 0, "verify failed on the healthy lab:\n{out}");
    assert!(
        out.lines().filter(|l| l.starts_with("PASS")).count() >= 7,
        "{out}"
    );
    assert!(!out.lines().any(|l| l.starts_with("FAIL")), "{out}");

    // The ServiceMonitor's metricRelabelings reach Prometheus: gethrelay's always-zero families
    // are dropped at scrape, its live ones kept (verify's criterion 3 ran every dashboard query).
    let names: Vec<String> = stack
        .prometheus
        .query(r#"count by (__name__) ({job="gethrelay"})"#)
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
        assert!(
            !names.iter().any(|n| n == dead),
            "{dead} should be dropped by metricRelabelings: {names:?}"
        );
    }
    for live in [
        "p2p_peers",
        "p2p_dials",
        "p2p_dials_success",
        "p2p_serves",
        "p2p_serves_success",
    ] {
        assert!(
            names.iter().any(|n| n == live),
            "{live} missing from the gethrelay scrape: {names:?}"
        );
    }

    // 2. One exporter stopped: criterion 1 fails and names its pod.
    let pod = stack
        .file
        .first_of_mode(Mode::OnlyOnion)
        .unwrap()
        .pod
        .clone();
    stack.fleet().act(Action::StopExporter, &pod).unwrap();
    wait_query(
        &stack,
        &format!(r#"up{{job="relaywatch", pod="{pod}"}} == 0"#),
        Duration::from_secs(30),
    );
    let (code, out) = verify(&relaywatch, &config);
    assert_eq!(code, 1, "verify must fail with an exporter stopped:\n{out}");
    // Criterion 1's line and its detail lines (indented) name the pod.
    let criterion_1: Vec<&str> = out
        .lines()
        .skip_while(|line| !line.starts_with("FAIL 1 "))
        .take_while(|line| line.starts_with("FAIL 1 ") || line.starts_with(' '))
        .collect();
    assert!(
        criterion_1.iter().any(|line| line.contains(&pod)),
        "criterion 1 must fail naming {pod}:\n{out}"
    );
    stack.fleet().act(Action::StartExporter, &pod).unwrap();
    wait_query(
        &stack,
        &format!(r#"up{{job="relaywatch", pod="{pod}"}} == 1"#),
        Duration::from_secs(30),
    );

    // 3. Drills, end to end through Alertmanager to the sinks, and resolved again.
    let mut out = |line: &str| println!("{line}");
    let reports = drill::run_all(
        &stack.file,
        &[Scenario::ClearnetLeak, Scenario::RelayDown],
        &mut out,
    );
    let reports = reports.expect("the clearnet-leak and relay-down drills pass");
    for report in &reports {
        let sinks: Vec<&str> = report.fired.iter().map(|(sink, _)| sink.as_str()).collect();
        assert_eq!(
            sinks.len(),
            2,
            "{}: critical must reach slack and email: {sinks:?}",
            report.alert
        );
        assert_eq!(
            report.resolved.len(),
            2,
            "{}: resolved at both sinks",
            report.alert
        );
    }
    println!(
        "whole-system test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
