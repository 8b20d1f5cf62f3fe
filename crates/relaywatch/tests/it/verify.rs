//! `relaywatch verify` with a bad configuration and against broken sources. The healthy and the
//! failing run against a whole lab (all seven PASS; an exporter stopped → criterion 1 FAIL
//! naming its pod) are in `crates/lab/tests/system.rs`, on the lab `cargo xtask lab` runs.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

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
