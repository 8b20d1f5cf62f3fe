//! Decoding an `admin_peers` reply, entry by entry. Pure, so any byte string can be tested.
//!
//! One malformed entry must never hide the others: a clearnet peer listed beside a broken
//! entry is still a leak. So the reply is split into raw entries first, and every entry is
//! decoded on its own with lenient fields (a field of the wrong JSON type reads as missing).
//! What can be classified is returned; every entry with a problem is also reported, so the
//! exporter can count it (`relaywatch_relay_unparsed_peers_total`).
//!
//! Decoding is typed (serde derive over borrowed strings), never through `serde_json::Value`:
//! at 1,000 peers the reply is about 0.5 MB and a `Value` tree costs more than the rest of a poll.

use std::borrow::Cow;
use std::fmt;
use std::net::{SocketAddr, SocketAddrV6};

use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::RelayError;
use crate::classify::Direction;

/// One admin_peers entry with a usable remote address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Node ID (hex); used for logs at debug level only. Empty when the entry had none.
    pub id: String,
    /// The enode URL, needed for admin_removePeer and the onion-fallback check. Empty when missing.
    pub enode: String,
    /// `None` when `network.inbound` is missing or not a boolean.
    pub direction: Option<Direction>,
    /// The relay's end of the TCP connection, when given.
    pub local: Option<SocketAddr>,
    /// The other end: a peer, the SOCKS proxy, or the Tor daemon.
    pub remote: SocketAddr,
}

/// What was wrong with one entry; `index` is its position in the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryProblem {
    pub index: usize,
    pub problem: &'static str,
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "admin_peers entry {}: {}", self.index, self.problem)
    }
}

/// A decoded reply: the peers that can be classified, and every entry that had a problem
/// (an entry can be in both: a peer with a usable remote address but no enode, say).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PeerList {
    pub peers: Vec<Peer>,
    pub problems: Vec<EntryProblem>,
    /// Entries past [`MAX_ENTRIES`], not decoded.
    pub over_limit: usize,
    /// Every entry of the reply, decoded or not (`len(admin_peers)`, for `relaywatch verify`).
    pub entries: usize,
}

/// Entries decoded at most: far above any relay's peer limit, and a bound on memory.
pub const MAX_ENTRIES: usize = 4096;

#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Entry<'a> {
    #[serde(borrow, default, deserialize_with = "lenient_str")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient_str")]
    enode: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient_network")]
    network: Option<Network<'a>>,
}

#[derive(Deserialize, Default)]
struct Network<'a> {
    #[serde(
        borrow,
        default,
        rename = "localAddress",
        deserialize_with = "lenient_str"
    )]
    local: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        rename = "remoteAddress",
        deserialize_with = "lenient_str"
    )]
    remote: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_bool")]
    inbound: Option<bool>,
}

/// Decodes an admin_peers JSON-RPC reply. `zone_index` turns an IPv6 zone name (`eth0`, as Go
/// prints link-local peers: `[fe80::1%eth0]:30303`) into an interface index; it is the only
/// IO-shaped part and is passed in, so the decoder stays pure.
pub fn parse_admin_peers(
    body: &[u8],
    zone_index: &dyn Fn(&str) -> Option<u32>,
) -> Result<PeerList, RelayError> {
    let reply: Reply = serde_json::from_slice(body)
        .map_err(|error| RelayError::NotJsonRpc(format!("invalid JSON: {error}")))?;
    // serde's derive also reads a struct from an array (`[1,2]` as result=1, error=2).
    if !is_object(body) {
        return Err(RelayError::NotJsonRpc("not a JSON object".into()));
    }
    if let Some(error) = reply.error {
        return Err(RelayError::RpcError(error.get().to_string()));
    }
    let entries: Vec<&RawValue> = reply
        .result
        .and_then(|result| serde_json::from_str(result.get()).ok())
        .ok_or_else(|| RelayError::NotJsonRpc("no `result` array".into()))?;
    let mut list = PeerList {
        over_limit: entries.len().saturating_sub(MAX_ENTRIES),
        entries: entries.len(),
        ..PeerList::default()
    };
    for (index, raw) in entries.into_iter().take(MAX_ENTRIES).enumerate() {
        decode_entry(index, raw, zone_index, &mut list);
    }
    Ok(list)
}

fn decode_entry(
    index: usize,
    raw: &RawValue,
    zone_index: &dyn Fn(&str) -> Option<u32>,
    list: &mut PeerList,
) {
    let mut problem = |problem| list.problems.push(EntryProblem { index, problem });
    let Some(Ok(entry)) =
        is_object(raw.get().as_bytes()).then(|| serde_json::from_str::<Entry>(raw.get()))
    else {
        problem("not an object");
        return;
    };
    let Some(network) = entry.network else {
        problem("no network object");
        return;
    };
    let Some(remote) = network.remote.as_deref().filter(|text| !text.is_empty()) else {
        problem("network.remoteAddress missing or empty");
        return;
    };
    let Some(remote) = parse_endpoint(remote, zone_index) else {
        problem("network.remoteAddress is not ip:port");
        return;
    };
    let local = network
        .local
        .as_deref()
        .and_then(|text| parse_endpoint(text, zone_index));
    if local.is_none() {
        problem("network.localAddress missing or not ip:port");
    }
    let direction = network.inbound.map(|inbound| {
        if inbound {
            Direction::Inbound
        } else {
            Direction::Outbound
        }
    });
    if direction.is_none() {
        problem("network.inbound missing or not a boolean");
    }
    let enode = entry.enode.map(Cow::into_owned).unwrap_or_default();
    if enode.is_empty() {
        problem("enode missing: the peer cannot be removed");
    }
    list.peers.push(Peer {
        id: entry.id.map(Cow::into_owned).unwrap_or_default(),
        enode,
        direction,
        local,
        remote,
    });
}

/// `ip:port`, `[v6]:port`, and Go's zoned form `[fe80::1%eth0]:30303` (zone by name or number;
/// an unknown zone name gives scope 0, which is still a classifiable clearnet address).
pub fn parse_endpoint(text: &str, zone_index: &dyn Fn(&str) -> Option<u32>) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    let (host, port) = text.strip_prefix('[')?.rsplit_once("]:")?;
    let (ip, zone) = host.split_once('%')?;
    let port = port.parse().ok()?;
    let scope = zone
        .parse::<u32>()
        .ok()
        .or_else(|| zone_index(zone))
        .unwrap_or(0);
    Some(SocketAddr::V6(SocketAddrV6::new(
        ip.parse().ok()?,
        port,
        0,
        scope,
    )))
}

/// Any JSON value: a string gives `Some`, anything else (number, object, null…) `None`.
fn lenient_str<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    deserializer.deserialize_any(Lenient::<Cow<'a, str>>::default())
}

fn lenient_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    deserializer.deserialize_any(Lenient::<bool>::default())
}

fn lenient_network<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Network<'a>>, D::Error> {
    // A network that is not an object reads as missing; an object is decoded leniently.
    let raw: &'de RawValue = Deserialize::deserialize(deserializer)?;
    if !is_object(raw.get().as_bytes()) {
        return Ok(None);
    }
    Ok(serde_json::from_str::<Network<'de>>(raw.get()).ok())
}

/// Whether JSON text is an object (serde's derive would read an array positionally).
fn is_object(json: &[u8]) -> bool {
    json.trim_ascii_start().first() == Some(&b'{')
}

/// A visitor that accepts every JSON value and keeps only the type it wants.
struct Lenient<T>(std::marker::PhantomData<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient(std::marker::PhantomData)
    }
}

macro_rules! ignore_the_rest {
    () => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    };
}

impl<'de: 'a, 'a> Visitor<'de> for Lenient<Cow<'a, str>> {
    type Value = Option<Cow<'a, str>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(text)))
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(text.to_string())))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    ignore_the_rest!();
}

impl<'de> Visitor<'de> for Lenient<bool> {
    type Value = Option<bool>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
        Ok(Some(value))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    ignore_the_rest!();
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
