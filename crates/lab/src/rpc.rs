//! A small blocking JSON-RPC-over-HTTP client for the relays' admin API, with timeouts.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// The lab's one HTTP client configuration: everything it talks to is on this machine, so it
/// never uses an environment proxy (`HTTP_PROXY`, `ALL_PROXY`…; ureq honours them by default
/// and does not exempt loopback), which would carry enodes, onions and peer addresses away.
pub fn agent(timeout: Duration, status_as_error: bool) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(status_as_error)
        .proxy(None)
        .build()
        .into()
}

/// Calls `method` with `params` on `http://<addr>/` and returns the `result`.
pub fn call(addr: SocketAddr, method: &str, params: Value) -> Result<Value> {
    let agent = agent(Duration::from_secs(5), false);
    let url = format!("http://{addr}/");
    let mut response = agent
        .post(&url)
        .header("Content-Type", "application/json")
        .send_json(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .with_context(|| format!("{method} on {url}"))?;
    let status = response.status();
    let body: Value = response
        .body_mut()
        .read_json()
        .with_context(|| format!("{method} on {url}: HTTP {status}, body is not JSON"))?;
    if let Some(error) = body.get("error") {
        bail!("{method} on {url}: {error}");
    }
    body.get("result")
        .cloned()
        .ok_or_else(|| anyhow!("{method} on {url}: reply has no result: {body}"))
}

/// Fetches `http://<addr><path>` as text.
pub fn get_text(addr: SocketAddr, path: &str) -> Result<String> {
    let agent = agent(Duration::from_secs(5), true);
    let url = format!("http://{addr}{path}");
    agent
        .get(&url)
        .call()
        .with_context(|| format!("GET {url}"))?
        .body_mut()
        .read_to_string()
        .with_context(|| format!("GET {url}: body"))
}
