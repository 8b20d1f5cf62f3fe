//! Sources failing under a running exporter: it keeps serving, reports the source down,
//! recovers by itself, and its counters never go backwards. No Tor needed.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use lab::exporters::{parse_exposition, Exporter, Samples};
use lab::relays::{random_subnet, Mode, Relay, RelaySpec};

use crate::support::{assert_monotonic, eventually, value};

fn relay_spec(name: &str, subnet: [u8; 3], host: u8) -> RelaySpec {
    RelaySpec {
        name: name.into(),
        mode: Mode::Clearnet,
        ip: Ipv4Addr::new(subnet[0], subnet[1], subnet[2], host),
        // No tor here: clearnet-only peers never touch the proxy.
        socks: "127.0.0.1:9".parse().unwrap(),
        onion: None,
        extra_args: ["--lab.redial-ms", "500", "--lab.msg-interval-ms", "50"]
            .map(String::from)
            .to_vec(),
        tor_control: None,
    }
}

fn labrelay() -> PathBuf {
    lab::workspace_binary("labrelay").expect("labrelay is built by `cargo test --workspace`")
}

#[test]
fn relay_killed_and_restarted_under_the_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let subnet = random_subnet();
    // A fixed key, so that the restarted relay is the node b keeps dialing.
    let mut spec_a = relay_spec("a", subnet, 1);
    spec_a.extra_args.extend([
        "--lab.nodekeyhex".into(),
        "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318".into(),
    ]);
    let mut a = Relay::start(&labrelay(), spec_a, dir.path()).unwrap();
    let b = Relay::start(&labrelay(), relay_spec("b", subnet, 2), dir.path()).unwrap();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_relaywatch"));
    let exporter = Exporter::start(&binary, &a, &["--poll-interval", "200ms"], dir.path()).unwrap();
    b.add_peer(&a.clearnet_enode()).unwrap();

    let peer_seen = |samples: &Samples| {
        value(samples, "relaywatch_source_up{source=\"relay\"}") == 1.0
            && value(samples, "p2p_peers_clearnet{direction=\"inbound\"}") == 1.0
    };
    let before = eventually(
        "the exporter to count the peer and its bytes",
        Duration::from_secs(20),
        || {
            let samples = exporter.scrape().ok()?;
            (peer_seen(&samples) && value(&samples, "p2p_ingress_clearnet") > 1000.0)
                .then_some(samples)
        },
    );

    a.stop();
    let down = eventually("relay source down", Duration::from_secs(20), || {
        let samples = exporter.scrape().ok()?;
        (value(&samples, "relaywatch_source_up{source=\"relay\"}") == 0.0).then_some(samples)
    });
    assert_monotonic(&before, &down, "relay down");
    assert_eq!(
        value(&down, "relaywatch_source_up{source=\"sockets\"}"),
        1.0,
        "sockets still fine"
    );
    assert!(
        !down.contains_key("p2p_peers_clearnet{direction=\"inbound\"}"),
        "no stale peer gauges while the relay is down"
    );

    // A new relay process on the same address: the exporter finds it by itself.
    let a2 = Relay::start(&labrelay(), a.spec.clone(), dir.path()).unwrap();
    let after = eventually(
        "relay source back with the peer",
        Duration::from_secs(30),
        || {
            let samples = exporter.scrape().ok()?;
            (peer_seen(&samples)
                && value(&samples, "p2p_ingress_clearnet") > value(&down, "p2p_ingress_clearnet"))
            .then_some(samples)
        },
    );
    assert_monotonic(&down, &after, "relay restarted");
    drop(a2);
}

/// An HTTP server on `addr` that answers every request with `response`, or never answers.
fn fake_admin_api(addr: SocketAddr, response: Option<&'static str>) {
    let listener = TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            match response {
                Some(response) => {
                    let _ = stream.write_all(response.as_bytes());
                }
                None => held.push(stream),
            }
        }
    });
}

fn scrape(listen: SocketAddr) -> Option<Samples> {
    Some(parse_exposition(
        &lab::rpc::get_text(listen, "/metrics").ok()?,
    ))
}

#[test]
fn garbage_and_silence_from_the_admin_api_only_mark_the_source_down() {
    let dir = tempfile::tempdir().unwrap();
    let subnet = random_subnet();
    let ip = IpAddr::V4(Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 1));
    let cases = [
        ("garbage", Some("HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{\"result\"")),
        ("not json-rpc", Some("HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"result\":42}")),
        ("http 500", Some("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")),
        ("silence", None),
    ];
    for (index, (case, response)) in cases.into_iter().enumerate() {
        let admin = SocketAddr::new(ip, 18546 + index as u16);
        let listen = SocketAddr::new(ip, 19476 + index as u16);
        fake_admin_api(admin, response);
        let mut command = Command::new(env!("CARGO_BIN_EXE_relaywatch"));
        command.args([
            "exporter",
            "--mode",
            "only-onion",
            "--enforce",
            "--poll-interval",
            "200ms",
        ]);
        command.args([
            "--relay-admin-url",
            &format!("http://{admin}"),
            "--listen",
            &listen.to_string(),
        ]);
        let mut child =
            lab::process::spawn(case, command, &dir.path().join(format!("{index}.log"))).unwrap();
        let samples = eventually(
            &format!("{case}: relay source reported down"),
            Duration::from_secs(20),
            || {
                let samples = scrape(listen)?;
                let relay_down =
                    samples.get("relaywatch_source_up{source=\"relay\"}") == Some(&0.0);
                (relay_down && samples.contains_key("relaywatch_source_up{source=\"sockets\"}"))
                    .then_some(samples)
            },
        );
        assert_eq!(
            value(&samples, "relaywatch_source_up{source=\"sockets\"}"),
            1.0,
            "{case}"
        );
        assert_eq!(
            value(&samples, "relaywatch_clearnet_leaks_total"),
            0.0,
            "{case}"
        );
        assert!(child.is_running(), "{case}: the exporter died");
        let log = std::fs::read_to_string(dir.path().join(format!("{index}.log"))).unwrap();
        assert!(!log.contains("panicked"), "{case}: {log}");
    }
}
