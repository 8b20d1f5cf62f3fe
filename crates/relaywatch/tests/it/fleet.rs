//! The end-to-end check: an exporter beside every lab relay, over the real private Tor
//! network; its peer gauges must equal admin_peers and its byte counters the relays' own counts.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lab::exporters::{Exporter, Samples};
use lab::lab::{Lab, LabSpec};
use lab::relays::{peer_route, Mode, PeerRoute, Relay};
use serde_json::Value;

use crate::support::{assert_monotonic, eventually, value};

const POLL: &str = "250ms";

/// Peer gauges as admin_peers says they should be: [tor in, tor out, clearnet in, clearnet out].
fn expected_gauges(relay: &Relay, peers: &[Value]) -> [f64; 4] {
    let mut counts = [0.0; 4];
    for peer in peers {
        let inbound = peer["network"]["inbound"] == true;
        let slot = match (peer_route(peer, relay.spec.socks), inbound) {
            (PeerRoute::Clearnet, true) => 2,
            (PeerRoute::Clearnet, false) => 3,
            (_, true) => 0,
            (_, false) => 1,
        };
        counts[slot] += 1.0;
    }
    counts
}

fn exported_gauges(samples: &Samples) -> [f64; 4] {
    [
        value(samples, "p2p_peers_tor{direction=\"inbound\"}"),
        value(samples, "p2p_peers_tor{direction=\"outbound\"}"),
        value(samples, "p2p_peers_clearnet{direction=\"inbound\"}"),
        value(samples, "p2p_peers_clearnet{direction=\"outbound\"}"),
    ]
}

/// Bytes the relay itself counted on its peer connections: [tor in, tor out, clearnet in, clearnet out].
fn ledger_bytes(relay: &Relay) -> [f64; 4] {
    let mut bytes = [0.0; 4];
    for conn in relay.connections().expect("labrelay_connections") {
        if conn["became_peer"] != true {
            continue;
        }
        let tor = if conn["inbound"] == true {
            let remote: std::net::SocketAddr =
                conn["remote_address"].as_str().unwrap().parse().unwrap();
            remote.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            conn["transport"] == "tor"
        };
        let base = if tor { 0 } else { 2 };
        bytes[base] += conn["bytes_received"].as_f64().unwrap();
        bytes[base + 1] += conn["bytes_sent"].as_f64().unwrap();
    }
    bytes
}

fn exported_bytes(samples: &Samples) -> [f64; 4] {
    [
        value(samples, "p2p_ingress_tor"),
        value(samples, "p2p_egress_tor"),
        value(samples, "p2p_ingress_clearnet"),
        value(samples, "p2p_egress_clearnet"),
    ]
}

fn within_one_percent(exported: [f64; 4], truth: [f64; 4]) -> bool {
    exported
        .iter()
        .zip(truth)
        .all(|(e, t)| (e - t).abs() <= 0.01 * t.max(1.0))
}

#[test]
fn exporter_matches_admin_peers_and_relay_byte_counts_over_real_tor() {
    if !lab::tor_available_or_skip(
        "exporter_matches_admin_peers_and_relay_byte_counts_over_real_tor",
    ) {
        return;
    }
    let started = Instant::now();
    let lab = Lab::start(LabSpec {
        relays: vec![
            (Mode::Clearnet, 2),
            (Mode::PreferTor, 2),
            (Mode::OnlyOnion, 2),
        ],
        // Only the relays under test, no public-network nodes.
        public: Some(lab::topology::PublicNodes::NONE),
        dir: None,
        relay_args: ["--lab.redial-ms", "2000", "--lab.msg-interval-ms", "100"]
            .map(String::from)
            .to_vec(),
        labrelay_binary: None,
        socks_timeout: None,
    })
    .expect("the lab starts");
    eprintln!("{}", lab.ready);
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_relaywatch"));
    let mut exporters: Vec<Exporter> = Vec::new();
    for relay in &lab.relays {
        // only-onion-2 enforces, as the deploy bundle configures it; only-onion-1 only counts leaks.
        let enforce: &[(&str, &str)] = if relay.name() == "only-onion-1" {
            &[("RELAYWATCH_ENFORCE", "false")]
        } else {
            &[]
        };
        let args = ["--poll-interval", POLL];
        exporters.push(
            Exporter::start_with_env(&binary, relay, &args, enforce, lab.dir())
                .expect("exporter starts"),
        );
    }
    let pairs: Vec<(&Relay, &Exporter)> = lab.relays.iter().zip(&exporters).collect();
    let expected = lab.connect_fleet().expect("admin_addPeer");
    lab.wait_for_connections(expected, Duration::from_secs(90))
        .expect("fleet peers");
    let first_scrapes: Vec<Samples> = exporters.iter().map(|e| e.scrape().unwrap()).collect();

    // Peer gauges equal admin_peers exactly, once the peer set is quiet.
    for (relay, exporter) in &pairs {
        eventually(
            &format!("{}'s peer gauges to match admin_peers", relay.name()),
            Duration::from_secs(30),
            || {
                let before = relay.peers().ok()?;
                let samples = exporter.scrape().ok()?;
                let after = relay.peers().ok()?;
                let quiet = before == after;
                (quiet && exported_gauges(&samples) == expected_gauges(relay, &after)).then_some(())
            },
        );
    }

    // Byte counters equal what the relays wrote and read, within 1 %, once traffic stops.
    for relay in &lab.relays {
        relay.set_traffic(false).unwrap();
    }
    for (relay, exporter) in &pairs {
        let (exported, truth) = eventually(
            &format!("{}'s byte counters to match", relay.name()),
            Duration::from_secs(30),
            || {
                let samples = exporter.scrape().ok()?;
                let truth = ledger_bytes(relay);
                let exported = exported_bytes(&samples);
                within_one_percent(exported, truth).then_some((exported, truth))
            },
        );
        eprintln!("{:<13} bytes [tor in, tor out, clear in, clear out] exporter {exported:?} relay {truth:?}", relay.name());
        // Traffic really flowed over each route this relay uses.
        let uses_tor = expected_gauges(relay, &relay.peers().unwrap())[..2]
            .iter()
            .sum::<f64>()
            > 0.0;
        if uses_tor {
            assert!(
                exported[0] > 2_000.0 && exported[1] > 2_000.0,
                "{}: {exported:?}",
                relay.name()
            );
        }
    }
    for relay in &lab.relays {
        relay.set_traffic(true).unwrap();
    }

    // The leak: a clearnet peer connects inbound to both only-onion relays.
    let [c2, o1, o2] = ["clearnet-2", "only-onion-1", "only-onion-2"].map(|name| lab.relay(name));
    let exporter_of = |name: &str| pairs.iter().find(|(r, _)| r.name() == name).unwrap().1;
    let leak_started = Instant::now();
    c2.add_peer(&o1.clearnet_enode()).unwrap();
    c2.add_peer(&o2.clearnet_enode()).unwrap();
    // Without --enforce: counted, and the clearnet peer stays.
    eventually(
        "only-onion-1 to count the leak",
        Duration::from_secs(30),
        || {
            let samples = exporter_of("only-onion-1").scrape().ok()?;
            (value(&samples, "relaywatch_clearnet_leaks_total") >= 1.0
                && value(&samples, "p2p_peers_clearnet{direction=\"inbound\"}") == 1.0)
                .then_some(())
        },
    );
    assert!(o1
        .peers()
        .unwrap()
        .iter()
        .any(|peer| peer["id"] == c2.id().as_str()));
    // With --enforce: counted and removed.
    let samples = eventually(
        "only-onion-2 to count and remove the leak",
        Duration::from_secs(30),
        || {
            let samples = exporter_of("only-onion-2").scrape().ok()?;
            (value(&samples, "relaywatch_clearnet_leaks_total") >= 1.0
                && value(&samples, "relaywatch_leak_removals_total{result=\"ok\"}") >= 1.0)
                .then_some(samples)
        },
    );
    let removed: Vec<f64> = o2
        .connections()
        .unwrap()
        .iter()
        .filter(|conn| {
            conn["inbound"] == true
                && conn["remote_address"]
                    .as_str()
                    .unwrap()
                    .starts_with(&c2.spec.ip.to_string())
        })
        .filter_map(|conn| {
            Some(conn["closed_unix_ms"].as_f64()? - conn["opened_unix_ms"].as_f64()?)
        })
        .collect();
    assert!(
        !removed.is_empty(),
        "only-onion-2 never closed the leaking connection"
    );
    eprintln!(
        "leak on only-onion-2: counted {} times, removed {} times; connect-to-removal {:?} ms (poll {POLL}); first detection {:.1} s after admin_addPeer",
        value(&samples, "relaywatch_clearnet_leaks_total"),
        value(&samples, "relaywatch_leak_removals_total{result=\"ok\"}"),
        removed,
        leak_started.elapsed().as_secs_f64(),
    );

    // Privacy: no label value other than the closed sets and the version, no address anywhere.
    let ids: Vec<String> = lab.relays.iter().map(|relay| relay.id()).collect();
    for exporter in &exporters {
        let text = exporter.metrics_text().unwrap();
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            if let Some((_, labels)) = line.split_once('{') {
                let labels = labels.split('}').next().unwrap();
                for pair in labels.split(',') {
                    let (name, value) = pair.split_once('=').unwrap();
                    let value = value.trim_matches('"');
                    let dial_reasons: Vec<&str> = torctl::DialError::ALL
                        .iter()
                        .map(|reason| reason.as_str())
                        .collect();
                    let allowed: &[&str] = match (name, line.split('{').next().unwrap()) {
                        ("direction", _) => &relaywatch::catalog::labels::DIRECTION,
                        ("source", _) => &["relay", "sockets", "tor"],
                        ("result", _) => &["ok", "error"],
                        ("worker", _) => &relaywatch::catalog::labels::WORKER,
                        ("version", _) => &[env!("CARGO_PKG_VERSION")],
                        ("reason", "p2p_dials_tor_errors_total") => &dial_reasons,
                        ("purpose", _) => torctl::vocab::CircPurpose::LABELS,
                        ("reason", "tor_circuits_failed_total") => {
                            torctl::vocab::CircReason::LABELS
                        }
                        ("reason", "tor_orconn_failed_total") => {
                            torctl::vocab::OrConnReason::LABELS
                        }
                        (other, _) => {
                            panic!("{}: unexpected label {other} in {line}", exporter.name)
                        }
                    };
                    assert!(allowed.contains(&value), "{}: {line}", exporter.name);
                }
            }
            assert!(
                !line.contains(".onion") && !line.contains("127."),
                "{}: {line}",
                exporter.name
            );
            assert!(
                !ids.iter().any(|id| line.contains(&id[..16])),
                "{}: {line}",
                exporter.name
            );
        }
        // No peer identifier in the exporter's log at the default level either.
        let log = std::fs::read_to_string(&exporter.log_path).unwrap();
        for relay in &lab.relays {
            assert!(
                !log.contains(&relay.spec.ip.to_string()[4..]) || !log.contains(&relay.id()[..16]),
                "{}",
                exporter.name
            );
            assert!(
                !log.contains(&relay.id()[..16]),
                "{} logs a node id:\n{log}",
                exporter.name
            );
            if let Some(onion) = &relay.spec.onion {
                assert!(
                    !log.contains(&onion[..20]),
                    "{} logs an onion:\n{log}",
                    exporter.name
                );
            }
        }
    }

    // Counters never went down over the whole run.
    for (exporter, first) in exporters.iter().zip(&first_scrapes) {
        assert_monotonic(first, &exporter.scrape().unwrap(), &exporter.name);
    }
    for exporter in &mut exporters {
        assert!(exporter.is_running(), "{} died", exporter.name);
    }
    eprintln!(
        "fleet test done {:.1} s after start",
        started.elapsed().as_secs_f64()
    );
}
