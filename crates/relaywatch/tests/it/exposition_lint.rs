//! `promtool check metrics` on a live /metrics: the only complaints allowed are the PRD's
//! counter names without `_total`, which the PRD fixes (README, "Metrics").

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use lab::exporters::Exporter;
use lab::relays::{random_subnet, Mode, Relay, RelaySpec};

use crate::support::eventually;

const PRD_COUNTERS_WITHOUT_TOTAL: [&str; 4] = [
    "p2p_ingress_tor",
    "p2p_egress_tor",
    "p2p_ingress_clearnet",
    "p2p_egress_clearnet",
];

fn promtool_available() -> bool {
    let found = Command::new("promtool").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing and CI is set"
        );
        eprintln!("skipped: promtool not found (Debian package prometheus; `cargo xtask test` installs it)");
    }
    found
}

#[test]
fn promtool_accepts_the_exposition_except_prd_names() {
    if !promtool_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let subnet = random_subnet();
    let spec = |name: &str, host: u8| RelaySpec {
        name: name.into(),
        mode: Mode::OnlyOnion,
        ip: Ipv4Addr::new(subnet[0], subnet[1], subnet[2], host),
        socks: "127.0.0.1:9".parse().unwrap(),
        onion: None,
        extra_args: vec![],
        tor_control: None,
    };
    let labrelay = lab::workspace_binary("labrelay").unwrap();
    let relay = Relay::start(&labrelay, spec("relay", 1), dir.path()).unwrap();
    let peer = Relay::start(
        &labrelay,
        RelaySpec {
            mode: Mode::Clearnet,
            ..spec("peer", 2)
        },
        dir.path(),
    )
    .unwrap();
    peer.add_peer(&relay.clearnet_enode()).unwrap();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_relaywatch"));
    let exporter =
        Exporter::start(&binary, &relay, &["--poll-interval", "200ms"], dir.path()).unwrap();
    let text = eventually(
        "a leak to show in the exposition",
        Duration::from_secs(20),
        || {
            let text = exporter.metrics_text().ok()?;
            text.contains("relaywatch_clearnet_leaks_total 1")
                .then_some(text)
        },
    );

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    let complaints = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    for line in complaints.lines().filter(|line| !line.trim().is_empty()) {
        let allowed = PRD_COUNTERS_WITHOUT_TOTAL
            .iter()
            .any(|name| line == format!("{name} counter metrics should have \"_total\" suffix"));
        assert!(allowed, "promtool complains: {line}\n{text}");
    }
    for name in PRD_COUNTERS_WITHOUT_TOTAL {
        assert!(
            text.contains(&format!("# TYPE {name} counter")),
            "{name} missing:\n{text}"
        );
    }
}
