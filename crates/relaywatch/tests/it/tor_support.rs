//! Helpers of the tor_* tests: a relaywatch exporter pointed at a control port, its Tor
//! source's `up`, and a fake control port for hostile answers that a real tor never sends.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lab::exporters::parse_exposition;
use lab::process::Child;

pub fn free_port() -> u16 {
    lab::tornet::free_port().unwrap()
}

/// A relaywatch exporter (no relay: its admin URL is a closed port) using `control`, with
/// `extra` flags; returns it, its /metrics address and its log (stderr) file.
pub fn exporter(dir: &Path, control: SocketAddr, extra: &[&str]) -> (Child, SocketAddr, PathBuf) {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log = dir.join("relaywatch.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_relaywatch"));
    command.args(["exporter", "--mode", "clearnet", "--poll-interval", "200ms"]);
    command.args([
        "--relay-admin-url",
        "http://127.0.0.1:1",
        "--listen",
        &listen.to_string(),
    ]);
    command
        .args(["--tor-control", &control.to_string()])
        .args(extra);
    (
        lab::process::spawn("relaywatch", command, &log).unwrap(),
        listen,
        log,
    )
}

/// `relaywatch_source_up{source="tor"}`, once /metrics answers.
pub fn tor_up(listen: SocketAddr) -> Option<f64> {
    let samples = parse_exposition(&lab::rpc::get_text(listen, "/metrics").ok()?);
    samples.get("relaywatch_source_up{source=\"tor\"}").copied()
}

/// The log's lines about the tor source.
pub fn tor_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("tor source"))
        .map(str::to_string)
        .collect()
}

/// What the fake answers to one command line: `(connection number from 0, line without CRLF)`
/// → bytes to send back, or `None` to close the connection.
pub type Script = dyn Fn(usize, &str) -> Option<Vec<u8>> + Send + Sync;

/// A control port on loopback that answers from a script and records every byte it received.
/// Stops accepting when dropped.
pub struct FakeControlPort {
    pub address: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl FakeControlPort {
    pub fn start(script: impl Fn(usize, &str) -> Option<Vec<u8>> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let (received_, stop_) = (Arc::clone(&received), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut number = 0;
            while !stop_.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (script, received) = (Arc::clone(&script), Arc::clone(&received_));
                        let stop = Arc::clone(&stop_);
                        std::thread::spawn(move || {
                            serve(stream, number, &*script, &received, &stop)
                        });
                        number += 1;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeControlPort {
            address,
            received,
            stop,
        }
    }

    /// Everything every connection sent so far.
    pub fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeControlPort {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    number: usize,
    script: &Script,
    received: &Mutex<Vec<u8>>,
    stop: &AtomicBool,
) {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) if line.ends_with(b"\n") => {
                received.lock().unwrap().extend_from_slice(&line);
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                line.clear();
                match script(number, &text) {
                    Some(answer) => {
                        if writer.write_all(&answer).is_err() {
                            return;
                        }
                    }
                    None => return,
                }
            }
            Ok(_) => {} // a partial line: keep reading
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// `PROTOCOLINFO` reply offering `methods`, naming `cookie` as COOKIEFILE when given.
pub fn protocolinfo(methods: &str, cookie: Option<&Path>) -> Vec<u8> {
    let cookie = cookie
        .map(|path| format!(" COOKIEFILE=\"{}\"", path.display()))
        .unwrap_or_default();
    format!("250-PROTOCOLINFO 1\r\n250-AUTH METHODS={methods}{cookie}\r\n250-VERSION Tor=\"0.4.9.11\"\r\n250 OK\r\n")
        .into_bytes()
}

/// A control port whose PROTOCOLINFO is `protocolinfo`, answering `250 OK` to everything else.
pub fn fake_tor(protocolinfo: Vec<u8>) -> FakeControlPort {
    FakeControlPort::start(move |_, line| {
        Some(if line.starts_with("PROTOCOLINFO") {
            protocolinfo.clone()
        } else {
            b"250 OK\r\n".to_vec()
        })
    })
}
