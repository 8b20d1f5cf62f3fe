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

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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

/// The `visit_*` methods that accept a JSON value of a type the visitor does not want and
/// return `$none` (draining arrays and objects, so the parse goes on after them).
macro_rules! ignore_the_rest {
    () => {
        ignore_the_rest!(@scalars None);
        ignore_the_rest!(@seq None);
        ignore_the_rest!(@map None);
    };
    (no_seq) => {
        ignore_the_rest!(@scalars None);
        ignore_the_rest!(@map None);
    };
    (no_map) => {
        ignore_the_rest!(no_map, None);
    };
    (no_map, $none:expr) => {
        ignore_the_rest!(@scalars $none);
        ignore_the_rest!(@seq $none);
    };
    (@scalars $none:expr) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
    };
    (@seq $none:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($none)
        }
    };
    (@map $none:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($none)
        }
    };
}

/// The fields of one entry that the exporter reads; the rest (`caps`, `protocols`…) is skipped.
#[derive(Default)]
struct Entry<'a> {
    id: Option<Cow<'a, str>>,
    enode: Option<Cow<'a, str>>,
    network: Option<Network<'a>>,
    /// A key appeared twice in the entry or its `network` (the last one is used, as Go's
    /// encoding/json does; the entry is reported).
    duplicated: bool,
}

#[derive(Default)]
struct Network<'a> {
    local: Option<Cow<'a, str>>,
    remote: Option<Cow<'a, str>>,
    inbound: Option<bool>,
}

/// Decodes an admin_peers JSON-RPC reply. `zone_index` turns an IPv6 zone name (`eth0`, as Go
/// prints link-local peers: `[fe80::1%eth0]:30303`) into an interface index; it is the only
/// IO-shaped part and is passed in, so the decoder stays pure.
///
/// One pass over the bytes: entries are decoded as the array is read (a first version split the
/// reply into raw entries and decoded each again, reading 0.5 MB three to four times a poll).
pub fn parse_admin_peers(
    body: &[u8],
    zone_index: &dyn Fn(&str) -> Option<u32>,
) -> Result<PeerList, RelayError> {
    // A struct visitor would also accept an array here; a JSON-RPC reply is an object.
    if !is_object(body) {
        return Err(RelayError::NotJsonRpc(
            match serde_json::from_slice::<IgnoredAny>(body) {
                Ok(_) => "not a JSON object".into(),
                Err(error) => invalid_json(error),
            },
        ));
    }
    // Valid UTF-8 checked once for the whole reply lets serde_json skip checking every string
    // it returns (a tenth of the decode); a reply that is not (Go never sends one) still
    // decodes, string by string, so that bad bytes in a skipped field cannot hide the peers.
    let fast = match std::str::from_utf8(body) {
        Ok(text) => decode_reply(
            &mut serde_json::Deserializer::from_str(text),
            zone_index,
            false,
        ),
        Err(_) => decode_reply(
            &mut serde_json::Deserializer::from_slice(body),
            zone_index,
            false,
        ),
    };
    // An error of the one pass may come from a single entry: a value that is valid JSON text
    // but that serde_json will not hold (`1e400`, a lone surrogate `"\ud800"`) stops the whole
    // parse. Then the entries are split first and decoded one by one, as the decoder did before
    // the one pass, so that entry alone is lost. Bytes that are not UTF-8 are replaced (they can
    // only be inside strings), or a raw entry holding one could not be split off.
    let reply = match fast {
        Ok(reply) => reply,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            decode_reply(
                &mut serde_json::Deserializer::from_str(&text),
                zone_index,
                true,
            )
            .map_err(|error| RelayError::NotJsonRpc(invalid_json(error)))?
        }
    };
    if let Some(error) = reply.error {
        return Err(RelayError::RpcError(error));
    }
    reply
        .result
        .ok_or_else(|| RelayError::NotJsonRpc("no `result` array".into()))
}

/// `split`: each entry is first read as raw text and then decoded on its own (see above).
fn decode_reply<'de, R: serde_json::de::Read<'de>>(
    deserializer: &mut serde_json::Deserializer<R>,
    zone_index: &dyn Fn(&str) -> Option<u32>,
    split: bool,
) -> serde_json::Result<Reply> {
    let reply = ReplySeed { zone_index, split }.deserialize(&mut *deserializer)?;
    deserializer.end()?;
    Ok(reply)
}

fn invalid_json(error: serde_json::Error) -> String {
    format!("invalid JSON: {error}")
}

struct Reply {
    /// `None` unless `result` was an array.
    result: Option<PeerList>,
    /// The JSON text of a non-null `error`.
    error: Option<String>,
}

struct ReplySeed<'z> {
    zone_index: &'z dyn Fn(&str) -> Option<u32>,
    split: bool,
}

impl<'de> DeserializeSeed<'de> for ReplySeed<'_> {
    type Value = Reply;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Reply, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ReplySeed<'_> {
    type Value = Reply;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC reply object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Reply, A::Error> {
        let mut reply = Reply {
            result: None,
            error: None,
        };
        while let Some(key) = map.next_key::<Key>()? {
            match key.0.as_ref() {
                // A repeated member: the last one counts, as in Go's encoding/json.
                "result" => {
                    reply.result = map.next_value_seed(EntriesSeed {
                        zone_index: self.zone_index,
                        split: self.split,
                    })?
                }
                "error" => {
                    reply.error = map
                        .next_value::<Option<&'de RawValue>>()?
                        .map(|raw| raw.get().to_string())
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(reply)
    }
}

/// An object key, borrowed unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(Lenient::<Cow<'a, str>>::default())
            .map(|key| Key(key.unwrap_or_default()))
    }
}

/// `result`: the entries, decoded one by one into a [`PeerList`]; `None` if it is no array.
struct EntriesSeed<'z> {
    zone_index: &'z dyn Fn(&str) -> Option<u32>,
    split: bool,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = Option<PeerList>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_> {
    type Value = Option<PeerList>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = PeerList::default();
        while list.entries < MAX_ENTRIES {
            let index = list.entries;
            if self.split {
                let Some(raw) = seq.next_element::<&'de RawValue>()? else {
                    return Ok(Some(list));
                };
                match serde_json::from_str::<MaybeEntry>(raw.get()) {
                    Ok(entry) => decode_entry(index, entry.0, self.zone_index, &mut list),
                    Err(_) => list.problems.push(EntryProblem {
                        index,
                        problem: "a value JSON allows but no decoder holds (a number beyond \
                                  64-bit floats, a lone UTF-16 surrogate)",
                    }),
                }
            } else {
                let Some(entry) = seq.next_element::<MaybeEntry>()? else {
                    return Ok(Some(list));
                };
                decode_entry(index, entry.0, self.zone_index, &mut list);
            }
            list.entries += 1;
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {
            list.entries += 1;
            list.over_limit += 1;
        }
        Ok(Some(list))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    ignore_the_rest!(no_seq);
}

/// One entry: `None` when it is not an object.
struct MaybeEntry<'a>(Option<Entry<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for MaybeEntry<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(Lenient::<Entry<'a>>::default())
            .map(MaybeEntry)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for Lenient<Entry<'a>> {
    type Value = Option<Entry<'a>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entry = Entry::default();
        let mut seen = [false; 3];
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key.0.as_ref() {
                "id" => 0,
                "enode" => 1,
                "network" => 2,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            entry.duplicated |= std::mem::replace(&mut seen[slot], true);
            match slot {
                0 => entry.id = map.next_value::<LenientStr>()?.0,
                1 => entry.enode = map.next_value::<LenientStr>()?.0,
                _ => {
                    let network = map.next_value::<MaybeNetwork>()?;
                    entry.duplicated |= network.duplicated;
                    entry.network = network.network;
                }
            }
        }
        Ok(Some(entry))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    ignore_the_rest!(no_map);
}

/// `network`: `None` when it is not an object; every field lenient.
struct MaybeNetwork<'a> {
    network: Option<Network<'a>>,
    duplicated: bool,
}

impl<'de: 'a, 'a> Deserialize<'de> for MaybeNetwork<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Lenient::<MaybeNetwork<'a>>::default())
    }
}

impl<'de: 'a, 'a> Visitor<'de> for Lenient<MaybeNetwork<'a>> {
    type Value = MaybeNetwork<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut network = Network::default();
        let mut duplicated = false;
        let mut seen = [false; 3];
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key.0.as_ref() {
                "localAddress" => 0,
                "remoteAddress" => 1,
                "inbound" => 2,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            duplicated |= std::mem::replace(&mut seen[slot], true);
            match slot {
                0 => network.local = map.next_value::<LenientStr>()?.0,
                1 => network.remote = map.next_value::<LenientStr>()?.0,
                _ => network.inbound = map.next_value::<LenientBool>()?.0,
            }
        }
        Ok(MaybeNetwork {
            network: Some(network),
            duplicated,
        })
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(MaybeNetwork::none())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(MaybeNetwork::none())
    }
    ignore_the_rest!(no_map, MaybeNetwork::none());
}

impl MaybeNetwork<'_> {
    fn none() -> Self {
        MaybeNetwork {
            network: None,
            duplicated: false,
        }
    }
}

/// Any JSON value: a string gives `Some`, anything else (number, object, null…) `None`.
struct LenientStr<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for LenientStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(Lenient::<Cow<'a, str>>::default())
            .map(LenientStr)
    }
}

/// Any JSON value: a boolean gives `Some`, anything else `None`.
struct LenientBool(Option<bool>);

impl<'de> Deserialize<'de> for LenientBool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(Lenient::<bool>::default())
            .map(LenientBool)
    }
}

fn decode_entry(
    index: usize,
    entry: Option<Entry>,
    zone_index: &dyn Fn(&str) -> Option<u32>,
    list: &mut PeerList,
) {
    let mut problem = |problem| list.problems.push(EntryProblem { index, problem });
    let Some(entry) = entry else {
        problem("not an object");
        return;
    };
    if entry.duplicated {
        problem("a key appears twice (the last one is used)");
    }
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
mod bench;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
