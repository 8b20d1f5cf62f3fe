//! GETINFO replies (§3.9): `250-key=value` lines or `250+key=` data blocks, and the values
//! of the health keys the exporter polls.

use crate::args::Args;
use crate::framing::Message;

/// The keys the exporter polls, in one command: `GETINFO` + these, space-separated.
pub const HEALTH_KEYS: [&str; 4] = [
    "status/bootstrap-phase",
    "network-liveness",
    "status/circuit-established",
    "version",
];

/// Every `key=value` of a successful GETINFO reply, in order; a data block's lines are
/// joined with `\n`. Empty for an error reply (e.g. `552 Unrecognized key`).
pub fn getinfo_values(message: &Message) -> Vec<(String, String)> {
    if !message.is_ok() {
        return Vec::new();
    }
    message
        .lines
        .iter()
        .filter_map(|line| {
            let (key, value) = line.text.split_once('=')?;
            let value = match &line.data {
                Some(data) => data.join("\n"),
                None => value.to_string(),
            };
            Some((key.to_string(), value))
        })
        .collect()
}

/// The value of `key` in a GETINFO reply.
pub fn getinfo_value(message: &Message, key: &str) -> Option<String> {
    getinfo_values(message)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// `PROGRESS=` of a `status/bootstrap-phase` value (or of a BOOTSTRAP status event's
/// arguments), 0-100; `None` when absent or out of range.
///
/// E.g. `NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"` → 100.
pub fn bootstrap_progress(phase: &str) -> Option<u8> {
    Args::parse(phase)
        .get("PROGRESS")
        .and_then(|p| p.parse::<u8>().ok())
        .filter(|p| *p <= 100)
}

/// `network-liveness`: `up` → true, `down` → false.
pub fn parse_liveness(value: &str) -> Option<bool> {
    match value.trim() {
        "up" => Some(true),
        "down" => Some(false),
        _ => None,
    }
}

/// `status/circuit-established`: `1` → true, `0` → false.
pub fn parse_circuit_established(value: &str) -> Option<bool> {
    match value.trim() {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::test_message as message;

    #[test]
    fn health_reply_as_tor_sends_it() {
        // Measured on tor 0.4.9.11 (sockdiag-and-tor-events.md §B, "Liveness").
        let reply = message(
            b"250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY=\"Done\"\r\n\
              250-network-liveness=up\r\n\
              250-status/circuit-established=1\r\n\
              250-version=0.4.9.11\r\n\
              250 OK\r\n",
        );
        let phase = getinfo_value(&reply, "status/bootstrap-phase").unwrap();
        assert_eq!(bootstrap_progress(&phase), Some(100));
        assert_eq!(
            getinfo_value(&reply, "network-liveness")
                .as_deref()
                .and_then(parse_liveness),
            Some(true)
        );
        assert_eq!(
            getinfo_value(&reply, "status/circuit-established")
                .as_deref()
                .and_then(parse_circuit_established),
            Some(true)
        );
        assert_eq!(
            getinfo_value(&reply, "version").as_deref(),
            Some("0.4.9.11")
        );
        assert_eq!(getinfo_value(&reply, "absent"), None);
    }

    #[test]
    fn data_block_values() {
        let reply = message(b"250+config-text=\r\nSocksPort 1\r\n..dot\r\n.\r\n250 OK\r\n");
        assert_eq!(
            getinfo_value(&reply, "config-text").as_deref(),
            Some("SocksPort 1\n.dot")
        );
    }

    #[test]
    fn errors_and_odd_values() {
        assert!(getinfo_values(&message(b"552 Unrecognized key \"x\"\r\n")).is_empty());
        assert_eq!(
            bootstrap_progress(
                "NOTICE BOOTSTRAP PROGRESS=14 TAG=handshake SUMMARY=\"Handshaking with a relay\""
            ),
            Some(14)
        );
        assert_eq!(bootstrap_progress("WARN BOOTSTRAP PROGRESS=250"), None);
        assert_eq!(bootstrap_progress("garbage"), None);
        assert_eq!(parse_liveness("sideways"), None);
        assert_eq!(parse_liveness("down"), Some(false));
        assert_eq!(parse_circuit_established("0"), Some(false));
        assert_eq!(parse_circuit_established("yes"), None);
    }
}
