//! The synthetic relay's admin API: HTTP/1.1 keep-alive JSON-RPC answering `admin_peers`
//! with one geth-shaped entry per real peer connection, and `admin_nodeInfo`.
//!
//! The reply is built once: the peer set does not change during a run, and the relay's own
//! cost is not what is measured. Field order and spelling follow geth's `p2p.PeerInfo`
//! (see /work/shared/reference/gethrelay.md and the integration tests' `fake_relay.rs`).

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use rand::{Rng, SeedableRng};

use super::http::{Request, Server};
use super::sockets::PeerConn;

/// Client names as they appear in mainnet admin_peers, cycled over the peers.
const NAMES: [&str; 4] = [
    "Geth/v1.14.11-stable-f3c696fa/linux-amd64/go1.23.2",
    "Nethermind/v1.29.1+dfea5240/linux-x64/dotnet8.0.10",
    "erigon/v2.60.10-a1b4c1b2/linux-amd64/go1.22.7",
    "reth/v1.1.0-1ba631b/x86_64-unknown-linux-gnu",
];

fn random_hex(rng: &mut impl Rng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.gen::<u8>()))
        .collect()
}

/// One admin_peers entry, exactly as geth's JSON encoder writes it (no spaces).
fn peer_entry(index: usize, peer: &PeerConn) -> String {
    // Seeded per peer, so the same N gives the same reply in every run.
    let mut rng = rand::rngs::StdRng::seed_from_u64(index as u64);
    let pubkey = random_hex(&mut rng, 64);
    let id = random_hex(&mut rng, 32);
    let name = NAMES[index % NAMES.len()];
    format!(
        concat!(
            r#"{{"enode":"enode://{pubkey}@{enode}","id":"{id}","name":"{name}","caps":["eth/68","eth/69"],"#,
            r#""network":{{"localAddress":"{local}","remoteAddress":"{remote}","inbound":{inbound},"trusted":false,"static":false}},"#,
            r#""protocols":{{"eth":{{"network":1,"relay":true}}}}}}"#
        ),
        pubkey = pubkey,
        enode = peer.enode_addr,
        id = id,
        name = name,
        local = peer.local,
        remote = peer.remote,
        inbound = peer.inbound,
    )
}

/// The `result` of admin_peers for `peers`, as a JSON array.
pub fn admin_peers_result(peers: &[PeerConn]) -> String {
    let entries: Vec<String> = peers
        .iter()
        .enumerate()
        .map(|(index, peer)| peer_entry(index, peer))
        .collect();
    format!("[{}]", entries.join(","))
}

fn node_info_result(p2p: SocketAddr) -> String {
    let mut rng = rand::rngs::StdRng::seed_from_u64(u64::MAX);
    let pubkey = random_hex(&mut rng, 64);
    let id = random_hex(&mut rng, 32);
    format!(
        concat!(
            r#"{{"id":"{id}","name":"{name}","enode":"enode://{pubkey}@{ip}:{port}","ip":"{ip}","#,
            r#""ports":{{"discovery":{port},"listener":{port}}},"listenAddr":"[::]:{port}","#,
            r#""protocols":{{"eth":{{"network":1,"genesis":"0xd4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3","head":"0x0000000000000000000000000000000000000000000000000000000000000000"}}}}}}"#
        ),
        id = id,
        name = NAMES[0],
        pubkey = pubkey,
        ip = p2p.ip(),
        port = p2p.port(),
    )
}

/// The running admin API and what it has answered.
pub struct AdminApi {
    pub addr: SocketAddr,
    /// Bytes of one admin_peers reply body.
    pub reply_bytes: usize,
    /// admin_peers calls answered: the exporter polls once per call, so this counts polls.
    pub admin_peers_calls: Arc<AtomicU64>,
    /// When each admin_peers call arrived: the start of each poll, as the relay sees it.
    pub poll_starts: Arc<Mutex<Vec<Instant>>>,
    _server: Server,
}

impl AdminApi {
    pub fn start(listener: TcpListener, peers: &[PeerConn], p2p: SocketAddr) -> Result<AdminApi> {
        let peers_result = admin_peers_result(peers);
        let node_info = node_info_result(p2p);
        // Body = prefix + id + this; the id is echoed, so only its digits vary.
        let reply_bytes = r#"{"jsonrpc":"2.0","id":1,"result":}"#.len() + peers_result.len();
        let calls = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&calls);
        let poll_starts = Arc::new(Mutex::new(Vec::new()));
        let starts = Arc::clone(&poll_starts);
        let handler = move |request: &Request, out: &mut dyn Write| -> io::Result<()> {
            let call: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let id = call.get("id").cloned().unwrap_or(serde_json::Value::Null);
            let method = call.get("method").and_then(|m| m.as_str()).unwrap_or("");
            let member = match method {
                "admin_peers" => {
                    counted.fetch_add(1, Ordering::Relaxed);
                    starts
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .push(Instant::now());
                    format!(r#""result":{peers_result}"#)
                }
                "admin_nodeInfo" => format!(r#""result":{node_info}"#),
                "admin_removePeer" => r#""result":true"#.to_string(),
                other => format!(
                    r#""error":{{"code":-32601,"message":"the method {} does not exist/is not available"}}"#,
                    other.escape_default()
                ),
            };
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},{member}}}"#);
            out.write_all(&super::http::ok_response(
                "application/json",
                body.as_bytes(),
            ))
        };
        let server = Server::start(listener, "bench-admin-api", Arc::new(handler))?;
        Ok(AdminApi {
            addr: server.addr,
            reply_bytes,
            admin_peers_calls: calls,
            poll_starts,
            _server: server,
        })
    }

    pub fn polls(&self) -> u64 {
        self.admin_peers_calls.load(Ordering::Relaxed)
    }

    /// The poll starts so far, in order.
    pub fn poll_starts(&self) -> Vec<Instant> {
        self.poll_starts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::KeepAlive;
    use super::super::sockets::Sockets;
    use super::*;

    #[test]
    fn answers_admin_peers_like_geth() {
        let sockets = Sockets::open(crate::relays::random_subnet(), 3, 0).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let api = AdminApi::start(listener, &sockets.peers, sockets.peers[0].local).unwrap();
        let result = crate::rpc::call(api.addr, "admin_peers", serde_json::json!([])).unwrap();
        let entries = result.as_array().unwrap();
        assert_eq!(entries.len(), 3);
        let third = &entries[2];
        assert_eq!(third["network"]["inbound"], false);
        assert_eq!(
            third["network"]["localAddress"],
            sockets.peers[2].local.to_string()
        );
        assert!(third["enode"].as_str().unwrap().starts_with("enode://"));
        assert_eq!(third["id"].as_str().unwrap().len(), 64);
        assert_eq!(api.polls(), 1);
        let info = crate::rpc::call(api.addr, "admin_nodeInfo", serde_json::json!([])).unwrap();
        assert_eq!(info["ports"]["listener"], sockets.peers[0].local.port());
        // Keep-alive: two calls over one connection.
        let mut client = KeepAlive::connect(api.addr).unwrap();
        client.get("/").unwrap();
        client.get("/").unwrap();
        assert_eq!(client.connections, 1);
    }

    #[test]
    fn entry_size_is_near_the_issue_s_489_bytes() {
        let sockets = Sockets::open(crate::relays::random_subnet(), 30, 0).unwrap();
        let size = admin_peers_result(&sockets.peers).len() / 30;
        assert!((380..=600).contains(&size), "{size} bytes per entry");
    }
}
