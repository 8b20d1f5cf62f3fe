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
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const ID: &str = "1dd9d65c4552b5eb43d5ad55a2ee3f56c6cbc1c64a5c8d659f51fcd51bace24351232b8d7821617d2b29b54b81cdefb9b3e9c37d7fd5f63270bcc9e1a6f6a439";
    const ONION: &str = "darfuqg4jxsyjib7mjoyg555bnumyxrlm3surzav2ztuy3cssjshmcad.onion";
    const EIP778_KEY: &str = "b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291";
    const EIP778_TEXT: &str = "enr:-IS4QHCYrYZbAKWCBRlAy5zzaDZXJBGkcnh4MHcBFZntXNFrdvJjX04jRzjzCBOonrkTfj499SZuOh8R33Ls8RRcy5wBgmlkgnY0gmlwhH8AAAGJc2VjcDI1NmsxoQPKY0yuDUmstAHYpMa2_oxVtw0RW_QAdpzBQA8yWM0xOIN1ZHCCdl8";

    fn id() -> PublicId {
        PublicId::from_hex(ID).unwrap()
    }

    fn node(
        ip: Option<&str>,
        tcp: Option<u16>,
        udp: Option<u16>,
        onion: Option<&str>,
    ) -> NodeRecord {
        NodeRecord {
            id: id(),
            ip: ip.map(|s| s.parse().unwrap()),
            tcp,
            udp,
            onion3: onion.map(str::to_owned),
            enr: None,
            seq: 0,
        }
    }

    #[test]
    fn parse_valid_enode_urls() {
        // (input, expected node, expected url_v4 if different from input)
        let cases: Vec<(String, NodeRecord, Option<String>)> = vec![
            (
                format!("enode://{ID}@127.0.0.1:52150"),
                node(Some("127.0.0.1"), Some(52150), Some(52150), None),
                None,
            ),
            (
                format!("enode://{ID}@127.0.0.1:52150?discport=22334"),
                node(Some("127.0.0.1"), Some(52150), Some(22334), None),
                None,
            ),
            (
                format!("enode://{ID}@[::]:52150"),
                node(Some("::"), Some(52150), Some(52150), None),
                None,
            ),
            (
                format!("enode://{ID}@[2001:db8:3c4d:15::abcd:ef12]:52150"),
                node(
                    Some("2001:db8:3c4d:15::abcd:ef12"),
                    Some(52150),
                    Some(52150),
                    None,
                ),
                None,
            ),
            (
                format!("enode://{ID}@[::ffff:10.0.0.1]:30303"),
                node(Some("10.0.0.1"), Some(30303), Some(30303), None),
                Some(format!("enode://{ID}@10.0.0.1:30303")),
            ),
            (
                format!("enode://{ID}@{ONION}:30303"),
                node(None, Some(30303), None, Some(ONION)),
                None,
            ),
            (
                format!("enode://{ID}@{ONION}:30303?discport=30301"),
                node(None, Some(30303), Some(30301), Some(ONION)),
                None,
            ),
            // uppercase hex node ID, path and fragment ignored, empty discport = tcp
            (
                format!(
                    "enode://{}@1.2.3.4:30303/?discport=#frag",
                    ID.to_uppercase()
                ),
                node(Some("1.2.3.4"), Some(30303), Some(30303), None),
                Some(format!("enode://{ID}@1.2.3.4:30303")),
            ),
            // port 0: no tcp entry in geth's record; url prints :0 and discport
            (
                format!("enode://{ID}@1.2.3.4:0?discport=30303"),
                node(Some("1.2.3.4"), None, Some(30303), None),
                None,
            ),
            // leading zeros in the port are accepted by Go's ParseUint
            (
                format!("enode://{ID}@1.2.3.4:030303"),
                node(Some("1.2.3.4"), Some(30303), Some(30303), None),
                Some(format!("enode://{ID}@1.2.3.4:30303")),
            ),
            // multicast IPs are dropped by geth's endpoint selection
            (
                format!("enode://{ID}@224.0.0.1:30303"),
                node(None, Some(30303), Some(30303), None),
                Some(format!("enode://{ID}")),
            ),
        ];
        for (input, want, want_url) in cases {
            let got = NodeRecord::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got, want, "{input}");
            assert_eq!(
                got.url_v4(),
                want_url.unwrap_or(input.clone()),
                "url_v4 of {input}"
            );
            assert_eq!(got.to_string(), got.url_v4());
        }
    }

    #[test]
    fn parse_invalid_enode_urls() {
        let upper_onion = ONION.replace("mcad.onion", "mcaD.onion");
        let cases: Vec<(String, EnodeError)> = vec![
            (
                format!("enode://{ID}@127.0.0.1:foo"),
                EnodeError::InvalidPort { port: "foo".into() },
            ),
            (
                format!("enode://{ID}@127.0.0.1:65536"),
                EnodeError::InvalidPort {
                    port: "65536".into(),
                },
            ),
            (
                format!("enode://{ID}@127.0.0.1:+1"),
                EnodeError::InvalidPort { port: "+1".into() },
            ),
            (
                format!("enode://{ID}@127.0.0.1:3?discport=foo"),
                EnodeError::InvalidDiscport {
                    value: "foo".into(),
                },
            ),
            (
                format!("enode://{ID}@127.0.0.1"),
                EnodeError::MissingPort {
                    host: "127.0.0.1".into(),
                    hint: "",
                },
            ),
            (
                format!("enode://{ID}@127.0.0.1:"),
                EnodeError::MissingPort {
                    host: "127.0.0.1".into(),
                    hint: "",
                },
            ),
            (
                format!("enode://{ID}@[::1]"),
                EnodeError::MissingPort {
                    host: "::1".into(),
                    hint: "",
                },
            ),
            (
                format!("enode://{ID}@2001:db8::1"),
                EnodeError::MissingPort {
                    host: "2001:db8::1".into(),
                    hint: "; IPv6 addresses go in brackets: [addr]:port",
                },
            ),
            (format!("enode://{ID}@:30303"), EnodeError::MissingHost),
            (format!("enode://{ID}@"), EnodeError::MissingHost),
            (
                format!("enode://{ID}@[::1:30303"),
                EnodeError::MalformedHost {
                    host: "[::1:30303".into(),
                    reason: "missing ']'",
                },
            ),
            (
                format!("enode://{ID}@{upper_onion}:30303"),
                EnodeError::OnionUppercase {
                    host: upper_onion.clone(),
                },
            ),
            (
                format!("enode://{ID}@{}:30303", ONION.to_uppercase()),
                EnodeError::OnionUppercase {
                    host: ONION.to_uppercase(),
                },
            ),
            (
                format!("enode://{ID}@tooshort.onion:30303"),
                EnodeError::InvalidOnion {
                    host: "tooshort.onion".into(),
                    source: Onion3Error::Length { got: 14 },
                },
            ),
            (
                format!("enode://{ID}@{}:30303", ONION.replace("darf", "dar1")),
                EnodeError::InvalidOnion {
                    host: abbreviate(&ONION.replace("darf", "dar1")),
                    source: Onion3Error::InvalidChar { pos: 3, ch: '1' },
                },
            ),
            (
                format!("enode://{ID}@valid.:3"),
                EnodeError::NotIpOrOnion {
                    host: "valid.".into(),
                },
            ),
            (
                format!("enode://{ID}@localhost:30303"),
                EnodeError::NotIpOrOnion {
                    host: "localhost".into(),
                },
            ),
            (
                format!("enode://{ID}@01.2.3.4:30303"),
                EnodeError::NotIpOrOnion {
                    host: "01.2.3.4".into(),
                },
            ),
            (
                "enode://01010101@123.124.125.126:3".into(),
                EnodeError::NodeIdLength { got: 8 },
            ),
            (
                "enode://zz@1.2.3.4:3".into(),
                EnodeError::NodeIdLength { got: 2 },
            ),
            (
                format!("enode://{}zz@1.2.3.4:3", &ID[..126]),
                EnodeError::NodeIdHex { ch: 'z', pos: 126 },
            ),
            (
                format!("enode://{}@1.2.3.4:3", "0".repeat(128)),
                EnodeError::InvalidPublicKey,
            ),
            (format!("enode://{ID}"), EnodeError::Incomplete),
            (
                "enode://01010101".into(),
                EnodeError::NodeIdLength { got: 8 },
            ),
            (
                format!("enode://{}", "0".repeat(128)),
                EnodeError::InvalidPublicKey,
            ),
            ("enode://1.2.3.4:30303".into(), EnodeError::MissingNodeId),
            ("enode://@1.2.3.4:30303".into(), EnodeError::MissingNodeId),
            ("enode://".into(), EnodeError::MissingNodeId),
        ];
        for (input, want) in cases {
            match NodeRecord::parse(&input) {
                Err(ParseError::Enode { reason, .. }) => assert_eq!(reason, want, "{input}"),
                other => panic!("{input}: got {other:?}"),
            }
        }
        for input in ["", "http://foobar", "://foo", "ENODE://abc", ID] {
            assert!(
                matches!(
                    NodeRecord::parse(input),
                    Err(ParseError::MissingPrefix { .. })
                ),
                "{input}"
            );
        }
    }

    #[test]
    fn error_messages_name_problem_and_input() {
        let e = NodeRecord::parse("enode://zzzz@1.2.3.4:30303").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid enode URL "enode://zzzz@1.2.3.4:30303": node ID must be 128 hex characters, got 4"#
        );
        let e = NodeRecord::parse(&format!("enode://{ID}@127.0.0.1:foo")).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid enode URL "enode://1dd9d65c4552b5eb...e1a6f6a439@127.0.0.1:foo": invalid port "foo" (want an integer 0-65535)"#
        );
        let e = NodeRecord::parse(&format!("enode://{ID}@example.com:30303")).unwrap_err();
        assert!(e
            .to_string()
            .ends_with(r#": hostname "example.com" must be an IP address or a .onion address"#));
        let upper = ONION.to_uppercase();
        let e = NodeRecord::parse(&format!("enode://{ID}@{upper}:1")).unwrap_err();
        assert!(e
            .to_string()
            .ends_with(&format!("onion address {upper:?} must be lower case")));
        let e = NodeRecord::parse("enr:x").unwrap_err();
        assert!(
            e.to_string()
                .starts_with(r#"invalid node record "enr:x": invalid base64"#),
            "{e}"
        );
        let e = NodeRecord::parse("bogus").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid node "bogus": want an enode:// URL or an enr: record"#
        );
    }

    #[test]
    fn parse_enr_records() {
        let n = NodeRecord::parse(EIP778_TEXT).unwrap();
        let key = NodeKey::from_hex(EIP778_KEY).unwrap();
        assert_eq!(n.id, key.public_id());
        assert_eq!(n.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!((n.tcp, n.udp, n.seq), (None, Some(30303), 1));
        assert_eq!(n.onion3, None);
        assert_eq!(n.enr.as_deref(), Some(EIP778_TEXT));
        assert_eq!(n.to_string(), EIP778_TEXT);
        assert_eq!(n.tcp_endpoint(), None);
        // geth prints a missing TCP port as 0 and adds the differing discport
        assert_eq!(
            n.url_v4(),
            format!(
                "enode://{}@127.0.0.1:0?discport=30303",
                key.public_id().to_hex()
            )
        );
        let e = NodeRecord::parse("enr:-EmGZm9vYmFyY4JpZIJ2NIJpcIR_AAABiXNlY3AyNTZrMaEDOlFBdkZvqBXtSB_60JEQotNE9sm3jB0Ur8NRw6Ub4z2DdWRwgnZf").unwrap_err();
        assert!(
            matches!(
                e,
                ParseError::Enr {
                    reason: EnrError::InvalidSignature,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn local_record_roundtrip() {
        let key = NodeKey::from_hex(EIP778_KEY).unwrap();
        // The EIP-778 example through local_record.
        let n = local_record(
            &key,
            1,
            Some("127.0.0.1".parse().unwrap()),
            None,
            Some(30303),
            None,
        )
        .unwrap();
        assert_eq!(n.enr.as_deref(), Some(EIP778_TEXT));

        let onion = ONION;
        type Case<'a> = (Option<IpAddr>, Option<u16>, Option<u16>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (
                Some("203.0.113.9".parse().unwrap()),
                Some(30303),
                Some(30303),
                None,
            ),
            (
                Some("2001:db8::7".parse().unwrap()),
                Some(30303),
                Some(30301),
                None,
            ),
            (None, Some(30303), None, Some(onion)),
            (
                Some("203.0.113.9".parse().unwrap()),
                Some(30303),
                Some(30303),
                Some(onion),
            ),
            (None, None, None, None),
        ];
        for (seq, (ip, tcp, udp, onion3)) in cases.into_iter().enumerate() {
            let seq = seq as u64 + 10;
            let n = local_record(&key, seq, ip, tcp, udp, onion3).unwrap();
            assert_eq!(
                (n.ip, n.tcp, n.udp, n.onion3.as_deref(), n.seq),
                (ip, tcp, udp, onion3, seq)
            );
            let text = n.enr.clone().unwrap();
            let back = NodeRecord::parse(&text).unwrap();
            assert_eq!(back, n, "{text}");
            assert_eq!(back.id, key.public_id());
        }
        assert!(matches!(
            local_record(&key, 1, None, None, None, Some("NOPE.onion")),
            Err(EnrError::InvalidOnion3(_))
        ));
    }

    #[test]
    fn dual_stack_url_shows_onion_and_endpoints() {
        let key = NodeKey::generate();
        let n = local_record(
            &key,
            3,
            Some("203.0.113.9".parse().unwrap()),
            Some(30303),
            Some(30301),
            Some(ONION),
        )
        .unwrap();
        let hex = key.public_id().to_hex();
        assert!(n.has_onion());
        assert_eq!(
            n.url_v4(),
            format!("enode://{hex}@{ONION}:30303?discport=30301")
        );
        assert_eq!(n.tcp_endpoint(), Some("203.0.113.9:30303".parse().unwrap()));
        assert_eq!(n.onion_target(), Some((ONION.to_owned(), 30303)));
        assert!(n.to_string().starts_with("enr:"));

        let clear = node(Some("::1"), Some(30303), Some(30303), None);
        assert_eq!(clear.url_v4(), format!("enode://{ID}@[::1]:30303"));
        assert_eq!(clear.tcp_endpoint(), Some("[::1]:30303".parse().unwrap()));
        assert_eq!(clear.onion_target(), None);
        assert_eq!(
            node(Some("0.0.0.0"), Some(1), None, None).tcp_endpoint(),
            None
        );
        assert_eq!(
            node(Some("1.2.3.4"), None, None, None).url_v4(),
            format!("enode://{ID}@1.2.3.4:0")
        );
        assert_eq!(
            node(None, Some(30303), None, None).url_v4(),
            format!("enode://{ID}")
        );
        let onion_only = node(None, None, None, Some(ONION));
        assert_eq!(onion_only.url_v4(), format!("enode://{ID}@{ONION}:0"));
        assert_eq!(
            onion_only.onion_target(),
            Some((ONION.to_owned(), DEFAULT_TOR_PORT))
        );
        assert_eq!(onion_only.tcp_endpoint(), None);
    }

    #[test]
    fn endpoint_selection_prefers_global_address() {
        let key = NodeKey::generate();
        let rec = RecordBuilder::new(1)
            .ip("192.168.1.5".parse().unwrap())
            .set_raw(
                "ip6",
                super::super::rlp::bytes(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets()),
            )
            .tcp(1000)
            .set_raw("tcp6", super::super::rlp::uint(2000))
            .sign_v4(&key)
            .unwrap();
        let n = NodeRecord::from_record(&rec);
        assert_eq!(n.ip, Some("2001:db8::9".parse().unwrap()));
        assert_eq!(n.tcp, Some(2000));
        let rec = RecordBuilder::new(1)
            .ip("8.8.8.8".parse().unwrap())
            .set_raw(
                "ip6",
                super::super::rlp::bytes(&Ipv6Addr::LOCALHOST.octets()),
            )
            .tcp(1000)
            .sign_v4(&key)
            .unwrap();
        let n = NodeRecord::from_record(&rec);
        assert_eq!(
            (n.ip, n.tcp),
            (Some("8.8.8.8".parse().unwrap()), Some(1000))
        );
        // invalid onion3 in a received record is ignored, as geth's Load error is
        let rec = RecordBuilder::new(1)
            .set_raw("onion3", super::super::rlp::bytes(b"x.onion"))
            .sign_v4(&key)
            .unwrap();
        assert_eq!(NodeRecord::from_record(&rec).onion3, None);
    }

    #[test]
    fn is_onion_host_table() {
        for (h, want) in [
            (ONION, true),
            ("ABC.ONION", true),
            ("x.Onion", true),
            (".onion", true),
            ("onion", false),
            ("example.com", false),
            ("onion.example", false),
            ("", false),
            ("é.onion", true),
        ] {
            assert_eq!(is_onion_host(h), want, "{h}");
        }
    }

    #[test]
    fn parse_never_panics_on_truncations_and_mutations() {
        use rand::{Rng, SeedableRng};
        let seeds = [
            format!("enode://{ID}@127.0.0.1:52150?discport=22334"),
            format!("enode://{ID}@[2001:db8::1]:30303"),
            format!("enode://{ID}@{ONION}:30303?discport=30301"),
            EIP778_TEXT.to_owned(),
        ];
        let alphabet: Vec<char> = "0123456789abcdefABCDEF@:[]?=&#/.%+-_ zé\u{0}enodr"
            .chars()
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x0e0de);
        for seed in &seeds {
            let chars: Vec<char> = seed.chars().collect();
            for n in 0..=chars.len() {
                let s: String = chars[..n].iter().collect();
                let _ = NodeRecord::parse(&s).map(|r| r.url_v4());
                let s: String = chars[n..].iter().collect();
                let _ = NodeRecord::parse(&s);
            }
            for _ in 0..2000 {
                let mut c = chars.clone();
                for _ in 0..rng.gen_range(1..4) {
                    let i = rng.gen_range(0..c.len());
                    match rng.gen_range(0..3) {
                        0 => c[i] = alphabet[rng.gen_range(0..alphabet.len())],
                        1 => {
                            c.remove(i);
                        }
                        _ => c.insert(i, alphabet[rng.gen_range(0..alphabet.len())]),
                    }
                    if c.is_empty() {
                        break;
                    }
                }
                let s: String = c.iter().collect();
                match NodeRecord::parse(&s) {
                    Ok(n) => {
                        // whatever parses must print and re-parse
                        let url = n.url_v4();
                        let _ = n.tcp_endpoint();
                        if n.ip.is_some() || n.onion3.is_some() {
                            let again = NodeRecord::parse(&url)
                                .unwrap_or_else(|e| panic!("{s} -> {url}: {e}"));
                            assert_eq!(again.id, n.id);
                        }
                    }
                    Err(e) => {
                        let _ = e.to_string();
                    }
                }
            }
        }
    }
}
