//! A port the lab wants that something else holds is reported as a clash, by name, before the
//! child starts (not as a relay that "exited at start" with its log to dig through).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use lab::relays::{Mode, Relay, RelaySpec, ADMIN_PORT};

#[test]
fn a_taken_admin_port_is_named_before_the_relay_starts() {
    let binary = match lab::workspace_binary("labrelay") {
        Ok(binary) => binary,
        Err(error) if std::env::var_os("CI").is_some() => panic!("{error:#}"),
        Err(error) => {
            eprintln!("skipped: {error:#}");
            return;
        }
    };
    let ip = Ipv4Addr::new(127, 77, rand_byte(), 9);
    let taken = SocketAddr::from((ip, ADMIN_PORT));
    let _holder = TcpListener::bind(taken).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = RelaySpec {
        name: "clash".into(),
        mode: Mode::Clearnet,
        ip,
        socks: "127.0.0.1:9".parse().unwrap(),
        onion: None,
        extra_args: Vec::new(),
        tor_control: None,
    };
    let error = format!(
        "{:#}",
        Relay::start(&binary, spec, dir.path()).err().unwrap()
    );
    assert!(
        error.contains(&format!("{taken} is already in use")),
        "{error}"
    );
    assert!(error.contains("labrelay clash cannot start"), "{error}");
    // Nothing was started, so there is no log of a relay that died.
    assert!(!dir.path().join("clash.log").exists());
}

fn rand_byte() -> u8 {
    (std::process::id() % 250) as u8
}
