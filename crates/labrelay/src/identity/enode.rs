//! The dialer's view of a node ([`NodeRecord`]): parsed from `enode://` URLs
//! (geth's `p2p/enode/urlv4.go` with gethrelay's `.onion` hosts) or from
//! `enr:` records, and printed back as gethrelay's URLv4.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use thiserror::Error;

use super::enr::{validate_onion3, EnrError, Onion3Error, Record, RecordBuilder};
use super::{NodeKey, PublicId, PublicIdError};

/// The port gethrelay's Tor dialer uses when a record has no (or a zero)
/// "tcp" entry.
pub const DEFAULT_TOR_PORT: u16 = 30303;

/// True if `host` ends with ".onion", ignoring ASCII case (gethrelay's
/// `isOnionAddress`). Says nothing about validity; see
/// [`super::enr::validate_onion3`].
pub fn is_onion_host(host: &str) -> bool {
    let b = host.as_bytes();
    b.len() >= 6 && b[b.len() - 6..].eq_ignore_ascii_case(b".onion")
}

/// Why an `enode://` URL was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnodeError {
    #[error("does not contain node ID (want enode://<128 hex chars>@<host>:<port>)")]
    MissingNodeId,
    #[error("node ID must be 128 hex characters, got {got}")]
    NodeIdLength { got: usize },
    #[error("node ID has invalid hex character {ch:?} at position {pos}")]
    NodeIdHex { ch: char, pos: usize },
    #[error("invalid public key: node ID is not a point on the secp256k1 curve")]
    InvalidPublicKey,
    #[error("incomplete enode URL: missing @<host>:<port> after the node ID")]
    Incomplete,
    #[error("missing host")]
    MissingHost,
    #[error("missing port after host {host:?} (want <host>:<port>{hint})")]
    MissingPort { host: String, hint: &'static str },
    #[error("invalid host {host:?}: {reason}")]
    MalformedHost { host: String, reason: &'static str },
    #[error("invalid port {port:?} (want an integer 0-65535)")]
    InvalidPort { port: String },
    #[error("invalid discport {value:?} in query (want an integer 0-65535)")]
    InvalidDiscport { value: String },
    #[error("onion address {host:?} must be lower case")]
    OnionUppercase { host: String },
    #[error("invalid onion address {host:?}: {source}")]
    InvalidOnion { host: String, source: Onion3Error },
    #[error("hostname {host:?} must be an IP address or a .onion address")]
    NotIpOrOnion { host: String },
}

impl From<PublicIdError> for EnodeError {
    fn from(e: PublicIdError) -> Self {
        match e {
            PublicIdError::HexLength { got } => EnodeError::NodeIdLength { got },
            PublicIdError::InvalidHexChar { ch, pos } => EnodeError::NodeIdHex { ch, pos },
            PublicIdError::ByteLength { got, .. } => EnodeError::NodeIdLength { got: got * 2 },
            PublicIdError::NotOnCurve => EnodeError::InvalidPublicKey,
        }
    }
}

/// Error from [`NodeRecord::parse`]. `input` is the offending text, shortened
/// (middle elided with "...") when long.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("invalid node {input:?}: want an enode:// URL or an enr: record")]
    MissingPrefix { input: String },
    #[error("invalid enode URL {input:?}: {reason}")]
    Enode { input: String, reason: EnodeError },
    #[error("invalid node record {input:?}: {reason}")]
    Enr { input: String, reason: EnrError },
}

/// Shortens user input for error messages without splitting characters.
fn abbreviate(s: &str) -> String {
    const HEAD: usize = 24;
    const TAIL: usize = 24;
    let n = s.chars().count();
    if n <= HEAD + TAIL + 3 {
        return s.to_owned();
    }
    let head: String = s.chars().take(HEAD).collect();
    let tail: String = s.chars().skip(n - TAIL).collect();
    format!("{head}...{tail}")
}

/// A node as the dialer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub id: PublicId,
    /// The chosen endpoint IP (geth picks the "most global" of "ip"/"ip6";
    /// multicast addresses are dropped, IPv4-mapped IPv6 is shown as IPv4).
    pub ip: Option<IpAddr>,
    pub tcp: Option<u16>,
    pub udp: Option<u16>,
    /// A valid, lower-case Tor v3 address.
    pub onion3: Option<String>,
    /// The `enr:` text form, when the node came from (or is) a signed record.
    pub enr: Option<String>,
    pub seq: u64,
}

fn valid_ip(ip: &IpAddr) -> bool {
    !ip.is_multicast()
}

/// geth's `localityScore`: higher is more global.
fn locality_score(ip: &IpAddr) -> u8 {
    let (unspecified, loopback, link_local, private) = match ip {
        IpAddr::V4(v4) => (
            v4.is_unspecified(),
            v4.is_loopback(),
            v4.is_link_local(),
            v4.is_private(),
        ),
        IpAddr::V6(v6) => {
            let s0 = v6.segments()[0];
            (
                v6.is_unspecified(),
                v6.is_loopback(),
                s0 & 0xffc0 == 0xfe80,
                s0 & 0xfe00 == 0xfc00,
            )
        }
    };
    if unspecified {
        0
    } else if loopback {
        1
    } else if link_local {
        2
    } else if private {
        3
    } else {
        4
    }
}

impl NodeRecord {
    /// Parses an `enode://` URL or an `enr:` record (geth's
    /// `enode.Parse(enode.ValidSchemes, s)`). Prefixes are case-sensitive
    /// and surrounding whitespace is not trimmed, as in geth.
    pub fn parse(s: &str) -> Result<NodeRecord, ParseError> {
        if s.starts_with("enode://") {
            parse_enode(s).map_err(|reason| ParseError::Enode {
                input: abbreviate(s),
                reason,
            })
        } else if s.starts_with("enr:") {
            Record::from_text(s)
                .map(|r| NodeRecord::from_record(&r))
                .map_err(|reason| ParseError::Enr {
                    input: abbreviate(s),
                    reason,
                })
        } else {
            Err(ParseError::MissingPrefix {
                input: abbreviate(s),
            })
        }
    }

    /// The node view of a verified record (geth's `enode.New`): endpoint
    /// selection as in `newNodeWithID`; malformed entries count as absent.
    pub fn from_record(rec: &Record) -> NodeRecord {
        let tcp4 = rec.tcp().ok().flatten();
        let udp4 = rec.udp().ok().flatten();
        let ip4 = rec.ip4().ok().flatten().map(IpAddr::V4).filter(valid_ip);
        let ip6 = rec
            .ip6()
            .ok()
            .flatten()
            .map(|a| IpAddr::V6(a).to_canonical())
            .filter(valid_ip);
        let use_v6 = |ip6: IpAddr| match ip6 {
            // an IPv4-mapped "ip6" is used like an "ip" entry
            IpAddr::V4(_) => (Some(ip6), tcp4, udp4),
            IpAddr::V6(_) => (
                Some(ip6),
                rec.tcp6().ok().flatten().or(tcp4),
                rec.udp6().ok().flatten().or(udp4),
            ),
        };
        let (ip, tcp, udp) = match (ip4, ip6) {
            (Some(a), Some(b)) if locality_score(&a) < locality_score(&b) => use_v6(b),
            (Some(a), _) => (Some(a), tcp4, udp4),
            (None, Some(b)) => use_v6(b),
            (None, None) => (None, tcp4, udp4),
        };
        NodeRecord {
            id: rec.public_id(),
            ip,
            tcp,
            udp,
            onion3: rec.onion3().ok().flatten(),
            enr: Some(rec.to_text()),
            seq: rec.seq(),
        }
    }

    /// geth's `enode.ID` of this node.
    pub fn node_id(&self) -> [u8; 32] {
        self.id.node_id()
    }

    pub fn has_onion(&self) -> bool {
        self.onion3.is_some()
    }

    /// The clearnet TCP endpoint (geth's `TCPEndpoint`): needs an IP that is
    /// not unspecified and a non-zero TCP port.
    pub fn tcp_endpoint(&self) -> Option<SocketAddr> {
        let ip = self.ip.filter(|ip| !ip.is_unspecified())?;
        let tcp = self.tcp.filter(|&p| p != 0)?;
        Some(SocketAddr::new(ip, tcp))
    }

    /// What gethrelay's Tor dialer connects to: the onion address and the
    /// "tcp" port, or 30303 when that is missing or zero.
    pub fn onion_target(&self) -> Option<(String, u16)> {
        let onion = self.onion3.clone()?;
        Some((
            onion,
            self.tcp.filter(|&p| p != 0).unwrap_or(DEFAULT_TOR_PORT),
        ))
    }

    /// gethrelay's `Node.URLv4()`: the onion address wins over an IP; missing
    /// ports print as 0; `?discport=` when UDP differs from TCP (for onion
    /// hosts only when UDP is also non-zero); `enode://<id>` with no endpoint.
    pub fn url_v4(&self) -> String {
        let id = self.id.to_hex();
        let tcp = self.tcp.unwrap_or(0);
        let udp = self.udp.unwrap_or(0);
        if let Some(onion) = self.onion3.as_deref().filter(|o| !o.is_empty()) {
            let mut s = format!("enode://{id}@{onion}:{tcp}");
            if udp != 0 && udp != tcp {
                s.push_str(&format!("?discport={udp}"));
            }
            s
        } else if let Some(ip) = self.ip {
            let mut s = format!("enode://{id}@{}", SocketAddr::new(ip, tcp));
            if udp != tcp {
                s.push_str(&format!("?discport={udp}"));
            }
            s
        } else {
            format!("enode://{id}")
        }
    }
}

impl fmt::Display for NodeRecord {
    /// geth's `Node.String()`: the `enr:` text for signed records, else URLv4.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.enr {
            Some(enr) => f.write_str(enr),
            None => f.write_str(&self.url_v4()),
        }
    }
}

impl std::str::FromStr for NodeRecord {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeRecord::parse(s)
    }
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok()
}

/// geth's `parseComplete` (Go `net/url` splitting: the fragment and any path
/// are ignored, the node ID is the user part before the last '@').
fn parse_enode(input: &str) -> Result<NodeRecord, EnodeError> {
    let rest = &input["enode://".len()..];
    let rest = rest.split_once('#').map_or(rest, |(a, _)| a);
    let (rest, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);

    let Some((user, hostport)) = authority.rsplit_once('@') else {
        // geth accepts "enode://<hex id>" as an incomplete node; it cannot be
        // dialed, so we reject it, but report key problems first as geth does.
        let bare_hex = !authority.is_empty() && authority.bytes().all(|b| b.is_ascii_hexdigit());
        if bare_hex && query.is_none() && rest.len() == authority.len() {
            PublicId::from_hex(authority)?;
            return Err(EnodeError::Incomplete);
        }
        return Err(EnodeError::MissingNodeId);
    };
    if user.is_empty() {
        return Err(EnodeError::MissingNodeId);
    }
    let id = PublicId::from_hex(user)?;

    let (host, port) = if let Some(after) = hostport.strip_prefix('[') {
        let Some((h, tail)) = after.split_once(']') else {
            return Err(EnodeError::MalformedHost {
                host: abbreviate(hostport),
                reason: "missing ']'",
            });
        };
        match tail.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if tail.is_empty() => (h, None),
            None => {
                return Err(EnodeError::MalformedHost {
                    host: abbreviate(hostport),
                    reason: "unexpected text after ']'",
                })
            }
        }
    } else if hostport.parse::<Ipv6Addr>().is_ok() {
        return Err(EnodeError::MissingPort {
            host: abbreviate(hostport),
            hint: "; IPv6 addresses go in brackets: [addr]:port",
        });
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(EnodeError::MissingHost);
    }
    let tcp = match port {
        None | Some("") => {
            return Err(EnodeError::MissingPort {
                host: abbreviate(host),
                hint: "",
            });
        }
        Some(p) => parse_port(p).ok_or_else(|| EnodeError::InvalidPort {
            port: abbreviate(p),
        })?,
    };
    let mut udp = tcp;
    if let Some(q) = query {
        let disc = q
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == "discport")
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty());
        if let Some(v) = disc {
            udp = parse_port(v).ok_or_else(|| EnodeError::InvalidDiscport {
                value: abbreviate(v),
            })?;
        }
    }

    if let Ok(ip) = host.parse::<IpAddr>() {
        // geth's NewV4: ports of 0 are left out of the record; the record's
        // IP goes through the same selection as any record (multicast dropped).
        let ip = ip.to_canonical();
        return Ok(NodeRecord {
            id,
            ip: Some(ip).filter(valid_ip),
            tcp: (tcp != 0).then_some(tcp),
            udp: (udp != 0).then_some(udp),
            onion3: None,
            enr: None,
            seq: 0,
        });
    }
    if is_onion_host(host) {
        if let Err(source) = validate_onion3(host) {
            if validate_onion3(&host.to_ascii_lowercase()).is_ok() {
                return Err(EnodeError::OnionUppercase {
                    host: host.to_owned(),
                });
            }
            return Err(EnodeError::InvalidOnion {
                host: abbreviate(host),
                source,
            });
        }
        // gethrelay: onion3 + tcp (always) + udp only when it differs; no IP.
        return Ok(NodeRecord {
            id,
            ip: None,
            tcp: Some(tcp),
            udp: (udp != tcp).then_some(udp),
            onion3: Some(host.to_owned()),
            enr: None,
            seq: 0,
        });
    }
    Err(EnodeError::NotIpOrOnion {
        host: abbreviate(host),
    })
}

/// Builds and signs this node's own record (entries "id", "ip"/"ip6",
/// "onion3", "secp256k1", "tcp", "udp" as given) and returns its node view,
/// with the `enr:` text filled in.
pub fn local_record(
    key: &NodeKey,
    seq: u64,
    ip: Option<IpAddr>,
    tcp: Option<u16>,
    udp: Option<u16>,
    onion3: Option<&str>,
) -> Result<NodeRecord, EnrError> {
    let mut b = RecordBuilder::new(seq);
    if let Some(ip) = ip {
        b = b.ip(ip);
    }
    if let Some(onion) = onion3 {
        b = b.onion3(onion)?;
    }
    if let Some(tcp) = tcp {
        b = b.tcp(tcp);
    }
    if let Some(udp) = udp {
        b = b.udp(udp);
    }
    let rec = b.sign_v4(key)?;
    Ok(NodeRecord::from_record(&rec))
}

#[cfg(test)]
mod tests;
