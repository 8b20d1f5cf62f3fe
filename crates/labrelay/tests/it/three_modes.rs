//! The end-to-end check: labrelays in the three modes peer over a real private Tor
//! network and over clearnet, and admin_peers shows what gethrelay would show.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lab::lab::{Lab, LabSpec};
use lab::relays::{Mode, Relay};
use serde_json::Value;

const TOR_DAEMON: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn remote(peer: &Value) -> SocketAddr {
    peer["network"]["remoteAddress"]
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("remoteAddress is not ip:port in {peer}"))
}

fn inbound(peer: &Value) -> bool {
    peer["network"]["inbound"]
        .as_bool()
        .expect("network.inbound is a bool")
}

/// The peer entry on `relay` for `other`, waiting (bounded) until it shows up.
fn wait_peer(relay: &Relay, other: &Relay, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let peers = relay.peers().expect("admin_peers answers");
        if let Some(peer) = peers
            .into_iter()
            .find(|peer| peer["id"] == other.id().as_str())
        {
            return peer;
        }
        assert!(
            start.elapsed() < timeout,
            "{} never got {} as a peer within {timeout:?}; logs: {}",
            relay.name(),
            other.name(),
            relay.log_path.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits (bounded) until `other` is no longer a peer of `relay`.
fn wait_gone(relay: &Relay, other: &Relay) {
    let start = Instant::now();
    while relay
        .peers()
        .unwrap()
        .iter()
        .any(|peer| peer["id"] == other.id().as_str())
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} still a peer of {}",
            other.name(),
            relay.name()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The gethrelay metric `name` from the relay's /debug/metrics/prometheus.
fn geth_metric(relay: &Relay, name: &str) -> u64 {
    let text = relay.metrics_text().expect("metrics endpoint answers");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in {}'s metrics:\n{text}", relay.name()))
}

/// How a peer should reach a relay in this test.
#[derive(Clone, Copy)]
enum Via {
    Tor,
    Clearnet,
}

/// What gethrelay shows in `remoteAddress`: for Tor, the SOCKS proxy (outbound) or the Tor
/// daemon (inbound); for clearnet, the other relay's real address.
fn assert_peer(relay: &Relay, other: &Relay, via: Via, dialed_by_relay: bool) {
    let peer = wait_peer(relay, other, Duration::from_secs(60));
    let context = format!("{} sees {}: {peer}", relay.name(), other.name());
    assert_eq!(inbound(&peer), !dialed_by_relay, "{context}");
    let remote = remote(&peer);
    match (via, dialed_by_relay) {
        (Via::Tor, true) => assert_eq!(
            remote, relay.spec.socks,
            "must show the SOCKS proxy: {context}"
        ),
        (Via::Tor, false) => assert_eq!(
            remote.ip(),
            TOR_DAEMON,
            "must show the Tor daemon: {context}"
        ),
        (Via::Clearnet, true) => assert_eq!(remote, other.spec.p2p_addr(), "{context}"),
        (Via::Clearnet, false) => assert_eq!(remote.ip(), IpAddr::V4(other.spec.ip), "{context}"),
    }
}

fn assert_tor_peer(relay: &Relay, other: &Relay, dialed_by_relay: bool) {
    assert_peer(relay, other, Via::Tor, dialed_by_relay);
}

fn assert_clearnet_peer(relay: &Relay, other: &Relay, dialed_by_relay: bool) {
    assert_peer(relay, other, Via::Clearnet, dialed_by_relay);
}

#[test]
fn three_modes_over_real_tor_and_clearnet() {
    if !lab::tor_available_or_skip("three_modes_over_real_tor_and_clearnet") {
        return;
    }
    let spec = LabSpec {
        relays: vec![
            (Mode::Clearnet, 2),
            (Mode::PreferTor, 2),
            (Mode::OnlyOnion, 2),
        ],
        // Only the relays under test, no public-network nodes.
        public: Some(lab::topology::PublicNodes::NONE),
        dir: None,
        relay_args: vec![
            "--lab.redial-ms".into(),
            "2000".into(),
            "--lab.msg-interval-ms".into(),
            "100".into(),
        ],
        labrelay_binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_labrelay"))),
        socks_timeout: None,
    };
    let started = Instant::now();
    let lab = Lab::start(spec).expect("the lab starts");
    eprintln!("{}", lab.ready);
    let [c1, c2, p1, p2, o1, o2] = [
        "clearnet-1",
        "clearnet-2",
        "prefer-tor-1",
        "prefer-tor-2",
        "only-onion-1",
        "only-onion-2",
    ]
    .map(|name| lab.relay(name));

    let expected = lab.connect_fleet().expect("admin_addPeer works");
    lab.wait_for_connections(expected, Duration::from_secs(90))
        .expect("the fleet peers");
    eprintln!(
        "fleet peered {:.1} s after start:\n{}",
        started.elapsed().as_secs_f64(),
        lab.report().unwrap()
    );

    // Clearnet relays: each other by address, prefer-tor relays' dual-stack ENRs on clearnet
    // (default mode uses Tor only for peers without a clearnet endpoint).
    assert_clearnet_peer(c1, c2, true);
    assert_clearnet_peer(c2, c1, false);
    for p in [p1, p2] {
        assert_clearnet_peer(c1, p, true);
        assert_clearnet_peer(p, c1, false);
    }
    // prefer-tor dials the other's dual-stack ENR over Tor, and only-onion relays' onion enodes.
    assert_tor_peer(p1, p2, true);
    assert_tor_peer(p2, p1, false);
    for p in [p1, p2] {
        for o in [o1, o2] {
            assert_tor_peer(p, o, true);
            assert_tor_peer(o, p, false);
        }
    }
    assert_tor_peer(o1, o2, true);
    assert_tor_peer(o2, o1, false);

    // only-onion refused to dial the clearnet-only peer it was given: the dial counted as a
    // connection error before any network I/O, and nothing connected.
    assert!(!o1
        .peers()
        .unwrap()
        .iter()
        .any(|peer| peer["id"] == c1.id().as_str()));
    assert!(geth_metric(o1, "p2p_dials_error_connection") >= 1);
    // ... and never dialed clearnet at all: every outbound socket it opened went to its SOCKS port.
    for o in [o1, o2] {
        for conn in o.connections().unwrap() {
            if conn["inbound"] == false {
                assert_eq!(conn["transport"], "tor", "{} dialed {conn}", o.name());
                assert_eq!(
                    conn["remote_address"],
                    o.spec.socks.to_string(),
                    "{}: {conn}",
                    o.name()
                );
            }
        }
    }

    // The hole the exporter must catch: only-onion still accepts an inbound clearnet peer.
    c2.add_peer(&o1.clearnet_enode()).unwrap();
    assert_clearnet_peer(o1, c2, false);
    assert_clearnet_peer(c2, o1, true);

    // gethrelay's surprise: in only-onion mode without --prefer-tor, a peer whose ENR has both
    // an onion and an IP is dialed on clearnet (useTor := hasOnion && (preferTor || !hasClearnet);
    // dialer.rs's decision table). The deploy bundle therefore gives only-onion pods --prefer-tor
    // too, and so does the lab (lab::pod): a dual-stack ENR is then dialed over Tor.
    // prefer-tor-1 first forgets only-onion-2, so that only-onion-2 does the dialing.
    p1.admin("admin_removePeer", serde_json::json!([o2.enode()]))
        .unwrap();
    wait_gone(o2, p1);
    o2.add_peer(&p1.enr()).unwrap();
    assert_tor_peer(o2, p1, true);

    // gethrelay's own metrics agree with admin_peers, and traffic flows both ways.
    for relay in &lab.relays {
        let peers = relay.peers().unwrap();
        let n_inbound = peers.iter().filter(|peer| inbound(peer)).count() as u64;
        assert_eq!(
            geth_metric(relay, "p2p_peers"),
            peers.len() as u64,
            "{}",
            relay.name()
        );
        assert_eq!(
            geth_metric(relay, "p2p_peers_inbound"),
            n_inbound,
            "{}",
            relay.name()
        );
        for conn in relay.connections().unwrap() {
            if conn["became_peer"] == true && conn["open"] == true {
                assert!(
                    conn["bytes_sent"].as_u64().unwrap() > 0
                        && conn["bytes_received"].as_u64().unwrap() > 0,
                    "{conn}"
                );
            }
        }
    }

    // admin_removePeer drops the peer and forgets the static node: it is not dialed again.
    c1.admin("admin_removePeer", serde_json::json!([c2.clearnet_enode()]))
        .unwrap();
    wait_gone(c1, c2);
    std::thread::sleep(Duration::from_secs(3)); // longer than --lab.redial-ms
    assert!(
        !c1.peers()
            .unwrap()
            .iter()
            .any(|peer| peer["id"] == c2.id().as_str()),
        "re-dialed after removePeer"
    );

    eprintln!(
        "three modes: network ready {:.1} s, test done {:.1} s after start; tor RSS {} MB",
        lab.ready.ready_secs,
        started.elapsed().as_secs_f64(),
        lab.tor.rss_bytes() / 1_000_000
    );
}
