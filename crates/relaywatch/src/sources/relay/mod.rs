//! The relay source: `admin_peers` (and, for the leak guard, `admin_removePeer`) over HTTP.
//!
//! Only the admin endpoint is ever called. gethrelay's port 8545 is an RPC proxy that
//! forwards every call, `admin_*` included, to a public upstream: asking it for peers would
//! return somebody else's node, so the configuration refuses it (see `cli.rs`).

use std::io::Read;
use std::time::Duration;

use serde_json::json;

/// Every network call of this source gives up after this long.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// admin_peers answers above this size are refused: about 0.5 kB per peer, so 4 MiB is ~8,000
/// peers, far above gethrelay's limits, and a hostile 16 MiB reply once cost 195 MB of RSS.
const MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;

mod decode;

pub use decode::{parse_admin_peers, parse_endpoint, EntryProblem, Peer, PeerList};

/// Why admin_peers could not be used at all (a bad entry is not this: see [`PeerList`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("cannot reach the relay's admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the relay's admin API at {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("admin_peers reply is not JSON-RPC: {0}")]
    NotJsonRpc(String),
    #[error("the relay returned a JSON-RPC error: {0}")]
    RpcError(String),
}

impl RelayError {
    /// A short class for default-level logs; the full text (which may quote the relay, and
    /// the relay may quote a peer's enode) is for `debug` only.
    pub fn class(&self) -> &'static str {
        match self {
            RelayError::Unreachable { .. } => "unreachable",
            RelayError::Status { .. } => "http_status",
            RelayError::NotJsonRpc(_) => "not_json_rpc",
            RelayError::RpcError(_) => "rpc_error",
        }
    }

    /// What a default-level log line may say: the class, plus a bounded, sanitized excerpt.
    pub fn summary(&self) -> String {
        match self {
            RelayError::Status { status, .. } => format!("{} (HTTP {status})", self.class()),
            // The URL is our own configuration; only the reason comes from elsewhere.
            RelayError::Unreachable { url, reason } => format!(
                "{}: cannot reach the relay's admin API at {url}: {}",
                self.class(),
                crate::log::excerpt(reason)
            ),
            _ => format!(
                "{}: {}",
                self.class(),
                crate::log::excerpt(&self.to_string())
            ),
        }
    }
}

/// The interface index of a zone name, for Go's `[fe80::1%eth0]:30303`.
fn zone_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string; if_nametoindex only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// An HTTP client that goes straight to the address it is given: never an environment proxy
/// (HTTP_PROXY, http_proxy, ALL_PROXY; the admin API is the pod's own loopback, and a proxy
/// would receive admin_removePeer calls), never a redirect. `verify` uses it too.
pub fn direct_agent(timeout: std::time::Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .build()
        .into()
}

/// A blocking JSON-RPC client for the admin endpoint.
pub struct RelayClient {
    url: String,
    agent: ureq::Agent,
}

impl RelayClient {
    pub fn new(url: &str) -> RelayClient {
        let agent = direct_agent(TIMEOUT);
        RelayClient {
            url: url.to_string(),
            agent,
        }
    }

    fn call(&self, method: &str, params: serde_json::Value) -> Result<Vec<u8>, RelayError> {
        let mut body = Vec::new();
        self.call_into(method, params, &mut body)?;
        Ok(body)
    }

    /// One call; the reply's body goes into `body` (cleared first, its capacity reused).
    fn call_into(
        &self,
        method: &str,
        params: serde_json::Value,
        body: &mut Vec<u8>,
    ) -> Result<(), RelayError> {
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
        body.clear();
        response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .reader()
            .read_to_end(body)
            .map_err(|error| unreachable(error.to_string()))?;
        Ok(())
    }

    pub fn peers(&self) -> Result<PeerList, RelayError> {
        let mut body = Vec::new();
        self.peers_into(&mut body)
    }

    /// admin_peers, reading the reply into `body` (a poller keeps one buffer for every poll).
    pub fn peers_into(&self, body: &mut Vec<u8>) -> Result<PeerList, RelayError> {
        self.call_into("admin_peers", json!([]), body)?;
        parse_admin_peers(body, &zone_index)
    }

    /// admin_removePeer: disconnects the peer; it does not ban it.
    pub fn remove_peer(&self, enode: &str) -> Result<(), RelayError> {
        let body = self.call("admin_removePeer", json!([enode]))?;
        #[derive(serde::Deserialize)]
        struct Reply<'a> {
            #[serde(borrow, default)]
            error: Option<&'a serde_json::value::RawValue>,
        }
        let reply: Reply = serde_json::from_slice(&body)
            .map_err(|error| RelayError::NotJsonRpc(format!("invalid JSON: {error}")))?;
        match reply.error {
            Some(error) => Err(RelayError::RpcError(error.get().to_string())),
            None => Ok(()),
        }
    }
}
