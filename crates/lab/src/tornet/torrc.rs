//! Renders the torrc of every role; pure text, no IO, so it is tested with strings.
//!
//! The options follow the recipe in `/work/shared/reference/tornet` (chutney's "basic + onion
//! service" network), with `RunAsDaemon 0` because the harness owns every tor as a child.

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

/// One authority's `DirAuthority` line; every tor in the network trusts exactly these.
pub(crate) fn dir_authority_line(
    nickname: &str,
    or_port: u16,
    dir_port: u16,
    v3ident: &str,
    fingerprint: &str,
) -> String {
    format!("DirAuthority {nickname} orport={or_port} no-v2 v3ident={v3ident} 127.0.0.1:{dir_port} {fingerprint}")
}

/// An authority or a plain relay; both are exits, guards and HSDirs (forced by the authorities).
pub(crate) struct RelayTorrc<'a> {
    pub nickname: &'a str,
    pub data_dir: &'a Path,
    pub or_port: u16,
    pub dir_port: u16,
    pub control_port: u16,
    pub authority: bool,
}

/// A node: the Tor sidecar of one simulated pod.
pub(crate) struct NodeTorrc<'a> {
    pub data_dir: &'a Path,
    pub control_port: u16,
    /// The port the relay under test dials through.
    pub relay_socks_port: u16,
    /// The harness's own port, so its probes never show up in the relay's SOCKS traffic.
    pub probe_socks_port: u16,
    pub socks_timeout: Option<Duration>,
    pub onion: Option<NodeOnion>,
}

/// The onion service of a node: the caller's port plus the harness's echo port.
pub(crate) struct NodeOnion {
    pub virtual_port: u16,
    pub target: SocketAddr,
    pub probe_virtual_port: u16,
    pub echo: SocketAddr,
}

/// Tor reads a torrc value up to the end of the line and treats `#` as a comment, so paths
/// with whitespace or `#` would silently be cut; refuse them instead of quoting.
pub(crate) fn check_path(path: &Path) -> Result<&str> {
    let Some(text) = path.to_str() else {
        bail!("path {} is not UTF-8; tor cannot use it", path.display());
    };
    if text
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '#' | '"' | '\\'))
    {
        bail!("path {text:?} contains whitespace, '#', '\"' or '\\'; pick a plainer directory for the tor network");
    }
    Ok(text)
}

fn common(
    out: &mut String,
    nickname: Option<&str>,
    data_dir: &str,
    control_port: u16,
    dir_authorities: &[String],
) {
    out.push_str(
        "TestingTorNetwork 1\n\
         PathsNeededToBuildCircuits 0.25\n\
         TestingDirAuthVoteExit *\n\
         TestingDirAuthVoteHSDir *\n\
         TestingDirAuthVoteGuard *\n\
         TestingMinExitFlagThreshold 0\n\
         V3AuthNIntervalsValid 2\n",
    );
    let _ = writeln!(out, "DataDirectory {data_dir}");
    out.push_str("RunAsDaemon 0\n");
    if let Some(nickname) = nickname {
        let _ = writeln!(out, "Nickname {nickname}");
    }
    out.push_str("ShutdownWaitLength 0\n");
    let _ = writeln!(out, "ControlPort 127.0.0.1:{control_port}");
    out.push_str("CookieAuthentication 1\n");
    let _ = writeln!(out, "Log notice file {data_dir}/notice.log");
    out.push_str(
        "SafeLogging 0\n\
         LogTimeGranularity 1\n\
         AddressDisableIPv6 1\n\
         ClientUseIPv6 0\n",
    );
    for line in dir_authorities {
        out.push_str(line);
        out.push('\n');
    }
}

pub(crate) fn relay(relay: &RelayTorrc, dir_authorities: &[String]) -> Result<String> {
    let data_dir = check_path(relay.data_dir)?;
    let mut out = String::new();
    common(
        &mut out,
        Some(relay.nickname),
        data_dir,
        relay.control_port,
        dir_authorities,
    );
    let _ = write!(
        out,
        "SocksPort 0\n\
         Address 127.0.0.1\n\
         ORPort 127.0.0.1:{or_port}\n\
         DirPort 127.0.0.1:{dir_port}\n\
         AssumeReachable 1\n\
         ExitRelay 1\n\
         ExitPolicy accept 127.0.0.0/8:*\n\
         ExitPolicyRejectPrivate 0\n\
         ContactInfo {nickname}@test.invalid\n",
        or_port = relay.or_port,
        dir_port = relay.dir_port,
        nickname = relay.nickname,
    );
    if relay.authority {
        // A 10 s voting interval gives the first consensus within ~10-20 s of the start.
        out.push_str(
            "AuthoritativeDirectory 1\n\
             V3AuthoritativeDirectory 1\n\
             TestingV3AuthInitialVotingInterval 10\n\
             TestingV3AuthInitialVoteDelay 2\n\
             TestingV3AuthInitialDistDelay 2\n\
             V3AuthVotingInterval 10\n\
             V3AuthVoteDelay 2\n\
             V3AuthDistDelay 2\n",
        );
    }
    Ok(out)
}

pub(crate) fn node(node: &NodeTorrc, dir_authorities: &[String]) -> Result<String> {
    let data_dir = check_path(node.data_dir)?;
    let mut out = String::new();
    // No Nickname: node names need not be valid tor nicknames, and clients never publish one.
    common(&mut out, None, data_dir, node.control_port, dir_authorities);
    let _ = writeln!(
        out,
        "SocksPort 127.0.0.1:{} ExtendedErrors",
        node.relay_socks_port
    );
    let _ = writeln!(
        out,
        "SocksPort 127.0.0.1:{} ExtendedErrors",
        node.probe_socks_port
    );
    if let Some(timeout) = node.socks_timeout {
        let _ = writeln!(out, "SocksTimeout {}", timeout.as_secs().max(1));
    }
    if let Some(onion) = &node.onion {
        let _ = write!(
            out,
            "HiddenServiceDir {data_dir}/hs\n\
             HiddenServicePort {} {}\n\
             HiddenServicePort {} {}\n",
            onion.virtual_port, onion.target, onion.probe_virtual_port, onion.echo,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorities() -> Vec<String> {
        vec![dir_authority_line("auth00", 5000, 5100, "V3ID", "FPR")]
    }

    #[test]
    fn authority_line_matches_the_recipe() {
        assert_eq!(
            dir_authority_line("auth00", 15000, 15100, "05AC", "4E00"),
            "DirAuthority auth00 orport=15000 no-v2 v3ident=05AC 127.0.0.1:15100 4E00"
        );
    }

    #[test]
    fn authority_torrc() {
        let torrc = relay(
            &RelayTorrc {
                nickname: "auth00",
                data_dir: Path::new("/t/auth00"),
                or_port: 5000,
                dir_port: 5100,
                control_port: 5200,
                authority: true,
            },
            &authorities(),
        )
        .unwrap();
        for line in [
            "TestingTorNetwork 1",
            "DataDirectory /t/auth00",
            "RunAsDaemon 0",
            "Nickname auth00",
            "ControlPort 127.0.0.1:5200",
            "CookieAuthentication 1",
            "Log notice file /t/auth00/notice.log",
            "DirAuthority auth00 orport=5000 no-v2 v3ident=V3ID 127.0.0.1:5100 FPR",
            "ORPort 127.0.0.1:5000",
            "DirPort 127.0.0.1:5100",
            "SocksPort 0",
            "V3AuthoritativeDirectory 1",
            "V3AuthVotingInterval 10",
        ] {
            assert!(
                torrc.lines().any(|l| l == line),
                "missing {line:?} in\n{torrc}"
            );
        }
        assert!(!torrc.contains("RunAsDaemon 1"));
        assert!(!torrc.contains("PidFile"));
    }

    #[test]
    fn plain_relay_is_no_authority() {
        let torrc = relay(
            &RelayTorrc {
                nickname: "relay03",
                data_dir: Path::new("/t/relay03"),
                or_port: 1,
                dir_port: 2,
                control_port: 3,
                authority: false,
            },
            &authorities(),
        )
        .unwrap();
        assert!(torrc.contains("ExitRelay 1\n"));
        assert!(!torrc.contains("AuthoritativeDirectory"));
    }

    #[test]
    fn node_torrc_with_onion() {
        let torrc = node(
            &NodeTorrc {
                data_dir: Path::new("/t/nodes/a"),
                control_port: 6000,
                relay_socks_port: 6001,
                probe_socks_port: 6002,
                socks_timeout: Some(Duration::from_secs(30)),
                onion: Some(NodeOnion {
                    virtual_port: 30303,
                    target: "127.0.0.1:7000".parse().unwrap(),
                    probe_virtual_port: 7,
                    echo: "127.0.0.1:7001".parse().unwrap(),
                }),
            },
            &authorities(),
        )
        .unwrap();
        let tail: Vec<&str> = torrc
            .lines()
            .skip_while(|l| !l.starts_with("SocksPort"))
            .collect();
        assert_eq!(
            tail,
            [
                "SocksPort 127.0.0.1:6001 ExtendedErrors",
                "SocksPort 127.0.0.1:6002 ExtendedErrors",
                "SocksTimeout 30",
                "HiddenServiceDir /t/nodes/a/hs",
                "HiddenServicePort 30303 127.0.0.1:7000",
                "HiddenServicePort 7 127.0.0.1:7001",
            ]
        );
        assert!(torrc.contains("ControlPort 127.0.0.1:6000\nCookieAuthentication 1\n"));
        assert!(!torrc.contains("Nickname"));
    }

    #[test]
    fn node_torrc_without_onion() {
        let torrc = node(
            &NodeTorrc {
                data_dir: Path::new("/t/nodes/c"),
                control_port: 1,
                relay_socks_port: 2,
                probe_socks_port: 3,
                socks_timeout: None,
                onion: None,
            },
            &authorities(),
        )
        .unwrap();
        assert!(!torrc.contains("HiddenService"));
        assert!(!torrc.contains("SocksTimeout"));
    }

    #[test]
    fn odd_paths_are_refused() {
        assert!(check_path(Path::new("/tmp/with space")).is_err());
        assert!(check_path(Path::new("/tmp/hash#tag")).is_err());
        assert!(check_path(Path::new("/tmp/plain-dir_1.x")).is_ok());
    }
}
