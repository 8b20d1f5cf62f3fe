//! Real-tor tests of `lab::tornet` and of child supervision; one tor network for the binary.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lab::tornet::{
    find_tor, fresh_onion_address, malformed_onion, socks5_connect, NodeSpec, TorNetwork,
};

/// Skips locally without tor, with a printed reason; never skips where `CI` is set.
fn skip_without_tor() -> bool {
    match find_tor() {
        Ok(_) => false,
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but tor is missing: {error}")
        }
        Err(_) => {
            eprintln!(
                "skipped: tor not found (install Debian's tor package, or run `cargo xtask test`)"
            );
            true
        }
    }
}

/// A backend for an onion service: answers each line with "<name>: <line>".
fn line_server(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for connection in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut writer = connection.try_clone().unwrap();
                for line in BufReader::new(connection).lines() {
                    let Ok(line) = line else { break };
                    if writeln!(writer, "{name}: {line}").is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn exchange(stream: &mut TcpStream, line: &str) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    writeln!(stream, "{line}").unwrap();
    let mut answer = String::new();
    BufReader::new(&*stream).read_line(&mut answer).unwrap();
    answer.trim_end().to_string()
}

fn gone(pid: u32) -> bool {
    // A zombie counts as gone: it no longer runs, and reaping it is its new parent's job.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn private_network() {
    if skip_without_tor() {
        return;
    }
    const PORT: u16 = 30303;
    let network = TorNetwork::builder()
        .node(NodeSpec::new("a").onion(PORT, line_server("a")))
        .node(NodeSpec::new("b").onion(PORT, line_server("b")))
        .node(NodeSpec::new("c").socks_timeout(Duration::from_secs(60)))
        .start()
        .expect("the tor network starts");
    let onion_b = network
        .node("b")
        .onion_hostname
        .clone()
        .expect("b has an onion");
    assert!(network.node("c").onion_hostname.is_none());
    let report = network.wait_ready().expect("the tor network gets ready");
    eprintln!("{report}");
    eprintln!(
        "tornet RSS: {:.0} MB over {} tors",
        network.rss_bytes() as f64 / 1e6,
        network.pids().len()
    );

    // The relay's own SOCKS port reaches another node's onion service, and data flows.
    let a = network.node("a").clone();
    let mut stream = socks5_connect(a.socks_addr, &onion_b, PORT, Duration::from_secs(60))
        .expect("a reaches b's onion service");
    assert_eq!(exchange(&mut stream, "hello"), "b: hello");
    drop(stream);

    let unpublished = socks5_connect(
        a.socks_addr,
        &fresh_onion_address(),
        PORT,
        Duration::from_secs(60),
    )
    .expect_err("nobody publishes a fresh onion");
    assert_eq!(unpublished.reply_code(), Some(0xF0), "{unpublished}");
    let malformed = socks5_connect(
        a.socks_addr,
        &malformed_onion(),
        PORT,
        Duration::from_secs(60),
    )
    .expect_err("a bad checksum is refused");
    assert_eq!(malformed.reply_code(), Some(0xF6), "{malformed}");

    // The control port answers with cookie auth.
    let mut control = network.control("c").unwrap();
    let phase = control.getinfo("status/bootstrap-phase").unwrap();
    assert!(phase.contains("PROGRESS=100"), "{phase}");

    // A restarted node keeps its onion address and becomes reachable again.
    let pids_before = network.pids().len();
    network.stop_node("b").unwrap();
    assert_eq!(network.pids().len(), pids_before - 1);
    let restarted = Instant::now();
    network.start_node("b").unwrap();
    let hostname_file = network.node("b").data_dir.join("hs/hostname");
    assert_eq!(
        std::fs::read_to_string(hostname_file).unwrap().trim(),
        onion_b
    );
    let took = network
        .wait_reachable("a", "b", Duration::from_secs(90))
        .expect("b is reachable again after its restart");
    let mut stream = socks5_connect(a.socks_addr, &onion_b, PORT, Duration::from_secs(30))
        .expect("a reaches b's onion service after the restart");
    assert_eq!(exchange(&mut stream, "again"), "b: again");
    eprintln!(
        "tornet: b reachable {:.1}s after its restart (probe {:.1}s)",
        restarted.elapsed().as_secs_f64(),
        took.as_secs_f64()
    );
    drop(stream);

    let pids = network.pids();
    assert_eq!(pids.len(), 9, "6 network tors and 3 node tors");
    drop(network);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "tor {pid} survived the drop"
        );
    }
}

const SPAWN_CHILD_ENV: &str = "LAB_TEST_SPAWN_SLEEP_AND_WAIT";

/// The re-executed side spawns `sleep` and waits to be SIGKILLed; the kernel must then kill
/// the `sleep` too (PR_SET_PDEATHSIG), so a killed test run leaves no tor behind.
#[test]
fn children_die_when_the_parent_is_killed() {
    if std::env::var_os(SPAWN_CHILD_ENV).is_some() {
        let mut command = Command::new("sleep");
        command.arg("600");
        let child = lab::process::spawn("sleep", command, Path::new("/dev/null")).unwrap();
        println!("sleep-pid={}", child.pid());
        std::io::stdout().flush().unwrap();
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    let mut parent = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "children_die_when_the_parent_is_killed",
            "--nocapture",
        ])
        .env(SPAWN_CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(parent.stdout.take().unwrap());
    let sleep_pid: u32 = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.strip_prefix("sleep-pid=")
                .map(|pid| pid.parse().unwrap())
        })
        .expect("the re-executed test prints the pid of its child");
    assert!(
        !gone(sleep_pid),
        "the child runs before its parent is killed"
    );
    parent.kill().unwrap(); // SIGKILL: no destructor runs in the parent.
    parent.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gone(sleep_pid) {
        assert!(
            Instant::now() < deadline,
            "child {sleep_pid} outlived its SIGKILLed parent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
