//! The IO edge of `verify`: Prometheus, Alertmanager and the relays' admin APIs over HTTP.
//!
//! Like the exporter's relay client, it never uses an environment proxy (`HTTP_PROXY` & co.):
//! the URLs are port-forwards on this machine, and a proxy would see every relay's peer list.

use std::time::Duration;

use super::config::{Config, Relay};
use super::gather::Sources;
use crate::sources::relay::{PeerList, RelayClient};

/// Every Prometheus and Alertmanager request gives up after this long.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Replies above this size are refused (a large cluster's /api/v1/targets is a few MB).
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// The real sources of a configuration.
pub struct HttpSources {
    prometheus: String,
    alertmanager: String,
    agent: ureq::Agent,
}

impl HttpSources {
    pub fn new(config: &Config) -> HttpSources {
        let agent = crate::sources::relay::direct_agent(TIMEOUT);
        HttpSources {
            prometheus: config.prometheus.clone(),
            alertmanager: config.alertmanager.clone(),
            agent,
        }
    }

    /// GETs `url`; any HTTP status returns its body (Prometheus explains errors in JSON),
    /// except when the body is empty. Errors name the URL without its query string, so that
    /// one unreachable Prometheus reads the same for every query.
    fn get(&self, url: &str) -> Result<String, String> {
        let url_for_errors = url.split('?').next().unwrap_or(url);
        let mut response = self
            .agent
            .get(url)
            .call()
            .map_err(|error| format!("cannot reach {url_for_errors}: {error}"))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_string()
            .map_err(|error| {
                format!("{url_for_errors}: HTTP {status}, unreadable body: {error}")
            })?;
        if status != 200 && body.trim().is_empty() {
            return Err(format!("{url_for_errors}: HTTP {status}"));
        }
        Ok(body)
    }
}

impl Sources for HttpSources {
    fn prometheus(&self, path: &str) -> Result<String, String> {
        self.get(&format!("{}{path}", self.prometheus))
    }

    fn alertmanager_status(&self) -> Result<String, String> {
        self.get(&format!("{}/api/v2/status", self.alertmanager))
    }

    fn admin_peers(&self, relay: &Relay) -> Result<PeerList, String> {
        // The exporter's own client and decoder; `summary` never quotes a peer.
        RelayClient::new(&relay.admin)
            .peers()
            .map_err(|error| error.summary())
    }

    fn now(&self) -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64())
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// Percent-encodes a query parameter value.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
