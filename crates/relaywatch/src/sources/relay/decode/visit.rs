//! The serde visitors of the one-pass admin_peers decoder: every field lenient (a value of the
//! wrong JSON type reads as missing), repeated keys noted, everything else skipped unread.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{decode_entry, EntryProblem, PeerList, MAX_ENTRIES};

/// The `visit_*` methods that accept a JSON value of a type the visitor does not want and
/// return `$none` (draining arrays and objects, so the parse goes on after them).
macro_rules! ignore_the_rest {
    () => {
        ignore_the_rest!(@scalars None);
        ignore_the_rest!(@seq None);
        ignore_the_rest!(@map None);
    };
    // The containers (reply array, entry, network): booleans and strings are ignored too.
    (no_seq) => {
        ignore_the_rest!(@scalars None);
        ignore_the_rest!(@bool_str None);
        ignore_the_rest!(@map None);
    };
    (no_map) => {
        ignore_the_rest!(no_map, None);
    };
    (no_map, $none:expr) => {
        ignore_the_rest!(@scalars $none);
        ignore_the_rest!(@bool_str $none);
        ignore_the_rest!(@seq $none);
    };
    (@bool_str $none:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($none)
        }
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
pub(super) struct Entry<'a> {
    pub(super) id: Option<Cow<'a, str>>,
    pub(super) enode: Option<Cow<'a, str>>,
    pub(super) network: Option<Network<'a>>,
    /// A key appeared twice in the entry or its `network` (the last one is used, as Go's
    /// encoding/json does; the entry is reported).
    pub(super) duplicated: bool,
}

#[derive(Default)]
pub(super) struct Network<'a> {
    pub(super) local: Option<Cow<'a, str>>,
    pub(super) remote: Option<Cow<'a, str>>,
    pub(super) inbound: Option<bool>,
}

pub(super) struct Reply {
    /// `None` unless `result` was an array.
    pub(super) result: Option<PeerList>,
    /// The JSON text of a non-null `error`.
    pub(super) error: Option<String>,
}

pub(super) struct ReplySeed<'z> {
    pub(super) zone_index: &'z dyn Fn(&str) -> Option<u32>,
    pub(super) split: bool,
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
    ignore_the_rest!(no_seq);
}

/// The keys an object visitor reads, and which of them it has seen: a key given twice marks
/// the object `duplicated` (its last value is used, as in Go's encoding/json).
struct Fields<const N: usize> {
    names: [&'static str; N],
    seen: [bool; N],
}

impl<const N: usize> Fields<N> {
    fn new(names: [&'static str; N]) -> Self {
        Fields {
            names,
            seen: [false; N],
        }
    }

    /// The position of `key` among the names, or `None` for a key the visitor skips.
    fn slot(&mut self, key: &str, duplicated: &mut bool) -> Option<usize> {
        let slot = self.names.iter().position(|name| *name == key)?;
        *duplicated |= std::mem::replace(&mut self.seen[slot], true);
        Some(slot)
    }
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
        let mut fields = Fields::new(["id", "enode", "network"]);
        while let Some(key) = map.next_key::<Key>()? {
            let Some(slot) = fields.slot(&key.0, &mut entry.duplicated) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
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
        let mut fields = Fields::new(["localAddress", "remoteAddress", "inbound"]);
        while let Some(key) = map.next_key::<Key>()? {
            let Some(slot) = fields.slot(&key.0, &mut duplicated) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
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
