//! What reaches the log when the control port sends garbage: at the default level an error
//! class and a bounded, sanitized excerpt only (no NUL/CR, no onion, IP or enode, no 60 KB
//! line); the full text only at `debug`.

use std::time::Duration;

use crate::support::eventually;
use crate::tor_support::{exporter, tor_lines, FakeControlPort};

const ONION: &str = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz234567.onion";

/// A reply line of ~60 KB (under the 64 KiB line limit) full of things no log may show.
fn garbage(status: u16) -> Vec<u8> {
    let mut line = format!(
        "{status} failed\0 \rFAKE LOG LINE\r at 198.51.100.77:9051 for {ONION} enode://{}@[2001:db8::7]:30303 ",
        "ab".repeat(64)
    )
    .into_bytes();
    line.extend(std::iter::repeat_n(b'x', 60_000));
    line.extend_from_slice(b"\r\n");
    line
}

/// Each connection fails one step later than the one before: PROTOCOLINFO, AUTHENTICATE,
/// SETEVENTS, then GETINFO (forever).
fn hostile_tor() -> FakeControlPort {
    FakeControlPort::start(|connection, line| {
        let step = if line.starts_with("PROTOCOLINFO") {
            0
        } else if line.starts_with("AUTHENTICATE") {
            1
        } else if line.starts_with("SETEVENTS") {
            2
        } else {
            3
        };
        Some(if step == connection.min(3) {
            garbage([515, 515, 552, 551][step])
        } else if step == 0 {
            b"250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250 OK\r\n".to_vec()
        } else {
            b"250 OK\r\n".to_vec()
        })
    })
}

#[test]
fn tor_logs_control_port_garbage_is_logged_as_a_bounded_excerpt() {
    let fake = hostile_tor();
    let dir = tempfile::tempdir().unwrap();
    let (_exporter, _, log) = exporter(dir.path(), fake.address, &[]);
    let expected = [
        "PROTOCOLINFO failed",
        "NULL authentication failed",
        "refused",
        "GETINFO failed",
    ];
    let lines = eventually("four failures logged", Duration::from_secs(30), || {
        let lines = tor_lines(&log);
        expected
            .iter()
            .all(|text| lines.iter().any(|line| line.contains(text)))
            .then_some(lines)
    });
    let whole = std::fs::read_to_string(&log).unwrap();
    for line in whole.lines() {
        eprintln!("{line}");
        for secret in [
            "198.51.100.77",
            "2001:db8",
            ".onion",
            "enode",
            "abababab",
            "FAKE LOG LINE\r",
        ] {
            assert!(!line.contains(secret), "{secret:?} logged: {line:?}");
        }
        assert!(
            !line.chars().any(|c| c.is_control()),
            "control character logged: {line:?}"
        );
        assert!(line.len() < 600, "a {}-byte log line", line.len());
    }
    assert!(!whole.contains(
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    ));
    assert!(lines.len() <= 6, "repeats are not logged again: {lines:#?}");
    for (line, status) in lines.iter().zip(["515", "515", "552", "551"]) {
        assert!(line.contains(&format!("tor answered {status}")), "{line:?}");
    }

    // At debug the whole answer is there, escaped.
    let dir = tempfile::tempdir().unwrap();
    let (_exporter, _, log) = exporter(dir.path(), fake.address, &["--log-level", "debug"]);
    eventually("the full answer at debug", Duration::from_secs(30), || {
        let log = std::fs::read_to_string(&log).ok()?;
        log.lines()
            .any(|line| {
                line.contains("\\0 \\rFAKE LOG LINE\\r at 198.51.100.77") && line.contains(ONION)
            })
            .then_some(())
    });
}
