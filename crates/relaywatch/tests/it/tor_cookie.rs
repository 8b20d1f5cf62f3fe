//! Cookie authentication against hostile control ports (fakes on loopback: a real tor never
//! offers COOKIE without SAFECOOKIE, nor names a fifo as its cookie): no file's bytes on the
//! wire without `--tor-allow-plain-cookie`, bounded reads, no hang.

use std::path::Path;
use std::time::Duration;

use crate::support::eventually;
use crate::tor_support::{exporter, fake_tor, protocolinfo, tor_lines, tor_up, FakeControlPort};

/// 32 bytes, the size of a cookie: the most dangerous shape for a secret file.
const SECRET: &[u8; 32] = b"db_password=hunter2-0123456789ab";

/// Waits for a tor-source log line containing `text` and returns it.
fn logged(log: &Path, text: &str) -> String {
    eventually(
        &format!("a log line with {text:?}"),
        Duration::from_secs(20),
        || tor_lines(log).into_iter().find(|line| line.contains(text)),
    )
}

/// Waits until the fake has seen `n` connection attempts (PROTOCOLINFO), i.e. `n - 1`
/// retries, or an AUTHENTICATE with an argument (after which there may be no retry).
fn attempts(fake: &FakeControlPort, n: usize) {
    eventually(
        &format!("{n} connection attempts"),
        Duration::from_secs(30),
        || {
            let received = String::from_utf8_lossy(&fake.received()).to_string();
            (received.matches("PROTOCOLINFO").count() >= n || received.contains("AUTHENTICATE "))
                .then_some(())
        },
    );
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn assert_secret_not_sent(received: &[u8]) {
    let received = String::from_utf8_lossy(received);
    let hex = hex_upper(SECRET);
    for leak in [hex.clone(), hex.to_lowercase(), "db_password".into()] {
        assert!(
            !received.contains(&leak),
            "the secret went on the wire:\n{received}"
        );
    }
}

#[test]
fn tor_cookie_plain_cookie_is_refused_and_no_file_reaches_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.env");
    std::fs::write(&secret, SECRET).unwrap();
    let fake = fake_tor(protocolinfo("COOKIE", Some(&secret)));

    // Without the flag: refused, and the log says why and what to do.
    let (_exporter, listen, log) = exporter(dir.path(), fake.address, &[]);
    attempts(&fake, 2);
    assert_secret_not_sent(&fake.received());
    let line = logged(&log, "tor offers COOKIE but not SAFECOOKIE");
    assert!(line.contains("--tor-allow-plain-cookie"), "{line}");
    eventually("tor source down", Duration::from_secs(20), || {
        (tor_up(listen)? == 0.0).then_some(())
    });

    // With the flag but no --tor-cookie: the file tor names is still never sent.
    let fake = fake_tor(protocolinfo("COOKIE", Some(&secret)));
    let other = tempfile::tempdir().unwrap();
    let (_exporter, _, log) = exporter(other.path(), fake.address, &["--tor-allow-plain-cookie"]);
    attempts(&fake, 2);
    assert_secret_not_sent(&fake.received());
    assert!(
        !String::from_utf8_lossy(&fake.received()).contains("AUTHENTICATE"),
        "nothing was worth authenticating with"
    );
    logged(&log, "sends only the file --tor-cookie names");
}

#[test]
fn tor_cookie_plain_cookie_with_the_flag_sends_only_the_configured_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.env");
    std::fs::write(&secret, SECRET).unwrap();
    let cookie = dir.path().join("control_auth_cookie");
    std::fs::write(&cookie, [0xC0u8; 32]).unwrap();
    let fake = fake_tor(protocolinfo("COOKIE", Some(&secret)));
    let flags = [
        "--tor-allow-plain-cookie",
        "--tor-cookie",
        cookie.to_str().unwrap(),
    ];
    let (_exporter, listen, _) = exporter(dir.path(), fake.address, &flags);
    eventually(
        "tor source up with plain COOKIE",
        Duration::from_secs(20),
        || (tor_up(listen)? == 1.0).then_some(()),
    );
    let received = String::from_utf8_lossy(&fake.received()).to_string();
    assert!(
        received.contains(&format!("AUTHENTICATE {}", hex_upper(&[0xC0u8; 32]))),
        "{received}"
    );
    assert_secret_not_sent(received.as_bytes());
}

#[test]
fn tor_cookie_files_tor_names_are_used_only_when_they_look_like_cookies() {
    let dir = tempfile::tempdir().unwrap();
    // A fifo: opening it for reading would wait for a writer forever.
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let fake = fake_tor(protocolinfo("COOKIE,SAFECOOKIE", Some(&fifo)));
    let (_exporter, _, log) = exporter(dir.path(), fake.address, &[]);
    // Before the fix the tor thread hung in open(2) here, and nothing was ever logged.
    logged(&log, "tor source");
    let line = logged(&log, "is a fifo, not a regular file");
    assert!(line.contains("set --tor-cookie"), "{line}");
    assert!(!String::from_utf8_lossy(&fake.received()).contains("AUTHCHALLENGE"));

    // A secret file of another size: not read, not used.
    let secret = dir.path().join("secret.env");
    std::fs::write(&secret, b"db_password=hunter2\n").unwrap();
    let fake = fake_tor(protocolinfo("COOKIE,SAFECOOKIE", Some(&secret)));
    let other = tempfile::tempdir().unwrap();
    let (_exporter, _, log) = exporter(other.path(), fake.address, &[]);
    logged(&log, "holds 20 bytes, not 32");
    assert_secret_not_sent(&fake.received());
}

/// VmHWM (peak resident memory) of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn tor_cookie_a_huge_or_fifo_cookie_is_refused_with_bounded_memory_and_no_hang() {
    let dir = tempfile::tempdir().unwrap();
    // A sparse 1 GiB "cookie": it costs no disk, but reading it whole costs 1 GiB of memory.
    let huge = dir.path().join("huge_cookie");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let fake = fake_tor(protocolinfo("COOKIE,SAFECOOKIE", None));
    let (exporter_, _, log) = exporter(
        dir.path(),
        fake.address,
        &["--tor-cookie", huge.to_str().unwrap()],
    );
    logged(&log, "tor source");
    attempts(&fake, 3); // retries read it again
    let peak = peak_rss(exporter_.pid());
    eprintln!(
        "relaywatch peak RSS with a 1 GiB cookie: {} MB",
        peak / 1_000_000
    );
    assert!(
        peak < 64 << 20,
        "peak RSS {peak} bytes: the cookie was read whole"
    );
    let line = logged(&log, "holds more than 32 bytes");
    assert!(
        line.contains("point --tor-cookie at tor's CookieAuthFile"),
        "{line}"
    );

    // A configured fifo: refused at once instead of hanging the tor thread.
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let other = tempfile::tempdir().unwrap();
    let (_exporter, _, log) = exporter(
        other.path(),
        fake.address,
        &["--tor-cookie", fifo.to_str().unwrap()],
    );
    logged(&log, "tor source");
    logged(&log, "is a fifo, not a regular file");
}

/// Makes a fifo at `path` (opening it for reading would wait for a writer forever).
fn mkfifo(path: &std::path::Path) {
    assert!(std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success());
}
