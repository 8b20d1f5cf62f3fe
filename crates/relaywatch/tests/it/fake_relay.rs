//! A hostile stand-in for gethrelay's admin API, for what labrelay (faithful by design) never
//! does: malformed admin_peers entries, JSON-RPC errors quoting enodes, admin_removePeer calls
//! that hang. It speaks HTTP/1.1 with keep-alive, as geth does, and records every call.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What the fake answers: `None` means never answer (hold the connection).
pub type Handler = dyn Fn(&str) -> Option<String> + Send + Sync;

#[derive(Default)]
pub struct Calls {
    /// Method names in arrival order.
    pub methods: Mutex<Vec<String>>,
    /// admin_removePeer calls being handled right now, and the most seen at once.
    pub removals_in_flight: AtomicUsize,
    pub removals_in_flight_max: AtomicUsize,
}

impl Calls {
    pub fn count(&self, method: &str) -> usize {
        self.methods
            .lock()
            .unwrap()
            .iter()
            .filter(|name| *name == method)
            .count()
    }
}

pub struct FakeRelay {
    pub addr: SocketAddr,
    pub calls: Arc<Calls>,
}

impl FakeRelay {
    /// Serves on `addr`; `handler` gets the JSON-RPC method and returns the `result`/`error`
    /// member text (e.g. `"result":[]`), or `None` to hang.
    pub fn start(addr: SocketAddr, handler: Arc<Handler>) -> FakeRelay {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Calls::default());
        let served = Arc::clone(&calls);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (handler, calls) = (Arc::clone(&handler), Arc::clone(&served));
                std::thread::spawn(move || serve(stream, &*handler, &calls));
            }
        });
        FakeRelay { addr, calls }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn serve(stream: TcpStream, handler: &Handler, calls: &Calls) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let method = request["method"].as_str().unwrap_or_default().to_string();
        calls.methods.lock().unwrap().push(method.clone());
        let removal = method == "admin_removePeer";
        if removal {
            let now = calls.removals_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            calls
                .removals_in_flight_max
                .fetch_max(now, Ordering::SeqCst);
        }
        let answer = handler(&method);
        let Some(member) = answer else {
            // Hang: never answer, as a wedged relay would, until the client gives up and
            // closes; only then is the call no longer in flight.
            let _ = reader.read(&mut [0u8; 1]);
            if removal {
                calls.removals_in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            return;
        };
        if removal {
            calls.removals_in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,{member}}}"#);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// An admin_peers entry as geth prints it.
pub fn peer_entry(id: &str, enode_host: &str, local: &str, remote: &str, inbound: bool) -> String {
    format!(
        r#"{{"enode":"enode://{id}@{enode_host}","id":"{id}","name":"Geth/v1.14","caps":["eth/68"],
        "network":{{"localAddress":"{local}","remoteAddress":"{remote}","inbound":{inbound},"trusted":false,"static":false}},
        "protocols":{{"eth":"handshake"}}}}"#
    )
}
