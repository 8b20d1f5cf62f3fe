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
mod tests {
    use super::*;

    const EIP778_KEY: &str = "b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291";
    const EIP778_TEXT: &str = "enr:-IS4QHCYrYZbAKWCBRlAy5zzaDZXJBGkcnh4MHcBFZntXNFrdvJjX04jRzjzCBOonrkTfj499SZuOh8R33Ls8RRcy5wBgmlkgnY0gmlwhH8AAAGJc2VjcDI1NmsxoQPKY0yuDUmstAHYpMa2_oxVtw0RW_QAdpzBQA8yWM0xOIN1ZHCCdl8";
    const ONION: &str = "vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd.onion";

    fn eip778_key() -> NodeKey {
        NodeKey::from_hex(EIP778_KEY).unwrap()
    }

    #[test]
    fn eip778_example_builds_exactly() {
        let rec = RecordBuilder::new(1)
            .ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)))
            .udp(30303)
            .sign_v4(&eip778_key())
            .unwrap();
        assert_eq!(rec.to_text(), EIP778_TEXT);
    }

    #[test]
    fn eip778_example_decodes() {
        let rec = Record::from_text(EIP778_TEXT).unwrap();
        assert_eq!(rec.seq(), 1);
        assert_eq!(rec.public_id(), eip778_key().public_id());
        assert_eq!(
            rec.public_id().node_id_hex(),
            "a448f24c6d18e575453db13171562b71999873db5b286df957af199ec94617f7"
        );
        assert_eq!(rec.ip4().unwrap(), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(rec.udp().unwrap(), Some(30303));
        assert_eq!(rec.tcp().unwrap(), None);
        assert_eq!(rec.onion3().unwrap(), None);
        assert_eq!(rec.id_scheme().unwrap().as_deref(), Some("v4"));
        let keys: Vec<_> = rec
            .keys()
            .map(|k| String::from_utf8(k.to_vec()).unwrap())
            .collect();
        assert_eq!(keys, ["id", "ip", "secp256k1", "udp"]);
        assert_eq!(rec.to_text(), EIP778_TEXT);
    }

    #[test]
    fn geth_test_vector_decodes() {
        // go-ethereum p2p/enode/urlv4_test.go: key 45a915e4..., seq 99, ip 127.0.0.1, udp 30303
        let text = "enr:-IS4QGrdq0ugARp5T2BZ41TrZOqLc_oKvZoPuZP5--anqWE_J-Tucc1xgkOL7qXl0puJgT7qc2KSvcupc4NCb0nr4tdjgmlkgnY0gmlwhH8AAAGJc2VjcDI1NmsxoQM6UUF2Rm-oFe1IH_rQkRCi00T2ybeMHRSvw1HDpRvjPYN1ZHCCdl8";
        let rec = Record::from_text(text).unwrap();
        assert_eq!(rec.seq(), 99);
        let key =
            NodeKey::from_hex("45a915e4d060149eb4365960e6a7a45f334393093061116b197e3240065ff2d8")
                .unwrap();
        assert_eq!(rec.public_id(), key.public_id());
        let rebuilt = RecordBuilder::new(99)
            .ip("127.0.0.1".parse().unwrap())
            .udp(30303)
            .sign_v4(&key)
            .unwrap();
        assert_eq!(rebuilt.to_text(), text);
    }

    #[test]
    fn decode_errors() {
        let cases: &[(&str, EnrError)] = &[
            ("", EnrError::MissingPrefix),
            ("enr:", EnrError::Rlp(RlpError::UnexpectedEof)),
            // geth: signature "foobar" over an otherwise valid record
            ("enr:-EmGZm9vYmFyY4JpZIJ2NIJpcIR_AAABiXNlY3AyNTZrMaEDOlFBdkZvqBXtSB_60JEQotNE9sm3jB0Ur8NRw6Ub4z2DdWRwgnZf", EnrError::InvalidSignature),
        ];
        for (input, want) in cases {
            assert_eq!(
                Record::from_text(input).err().as_ref(),
                Some(want),
                "{input}"
            );
        }
        assert!(matches!(
            Record::from_text("enr:x"),
            Err(EnrError::Base64(_))
        ));
        assert!(matches!(
            Record::from_text(&format!("{EIP778_TEXT}=")),
            Err(EnrError::Base64(_))
        ));
        // geth's TestDecodeIncomplete
        let structural: &[(&[u8], EnrError)] = &[
            (&[0xc0], EnrError::IncompleteList),
            (&[0xc1, 0x01], EnrError::IncompleteList),
            (&[0xc3, 0x01, 0x02, 0x03], EnrError::IncompletePair),
            (
                &[0xc5, 0x01, 0x02, 0x03, 0x04, 0x05],
                EnrError::IncompletePair,
            ),
            (&[0xc2, 0x01, 0x02], EnrError::MissingScheme),
            (&[0x80], EnrError::Rlp(RlpError::ExpectedList)),
        ];
        for (input, want) in structural {
            assert_eq!(
                Record::decode(input).err().as_ref(),
                Some(want),
                "{input:02x?}"
            );
        }
    }

    fn sign_pairs(seq: u64, pairs: Vec<(Vec<u8>, Vec<u8>)>, key: &NodeKey) -> Vec<u8> {
        let digest = keccak256(&content(seq, &pairs));
        let sig: Signature = key.signing_key().sign_prehash(&digest).unwrap();
        encode_record(&sig.to_bytes(), seq, &pairs)
    }

    #[test]
    fn decode_checks_order_scheme_key_and_signature() {
        let key = eip778_key();
        let pk = rlp::bytes(&key.public_id().to_compressed().unwrap());
        let p = |k: &str, v: Vec<u8>| (k.as_bytes().to_vec(), v);
        let id = || p("id", rlp::bytes(b"v4"));
        let unsorted = sign_pairs(
            1,
            vec![id(), p("udp", rlp::uint(1)), p("secp256k1", pk.clone())],
            &key,
        );
        assert_eq!(
            Record::decode(&unsorted),
            Err(EnrError::NotSorted("secp256k1".into()))
        );
        let dup = sign_pairs(1, vec![id(), id(), p("secp256k1", pk.clone())], &key);
        assert_eq!(
            Record::decode(&dup),
            Err(EnrError::DuplicateKey("id".into()))
        );
        let v5 = sign_pairs(
            1,
            vec![p("id", rlp::bytes(b"v5")), p("secp256k1", pk.clone())],
            &key,
        );
        assert_eq!(
            Record::decode(&v5),
            Err(EnrError::UnknownScheme("v5".into()))
        );
        let nokey = sign_pairs(1, vec![id()], &key);
        assert_eq!(Record::decode(&nokey), Err(EnrError::MissingPublicKey));
        let longkey = sign_pairs(1, vec![id(), p("secp256k1", rlp::bytes(&[2; 34]))], &key);
        assert_eq!(Record::decode(&longkey), Err(EnrError::InvalidPublicKey));
        // signed by a different key than the one in the record
        let other = NodeKey::from_bytes(&[7; 32]).unwrap();
        let forged = sign_pairs(1, vec![id(), p("secp256k1", pk.clone())], &other);
        assert_eq!(Record::decode(&forged), Err(EnrError::InvalidSignature));
        // unknown keys (even list values) are accepted and covered by the signature
        let extra = sign_pairs(
            5,
            vec![
                id(),
                p("secp256k1", pk.clone()),
                p("zzz", vec![0xc2, 0x01, 0x02]),
            ],
            &key,
        );
        let rec = Record::decode(&extra).unwrap();
        assert_eq!(rec.get("zzz"), Some(&[0xc2, 0x01, 0x02][..]));
        let mut tampered = extra.clone();
        *tampered.last_mut().unwrap() = 0x03;
        assert_eq!(Record::decode(&tampered), Err(EnrError::InvalidSignature));
        // trailing data
        let mut trailing = extra.clone();
        trailing.push(0x00);
        assert_eq!(
            Record::decode(&trailing),
            Err(EnrError::Rlp(RlpError::MoreThanOneValue))
        );
        // high-s form of a valid signature is rejected
        let rec = Record::from_text(EIP778_TEXT).unwrap();
        let sig = Signature::from_slice(rec.signature()).unwrap();
        let (r, s) = sig.split_scalars();
        let high = Signature::from_scalars(r, -*s).unwrap();
        let pairs = rec.pairs.clone();
        let raw = encode_record(&high.to_bytes(), 1, &pairs);
        assert_eq!(Record::decode(&raw), Err(EnrError::InvalidSignature));
    }

    #[test]
    fn malformed_known_entries_are_lazy_errors() {
        let key = eip778_key();
        let rec = RecordBuilder::new(3)
            .set_raw("ip", rlp::bytes(&[1, 2, 3]))
            .set_raw("tcp", rlp::bytes(&[0, 1]))
            .set_raw("udp", rlp::uint(70000))
            .set_raw("onion3", rlp::bytes(b"short.onion"))
            .sign_v4(&key)
            .unwrap();
        let rec = Record::decode(rec.raw()).unwrap();
        assert!(matches!(rec.ip4(), Err(EnrError::InvalidEntry { .. })));
        assert!(matches!(rec.tcp(), Err(EnrError::InvalidEntry { .. })));
        assert!(matches!(rec.udp(), Err(EnrError::InvalidEntry { .. })));
        assert_eq!(
            rec.onion3(),
            Err(EnrError::InvalidOnion3(Onion3Error::Length { got: 11 }))
        );
    }

    #[test]
    fn onion3_validation() {
        assert_eq!(validate_onion3(ONION), Ok(()));
        let cases: &[(&str, Onion3Error)] = &[
            ("", Onion3Error::Length { got: 0 }),
            (".onion", Onion3Error::Length { got: 6 }),
            ("3g2upl4pq6kufc4m.onion", Onion3Error::Length { got: 22 }),
            (
                &ONION.replace(".onion", "xonion"),
                Onion3Error::MissingSuffix,
            ),
            (&ONION.to_uppercase(), Onion3Error::MissingSuffix),
            (
                &ONION.replace("vww6", "VWW6"),
                Onion3Error::InvalidChar { pos: 0, ch: 'V' },
            ),
            (
                &ONION.replace("vww6", "v0w6"),
                Onion3Error::InvalidChar { pos: 1, ch: '0' },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(validate_onion3(input).as_ref(), Err(want), "{input}");
        }
        // 62 bytes but with a multi-byte char straddling position 56: no panic
        let tricky = format!("{}é{}", "a".repeat(55), "onion");
        assert_eq!(tricky.len(), 62);
        assert!(validate_onion3(&tricky).is_err());
        let tricky2 = format!("{}é.onion", "a".repeat(54));
        assert_eq!(tricky2.len(), 62);
        assert_eq!(
            validate_onion3(&tricky2),
            Err(Onion3Error::InvalidChar { pos: 54, ch: 'é' })
        );
    }

    #[test]
    fn builder_onion_and_size_limit() {
        let key = NodeKey::generate();
        let rec = RecordBuilder::new(7)
            .ip("10.0.0.1".parse().unwrap())
            .onion3(ONION)
            .unwrap()
            .tcp(30303)
            .udp(30303)
            .sign_v4(&key)
            .unwrap();
        let keys: Vec<_> = rec
            .keys()
            .map(|k| String::from_utf8(k.to_vec()).unwrap())
            .collect();
        assert_eq!(keys, ["id", "ip", "onion3", "secp256k1", "tcp", "udp"]);
        let back = Record::from_text(&rec.to_text()).unwrap();
        assert_eq!(back, rec);
        assert_eq!(back.onion3().unwrap().as_deref(), Some(ONION));
        assert!(RecordBuilder::new(0).onion3("Bad.onion").is_err());
        let big = RecordBuilder::new(0)
            .set_raw("big", rlp::bytes(&[0xaa; 200]))
            .sign_v4(&key);
        assert!(matches!(big, Err(EnrError::TooBig { .. })));
        let ok = RecordBuilder::new(0)
            .set_raw("big", rlp::bytes(&[0xaa; 100]))
            .sign_v4(&key);
        assert!(ok.is_ok());
        // IPv6 goes to "ip6", mapped IPv4 to "ip"
        let v6 = RecordBuilder::new(0)
            .ip("2001:db8::1".parse().unwrap())
            .sign_v4(&key)
            .unwrap();
        assert_eq!(v6.ip6().unwrap(), Some("2001:db8::1".parse().unwrap()));
        let mapped = RecordBuilder::new(0)
            .ip("::ffff:1.2.3.4".parse().unwrap())
            .sign_v4(&key)
            .unwrap();
        assert_eq!(mapped.ip4().unwrap(), Some(Ipv4Addr::new(1, 2, 3, 4)));
    }

    #[test]
    fn decode_never_panics_on_mutations() {
        use rand::{Rng, SeedableRng};
        let base = Record::from_text(EIP778_TEXT).unwrap().raw().to_vec();
        for n in 0..base.len() {
            assert!(Record::decode(&base[..n]).is_err());
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(778);
        for _ in 0..3000 {
            let mut b = base.clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..b.len());
                b[i] = rng.gen();
            }
            let _ = Record::decode(&b);
        }
        for _ in 0..1000 {
            let len = rng.gen_range(0..64);
            let b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let _ = Record::decode(&b);
        }
    }
}
