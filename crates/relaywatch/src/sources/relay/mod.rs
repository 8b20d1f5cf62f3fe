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

/// A reply body kept from one call to the next. `read_to_end` would zero a vector's spare
/// capacity again on every call (ureq's reader cannot take uninitialized memory): half a
/// megabyte per admin_peers poll at 1,000 peers. Here only growth zeroes memory.
#[derive(Debug, Default)]
pub struct ReplyBuffer {
    bytes: Vec<u8>,
    len: usize,
}

impl ReplyBuffer {
    const CHUNK: usize = 64 * 1024;

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Reads `reader` to its end, replacing what the buffer held.
    fn read_from(&mut self, mut reader: impl Read) -> std::io::Result<()> {
        self.len = 0;
        loop {
            if self.len == self.bytes.len() {
                let grow = Self::CHUNK.max(self.bytes.len() / 2);
                self.bytes.resize(self.bytes.len() + grow, 0);
            }
            match reader.read(&mut self.bytes[self.len..]) {
                Ok(0) => return Ok(()),
                Ok(read) => self.len += read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }
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

    fn call(&self, method: &str, params: serde_json::Value) -> Result<ReplyBuffer, RelayError> {
        let mut body = ReplyBuffer::default();
        self.call_into(method, params, &mut body)?;
        Ok(body)
    }

    /// One call; the reply's body goes into `body` (cleared first, its capacity reused).
    fn call_into(
        &self,
        method: &str,
        params: serde_json::Value,
        body: &mut ReplyBuffer,
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
        let reader = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .reader();
        body.read_from(reader)
            .map_err(|error| unreachable(error.to_string()))
    }

    pub fn peers(&self) -> Result<PeerList, RelayError> {
        self.peers_into(&mut ReplyBuffer::default())
    }

    /// admin_peers, reading the reply into `body` (a poller keeps one buffer for every poll).
    pub fn peers_into(&self, body: &mut ReplyBuffer) -> Result<PeerList, RelayError> {
        self.call_into("admin_peers", json!([]), body)?;
        parse_admin_peers(body.as_slice(), &zone_index)
    }

    /// admin_removePeer: disconnects the peer; it does not ban it.
    pub fn remove_peer(&self, enode: &str) -> Result<(), RelayError> {
        let body = self.call("admin_removePeer", json!([enode]))?;
        #[derive(serde::Deserialize)]
        struct Reply<'a> {
            #[serde(borrow, default)]
            error: Option<&'a serde_json::value::RawValue>,
        }
        let reply: Reply = serde_json::from_slice(body.as_slice())
            .map_err(|error| RelayError::NotJsonRpc(format!("invalid JSON: {error}")))?;
        match reply.error {
            Some(error) => Err(RelayError::RpcError(error.get().to_string())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_buffer_holds_exactly_the_last_reply() {
        let mut buffer = ReplyBuffer::default();
        let long = vec![7u8; 200_000];
        buffer.read_from(&long[..]).unwrap();
        assert_eq!(buffer.as_slice(), &long[..]);
        let grown = buffer.bytes.len();
        buffer.read_from(&b"short"[..]).unwrap();
        assert_eq!(buffer.as_slice(), b"short");
        assert_eq!(buffer.bytes.len(), grown, "kept, not zeroed again");
        buffer.read_from(&b""[..]).unwrap();
        assert_eq!(buffer.as_slice(), b"");
    }

    #[test]
    fn a_failed_read_is_an_error_not_a_partial_reply() {
        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("connection reset"));
                }
                self.0 -= 1;
                buf[0] = b'x';
                Ok(1)
            }
        }
        let mut buffer = ReplyBuffer::default();
        assert!(buffer.read_from(Broken(3)).is_err());
    }
}
