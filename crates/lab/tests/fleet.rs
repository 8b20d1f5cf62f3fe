//! The reduced lab (one relay per mode plus its public nodes) over real Tor: every relay at or
//! above its `GethRelayLowPeerCount` threshold, only-onion on Tor only, and the lifecycle drills
//! use (stop/start a relay or a tor, dead children). One Tor network for the binary.

use std::time::{Duration, Instant};

use lab::lab::{Lab, LabSpec};
use lab::pod::low_peer_threshold;
use lab::relays::{peer_route, Mode, PeerRoute, Relay};
use lab::topology::Kind;

/// Polls `check` every 250 ms until it returns `Some`, or panics after `timeout`.
fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn clearnet_peers(relay: &Relay) -> usize {
    relay
        .peers()
        .unwrap()
        .iter()
        .filter(|peer| peer_route(peer, relay.spec.socks) == PeerRoute::Clearnet)
        .count()
}

fn mode_of(lab: &Lab, relay: &Relay) -> Mode {
    match lab.kind(relay.name()) {
        Some(Kind::Pod(mode)) => mode,
        other => panic!("{} is not a pod: {other:?}", relay.name()),
    }
}

/// Every relay has at least its mode's threshold of peers, and only-onion ones no clearnet peer.
fn fleet_is_healthy(lab: &Lab) -> Option<()> {
    for relay in &lab.relays {
        let mode = mode_of(lab, relay);
        let peers = relay.peers().ok()?;
        if peers.len() < low_peer_threshold(mode) {
            return None;
        }
        if mode == Mode::OnlyOnion {
            assert_eq!(
                clearnet_peers(relay),
                0,
                "{} has a clearnet peer",
                relay.name()
            );
        }
    }
    Some(())
}

fn send_sigkill(pid: u32) {
    // SAFETY: kill(2) on a child of this process that has not been reaped.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

#[test]
fn reduced_lab_peers_above_thresholds_and_survives_restarts() {
    if !lab::tor_available_or_skip("reduced_lab_peers_above_thresholds_and_survives_restarts") {
        return;
    }
    let spec = LabSpec::reduced();
    let public = spec.public_nodes();
    let mut lab = Lab::start(spec).expect("the lab starts");
    let expected = lab.connect_fleet().expect("admin_addPeer");
    lab.wait_for_connections(expected, Duration::from_secs(90))
        .expect("the fleet peers");
    eprintln!(
        "reduced lab (1/1/1 + {} clearnet-only and {} dual-stack public nodes): Tor network ready \
         {:.1} s, {expected} peerings up {:.1} s after start; RSS {} MB (tors {} MB)\n{}",
        public.clearnet,
        public.dual,
        lab.ready.ready_secs,
        lab.started.elapsed().as_secs_f64(),
        lab.rss_bytes() / 1_000_000,
        lab.tor.rss_bytes() / 1_000_000,
        lab.report().unwrap()
    );
    assert_eq!(lab.relays.len(), 3, "Lab::relays holds the pods only");
    assert_eq!(lab.public.len(), public.clearnet + public.dual);
    fleet_is_healthy(&lab).expect("every relay at or above its threshold");
    // The first only-onion relay was also given a clearnet-only peer, and refused it.
    let clearnet_id = lab.relay("clearnet-1").id();
    assert!(!lab
        .relay("only-onion-1")
        .peers()
        .unwrap()
        .iter()
        .any(|peer| peer["id"] == clearnet_id.as_str()));

    // A relay stopped on purpose is not a dead child; started again it has a new node key,
    // and its peers (those it dials and those that dialed it) come back.
    let old_id = lab.relay("prefer-tor-1").id();
    lab.stop_relay("prefer-tor-1").unwrap();
    assert!(lab.dead_children().is_empty());
    let restarted = Instant::now();
    lab.start_relay("prefer-tor-1").unwrap();
    assert_ne!(lab.relay("prefer-tor-1").id(), old_id, "a new node key");
    let planned = lab
        .edges()
        .iter()
        .filter(|edge| edge.from == "prefer-tor-1" || edge.to == "prefer-tor-1")
        .count();
    eventually(
        "prefer-tor-1 back with every planned peer, every relay at its threshold",
        Duration::from_secs(90),
        || {
            let peers = lab.relay("prefer-tor-1").peers().ok()?.len();
            (peers >= planned).then_some(())?;
            fleet_is_healthy(&lab)
        },
    );
    eprintln!(
        "prefer-tor-1 back with {} peers {:.1} s after start_relay",
        lab.relay("prefer-tor-1").peers().unwrap().len(),
        restarted.elapsed().as_secs_f64()
    );
    // repeer is idempotent.
    assert!(lab.repeer("prefer-tor-1").unwrap() > 0);

    // Children that die by themselves are reported once, with their exit status.
    send_sigkill(lab.relay("public-clearnet-1").pid());
    send_sigkill(lab.tor.node_pid("public-dual-1").unwrap().unwrap());
    // Each death is reported once, so the two may come in separate calls: collect them.
    let mut seen = Vec::new();
    let mut dead = eventually("both deaths reported", Duration::from_secs(10), || {
        seen.extend(lab.dead_children());
        (seen.len() == 2).then(|| seen.clone())
    });
    dead.sort();
    assert_eq!(
        dead,
        [
            "relay public-clearnet-1 exited: signal: 9 (SIGKILL)",
            "tor public-dual-1 exited: signal: 9 (SIGKILL)",
        ]
    );
    assert!(lab.dead_children().is_empty(), "reported once");
    lab.start_relay("public-clearnet-1").unwrap();
    lab.start_tor("public-dual-1").unwrap();

    // A pod tor restarted keeps its onion, and is reachable under it again.
    let onion = lab.tor.node("only-onion-1").onion_hostname.clone();
    lab.stop_tor("only-onion-1").unwrap();
    assert!(lab.dead_children().is_empty(), "stopped on purpose");
    lab.start_tor("only-onion-1").unwrap();
    let hostname = lab.tor.node("only-onion-1").data_dir.join("hs/hostname");
    assert_eq!(
        std::fs::read_to_string(hostname).unwrap().trim(),
        onion.unwrap()
    );
    let waited = lab
        .tor
        .wait_reachable("prefer-tor-1", "only-onion-1", Duration::from_secs(120))
        .expect("only-onion-1's onion reachable after its tor restarted");
    eprintln!(
        "only-onion-1's onion reachable {:.1} s after its tor started again",
        waited.as_secs_f64()
    );
}
