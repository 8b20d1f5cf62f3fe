//! Control-port authentication against a real tor (no Tor network needed: `DisableNetwork 1`):
//! NULL, SAFECOOKIE with the cookie file tor names, HASHEDPASSWORD from a file, and a wrong
//! password named in one log line.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lab::process::Child;

use crate::support::eventually;
use crate::tor_support::{exporter, free_port, tor_up};

/// A lone tor offering only a control port, with `auth` torrc options.
fn start_tor(dir: &Path, auth: &[&str]) -> (Child, SocketAddr) {
    let tor = lab::tornet::find_tor().unwrap();
    let control = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let data = dir.join("tor-data");
    std::fs::create_dir_all(&data).unwrap();
    let mut command = Command::new(tor);
    command.args([
        "--ignore-missing-torrc",
        "-f",
        "/dev/null",
        "--defaults-torrc",
        "/dev/null",
    ]);
    command.arg("--DataDirectory").arg(&data);
    command.args([
        "--SocksPort",
        "0",
        "--DisableNetwork",
        "1",
        "--ControlPort",
        &control.to_string(),
    ]);
    command.args(auth);
    let child = lab::process::spawn("tor", command, &dir.join("tor.log")).unwrap();
    eventually("tor's control port", Duration::from_secs(20), || {
        TcpStream::connect(control).ok()
    });
    (child, control)
}

#[test]
fn null_safecookie_and_hashed_password_authenticate_and_a_wrong_password_is_named() {
    if !lab::tor_available_or_skip(
        "null_safecookie_and_hashed_password_authenticate_and_a_wrong_password_is_named",
    ) {
        return;
    }
    // NULL: a control port without authentication.
    let dir = tempfile::tempdir().unwrap();
    let (_tor, control) = start_tor(dir.path(), &[]);
    let (_exporter, listen, _) = exporter(dir.path(), control, &[]);
    eventually("NULL authentication", Duration::from_secs(20), || {
        (tor_up(listen)? == 1.0).then_some(())
    });

    // SAFECOOKIE with the cookie file tor names in PROTOCOLINFO (tor offers COOKIE too).
    let dir = tempfile::tempdir().unwrap();
    let (_tor, control) = start_tor(dir.path(), &["--CookieAuthentication", "1"]);
    let (_exporter, listen, _) = exporter(dir.path(), control, &[]);
    eventually("SAFECOOKIE authentication", Duration::from_secs(20), || {
        (tor_up(listen)? == 1.0).then_some(())
    });

    // HASHEDPASSWORD, the password read from a file.
    let dir = tempfile::tempdir().unwrap();
    let tor = lab::tornet::find_tor().unwrap();
    let hashed = Command::new(tor)
        .args(["--quiet", "--hash-password", "s3cret pass"])
        .output()
        .unwrap();
    let hashed = String::from_utf8(hashed.stdout).unwrap();
    let hashed = hashed.lines().last().unwrap().trim().to_string();
    let (_tor, control) = start_tor(dir.path(), &["--HashedControlPassword", &hashed]);
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret pass\n").unwrap();
    let (_exporter, listen, _) = exporter(
        dir.path(),
        control,
        &["--tor-password-file", password.to_str().unwrap()],
    );
    eventually(
        "HASHEDPASSWORD authentication",
        Duration::from_secs(20),
        || (tor_up(listen)? == 1.0).then_some(()),
    );

    // The wrong password: down, and one line naming the method and tor's answer.
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not it").unwrap();
    let wrong_dir = tempfile::tempdir().unwrap();
    let (_exporter, listen, log) = exporter(
        wrong_dir.path(),
        control,
        &["--tor-password-file", wrong.to_str().unwrap()],
    );
    let line = eventually(
        "the wrong password to be reported",
        Duration::from_secs(20),
        || {
            let log = std::fs::read_to_string(&log).ok()?;
            let line = log
                .lines()
                .find(|line| line.contains("authentication failed"))?
                .to_string();
            (tor_up(listen)? == 0.0).then_some(line)
        },
    );
    assert!(
        line.contains("HASHEDPASSWORD authentication failed: tor answered 515"),
        "{line}"
    );
    assert!(
        !line.contains("not it"),
        "the password must never be logged: {line}"
    );
}
