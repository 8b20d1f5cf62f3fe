//! The lab's HTTP clients never use an environment proxy: everything they reach is on this
//! machine, and a proxy would carry admin RPCs (enodes, onions, peer addresses) away.
//! Its own test binary, because it sets process-wide environment variables.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A "proxy" that counts connections and answers every request with a 200 `proxied`.
fn counting_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = stream;
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nproxied",
            );
        }
    });
    (addr, count)
}

#[test]
fn lab_http_clients_ignore_proxy_variables() {
    let (proxy, proxied) = counting_server();
    let (target, reached) = counting_server();
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        std::env::set_var(var, format!("http://{proxy}"));
    }
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("no_proxy");
    let body = lab::rpc::get_text(target, "/metrics").unwrap();
    assert_eq!(body, "proxied"); // the same canned answer, so count who answered
    let _ = lab::rpc::call(target, "admin_peers", serde_json::json!([]));
    assert_eq!(
        proxied.load(Ordering::SeqCst),
        0,
        "a lab request went through HTTP_PROXY"
    );
    assert_eq!(reached.load(Ordering::SeqCst), 2);
}
