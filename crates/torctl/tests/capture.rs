//! Records the fixture transcripts in `tests/fixtures/` from a real private Tor network.
//!
//! `#[ignore]`d: it needs Debian's `tor` and takes 2-3 minutes. Regenerate with
//! `cargo test -p torctl --test capture -- --ignored --nocapture`. The onion addresses in
//! the fixtures belong to a throwaway network. Every tor stops when the network drops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lab::tornet::{fresh_onion_address, malformed_onion, socks5_connect, NodeSpec, TorNetwork};
use torctl::auth::{self, AuthChallenge};
use torctl::{LineBuffer, Message};

const PORT: u16 = 30303;
/// The client tor gives up on a dial after this long (SocksTimeout), so a stopped service
/// yields an answer within the capture's patience.
const CLIENT_SOCKS_TIMEOUT: Duration = Duration::from_secs(10);

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

/// A raw control connection that records every line tor sends, with its arrival time.
struct Recorder {
    stream: TcpStream,
    buffer: LineBuffer,
    pending: Vec<u8>,
    lines: Vec<(Instant, String)>,
    replies: Vec<Message>,
}

impl Recorder {
    fn connect(addr: SocketAddr) -> Recorder {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Recorder {
            stream,
            buffer: LineBuffer::new(),
            pending: Vec::new(),
            lines: Vec::new(),
            replies: Vec::new(),
        }
    }

    /// Reads for up to `wait`; records lines, queues non-event messages.
    fn pump(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut chunk = [0u8; 8192];
        while Instant::now() < until {
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("tor closed the control connection"),
                Ok(n) => {
                    let now = Instant::now();
                    self.buffer.push(&chunk[..n]);
                    self.pending.extend_from_slice(&chunk[..n]);
                    while let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = self.pending.drain(..=at).collect();
                        let text = String::from_utf8_lossy(&line);
                        self.lines
                            .push((now, text.trim_end_matches(['\r', '\n']).to_string()));
                    }
                    while let Some(message) = self.buffer.next_message() {
                        if !message.is_event() {
                            self.replies.push(message);
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("control read failed: {e}"),
            }
        }
    }

    fn command(&mut self, line: &str) -> Message {
        self.stream
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.replies.is_empty() {
            assert!(Instant::now() < deadline, "no reply to {line}");
            self.pump(Duration::from_millis(100));
        }
        self.replies.remove(0)
    }

    /// Lines recorded since `start`, as `+seconds<TAB>line`.
    fn transcript_since(&self, start: Instant) -> String {
        self.lines
            .iter()
            .filter(|(at, _)| *at >= start)
            .map(|(at, line)| format!("+{:.3}\t{line}\n", at.duration_since(start).as_secs_f64()))
            .collect()
    }
}

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn random_nonce() -> [u8; 32] {
    let mut nonce = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut nonce)
        .unwrap();
    nonce
}

/// One dial: a summary line for the fixture header.
fn dial(socks: SocketAddr, host: &str, port: u16, label: &str) -> String {
    let started = Instant::now();
    let result = socks5_connect(socks, host, port, Duration::from_secs(40));
    let took = started.elapsed().as_secs_f64();
    match result {
        Ok(mut stream) => {
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let answer = if writeln!(stream, "hello").is_ok() {
                let mut line = String::new();
                let _ = BufReader::new(&stream).read_line(&mut line);
                line.trim_end().to_string()
            } else {
                String::new()
            };
            format!(
                "# dial {label}: {host}:{port} -> SOCKS 0x00 after {took:.2} s; echo {answer:?}"
            )
        }
        Err(error) => format!("# dial {label}: {host}:{port} -> {error} after {took:.2} s"),
    }
}

/// Runs `dials` on a thread while recording, then records `settle` more; writes the fixture.
fn scenario(
    recorder: &mut Recorder,
    name: &str,
    description: &str,
    dials: impl FnOnce() -> Vec<String> + Send,
) {
    let start = Instant::now();
    let summary = std::thread::scope(|scope| {
        let worker = scope.spawn(dials);
        while !worker.is_finished() {
            recorder.pump(Duration::from_millis(100));
        }
        worker.join().unwrap()
    });
    recorder.pump(Duration::from_secs(3));
    let mut text = format!(
        "# scenario: {name}: {description}\n# captured from tor {} on lab::tornet by tests/capture.rs; times are seconds since the scenario began\n",
        tor_version()
    );
    for line in &summary {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&recorder.transcript_since(start));
    std::fs::write(fixture_path(&format!("{name}.txt")), text).unwrap();
    eprintln!("{name}:\n  {}", summary.join("\n  "));
}

fn tor_version() -> String {
    let output = std::process::Command::new(lab::tornet::find_tor().unwrap())
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap_or("?")
        .trim_end_matches('.')
        .to_string()
}

#[test]
#[ignore = "needs tor and 2-3 minutes; regenerates tests/fixtures"]
fn capture_fixtures() {
    let network = TorNetwork::builder()
        .node(NodeSpec::new("svc").onion(PORT, line_server("svc")))
        .node(NodeSpec::new("gone").onion(PORT, line_server("gone")))
        .node(NodeSpec::new("client").socks_timeout(CLIENT_SOCKS_TIMEOUT))
        .start()
        .expect("the tor network starts");
    let svc = network.node("svc").onion_hostname.clone().unwrap();
    let gone = network.node("gone").onion_hostname.clone().unwrap();
    eprintln!(
        "{}",
        network.wait_ready().expect("the tor network gets ready")
    );
    let client = network.node("client").clone();
    let socks = client.socks_addr;

    // SAFECOOKIE against the real tor, recorded as a test vector.
    let mut recorder = Recorder::connect(client.control_addr);
    let start = Instant::now();
    let info = auth::parse_protocolinfo(&recorder.command("PROTOCOLINFO 1")).unwrap();
    let cookie = std::fs::read(info.cookie_file.as_deref().unwrap()).unwrap();
    auth::check_cookie(&cookie).unwrap();
    let client_nonce = random_nonce();
    let challenge_reply = recorder.command(&auth::authchallenge_command(&client_nonce));
    let challenge: AuthChallenge = auth::parse_authchallenge(&challenge_reply).unwrap();
    assert!(auth::verify_safecookie_server_hash(
        &cookie,
        &client_nonce,
        &challenge
    ));
    let client_hash = auth::safecookie_client_hash(&cookie, &client_nonce, &challenge.server_nonce);
    let reply = recorder.command(&auth::authenticate_hex_command(&client_hash));
    assert!(reply.is_ok(), "{reply:?}");
    let health = recorder.command(&format!(
        "GETINFO {}",
        torctl::getinfo::HEALTH_KEYS.join(" ")
    ));
    assert!(health.is_ok(), "{health:?}");
    std::fs::write(
        fixture_path("safecookie.txt"),
        format!(
            "# SAFECOOKIE and GETINFO on tor {}: cookie, client nonce, then what tor sent\n# cookie {}\n# client_nonce {}\n# AUTHENTICATE {}\n{}",
            tor_version(),
            hex::encode(&cookie),
            hex::encode(client_nonce),
            hex::encode_upper(client_hash),
            recorder.transcript_since(start)
        ),
    )
    .unwrap();

    let reply =
        recorder.command("SETEVENTS STREAM CIRC HS_DESC ORCONN NETWORK_LIVENESS STATUS_CLIENT");
    assert!(reply.is_ok(), "{reply:?}");

    scenario(
        &mut recorder,
        "reachable",
        "a published onion, echo round-trip",
        || vec![dial(socks, &svc, PORT, "reachable")],
    );
    scenario(
        &mut recorder,
        "closed_port",
        "a published onion on a port its service does not map",
        || vec![dial(socks, &svc, PORT + 1, "closed_port")],
    );
    let unpublished = fresh_onion_address();
    scenario(
        &mut recorder,
        "unpublished",
        "a valid v3 onion nobody publishes",
        || vec![dial(socks, &unpublished, PORT, "unpublished")],
    );
    scenario(
        &mut recorder,
        "malformed",
        "an onion with a bad checksum",
        || vec![dial(socks, &malformed_onion(), PORT, "malformed")],
    );
    let network = &network;
    scenario(
        &mut recorder,
        "stopped_service",
        "warm-up dial, the service's tor stopped, 5 s, then two dials (client SocksTimeout 10 s)",
        || {
            let warm = dial(socks, &gone, PORT, "warm-up");
            network.stop_node("gone").unwrap();
            std::thread::sleep(Duration::from_secs(5));
            let first = dial(socks, &gone, PORT, "after-stop-1");
            let second = dial(socks, &gone, PORT, "after-stop-2");
            vec![
                warm,
                "# (service tor stopped after the warm-up)".into(),
                first,
                second,
            ]
        },
    );
    let reply = recorder.command("SIGNAL NEWNYM");
    assert!(reply.is_ok(), "{reply:?}");
    scenario(
        &mut recorder,
        "stopped_service_newnym",
        "after SIGNAL NEWNYM (fresh circuits), two dials to the stopped service",
        || {
            vec![
                dial(socks, &gone, PORT, "newnym-1"),
                dial(socks, &gone, PORT, "newnym-2"),
            ]
        },
    );
    let stats = recorder.buffer.stats();
    eprintln!("framing on the real control port: {stats:?}");
    assert_eq!(stats.malformed_lines + stats.oversized_lines, 0);
}
