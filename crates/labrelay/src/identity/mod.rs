//! Node identity, as go-ethereum's `p2p/enode` and `p2p/enr` packages define it,
//! with gethrelay's changes (the `onion3` record entry and `.onion` hosts in
//! enode URLs).
//!
//! Pure code: no I/O, no clock. Pieces:
//! - [`NodeKey`] / [`PublicId`]: the secp256k1 node key and its public half
//!   (what `enode://` URLs carry); [`PublicId::node_id`] is geth's `enode.ID`.
//! - [`rlp`]: the minimal RLP codec records need.
//! - [`enr`]: EIP-778 node records with the "v4" identity scheme.
//! - [`enode`]: [`NodeRecord`], the dialer's view of a node, parsed from
//!   `enode://` URLs or `enr:` text, and [`local_record`].

pub mod enode;
pub mod enr;
pub mod rlp;

use std::fmt;

use k256::ecdsa::{SigningKey, VerifyingKey};
use k256::elliptic_curve::sec1::ToEncodedPoint;
use sha3::{Digest, Keccak256};
use thiserror::Error;

pub use enode::{is_onion_host, local_record, EnodeError, NodeRecord, ParseError};
pub use enr::{EnrError, Onion3Error, Record, RecordBuilder};

/// Keccak-256 (the pre-standard SHA-3 variant Ethereum uses).
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// Errors from parsing a private node key. Messages follow geth's
/// `crypto.HexToECDSA`, which `--nodekeyhex` uses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("invalid hex character {ch:?} in private key")]
    InvalidHexChar { ch: char },
    #[error("invalid hex data for private key (odd length)")]
    OddLength,
    #[error("invalid length, need 256 bits (64 hex characters), got {got} bytes")]
    InvalidLength { got: usize },
    #[error("invalid private key, zero or negative")]
    Zero,
    #[error("invalid private key, >=N")]
    TooLarge,
}

/// Errors from parsing a public key / node ID.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PublicIdError {
    #[error("node ID must be 128 hex characters, got {got}")]
    HexLength { got: usize },
    #[error("node ID has invalid hex character {ch:?} at position {pos}")]
    InvalidHexChar { ch: char, pos: usize },
    #[error("public key must be {want} bytes, got {got}")]
    ByteLength { want: usize, got: usize },
    #[error("invalid public key: not a point on the secp256k1 curve")]
    NotOnCurve,
}

/// The node's secp256k1 private key (geth's `--nodekey` / `--nodekeyhex`).
#[derive(Clone)]
pub struct NodeKey {
    key: SigningKey,
}

impl NodeKey {
    /// A fresh random key from the operating system's RNG.
    pub fn generate() -> NodeKey {
        NodeKey {
            key: SigningKey::random(&mut rand::rngs::OsRng),
        }
    }

    /// Parses 64 hex characters (either case, no `0x` prefix, no whitespace),
    /// like geth's `crypto.HexToECDSA`.
    pub fn from_hex(s: &str) -> Result<NodeKey, KeyError> {
        if let Some(ch) = s.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(KeyError::InvalidHexChar { ch });
        }
        if s.len() % 2 != 0 {
            return Err(KeyError::OddLength);
        }
        let bytes = hex::decode(s).map_err(|_| KeyError::OddLength)?;
        NodeKey::from_bytes(&bytes)
    }

    /// A key from its 32-byte big-endian scalar.
    pub fn from_bytes(bytes: &[u8]) -> Result<NodeKey, KeyError> {
        if bytes.len() != 32 {
            return Err(KeyError::InvalidLength { got: bytes.len() });
        }
        if bytes.iter().all(|&b| b == 0) {
            return Err(KeyError::Zero);
        }
        let key = SigningKey::from_slice(bytes).map_err(|_| KeyError::TooLarge)?;
        Ok(NodeKey { key })
    }

    /// The 32-byte scalar as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.key.to_bytes())
    }

    /// The public key, in enode form.
    pub fn public_id(&self) -> PublicId {
        PublicId::from_verifying_key(self.key.verifying_key())
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

impl fmt::Debug for NodeKey {
    // Never print the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey(public: {})", self.public_id())
    }
}

/// A secp256k1 public key as enode URLs carry it: the 64-byte uncompressed
/// point X || Y, without the 0x04 prefix.
///
/// All constructors in this module check that the bytes are a point on the
/// curve; the field is public so it can be pattern-matched, but code that
/// builds one by hand takes responsibility for that.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicId(pub [u8; 64]);

impl PublicId {
    fn from_verifying_key(vk: &VerifyingKey) -> PublicId {
        let point = vk.as_affine().to_encoded_point(false);
        let mut out = [0u8; 64];
        out.copy_from_slice(&point.as_bytes()[1..]);
        PublicId(out)
    }

    /// From the 64-byte X || Y form; checks the point is on the curve.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicId, PublicIdError> {
        if bytes.len() != 64 {
            return Err(PublicIdError::ByteLength {
                want: 64,
                got: bytes.len(),
            });
        }
        let mut sec1 = [0u8; 65];
        sec1[0] = 0x04;
        sec1[1..].copy_from_slice(bytes);
        let vk = VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| PublicIdError::NotOnCurve)?;
        Ok(PublicId::from_verifying_key(&vk))
    }

    /// From the 33-byte compressed form (the ENR "secp256k1" entry).
    pub fn from_compressed(bytes: &[u8]) -> Result<PublicId, PublicIdError> {
        if bytes.len() != 33 {
            return Err(PublicIdError::ByteLength {
                want: 33,
                got: bytes.len(),
            });
        }
        let vk = VerifyingKey::from_sec1_bytes(bytes).map_err(|_| PublicIdError::NotOnCurve)?;
        Ok(PublicId::from_verifying_key(&vk))
    }

    /// From 128 hex characters (either case), as in an enode URL.
    pub fn from_hex(s: &str) -> Result<PublicId, PublicIdError> {
        if s.len() != 128 {
            return Err(PublicIdError::HexLength {
                got: s.chars().count(),
            });
        }
        if let Some((pos, ch)) = s.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(PublicIdError::InvalidHexChar { ch, pos });
        }
        let bytes = hex::decode(s).map_err(|_| PublicIdError::HexLength { got: s.len() })?;
        PublicId::from_bytes(&bytes)
    }

    /// The 33-byte compressed form. `None` if the bytes are not a curve point
    /// (only possible for a hand-built value).
    pub fn to_compressed(&self) -> Option<[u8; 33]> {
        let vk = self.verifying_key()?;
        let point = vk.as_affine().to_encoded_point(true);
        let mut out = [0u8; 33];
        out.copy_from_slice(point.as_bytes());
        Some(out)
    }

    pub(crate) fn verifying_key(&self) -> Option<VerifyingKey> {
        let mut sec1 = [0u8; 65];
        sec1[0] = 0x04;
        sec1[1..].copy_from_slice(&self.0);
        VerifyingKey::from_sec1_bytes(&sec1).ok()
    }

    /// geth's `enode.ID`: keccak256 of the 64 bytes.
    pub fn node_id(&self) -> [u8; 32] {
        keccak256(&self.0)
    }

    /// The node ID as 64 lowercase hex characters (admin_peers' `id`).
    pub fn node_id_hex(&self) -> String {
        hex::encode(self.node_id())
    }

    /// 128 lowercase hex characters (the user part of an enode URL).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for PublicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicId({})", self.to_hex())
    }
}

impl std::str::FromStr for PublicId {
    type Err = PublicIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicId::from_hex(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // EIP-778 example key and its public key.
    const EIP778_KEY: &str = "b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291";
    const EIP778_COMPRESSED: &str =
        "03ca634cae0d49acb401d8a4c6b6fe8c55b70d115bf400769cc1400f3258cd3138";
    // EIP-778: "node ID 0xa448f24c6d18e575453db13171562b71999873db5b286df957af199ec94617f7"
    const EIP778_NODE_ID: &str = "a448f24c6d18e575453db13171562b71999873db5b286df957af199ec94617f7";

    #[test]
    fn key_hex_roundtrip_and_ids() {
        let key = NodeKey::from_hex(EIP778_KEY).unwrap();
        assert_eq!(key.to_hex(), EIP778_KEY);
        let id = key.public_id();
        assert_eq!(hex::encode(id.to_compressed().unwrap()), EIP778_COMPRESSED);
        assert_eq!(id.node_id_hex(), EIP778_NODE_ID);
        let from_c = PublicId::from_compressed(&hex::decode(EIP778_COMPRESSED).unwrap()).unwrap();
        assert_eq!(from_c, id);
        assert_eq!(PublicId::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(PublicId::from_hex(&id.to_hex().to_uppercase()).unwrap(), id);
        assert_eq!(
            NodeKey::from_hex(&EIP778_KEY.to_uppercase())
                .unwrap()
                .to_hex(),
            EIP778_KEY
        );
        assert!(!format!("{key:?}").contains(EIP778_KEY));
    }

    #[test]
    fn generate_gives_distinct_valid_keys() {
        let a = NodeKey::generate();
        let b = NodeKey::generate();
        assert_ne!(a.to_hex(), b.to_hex());
        assert_eq!(
            NodeKey::from_hex(&a.to_hex()).unwrap().public_id(),
            a.public_id()
        );
        assert!(a.public_id().to_compressed().is_some());
    }

    #[test]
    fn key_errors() {
        let n = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
        let cases: &[(&str, KeyError)] = &[
            ("", KeyError::InvalidLength { got: 0 }),
            ("0x12", KeyError::InvalidHexChar { ch: 'x' }),
            ("abc", KeyError::OddLength),
            ("abcd", KeyError::InvalidLength { got: 2 }),
            (&"00".repeat(32), KeyError::Zero),
            (n, KeyError::TooLarge),
            ("é", KeyError::InvalidHexChar { ch: 'é' }),
        ];
        for (input, want) in cases {
            assert_eq!(
                NodeKey::from_hex(input).err().as_ref(),
                Some(want),
                "{input:?}"
            );
        }
        assert!(NodeKey::from_bytes(&[1; 32]).is_ok());
    }

    #[test]
    fn public_id_errors() {
        assert_eq!(
            PublicId::from_hex("abcd"),
            Err(PublicIdError::HexLength { got: 4 })
        );
        let bad = format!("zz{}", "0".repeat(126));
        assert_eq!(
            PublicId::from_hex(&bad),
            Err(PublicIdError::InvalidHexChar { ch: 'z', pos: 0 })
        );
        assert_eq!(
            PublicId::from_hex(&"0".repeat(128)),
            Err(PublicIdError::NotOnCurve)
        );
        assert_eq!(
            PublicId::from_hex(&"1".repeat(128)),
            Err(PublicIdError::NotOnCurve)
        );
        let mut x_too_big = [0xff; 33];
        x_too_big[0] = 0x02;
        assert_eq!(
            PublicId::from_compressed(&x_too_big),
            Err(PublicIdError::NotOnCurve)
        );
        let mut bad_prefix =
            hex::decode("03ca634cae0d49acb401d8a4c6b6fe8c55b70d115bf400769cc1400f3258cd3138")
                .unwrap();
        bad_prefix[0] = 0x04;
        assert_eq!(
            PublicId::from_compressed(&bad_prefix),
            Err(PublicIdError::NotOnCurve)
        );
        assert_eq!(
            PublicId::from_compressed(&[2; 65]),
            Err(PublicIdError::ByteLength { want: 33, got: 65 })
        );
        // multi-byte characters must not cause slicing panics
        assert!(PublicId::from_hex(&"é".repeat(64)).is_err());
        assert!(PublicId([0; 64]).to_compressed().is_none());
    }
}
