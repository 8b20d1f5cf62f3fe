//! The exporter as a process: its HTTP server under connection floods, signals, start-up
//! checks, and the series that tell a restart from no change.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lab::exporters::parse_exposition;
use lab::relays::random_subnet;

use crate::fake_relay::{FakeRelay, Handler};
use crate::support::{eventually, value};

fn binary() -> PathBuf {
    std::env::var_os("RELAYWATCH_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_relaywatch")))
}

fn empty_relay(ip: IpAddr) -> FakeRelay {
    let handler: Arc<Handler> = Arc::new(|_| Some(r#""result":[]"#.into()));
    FakeRelay::start(SocketAddr::new(ip, 0), handler)
}

fn ip() -> IpAddr {
    let subnet = random_subnet();
    IpAddr::V4(Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 1))
}

fn exporter(relay: &FakeRelay, listen: SocketAddr, mode: &str) -> Command {
    let mut command = exporter_with_tor(relay, listen, mode);
    command.args(["--tor-control", "off"]);
    command
}

fn exporter_with_tor(relay: &FakeRelay, listen: SocketAddr, mode: &str) -> Command {
    let mut command = Command::new(binary());
    command.args(["exporter", "--mode", mode]).args([
        "--relay-admin-url",
        &relay.url(),
        "--listen",
        &listen.to_string(),
    ]);
    command
}

/// 300 idle connections under a 256-descriptor limit once made every scrape time out.
#[test]
fn idle_connections_cannot_starve_scrapes() {
    let dir = tempfile::tempdir().unwrap();
    let ip = ip();
    let relay = empty_relay(ip);
    let listen = SocketAddr::new(ip, lab::tornet::free_port().unwrap());
    let inner = exporter(&relay, listen, "clearnet");
    let mut command = Command::new("prlimit");
    command
        .arg("--nofile=256:256")
        .arg("--")
        .arg(inner.get_program())
        .args(inner.get_args());
    let _child = lab::process::spawn("flooded", command, &dir.path().join("flooded.log")).unwrap();
    eventually("the exporter serving", Duration::from_secs(15), || {
        lab::rpc::get_text(listen, "/readyz").ok()
    });
    let idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(listen).ok())
        .collect();
    assert!(idle.len() >= 250, "only {} connections opened", idle.len());
    let samples = eventually(
        "a scrape through the flood",
        Duration::from_secs(20),
        || {
            Some(parse_exposition(
                &lab::rpc::get_text(listen, "/metrics").ok()?,
            ))
        },
    );
    assert_eq!(
        value(&samples, "relaywatch_source_up{source=\"relay\"}"),
        1.0
    );
    drop(idle);
}

/// SIGHUP's default action killed the sidecar silently.
#[test]
fn sighup_is_logged_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let ip = ip();
    let relay = empty_relay(ip);
    let listen = SocketAddr::new(ip, lab::tornet::free_port().unwrap());
    let log = dir.path().join("hup.log");
    let mut child = lab::process::spawn("hup", exporter(&relay, listen, "clearnet"), &log).unwrap();
    eventually("the exporter serving", Duration::from_secs(15), || {
        lab::rpc::get_text(listen, "/readyz").ok()
    });
    child.signal(libc::SIGHUP);
    eventually("SIGHUP handled", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).ok()?;
        (text.contains("SIGHUP ignored") || !child.is_running()).then_some(())
    });
    assert!(child.is_running(), "SIGHUP killed the exporter");
    assert!(lab::rpc::get_text(listen, "/healthz").is_ok());
}

/// Without a start time, rules cannot tell an exporter restart (counters from 0) from no change.
#[test]
fn process_start_time_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let ip = ip();
    let relay = empty_relay(ip);
    let listen = SocketAddr::new(ip, lab::tornet::free_port().unwrap());
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let before = now();
    let _child = lab::process::spawn(
        "start",
        exporter(&relay, listen, "clearnet"),
        &dir.path().join("start.log"),
    )
    .unwrap();
    let samples = eventually("a scrape", Duration::from_secs(15), || {
        Some(parse_exposition(
            &lab::rpc::get_text(listen, "/metrics").ok()?,
        ))
    });
    let started = value(&samples, "process_start_time_seconds");
    assert!(
        started >= before.floor() && started <= now(),
        "{before} <= {started}"
    );
    assert_eq!(
        value(&samples, "relaywatch_worker_up{worker=\"poller\"}"),
        1.0
    );
}

/// Start-up checks: settings that cannot work are refused (exit 2, named); settings that
/// work but are probably not meant are warned about.
#[test]
fn start_up_checks() {
    // An exporter that accepts the arguments runs until killed: give it 10 s to refuse them.
    let run = |args: &[&str]| {
        let mut child = Command::new(binary())
            .arg("exporter")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let code = eventually("the exporter to exit", Duration::from_secs(10), || {
            child.try_wait().unwrap().map(|status| status.code())
        });
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        (code, stderr)
    };
    for (args, named) in [
        (
            &["--mode", "clearnet", "--poll-interval", "1ms"][..],
            "100ms",
        ),
        (
            &["--mode", "clearnet", "--relay-admin-url", "http://"][..],
            "no host",
        ),
        (
            &[
                "--mode",
                "clearnet",
                "--relay-admin-url",
                "http://127.0.0.1:8545",
            ][..],
            "RPC proxy",
        ),
    ] {
        let (code, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    let dir = tempfile::tempdir().unwrap();
    let ip = ip();
    let relay = empty_relay(ip);
    let listen = SocketAddr::new(ip, lab::tornet::free_port().unwrap());
    let log = dir.path().join("warn.log");
    let mut command = exporter_with_tor(&relay, listen, "clearnet");
    command.args(["--enforce", "--tor-control", "10.0.0.5:9051"]);
    let _child = lab::process::spawn("warn", command, &log).unwrap();
    let text = eventually("start-up lines", Duration::from_secs(15), || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("serving").then_some(text)
    });
    assert!(
        text.contains("--enforce has no effect in mode clearnet"),
        "{text}"
    );
    assert!(text.contains("leak guard off"), "{text}");
    assert!(!text.contains("enforcing"), "{text}");
    assert!(
        text.contains("--tor-control is not a loopback address"),
        "{text}"
    );
}
