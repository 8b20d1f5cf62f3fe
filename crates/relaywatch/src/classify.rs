//! The one classifier: did a peer reach the relay over Tor or over clearnet? Pure, no IO.
//!
//! Transport is decided by `network.remoteAddress` alone. An outbound peer dialed through
//! Tor shows the SOCKS proxy's address (gethrelay hands the proxy socket to the p2p layer);
//! an inbound peer that came through the onion service shows the Tor daemon's address. The
//! `.onion` in an enode is *not* proof: gethrelay prints the onion for any peer that
//! advertises one, also when the dial fell back to clearnet.

use std::net::{IpAddr, SocketAddr};

/// How a peer is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Tor,
    Clearnet,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Tor => "tor",
            Route::Clearnet => "clearnet",
        }
    }
}

/// Which side opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Where Tor is, as the pod is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorEndpoints {
    /// The relay's `--tor-proxy` address (ip and port).
    pub socks_proxy: SocketAddr,
    /// Source addresses of the Tor daemon's connections to the relay (the sidecar's: 127.0.0.1, ::1).
    pub daemon_sources: Vec<IpAddr>,
}

/// Classifies one peer from its direction and remote address.
pub fn classify(direction: Direction, remote: SocketAddr, tor: &TorEndpoints) -> Route {
    let is_tor = match direction {
        Direction::Outbound => same_endpoint(remote, tor.socks_proxy),
        Direction::Inbound => tor
            .daemon_sources
            .iter()
            .any(|source| same_ip(*source, remote.ip())),
    };
    if is_tor {
        Route::Tor
    } else {
        Route::Clearnet
    }
}

/// Classifies a peer whose direction is unknown (a malformed admin_peers entry): the route is
/// known only when both readings agree; `None` when the entry could be either.
pub fn classify_maybe(
    direction: Option<Direction>,
    remote: SocketAddr,
    tor: &TorEndpoints,
) -> Option<Route> {
    match direction {
        Some(direction) => Some(classify(direction, remote, tor)),
        None => {
            let inbound = classify(Direction::Inbound, remote, tor);
            (inbound == classify(Direction::Outbound, remote, tor)).then_some(inbound)
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:127.0.0.1`) is the same host as the plain IPv4 address.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && same_ip(a.ip(), b.ip())
}

/// Whether an enode URL names an onion host (`enode://<id>@<56 chars>.onion:<port>`).
pub fn enode_names_onion(enode: &str) -> bool {
    enode
        .rsplit_once('@')
        .map(|(_, host_port)| {
            let host = host_port.split([':', '?', '/']).next().unwrap_or_default();
            // Case-insensitive without allocating: this runs for every clearnet peer every poll.
            let suffix = host.len().checked_sub(".onion".len());
            suffix.is_some_and(|at| host.as_bytes()[at..].eq_ignore_ascii_case(b".onion"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> TorEndpoints {
        TorEndpoints {
            socks_proxy: "127.0.0.1:9050".parse().unwrap(),
            daemon_sources: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
        }
    }

    #[test]
    fn table() {
        use Direction::*;
        use Route::*;
        let rows: &[(Direction, &str, Route, &str)] = &[
            (
                Outbound,
                "127.0.0.1:9050",
                Tor,
                "dialed through the SOCKS proxy",
            ),
            (
                Outbound,
                "[::ffff:127.0.0.1]:9050",
                Tor,
                "v4-mapped proxy address",
            ),
            (
                Outbound,
                "127.0.0.1:9051",
                Clearnet,
                "same IP, another port is not the proxy",
            ),
            (
                Outbound,
                "127.0.0.1:30303",
                Clearnet,
                "a loopback peer is not Tor",
            ),
            (
                Outbound,
                "203.0.113.7:30303",
                Clearnet,
                "plain clearnet dial",
            ),
            (Inbound, "127.0.0.1:41234", Tor, "from the Tor daemon"),
            (Inbound, "[::1]:41234", Tor, "from the Tor daemon over IPv6"),
            (
                Inbound,
                "127.0.1.5:41234",
                Clearnet,
                "another loopback address is not the sidecar",
            ),
            (
                Inbound,
                "198.51.100.9:50000",
                Clearnet,
                "inbound clearnet: the only-onion hole",
            ),
            (Inbound, "127.0.0.1:9050", Tor, "inbound judged by IP only"),
        ];
        for (direction, remote, expected, why) in rows {
            let got = classify(*direction, remote.parse().unwrap(), &pod());
            assert_eq!(got, *expected, "{direction:?} {remote}: {why}");
        }
    }

    #[test]
    fn unknown_direction_is_classified_only_when_both_readings_agree() {
        let route = |remote: &str| classify_maybe(None, remote.parse().unwrap(), &pod());
        assert_eq!(route("198.51.100.9:30303"), Some(Route::Clearnet));
        assert_eq!(route("[fe80::1]:30303"), Some(Route::Clearnet));
        assert_eq!(
            route("127.0.0.1:9050"),
            Some(Route::Tor),
            "proxy, or from the daemon"
        );
        assert_eq!(
            route("127.0.0.1:41234"),
            None,
            "from the daemon, or a local dial"
        );
    }

    /// gethrelay prints the onion for any peer advertising one, whatever transport was used:
    /// a prefer-tor dial that fell back to clearnet keeps the onion in its enode.
    #[test]
    fn onion_in_enode_is_not_proof_of_tor() {
        let enode = format!("enode://{}@{}.onion:30303", "ab".repeat(64), "a".repeat(56));
        assert!(enode_names_onion(&enode));
        let route = classify(
            Direction::Outbound,
            "198.51.100.4:30303".parse().unwrap(),
            &pod(),
        );
        assert_eq!(route, Route::Clearnet);
    }

    #[test]
    fn enode_hosts() {
        let id = "ab".repeat(64);
        assert!(enode_names_onion(&format!(
            "enode://{id}@{}.ONION:1",
            "a".repeat(56)
        )));
        assert!(!enode_names_onion(&format!("enode://{id}@10.0.0.1:30303")));
        assert!(!enode_names_onion(&format!(
            "enode://{id}@10.0.0.1:30303?discport=0"
        )));
        assert!(!enode_names_onion("garbage"));
    }
}
