//! relaywatch's integration tests: one binary (see ARCHITECTURE.md, "Testing").

/// Shared helpers: polling for a condition, reading scrapes.
mod support;

/// A hostile stand-in for gethrelay's admin API.
mod fake_relay;
/// The exporter against malformed replies, hanging removals, proxies, a closed stderr.
mod hostile_relay;

/// The exporter process: HTTP server under floods, signals, start-up checks.
mod exporter_process;

/// `promtool check metrics` on a live exposition.
mod exposition_lint;
/// The exporter on every relay of a lab over the real private Tor network: peers, bytes, leaks, privacy.
mod fleet;
/// Sources failing under the exporter: relay killed and restarted, garbage from the admin API.
mod source_failures;
/// Control-port authentication methods against a lone real tor.
mod tor_auth;
/// Cookie authentication against hostile fake control ports: no exfiltration, bounded reads.
mod tor_cookie;
/// Control-port garbage reaches default-level logs only as a bounded, sanitized excerpt.
mod tor_logs;
/// The Tor control-port source against a real pod tor: dials by outcome, tor restarts.
mod tor_source;
/// Helpers of the tor_* tests: an exporter beside a control port, a fake control port.
mod tor_support;
/// `relaywatch verify`: a bad configuration, and the PRD's criteria against a mini lab.
mod verify;
