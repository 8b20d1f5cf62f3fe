//! The Tor control-port source against a real pod tor: dial outcomes counted exactly by
//! reason, and tor killed and restarted under the exporter.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lab::exporters::{Exporter, Samples};
use lab::lab::{Lab, LabSpec};
use lab::relays::Mode;
use lab::tornet::{fresh_onion_address, malformed_onion};
use labrelay::identity::NodeKey;

use crate::support::{assert_monotonic, eventually, value};

fn onion_enode(onion: &str) -> String {
    format!(
        "enode://{}@{onion}:30303",
        NodeKey::generate().public_id().to_hex()
    )
}

const CIRCUIT_CLASS: [&str; 6] = [
    "intro_failed",
    "intro_timeout",
    "rendezvous_failed",
    "timeout",
    "destroyed",
    "descriptor_not_found",
];

fn errors(samples: &Samples, reason: &str) -> f64 {
    value(
        samples,
        &format!("p2p_dials_tor_errors_total{{reason=\"{reason}\"}}"),
    )
}

#[test]
fn tor_dials_are_counted_by_outcome_and_tor_restarts_are_survived() {
    if !lab::tor_available_or_skip("tor_dials_are_counted_by_outcome_and_tor_restarts_are_survived")
    {
        return;
    }
    let lab = Lab::start(LabSpec {
        relays: vec![(Mode::PreferTor, 1), (Mode::OnlyOnion, 2)],
        // Only the relays under test, no public-network nodes.
        public: Some(lab::topology::PublicNodes::NONE),
        dir: None,
        // One dial per target: failed static nodes are not retried during the test.
        relay_args: ["--lab.redial-ms", "600000"].map(String::from).to_vec(),
        labrelay_binary: None,
        // Bounds the dial to the stopped service (measured: 2-171 s without).
        socks_timeout: Some(Duration::from_secs(10)),
    })
    .expect("the lab starts");
    let [dialer, reachable, stopped] =
        ["prefer-tor-1", "only-onion-1", "only-onion-2"].map(|name| lab.relay(name));
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_relaywatch"));
    let exporter =
        Exporter::start(&binary, dialer, &["--poll-interval", "250ms"], lab.dir()).unwrap();
    let connected = eventually("the tor source to connect", Duration::from_secs(20), || {
        let samples = exporter.scrape().ok()?;
        (value(&samples, "relaywatch_source_up{source=\"tor\"}") == 1.0
            && value(&samples, "tor_bootstrap_progress_ratio") == 1.0
            && value(&samples, "tor_circuit_established") == 1.0)
            .then_some(samples)
    });
    assert_eq!(value(&connected, "p2p_dials_tor_total"), 0.0, "no dial yet");

    lab.tor.stop_node(stopped.name()).unwrap();
    let started = Instant::now();
    dialer.add_peer(&reachable.enode()).unwrap();
    dialer
        .add_peer(&onion_enode(&fresh_onion_address()))
        .unwrap();
    dialer.add_peer(&onion_enode(&malformed_onion())).unwrap();
    dialer.add_peer(&stopped.enode()).unwrap();

    let samples = eventually("four Tor dials to finish", Duration::from_secs(60), || {
        let samples = exporter.scrape().ok()?;
        let finished = value(&samples, "p2p_dials_tor_success_total")
            + CIRCUIT_CLASS
                .iter()
                .chain(&["bad_onion_address", "refused", "other"])
                .map(|r| errors(&samples, r))
                .sum::<f64>();
        (finished >= 4.0).then_some(samples)
    });
    eprintln!(
        "tor dials settled {:.1} s after the first dial:\n{}",
        started.elapsed().as_secs_f64(),
        samples
            .iter()
            .filter(|(name, _)| name.starts_with("p2p_dials_tor")
                || name.starts_with("tor_circuits_failed"))
            .map(|(name, value)| format!("  {name} {value}\n"))
            .collect::<String>()
    );
    assert_eq!(value(&samples, "p2p_dials_tor_total"), 4.0);
    assert_eq!(value(&samples, "p2p_dials_tor_success_total"), 1.0);
    assert_eq!(
        errors(&samples, "descriptor_not_found"),
        1.0,
        "the unpublished onion (0xF0)"
    );
    assert_eq!(
        errors(&samples, "bad_onion_address"),
        1.0,
        "the malformed onion (0xF6)"
    );
    let stopped_class: f64 = CIRCUIT_CLASS[..5]
        .iter()
        .map(|reason| errors(&samples, reason))
        .sum();
    assert_eq!(
        stopped_class, 1.0,
        "the stopped service fails as a circuit/intro/timeout failure"
    );
    assert_eq!(
        value(&samples, "p2p_dials_tor_error_circuit"),
        2.0,
        "0xF0 and the stopped service, not 0xF6"
    );
    assert!(dialer
        .peers()
        .unwrap()
        .iter()
        .any(|peer| peer["id"] == reachable.id().as_str()));

    // Tor killed and restarted under the exporter.
    let before = exporter.scrape().unwrap();
    lab.tor.stop_node(dialer.name()).unwrap();
    let down = eventually("the tor source down", Duration::from_secs(20), || {
        let samples = exporter.scrape().ok()?;
        (value(&samples, "relaywatch_source_up{source=\"tor\"}") == 0.0).then_some(samples)
    });
    assert!(
        !down.contains_key("tor_bootstrap_progress_ratio"),
        "no stale health while tor is down"
    );
    assert_monotonic(&before, &down, "tor down");
    for counter in [
        "p2p_dials_tor_total",
        "p2p_dials_tor_success_total",
        "p2p_dials_tor_error_circuit",
    ] {
        assert_eq!(
            value(&down, counter),
            value(&before, counter),
            "{counter} kept while tor is down"
        );
    }
    lab.tor.start_node(dialer.name()).unwrap();
    let back = eventually(
        "the tor source back and bootstrapped",
        Duration::from_secs(60),
        || {
            let samples = exporter.scrape().ok()?;
            (value(&samples, "relaywatch_source_up{source=\"tor\"}") == 1.0
                && value(&samples, "tor_bootstrap_progress_ratio") == 1.0)
                .then_some(samples)
        },
    );
    for counter in [
        "p2p_dials_tor_total",
        "p2p_dials_tor_success_total",
        "p2p_dials_tor_error_circuit",
    ] {
        assert!(
            value(&back, counter) >= value(&before, counter),
            "{counter} went down across the restart"
        );
    }
    assert_eq!(
        value(&back, "relaywatch_tor_control_unparsed_lines_total"),
        0.0
    );

    // Wrong credentials: the source is down and the log says which method failed and why.
    let wrong_cookie = lab.dir().join("wrong_cookie");
    std::fs::write(&wrong_cookie, [7u8; 32]).unwrap();
    let (control, _) = dialer.spec.tor_control.clone().unwrap();
    let listen = std::net::SocketAddr::new(std::net::IpAddr::V4(dialer.spec.ip), 9477);
    let log_path = lab.dir().join("wrong-cookie.log");
    let mut command = std::process::Command::new(&binary);
    command.args([
        "exporter",
        "--mode",
        "prefer-tor",
        "--listen",
        &listen.to_string(),
    ]);
    command.args([
        "--relay-admin-url",
        &format!("http://{}", dialer.spec.admin_addr()),
    ]);
    command
        .args(["--tor-control", &control.to_string(), "--tor-cookie"])
        .arg(&wrong_cookie);
    let _wrong = lab::process::spawn("wrong-cookie", command, &log_path).unwrap();
    eventually(
        "the wrong cookie to be reported",
        Duration::from_secs(20),
        || {
            let samples =
                lab::exporters::parse_exposition(&lab::rpc::get_text(listen, "/metrics").ok()?);
            let log = std::fs::read_to_string(&log_path).ok()?;
            (samples.get("relaywatch_source_up{source=\"tor\"}") == Some(&0.0)
                && log.contains("SAFECOOKIE authentication failed"))
            .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(2)); // a few retries, to see they are not logged again
    let log = std::fs::read_to_string(&log_path).unwrap();
    eprintln!(
        "wrong cookie: {}",
        log.lines()
            .find(|line| line.contains("authentication failed"))
            .unwrap()
    );
    assert_eq!(
        log.matches("authentication failed").count(),
        1,
        "one line, not one per retry:\n{log}"
    );
}
