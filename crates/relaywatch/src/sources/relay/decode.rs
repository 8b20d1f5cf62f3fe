//! Decoding an `admin_peers` reply, entry by entry. Pure, so any byte string can be tested.
//!
//! One malformed entry must never hide the others: a clearnet peer listed beside a broken
//! entry is still a leak. Every entry is decoded on its own with lenient fields (a field of the
//! wrong JSON type reads as missing), in one pass over the reply ([`visit`]); a reply that pass
//! cannot read (a value serde_json will not hold in one entry) is split into raw entries and
//! each decoded alone, so that entry alone is lost. What can be classified is returned; every
//! entry with a problem is also reported, so the exporter can count it
//! (`relaywatch_relay_unparsed_peers_total`).
//!
//! Decoding is typed (serde visitors over borrowed strings), never through `serde_json::Value`:
//! at 1,000 peers the reply is about 0.5 MB and a `Value` tree costs more than the rest of a poll.
//! One pass: 0.46 ms for 1,000 geth-shaped entries, against 0.99 ms for the earlier split into
//! raw entries decoded again (`decode::bench`). sonic-rs behind the same visitors took 0.64 ms,
//! so serde_json stays.

use std::borrow::Cow;
use std::fmt;
use std::net::{SocketAddr, SocketAddrV6};

use serde::de::{DeserializeSeed, IgnoredAny};

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

mod visit;
use visit::{Entry, Reply, ReplySeed};

#[cfg(test)]
mod bench;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
