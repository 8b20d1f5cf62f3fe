//! The relay source: `admin_peers` (and, for the leak guard, `admin_removePeer`) over HTTP.
//!
//! Only the admin endpoint is ever called. gethrelay's port 8545 is an RPC proxy that
//! forwards every call, `admin_*` included, to a public upstream: asking it for peers would
//! return somebody else's node, so the configuration refuses it (see `cli.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::classify::Direction;

/// Every network call of this source gives up after this long.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// admin_peers answers above this size are refused (about 10 kB per peer; gethrelay allows 200).
const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// One admin_peers entry, reduced to what the exporter uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Node ID (hex); used for logs at debug level only.
    pub id: String,
    /// The enode URL, needed for admin_removePeer and the onion-fallback check.
    pub enode: String,
    pub direction: Direction,
    /// The relay's end of the TCP connection.
    pub local: SocketAddr,
    /// The other end: a peer, the SOCKS proxy, or the Tor daemon.
    pub remote: SocketAddr,
}

/// Why admin_peers could not be used; the text names the field and the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("cannot reach the relay's admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the relay's admin API at {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("admin_peers reply is not JSON-RPC: {0}")]
    NotJsonRpc(String),
    #[error("admin_peers returned an error: {0}")]
    RpcError(String),
    #[error("admin_peers entry {index}: {problem}")]
    BadEntry { index: usize, problem: String },
}

fn field<'a>(entry: &'a Value, index: usize, path: &[&str]) -> Result<&'a Value, RelayError> {
    let mut value = entry;
    for key in path {
        value = value.get(key).ok_or_else(|| RelayError::BadEntry {
            index,
            problem: format!("missing field {}", path.join(".")),
        })?;
    }
    Ok(value)
}

fn socket_addr(entry: &Value, index: usize, path: &[&str]) -> Result<SocketAddr, RelayError> {
    let value = field(entry, index, path)?;
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| RelayError::BadEntry {
            index,
            problem: format!("{} is not ip:port", path.join(".")),
        })
}

/// Parses an admin_peers JSON-RPC reply. Pure, so that any byte string can be tested.
pub fn parse_admin_peers(body: &[u8]) -> Result<Vec<Peer>, RelayError> {
    let reply: Value = serde_json::from_slice(body)
        .map_err(|error| RelayError::NotJsonRpc(format!("invalid JSON: {error}")))?;
    if let Some(error) = reply.get("error") {
        return Err(RelayError::RpcError(error.to_string()));
    }
    let entries = reply
        .get("result")
        .and_then(Value::as_array)
        .ok_or_else(|| RelayError::NotJsonRpc("no `result` array".into()))?;
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let inbound = field(entry, index, &["network", "inbound"])?
                .as_bool()
                .ok_or_else(|| RelayError::BadEntry {
                    index,
                    problem: "network.inbound is not a boolean".into(),
                })?;
            let text = |path: &[&str]| -> Result<String, RelayError> {
                field(entry, index, path)?
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| RelayError::BadEntry {
                        index,
                        problem: format!("{} is not a string", path.join(".")),
                    })
            };
            Ok(Peer {
                id: text(&["id"])?,
                enode: text(&["enode"])?,
                direction: if inbound {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                },
                local: socket_addr(entry, index, &["network", "localAddress"])?,
                remote: socket_addr(entry, index, &["network", "remoteAddress"])?,
            })
        })
        .collect()
}

/// A blocking JSON-RPC client for the admin endpoint.
pub struct RelayClient {
    url: String,
    agent: ureq::Agent,
}

impl RelayClient {
    pub fn new(url: &str) -> RelayClient {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        RelayClient {
            url: url.to_string(),
            agent,
        }
    }

    fn call(&self, method: &str, params: Value) -> Result<Vec<u8>, RelayError> {
        let unreachable = |reason: String| RelayError::Unreachable {
            url: self.url.clone(),
            reason,
        };
        let mut response = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .send_json(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .map_err(|error| unreachable(error.to_string()))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(RelayError::Status {
                url: self.url.clone(),
                status,
            });
        }
        response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_vec()
            .map_err(|error| unreachable(error.to_string()))
    }

    pub fn peers(&self) -> Result<Vec<Peer>, RelayError> {
        parse_admin_peers(&self.call("admin_peers", json!([]))?)
    }

    /// admin_removePeer: disconnects the peer; it does not ban it.
    pub fn remove_peer(&self, enode: &str) -> Result<(), RelayError> {
        let body = self.call("admin_removePeer", json!([enode]))?;
        let reply: Value = serde_json::from_slice(&body)
            .map_err(|error| RelayError::NotJsonRpc(format!("invalid JSON: {error}")))?;
        match reply.get("error") {
            Some(error) => Err(RelayError::RpcError(error.to_string())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_PEERS: &str = r#"{"jsonrpc":"2.0","id":1,"result":[
      {"enode":"enode://aa@127.0.0.1:41000","id":"01","name":"x","caps":[],
       "network":{"localAddress":"10.0.0.5:30303","remoteAddress":"127.0.0.1:41000","inbound":true,"trusted":false,"static":false},
       "protocols":{"eth":{"network":1}}},
      {"enode":"enode://bb@abc.onion:30303","id":"02","name":"y","caps":[],
       "network":{"localAddress":"127.0.0.1:50000","remoteAddress":"127.0.0.1:9050","inbound":false,"trusted":false,"static":true},
       "protocols":{"eth":"handshake"}}]}"#;

    #[test]
    fn parses_geth_peer_info() {
        let peers = parse_admin_peers(TWO_PEERS.as_bytes()).unwrap();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].direction, Direction::Inbound);
        assert_eq!(peers[0].remote, "127.0.0.1:41000".parse().unwrap());
        assert_eq!(peers[1].direction, Direction::Outbound);
        assert_eq!(peers[1].local, "127.0.0.1:50000".parse().unwrap());
        assert_eq!(peers[1].enode, "enode://bb@abc.onion:30303");
    }

    #[test]
    fn bad_replies_are_named_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "invalid JSON"),
            ("<html>", "invalid JSON"),
            (r#"{"result":{}}"#, "no `result` array"),
            (
                r#"{"error":{"code":-32601,"message":"nope"}}"#,
                "returned an error",
            ),
            (
                r#"{"result":[{"id":"1","enode":"e"}]}"#,
                "entry 0: missing field network.inbound",
            ),
            (
                r#"{"result":[{"id":"1","enode":"e","network":{"inbound":true,"localAddress":"x","remoteAddress":"1.2.3.4:5"}}]}"#,
                "entry 0: network.localAddress is not ip:port",
            ),
            (
                r#"{"result":[{"id":"1","enode":"e","network":{"inbound":"yes"}}]}"#,
                "network.inbound is not a boolean",
            ),
        ];
        for (body, expected) in cases {
            let error = parse_admin_peers(body.as_bytes()).unwrap_err().to_string();
            assert!(error.contains(expected), "{body}: {error}");
        }
    }

    #[test]
    fn never_panics_on_mangled_input() {
        let bytes = TWO_PEERS.as_bytes();
        for cut in 0..bytes.len() {
            let _ = parse_admin_peers(&bytes[..cut]);
        }
        let mut mangled = bytes.to_vec();
        for index in (0..mangled.len()).step_by(7) {
            mangled[index] = b'"';
            let _ = parse_admin_peers(&mangled);
        }
    }
}
