use std::process::Command;

fn labrelay(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_labrelay"))
        .args(args)
        .output()
        .expect("labrelay runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn only_onion_without_tor_proxy_is_refused_like_gethrelay() {
    let (code, stderr) = labrelay(&["--only-onion"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--only-onion requires --tor-proxy to be set"),
        "{stderr}"
    );
}

#[test]
fn malformed_enode_names_the_entry_and_exits_2() {
    let (code, stderr) = labrelay(&["--staticnodes", "enode://1234@127.0.0.1:30303"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("invalid --staticnodes entry"), "{stderr}");
    assert!(
        stderr.contains("node ID must be 128 hex characters"),
        "{stderr}"
    );

    let onion_upper = format!("enode://{}@{}.onion:30303", "ab".repeat(64), "A".repeat(56));
    let (code, stderr) = labrelay(&["--staticnodes", &onion_upper]);
    assert_eq!(code, Some(2), "{stderr}");
}

#[test]
fn unknown_flag_and_bad_proxy_exit_2() {
    let (code, stderr) = labrelay(&["--metrics"]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, stderr) = labrelay(&["--tor-proxy", "tor:9050"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("invalid --tor-proxy"), "{stderr}");
}
