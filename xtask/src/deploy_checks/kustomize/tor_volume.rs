//! The bundle's torrc on a volume as kubelet hands a fresh one to the pod: root-owned, group
//! fsGroup (10002), mode 2770. Debian's tor runs it as the pod's tor user (10001:10002) with
//! `DisableNetwork 1` (nothing leaves the machine): it must create its data directory and onion
//! keys privately, write the control cookie where the exporter (10003, supplementary group
//! 10002) can read it, and keep the onion address across a restart. A re-chmod like kubelet's
//! default fsGroup policy (Always) must break it, which is why the pod says OnRootMismatch.
//! Needs root (to act as those users) and `setpriv`; otherwise it prints why it skips.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pod's users (relay/statefulset.yaml): tor, the volume's fsGroup, the exporter.
const TOR_UID: u32 = 10001;
const FS_GROUP: u32 = 10002;
const EXPORTER_UID: u32 = 10003;
const MOUNT: &str = "/var/lib/tor";

/// The rendered torrc, made runnable here: the volume at `volume`, no SOCKS port, the control
/// port on a free loopback port, no network. Fails if the torrc lacks a line it rewrites.
pub fn local_torrc(torrc: &str, volume: &Path) -> Result<String, String> {
    let mut out = String::new();
    let (mut socks, mut control) = (false, false);
    for line in torrc.lines() {
        if line.starts_with("SocksPort ") {
            socks = true;
            out.push_str("SocksPort 0\n");
        } else if line.starts_with("ControlPort ") {
            control = true;
            out.push_str("ControlPort auto\n");
        } else {
            out.push_str(&line.replace(MOUNT, &volume.display().to_string()));
            out.push('\n');
        }
    }
    if !(socks && control) {
        return Err("torrc without SocksPort or ControlPort lines".to_string());
    }
    out.push_str("DisableNetwork 1\n");
    Ok(out)
}

fn as_user(uid: u32, gid: u32, groups: Option<u32>) -> Command {
    let mut command = Command::new("setpriv");
    command.args(["--reuid", &uid.to_string(), "--regid", &gid.to_string()]);
    match groups {
        Some(group) => command.args(["--groups", &group.to_string()]),
        None => command.arg("--clear-groups"),
    };
    command
}

/// The tor this test started, killed when dropped (also when an assertion fails).
struct Tor(Child);

impl Drop for Tor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_tor(torrc: &Path, log: &Path) -> Tor {
    let log = std::fs::File::create(log).unwrap();
    let child = as_user(TOR_UID, FS_GROUP, None)
        .arg("tor")
        .arg("-f")
        .arg(torrc)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("cannot start tor");
    Tor(child)
}

/// Waits until every file exists, or tor exits, or a minute passes.
fn wait_for(tor: &mut Tor, files: &[PathBuf], log: &Path) -> Result<Duration, String> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if files.iter().all(|file| file.exists()) {
            return Ok(started.elapsed());
        }
        if let Ok(Some(status)) = tor.0.try_wait() {
            return Err(format!(
                "tor exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("tor did not create {files:?} within a minute"))
}

/// Waits until tor's log has `text` (it logs "Bootstrapped 0%" once its configuration, onion
/// keys included, is in effect).
fn wait_for_log(log: &Path, text: &str) -> Result<(), String> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains(text)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("tor never logged {text:?}"))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

#[test]
fn the_torrc_works_on_a_fresh_root_owned_volume_and_keeps_the_onion() {
    let check = "Tor on a fresh root-owned volume";
    if !super::super::tool("kubectl", check)
        || !super::super::tool("tor", check)
        || !super::super::tool("setpriv", check)
    {
        return;
    }
    if !is_root() {
        println!("skipped: {check}: needs root to run tor and the exporter as the pod's users");
        return;
    }
    let objects = super::render().unwrap();
    let torrc = super::of_kind(&objects, "ConfigMap")
        .find(|cm| cm["metadata"]["name"] == "gethrelay-tor")
        .and_then(|cm| cm["data"]["torrc"].as_str().map(str::to_string))
        .expect("ConfigMap gethrelay-tor with key torrc");
    let dir = std::env::temp_dir().join(format!("relaywatch-tor-volume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let volume = dir.join("volume");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // What kubelet makes of a fresh volume for fsGroup 10002.
    std::os::unix::fs::chown(&volume, Some(0), Some(FS_GROUP)).unwrap();
    std::fs::set_permissions(&volume, std::fs::Permissions::from_mode(0o2770)).unwrap();
    let torrc_file = dir.join("torrc");
    std::fs::write(&torrc_file, local_torrc(&torrc, &volume).unwrap()).unwrap();
    std::fs::set_permissions(&torrc_file, std::fs::Permissions::from_mode(0o644)).unwrap();

    let data = volume.join("data");
    let service = data.join("hidden_service");
    let hostname = service.join("hostname");
    let cookie = volume.join("control_auth_cookie");
    let log = dir.join("tor.log");
    let mut tor = start_tor(&torrc_file, &log);
    let took = wait_for(&mut tor, &[hostname.clone(), cookie.clone()], &log);
    let took = took.unwrap_or_else(|error| panic!("{error}"));
    println!("tor created its data directory, onion keys and cookie in {took:?}");
    for private in [&data, &service] {
        let meta = std::fs::metadata(private).unwrap();
        assert_eq!(meta.uid(), TOR_UID, "{} not tor's", private.display());
        assert_eq!(
            mode(private) & 0o077,
            0,
            "{} is not private: {:o}",
            private.display(),
            mode(private)
        );
    }
    assert_eq!(std::fs::metadata(&cookie).unwrap().gid(), FS_GROUP);
    let read = |groups| {
        as_user(EXPORTER_UID, EXPORTER_UID, groups)
            .arg("cat")
            .arg(&cookie)
            .output()
            .unwrap()
    };
    let exporter = read(Some(FS_GROUP));
    assert!(
        exporter.status.success(),
        "the exporter cannot read the cookie: {}",
        String::from_utf8_lossy(&exporter.stderr)
    );
    assert_eq!(exporter.stdout.len(), 32, "a control cookie is 32 bytes");
    assert!(
        !read(None).status.success(),
        "the cookie is readable without the pod's group"
    );
    let onion = std::fs::read_to_string(&hostname).unwrap();
    drop(tor);

    // kubelet with OnRootMismatch leaves a volume alone whose root has the group and at least
    // rwxrwx plus setgid; tor never touched the root, so the next mount changes nothing.
    let root = std::fs::metadata(&volume).unwrap();
    assert_eq!(
        (root.uid(), root.gid(), mode(&volume)),
        (0, FS_GROUP, 0o2770)
    );
    // The killed tor left its cookie; a new one means the new tor is past loading its keys.
    std::fs::remove_file(&cookie).unwrap();
    let mut tor = start_tor(&torrc_file, &log);
    wait_for(&mut tor, std::slice::from_ref(&cookie), &log)
        .unwrap_or_else(|error| panic!("restart: {error}"));
    wait_for_log(&log, "Bootstrapped 0%").unwrap_or_else(|error| panic!("restart: {error}"));
    assert_eq!(
        std::fs::read_to_string(&hostname).unwrap(),
        onion,
        "the onion address changed across a restart"
    );
    drop(tor);
    println!("the onion address was kept across a restart");

    // kubelet's default policy (Always) at the next mount: group rw on everything, rwx and
    // setgid on directories. tor must refuse the onion directory, or the comment is wrong.
    let status = Command::new("sh")
        .arg("-c")
        .arg("chgrp -R \"$1\" \"$2\" && chmod -R g+rwX \"$2\" && find \"$2\" -type d -exec chmod g+s {} +")
        .args(["sh", &FS_GROUP.to_string()])
        .arg(&volume)
        .status()
        .unwrap();
    assert!(status.success());
    let mut tor = start_tor(&torrc_file, &log);
    let refused = wait_for(&mut tor, &[PathBuf::from("/nonexistent")], &log);
    drop(tor);
    let error = refused.expect_err("tor accepted a group-accessible onion directory");
    assert!(error.contains("too permissive"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
