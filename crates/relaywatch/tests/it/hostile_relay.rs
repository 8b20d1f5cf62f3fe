//! The exporter against a hostile or broken admin API (a fake; labrelay is faithful and never
//! misbehaves like this): malformed entries, hanging removals, error text quoting enodes, an
//! environment proxy, a closed stderr. Each case is a defect found by a hostile-input probe.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use lab::exporters::{parse_exposition, Samples};
use lab::relays::random_subnet;

use crate::fake_relay::{peer_entry, FakeRelay, Handler};
use crate::support::{eventually, value};

/// A leak into an only-onion relay, as admin_peers lists it.
fn leak(index: u32) -> String {
    let id = format!("{index:0128x}");
    peer_entry(
        &id,
        &format!("198.51.100.77:{}", 30000 + index),
        "10.0.0.5:30303",
        &format!("198.51.100.77:{}", 30000 + index),
        true,
    )
}

fn subnet_ip(host: u8) -> IpAddr {
    let subnet = random_subnet();
    IpAddr::V4(Ipv4Addr::new(subnet[0], subnet[1], subnet[2], host))
}

fn binary() -> PathBuf {
    // RELAYWATCH_TEST_BINARY runs these cases against another build (e.g. the one before a fix).
    std::env::var_os("RELAYWATCH_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_relaywatch")))
}

fn exporter_command(relay: &FakeRelay, listen: SocketAddr) -> Command {
    let mut command = Command::new(binary());
    command
        .args([
            "exporter",
            "--mode",
            "only-onion",
            "--enforce",
            "--tor-control",
            "off",
        ])
        .args([
            "--poll-interval",
            "200ms",
            "--relay-admin-url",
            &relay.url(),
        ])
        .args(["--listen", &listen.to_string()]);
    command
}

fn scrape(listen: SocketAddr) -> Option<Samples> {
    Some(parse_exposition(
        &lab::rpc::get_text(listen, "/metrics").ok()?,
    ))
}

fn start(name: &str, command: Command, dir: &Path) -> lab::process::Child {
    lab::process::spawn(name, command, &dir.join(format!("{name}.log"))).unwrap()
}

/// One entry Go prints for a link-local peer, one empty address, one without `network`: each
/// used to fail the whole poll, so the leak beside them was neither counted nor removed.
#[test]
fn malformed_entries_never_switch_the_leak_guard_off() {
    let dir = tempfile::tempdir().unwrap();
    let ip = subnet_ip(1);
    let entries = [
        peer_entry(
            "aa",
            "[fe80::1]:30303",
            "[fe80::2%lo]:30303",
            "[fe80::1%eth0]:30303",
            true,
        ),
        peer_entry("bb", "198.51.100.8:1", "10.0.0.5:30303", "", true),
        r#"{"id":"cc","enode":"enode://cc@198.51.100.9:1"}"#.to_string(),
        // No `inbound`: clearnet either way, so counted, in direction="unknown".
        r#"{"id":"dd","enode":"enode://dd@198.51.100.10:1","network":{"localAddress":"10.0.0.5:30303","remoteAddress":"198.51.100.10:1"}}"#.to_string(),
        leak(1),
    ];
    let reply = format!(r#""result":[{}]"#, entries.join(","));
    let handler: Arc<Handler> = Arc::new(move |method| match method {
        "admin_peers" => Some(reply.clone()),
        _ => Some(r#""result":true"#.into()),
    });
    let relay = FakeRelay::start(SocketAddr::new(ip, 0), handler);
    let listen = SocketAddr::new(ip, lab::tornet::free_port().unwrap());
    let _exporter = start("malformed", exporter_command(&relay, listen), dir.path());
    let samples = eventually(
        "the leak counted and removed",
        Duration::from_secs(20),
        || {
            let samples = scrape(listen)?;
            (value(&samples, "relaywatch_leak_removals_total{result=\"ok\"}") >= 1.0)
                .then_some(samples)
        },
    );
    assert_eq!(
        value(&samples, "relaywatch_source_up{source=\"relay\"}"),
        1.0
    );
    assert_eq!(
        value(&samples, "relaywatch_clearnet_leaks_total"),
        3.0,
        "the leak, the link-local peer and the peer without a direction"
    );
    assert_eq!(
        value(&samples, "p2p_peers_clearnet{direction=\"inbound\"}"),
        2.0
    );
    // A classified peer is in the peer gauges even without a direction (it was left out).
    assert_eq!(
        value(&samples, "p2p_peers_clearnet{direction=\"unknown\"}"),
        1.0
    );
    assert!(value(&samples, "relaywatch_relay_unparsed_peers_total") >= 3.0);
    assert!(relay.calls.count("admin_removePeer") >= 1);
}

/// 200 leaks and an admin_removePeer that never answers: polls must go on (detection never
/// waits on removal), and removals stay bounded.
#[test]
fn hanging_removals_do_not_stall_the_poll_loop() {
    let dir = tempfile::tempdir().unwrap();
    let ip = subnet_ip(1);
    let reply = format!(
        r#""result":[{}]"#,
        (0..200).map(leak).collect::<Vec<_>>().join(",")
    );
    let handler: Arc<Handler> = Arc::new(move |method| match method {
        "admin_peers" => Some(reply.clone()),
        _ => None,
    });
    let relay = FakeRelay::start(SocketAddr::new(ip, 0), handler);
    let listen = SocketAddr::new(ip, lab::tornet::free_port().unwrap());
    let _exporter = start("hanging", exporter_command(&relay, listen), dir.path());
    let polls_before = eventually("removals hanging", Duration::from_secs(20), || {
        let in_flight = relay.calls.count("admin_removePeer");
        (in_flight >= 1).then(|| relay.calls.count("admin_peers"))
    });
    // Before the fix one poll waited 3 s per removal: 200 leaks, 600 s per poll.
    eventually(
        "ten more admin_peers polls while removals hang",
        Duration::from_secs(30),
        || (relay.calls.count("admin_peers") >= polls_before + 10).then_some(()),
    );
    let samples = scrape(listen).unwrap();
    assert_eq!(value(&samples, "relaywatch_clearnet_leaks_total"), 200.0);
    assert_eq!(
        value(&samples, "relaywatch_source_up{source=\"relay\"}"),
        1.0
    );
    assert!(value(&samples, "relaywatch_leak_removals_pending") >= 190.0);
    let most = relay
        .calls
        .removals_in_flight_max
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=4).contains(&most), "{most} removals at once");
}

/// A JSON-RPC error quoting a peer's enode must not reach the default-level log.
#[test]
fn relay_error_text_stays_out_of_default_logs() {
    let dir = tempfile::tempdir().unwrap();
    let ip = subnet_ip(1);
    let handler: Arc<Handler> = Arc::new(|_| {
        Some(r#""error":{"code":-32000,"message":"peer enode://aabbccddeeff00112233@198.51.100.77:30303 ip 198.51.100.77 \u0000\r\n gone"}"#.into())
    });
    let relay = FakeRelay::start(SocketAddr::new(ip, 0), handler);
    let listen = SocketAddr::new(ip, lab::tornet::free_port().unwrap());
    let mut exporter = start("rpc-error", exporter_command(&relay, listen), dir.path());
    eventually("a few failed polls", Duration::from_secs(20), || {
        (relay.calls.count("admin_peers") >= 3).then_some(())
    });
    exporter.stop(Duration::from_secs(5));
    let log = std::fs::read_to_string(dir.path().join("rpc-error.log")).unwrap();
    for secret in ["198.51.100.77", "aabbccddeeff", "\0"] {
        assert!(!log.contains(secret), "{secret:?} in the log: {log}");
    }
    assert!(log.contains("rpc_error"), "the failure is named: {log}");
}

/// ureq reads HTTP_PROXY & co. by default; the admin API must never go through a proxy.
#[test]
fn environment_proxies_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let ip = subnet_ip(1);
    let proxy = std::net::TcpListener::bind(SocketAddr::new(ip, 0)).unwrap();
    proxy.set_nonblocking(true).unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let handler: Arc<Handler> = Arc::new(move |_| Some(format!(r#""result":[{}]"#, leak(1))));
    let relay = FakeRelay::start(SocketAddr::new(ip, 0), handler);
    let listen = SocketAddr::new(ip, lab::tornet::free_port().unwrap());
    let mut command = exporter_command(&relay, listen);
    for variable in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        command.env(variable, &proxy_url);
    }
    command.env_remove("NO_PROXY").env_remove("no_proxy");
    let _exporter = start("proxy", command, dir.path());
    eventually("the leak removed directly", Duration::from_secs(20), || {
        let samples = scrape(listen)?;
        (value(&samples, "relaywatch_leak_removals_total{result=\"ok\"}") >= 1.0).then_some(())
    });
    assert!(
        proxy.accept().is_err(),
        "the exporter connected to the environment's proxy"
    );
}

/// A pipe: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe() fills two new descriptors, each owned exactly once here.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// `eprintln!` panicked on EPIPE and killed the poller at its next log line, while /healthz
/// stayed green and leaks were counted but never removed again.
#[test]
fn a_closed_stderr_does_not_stop_the_guard() {
    let ip = subnet_ip(1);
    let handler: Arc<Handler> = Arc::new(move |_| Some(format!(r#""result":[{}]"#, leak(1))));
    let relay = FakeRelay::start(SocketAddr::new(ip, 0), handler);
    let listen = SocketAddr::new(ip, lab::tornet::free_port().unwrap());
    let (read_end, write_end) = pipe();
    drop(read_end); // every write to stderr now fails with EPIPE
    let mut command = exporter_command(&relay, listen);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(write_end));
    let mut child = command.spawn().unwrap();
    let result = std::panic::catch_unwind(|| {
        // Every poll lists the leak again, so every poll asks for its removal again.
        eventually(
            "removals go on after many log lines",
            Duration::from_secs(30),
            || (relay.calls.count("admin_removePeer") >= 10).then_some(()),
        );
        let health = lab::rpc::get_text(listen, "/healthz").unwrap();
        assert_eq!(health, "ok\n");
    });
    let _ = child.kill();
    let _ = child.wait();
    result.unwrap();
}

/// A stderr pipe that nobody reads blocked the poller in write() while /healthz stayed green.
/// The pipe is shrunk to one page so that it fills within the first polls.
#[test]
fn a_stalled_stderr_does_not_stop_the_guard() {
    let ip = subnet_ip(1);
    let handler: Arc<Handler> = Arc::new(move |_| Some(format!(r#""result":[{}]"#, leak(1))));
    let relay = FakeRelay::start(SocketAddr::new(ip, 0), handler);
    let listen = SocketAddr::new(ip, lab::tornet::free_port().unwrap());
    let (read_end, write_end) = pipe();
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(write_end.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    let mut command = exporter_command(&relay, listen);
    command.args(["--log-level", "debug"]);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(write_end));
    let mut child = command.spawn().unwrap();
    let result = std::panic::catch_unwind(|| {
        // 60 polls at 200 ms, each with debug lines: far more than one page of log.
        eventually(
            "polls go on with stderr full",
            Duration::from_secs(40),
            || (relay.calls.count("admin_peers") >= 60).then_some(()),
        );
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int: the bytes waiting in the pipe.
        unsafe { libc::ioctl(read_end.as_raw_fd(), libc::FIONREAD, &mut queued) };
        // Full: the next line (written atomically, as pipes do up to a page) does not fit.
        assert!(queued > 4096 - 200, "stderr never filled: {queued} bytes");
        assert!(relay.calls.count("admin_removePeer") >= 10);
        assert_eq!(lab::rpc::get_text(listen, "/healthz").unwrap(), "ok\n");
    });
    let _ = child.kill();
    let _ = child.wait();
    drop(read_end);
    result.unwrap();
}
