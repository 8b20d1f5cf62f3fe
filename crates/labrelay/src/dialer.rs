//! gethrelay's TorDialer: which transport a dial uses, and the SOCKS5 and TCP dials themselves.
//!
//! `plan` mirrors `TorDialer.Dial` (p2p/tor_dialer.go) line by line, including its surprises:
//! in only-onion mode a peer with both an onion and a clearnet endpoint is dialed on
//! **clearnet** unless `--prefer-tor` is also set, because `useTor := hasOnion && (preferTor || !hasClearnet)`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use crate::cli::DialMode;
use crate::identity::NodeRecord;
use crate::wire::Counters;

/// geth's defaultDialTimeout for plain TCP dials.
pub const TCP_DIAL_TIMEOUT: Duration = Duration::from_secs(15);
/// x/net/proxy's base dialer timeout: it bounds only the connect to the proxy, not the SOCKS
/// exchange, which gethrelay leaves to Tor's SocksTimeout (default 120 s).
pub const PROXY_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// TorDialer's port when the record has no `tcp` entry.
const DEFAULT_ONION_PORT: u16 = 30303;

/// What the dialer will do for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Plain TCP to the node's endpoint.
    Clearnet(SocketAddr),
    /// SOCKS5 CONNECT to `onion:port`; on failure fall back to `fallback` if any.
    Tor {
        proxy: SocketAddr,
        onion: String,
        port: u16,
        fallback: Option<SocketAddr>,
        only_onion: bool,
    },
    /// Refused before any network I/O; the text is gethrelay's error.
    Reject(String),
}

/// Decides the transport exactly as gethrelay's TorDialer (or its plain dialer without a proxy).
pub fn plan(mode: DialMode, node: &NodeRecord) -> Plan {
    let node_id = hex::encode(node.id.node_id());
    let clearnet = node.tcp_endpoint();
    match mode {
        DialMode::Plain => match clearnet {
            Some(endpoint) => Plan::Clearnet(endpoint),
            None => Plan::Reject(format!("peer {node_id} has no TCP endpoint")),
        },
        DialMode::Tor {
            proxy,
            prefer_tor,
            only_onion,
        } => {
            let onion = node.onion3.clone();
            if only_onion && onion.is_none() {
                return Plan::Reject(format!(
                    "only-onion mode: peer {node_id} has no .onion address"
                ));
            }
            match onion {
                Some(onion) if prefer_tor || clearnet.is_none() => Plan::Tor {
                    proxy,
                    onion,
                    port: node
                        .tcp
                        .filter(|&port| port != 0)
                        .unwrap_or(DEFAULT_ONION_PORT),
                    fallback: if only_onion { None } else { clearnet },
                    only_onion,
                },
                _ => match clearnet {
                    Some(endpoint) => Plan::Clearnet(endpoint),
                    None => Plan::Reject(format!("peer {node_id} has no usable addresses")),
                },
            }
        }
    }
}

/// How a connection was actually made (ground truth for tests; gethrelay does not expose it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tor,
    Clearnet,
}

/// Plain TCP dial, from `source` when the relay owns a lab address.
pub async fn dial_tcp(target: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = source {
        if source.is_ipv4() == target.is_ipv4() {
            socket.bind(SocketAddr::new(source, 0))?;
        }
    }
    tokio::time::timeout(TCP_DIAL_TIMEOUT, socket.connect(target))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "i/o timeout"))?
}

/// SOCKS5 reply codes as x/net/proxy prints them (Tor's 0xF0-0xF7 become "unknown code: N").
fn socks_reply_text(code: u8) -> String {
    match code {
        0x01 => "general SOCKS server failure".into(),
        0x02 => "connection not allowed by ruleset".into(),
        0x03 => "network unreachable".into(),
        0x04 => "host unreachable".into(),
        0x05 => "connection refused".into(),
        0x06 => "TTL expired".into(),
        0x07 => "command not supported".into(),
        0x08 => "address type not supported".into(),
        other => format!("unknown code: {other}"),
    }
}

/// SOCKS5 CONNECT to `host:port` through `proxy`, as x/net/proxy does it: no authentication,
/// a domain-name address, and no deadline on the exchange once the proxy accepted the TCP
/// connection. Every byte is counted, because the kernel counts them on this socket too.
pub async fn dial_socks5(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    counters: &Counters,
) -> std::io::Result<TcpStream> {
    let mut stream = tokio::time::timeout(PROXY_CONNECT_TIMEOUT, TcpStream::connect(proxy))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "i/o timeout"))??;
    let error = |text: String| {
        std::io::Error::other(format!("socks connect tcp {proxy}->{host}:{port}: {text}"))
    };
    let reply_error = |code: u8| {
        std::io::Error::other(SocksReplyError {
            code,
            text: format!(
                "socks connect tcp {proxy}->{host}:{port}: unknown error {}",
                socks_reply_text(code)
            ),
        })
    };
    crate::wire::write_counted(&mut stream, &[5, 1, 0], counters).await?;
    let mut method = [0u8; 2];
    crate::wire::read_counted(&mut stream, &mut method, counters).await?;
    if method != [5, 0] {
        return Err(error("unexpected authentication method".into()));
    }
    let host_bytes = host.as_bytes();
    if host_bytes.len() > 255 {
        return Err(error("host name too long".into()));
    }
    let mut request = vec![5, 1, 0, 3, host_bytes.len() as u8];
    request.extend_from_slice(host_bytes);
    request.extend_from_slice(&port.to_be_bytes());
    crate::wire::write_counted(&mut stream, &request, counters).await?;
    let mut head = [0u8; 4];
    crate::wire::read_counted(&mut stream, &mut head, counters).await?;
    if head[1] != 0 {
        return Err(reply_error(head[1]));
    }
    let address_len = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut len = [0u8; 1];
            crate::wire::read_counted(&mut stream, &mut len, counters).await?;
            len[0] as usize
        }
        other => return Err(error(format!("unknown address type {other}"))),
    };
    let mut rest = vec![0u8; address_len + 2];
    crate::wire::read_counted(&mut stream, &mut rest, counters).await?;
    Ok(stream)
}

/// A non-zero SOCKS reply; its text is what gethrelay logs for the same failure.
#[derive(Debug)]
pub struct SocksReplyError {
    pub code: u8,
    text: String,
}

impl std::fmt::Display for SocksReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for SocksReplyError {}

/// The SOCKS reply code inside an error from `dial_socks5`, if the proxy sent one.
pub fn socks_code(error: &std::io::Error) -> Option<u8> {
    error
        .get_ref()?
        .downcast_ref::<SocksReplyError>()
        .map(|reply| reply.code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{local_record, NodeKey};

    const ONION: &str = "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion";
    const PROXY: &str = "127.0.0.1:9050";

    fn node(ip: bool, onion: bool) -> NodeRecord {
        local_record(
            &NodeKey::generate(),
            1,
            ip.then(|| "10.0.0.7".parse().unwrap()),
            Some(30303),
            Some(30303),
            onion.then_some(ONION),
        )
        .unwrap()
    }

    fn tor(prefer_tor: bool, only_onion: bool) -> DialMode {
        DialMode::Tor {
            proxy: PROXY.parse().unwrap(),
            prefer_tor,
            only_onion,
        }
    }

    fn short(plan: Plan, node: &NodeRecord) -> String {
        match plan {
            Plan::Clearnet(addr) => format!("clearnet {addr}"),
            Plan::Tor {
                fallback,
                only_onion,
                ..
            } => {
                format!("tor fallback={fallback:?} only_onion={only_onion}")
            }
            Plan::Reject(text) => format!(
                "reject: {}",
                text.replace(&hex::encode(node.id.node_id()), "<id>")
            ),
        }
    }

    /// The decision table of TorDialer.Dial, one row per (mode, peer addresses).
    #[test]
    fn decision_table() {
        let rows = [
            (DialMode::Plain, true, false, "clearnet 10.0.0.7:30303"),
            (
                DialMode::Plain,
                false,
                true,
                "reject: peer <id> has no TCP endpoint",
            ),
            (tor(false, false), true, false, "clearnet 10.0.0.7:30303"),
            (tor(false, false), true, true, "clearnet 10.0.0.7:30303"),
            (
                tor(false, false),
                false,
                true,
                "tor fallback=None only_onion=false",
            ),
            (
                tor(true, false),
                true,
                true,
                "tor fallback=Some(10.0.0.7:30303) only_onion=false",
            ),
            (tor(true, false), true, false, "clearnet 10.0.0.7:30303"),
            (
                tor(true, false),
                false,
                true,
                "tor fallback=None only_onion=false",
            ),
            (
                tor(false, true),
                true,
                false,
                "reject: only-onion mode: peer <id> has no .onion address",
            ),
            (
                tor(false, true),
                false,
                true,
                "tor fallback=None only_onion=true",
            ),
            // gethrelay's surprise: a dual-stack peer is dialed on clearnet in only-onion mode.
            (tor(false, true), true, true, "clearnet 10.0.0.7:30303"),
            (
                tor(true, true),
                true,
                true,
                "tor fallback=None only_onion=true",
            ),
        ];
        for (mode, ip, onion, expected) in rows {
            let node = node(ip, onion);
            assert_eq!(
                short(plan(mode, &node), &node),
                expected,
                "{mode:?} ip={ip} onion={onion}"
            );
        }
    }

    #[test]
    fn socks_codes_are_recovered_from_errors() {
        let error = std::io::Error::other(SocksReplyError {
            code: 0xf0,
            text: format!("unknown error {}", socks_reply_text(0xf0)),
        });
        assert_eq!(socks_code(&error), Some(0xf0));
        assert_eq!(error.to_string(), "unknown error unknown code: 240");
        assert_eq!(socks_code(&std::io::Error::other("eof")), None);
    }
}
