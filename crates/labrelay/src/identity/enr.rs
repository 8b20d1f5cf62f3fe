//! Ethereum Node Records (EIP-778) with the "v4" identity scheme, as in
//! go-ethereum's `p2p/enr` + `p2p/enode/idscheme.go`, plus gethrelay's
//! `onion3` entry.
//!
//! A record is `rlp([signature, seq, k1, v1, k2, v2, ...])` with keys sorted
//! and unique; the v4 signature is a 64-byte `r || s` secp256k1 ECDSA
//! signature (low s, RFC 6979 nonce) over `keccak256(rlp([seq, k1, v1, ...]))`.
//! Text form: `"enr:"` + unpadded URL-safe base64. At most 300 bytes.
//!
//! Like geth, decoding checks the structure and the signature but not the
//! contents of known entries: typed accessors ([`Record::tcp`], ...) decode
//! lazily and report malformed values as errors, which callers building a
//! node view treat as "absent" (geth's `Load` errors are ignored there too).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use k256::ecdsa::Signature;
use thiserror::Error;

use super::rlp::{self, Item, RlpError};
use super::{keccak256, NodeKey, PublicId};

/// Maximum encoded size of a record in bytes.
pub const SIZE_LIMIT: usize = 300;

/// Keys used by this module.
pub const KEY_ID: &str = "id";
pub const KEY_IP: &str = "ip";
pub const KEY_IP6: &str = "ip6";
pub const KEY_ONION3: &str = "onion3";
pub const KEY_SECP256K1: &str = "secp256k1";
pub const KEY_TCP: &str = "tcp";
pub const KEY_TCP6: &str = "tcp6";
pub const KEY_UDP: &str = "udp";
pub const KEY_UDP6: &str = "udp6";

/// Go's `base64.RawURLEncoding`: URL-safe alphabet, no padding accepted,
/// non-zero trailing bits tolerated.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Why a string is not a valid Tor v3 onion address (messages as in
/// gethrelay's `validateOnion3`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Onion3Error {
    #[error("invalid Tor v3 address length: got {got}, want 62")]
    Length { got: usize },
    #[error("invalid Tor v3 address: missing .onion suffix")]
    MissingSuffix,
    #[error(
        "invalid Tor v3 address: character at position {pos} is not valid base32 (got {ch:?})"
    )]
    InvalidChar { pos: usize, ch: char },
    #[error("invalid Tor v3 address: not valid UTF-8")]
    NotUtf8,
}

/// Validates a Tor v3 address: exactly 56 characters of lower-case base32
/// (`a-z`, `2-7`) followed by `.onion` (62 bytes in all).
pub fn validate_onion3(addr: &str) -> Result<(), Onion3Error> {
    const BASE32_LEN: usize = 56;
    const TOTAL_LEN: usize = BASE32_LEN + 6;
    if addr.len() != TOTAL_LEN {
        return Err(Onion3Error::Length { got: addr.len() });
    }
    if &addr.as_bytes()[BASE32_LEN..] != b".onion" {
        return Err(Onion3Error::MissingSuffix);
    }
    for (pos, ch) in addr.char_indices().take_while(|(i, _)| *i < BASE32_LEN) {
        if !matches!(ch, 'a'..='z' | '2'..='7') {
            return Err(Onion3Error::InvalidChar { pos, ch });
        }
    }
    Ok(())
}

/// Record encoding/decoding errors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnrError {
    #[error("missing 'enr:' prefix for base64-encoded record")]
    MissingPrefix,
    #[error("invalid base64 in record text: {0}")]
    Base64(String),
    #[error("{0}")]
    Rlp(#[from] RlpError),
    #[error("record bigger than {SIZE_LIMIT} bytes (got {size})")]
    TooBig { size: usize },
    #[error("record contains less than two list elements")]
    IncompleteList,
    #[error("record contains incomplete k/v pair")]
    IncompletePair,
    #[error("record contains duplicate key {0:?}")]
    DuplicateKey(String),
    #[error("record key/value pairs are not sorted by key (at {0:?})")]
    NotSorted(String),
    #[error("invalid signature on node record: missing or malformed \"id\" entry")]
    MissingScheme,
    #[error("invalid signature on node record: unsupported identity scheme {0:?} (want \"v4\")")]
    UnknownScheme(String),
    #[error("missing ENR key \"secp256k1\"")]
    MissingPublicKey,
    #[error("invalid public key in \"secp256k1\" entry (want 33-byte compressed secp256k1 point)")]
    InvalidPublicKey,
    #[error("invalid signature on node record")]
    InvalidSignature,
    #[error("ENR key {key:?}: {reason}")]
    InvalidEntry { key: String, reason: String },
    #[error("ENR key \"onion3\": {0}")]
    InvalidOnion3(#[from] Onion3Error),
    #[error("signing failed: {0}")]
    Signing(String),
}

fn key_string(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}

/// A signed, verified node record. Obtain one from [`RecordBuilder::sign_v4`]
/// or by decoding ([`Record::decode`], [`Record::from_text`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    seq: u64,
    signature: Vec<u8>,
    /// (key, RLP-encoded value), sorted by key, unique.
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The whole encoding.
    raw: Vec<u8>,
    public_id: PublicId,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("seq", &self.seq)
            .field(
                "keys",
                &self
                    .pairs
                    .iter()
                    .map(|(k, _)| key_string(k))
                    .collect::<Vec<_>>(),
            )
            .field("text", &self.to_text())
            .finish()
    }
}

/// `rlp([seq, k1, v1, ...])`, the signed content.
fn content(seq: u64, pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut payload = rlp::uint(seq);
    for (k, v) in pairs {
        rlp::encode_bytes(&mut payload, k);
        payload.extend_from_slice(v);
    }
    let mut out = Vec::with_capacity(payload.len() + 3);
    rlp::encode_list(&mut out, &payload);
    out
}

fn encode_record(sig: &[u8], seq: u64, pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut payload = rlp::bytes(sig);
    rlp::encode_uint(&mut payload, seq);
    for (k, v) in pairs {
        rlp::encode_bytes(&mut payload, k);
        payload.extend_from_slice(v);
    }
    let mut out = Vec::with_capacity(payload.len() + 3);
    rlp::encode_list(&mut out, &payload);
    out
}

impl Record {
    /// Decodes and verifies a binary record (geth: `rlp.DecodeBytes` into an
    /// `enr.Record`, then `enode.New(enode.ValidSchemes, r)`).
    pub fn decode(input: &[u8]) -> Result<Record, EnrError> {
        let (item, rest) = rlp::decode_one(input)?;
        if item.raw.len() > SIZE_LIMIT {
            return Err(EnrError::TooBig {
                size: item.raw.len(),
            });
        }
        if !rest.is_empty() {
            return Err(RlpError::MoreThanOneValue.into());
        }
        let elems = item.as_list()?;
        if elems.len() < 2 {
            return Err(EnrError::IncompleteList);
        }
        let signature = elems[0].as_bytes()?.to_vec();
        let seq = elems[1].as_uint(8)?;
        let kv = &elems[2..];
        if kv.len() % 2 != 0 {
            // geth reports a malformed key before the missing value
            kv[kv.len() - 1].as_bytes()?;
            return Err(EnrError::IncompletePair);
        }
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(kv.len() / 2);
        for chunk in kv.chunks_exact(2) {
            let k = chunk[0].as_bytes()?;
            if let Some((prev, _)) = pairs.last() {
                if k == prev.as_slice() {
                    return Err(EnrError::DuplicateKey(key_string(k)));
                }
                if k < prev.as_slice() {
                    return Err(EnrError::NotSorted(key_string(k)));
                }
            }
            pairs.push((k.to_vec(), chunk[1].raw.to_vec()));
        }
        let mut rec = Record {
            seq,
            signature,
            pairs,
            raw: item.raw.to_vec(),
            public_id: PublicId([0; 64]),
        };
        rec.public_id = rec.verify_v4()?;
        Ok(rec)
    }

    /// Parses the `enr:<base64>` text form. Like Go's base64 decoder, CR and
    /// LF characters inside the base64 are ignored.
    pub fn from_text(s: &str) -> Result<Record, EnrError> {
        let b64 = s.strip_prefix("enr:").ok_or(EnrError::MissingPrefix)?;
        let bin = if b64.contains(['\r', '\n']) {
            let cleaned: String = b64.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
            B64.decode(cleaned)
        } else {
            B64.decode(b64)
        }
        .map_err(|e| EnrError::Base64(e.to_string()))?;
        if bin.is_empty() {
            return Err(RlpError::UnexpectedEof.into());
        }
        Record::decode(&bin)
    }

    /// Checks the "v4" identity scheme and signature; returns the public key.
    fn verify_v4(&self) -> Result<PublicId, EnrError> {
        let scheme = self.get(KEY_ID).and_then(|v| {
            let item = rlp::decode_exact(v).ok()?;
            item.as_bytes().ok().map(|b| b.to_vec())
        });
        match scheme {
            None => return Err(EnrError::MissingScheme),
            Some(s) if s != b"v4" => return Err(EnrError::UnknownScheme(key_string(&s))),
            Some(_) => {}
        }
        let raw_key = self.get(KEY_SECP256K1).ok_or(EnrError::MissingPublicKey)?;
        let key_bytes = rlp::decode_exact(raw_key)
            .and_then(|i| i.as_bytes())
            .map_err(|_| EnrError::InvalidPublicKey)?;
        if key_bytes.len() != 33 {
            return Err(EnrError::InvalidPublicKey);
        }
        let public_id =
            PublicId::from_compressed(key_bytes).map_err(|_| EnrError::InvalidSignature)?;
        let vk = public_id
            .verifying_key()
            .ok_or(EnrError::InvalidSignature)?;
        let sig = Signature::from_slice(&self.signature).map_err(|_| EnrError::InvalidSignature)?;
        let digest = keccak256(&content(self.seq, &self.pairs));
        // k256 rejects high-s signatures here, like libsecp256k1 does in geth.
        vk.verify_prehash(&digest, &sig)
            .map_err(|_| EnrError::InvalidSignature)?;
        Ok(public_id)
    }

    /// The binary encoding.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// `enr:` + unpadded URL-safe base64.
    pub fn to_text(&self) -> String {
        format!("enr:{}", B64.encode(&self.raw))
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The 64-byte `r || s` signature.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The signer's public key (from the "secp256k1" entry).
    pub fn public_id(&self) -> PublicId {
        self.public_id
    }

    /// All keys in order (byte strings; normally ASCII).
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.pairs.iter().map(|(k, _)| k.as_slice())
    }

    /// The raw RLP-encoded value of a key.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        let key = key.as_bytes();
        self.pairs
            .binary_search_by(|(k, _)| k.as_slice().cmp(key))
            .ok()
            .map(|i| self.pairs[i].1.as_slice())
    }

    fn load<'a, T>(
        &'a self,
        key: &str,
        f: impl FnOnce(Item<'a>) -> Result<T, String>,
    ) -> Result<Option<T>, EnrError> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        let item = rlp::decode_exact(raw).map_err(|e| EnrError::InvalidEntry {
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
        f(item).map(Some).map_err(|reason| EnrError::InvalidEntry {
            key: key.to_owned(),
            reason,
        })
    }

    fn load_port(&self, key: &str) -> Result<Option<u16>, EnrError> {
        self.load(key, |i| {
            i.as_uint(2).map(|v| v as u16).map_err(|e| e.to_string())
        })
    }

    fn load_fixed<const N: usize>(&self, key: &str) -> Result<Option<[u8; N]>, EnrError> {
        self.load(key, |i| {
            let b = i.as_bytes().map_err(|e| e.to_string())?;
            <[u8; N]>::try_from(b).map_err(|_| format!("want {N} bytes, got {}", b.len()))
        })
    }

    /// The identity scheme name ("id" entry), if present and a string.
    pub fn id_scheme(&self) -> Result<Option<String>, EnrError> {
        self.load(KEY_ID, |i| {
            i.as_bytes().map(key_string).map_err(|e| e.to_string())
        })
    }

    /// "ip": exactly 4 bytes.
    pub fn ip4(&self) -> Result<Option<Ipv4Addr>, EnrError> {
        Ok(self.load_fixed::<4>(KEY_IP)?.map(Ipv4Addr::from))
    }

    /// "ip6": exactly 16 bytes.
    pub fn ip6(&self) -> Result<Option<Ipv6Addr>, EnrError> {
        Ok(self.load_fixed::<16>(KEY_IP6)?.map(Ipv6Addr::from))
    }

    pub fn tcp(&self) -> Result<Option<u16>, EnrError> {
        self.load_port(KEY_TCP)
    }

    pub fn udp(&self) -> Result<Option<u16>, EnrError> {
        self.load_port(KEY_UDP)
    }

    pub fn tcp6(&self) -> Result<Option<u16>, EnrError> {
        self.load_port(KEY_TCP6)
    }

    pub fn udp6(&self) -> Result<Option<u16>, EnrError> {
        self.load_port(KEY_UDP6)
    }

    /// gethrelay's "onion3" entry, validated like its `Onion3.DecodeRLP`.
    pub fn onion3(&self) -> Result<Option<String>, EnrError> {
        let Some(raw) = self.get(KEY_ONION3) else {
            return Ok(None);
        };
        let bytes = rlp::decode_exact(raw)
            .and_then(|i| i.as_bytes())
            .map_err(|e| EnrError::InvalidEntry {
                key: KEY_ONION3.to_owned(),
                reason: e.to_string(),
            })?;
        let s = std::str::from_utf8(bytes).map_err(|_| Onion3Error::NotUtf8)?;
        validate_onion3(s)?;
        Ok(Some(s.to_owned()))
    }
}

/// Builds and signs a v4 record. Entries are kept sorted by key; setting a key
/// twice replaces the value (geth's `Record.Set`).
#[derive(Debug, Clone, Default)]
pub struct RecordBuilder {
    seq: u64,
    pairs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl RecordBuilder {
    pub fn new(seq: u64) -> RecordBuilder {
        RecordBuilder {
            seq,
            pairs: BTreeMap::new(),
        }
    }

    /// Sets a key to an already RLP-encoded value.
    pub fn set_raw(mut self, key: &str, rlp_value: Vec<u8>) -> RecordBuilder {
        self.pairs.insert(key.as_bytes().to_vec(), rlp_value);
        self
    }

    /// "ip" (4 bytes) for IPv4 and IPv4-mapped IPv6 addresses, otherwise
    /// "ip6" (16 bytes), like geth's `enr.IP`.
    pub fn ip(self, ip: IpAddr) -> RecordBuilder {
        match ip.to_canonical() {
            IpAddr::V4(v4) => self.set_raw(KEY_IP, rlp::bytes(&v4.octets())),
            IpAddr::V6(v6) => self.set_raw(KEY_IP6, rlp::bytes(&v6.octets())),
        }
    }

    pub fn tcp(self, port: u16) -> RecordBuilder {
        self.set_raw(KEY_TCP, rlp::uint(u64::from(port)))
    }

    pub fn udp(self, port: u16) -> RecordBuilder {
        self.set_raw(KEY_UDP, rlp::uint(u64::from(port)))
    }

    /// gethrelay's "onion3"; validated (geth's `Onion3.EncodeRLP`).
    pub fn onion3(self, addr: &str) -> Result<RecordBuilder, EnrError> {
        validate_onion3(addr)?;
        Ok(self.set_raw(KEY_ONION3, rlp::bytes(addr.as_bytes())))
    }

    /// geth's `enode.SignV4`: sets "id" = "v4" and "secp256k1", signs the
    /// keccak256 of the content with RFC 6979, drops the recovery id.
    pub fn sign_v4(self, key: &NodeKey) -> Result<Record, EnrError> {
        let public_id = key.public_id();
        let compressed = public_id
            .to_compressed()
            .expect("derived from a private key");
        let b = self
            .set_raw(KEY_ID, rlp::bytes(b"v4"))
            .set_raw(KEY_SECP256K1, rlp::bytes(&compressed));
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = b.pairs.into_iter().collect();
        let digest = keccak256(&content(b.seq, &pairs));
        let sig: Signature = key
            .signing_key()
            .sign_prehash(&digest)
            .map_err(|e| EnrError::Signing(e.to_string()))?;
        let sig = sig.normalize_s().unwrap_or(sig);
        let sig_bytes = sig.to_bytes().to_vec();
        let raw = encode_record(&sig_bytes, b.seq, &pairs);
        if raw.len() > SIZE_LIMIT {
            return Err(EnrError::TooBig { size: raw.len() });
        }
        Ok(Record {
            seq: b.seq,
            signature: sig_bytes,
            pairs,
            raw,
            public_id,
        })
    }
}

#[cfg(test)]
mod tests;
