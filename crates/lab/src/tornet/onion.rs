//! Onion addresses that nobody publishes, for tests of tor's failure replies.

use curve25519_dalek::{EdwardsPoint, Scalar};
use rand::RngCore;
use sha3::{Digest, Sha3_256};

/// A valid v3 address (with ".onion") that no service publishes: dialing it gives 0xF0
/// (descriptor not found). The key must be a real ed25519 public key: tor 0.4.9 answers
/// 0xF6 (invalid address) for 32 random bytes that are not a point of the curve's group.
pub fn fresh_onion_address() -> String {
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let public_key = EdwardsPoint::mul_base(&Scalar::from_bytes_mod_order(secret));
    onion_address(&public_key.compress().to_bytes())
}

/// An address with a wrong checksum: tor refuses it at once with 0xF6 (invalid address).
pub fn malformed_onion() -> String {
    format!("{}.onion", "a".repeat(56))
}

/// The v3 address of an ed25519 public key (rend-spec-v3 6: base32(pubkey || checksum || 0x03)).
pub fn onion_address(public_key: &[u8; 32]) -> String {
    const VERSION: u8 = 0x03;
    let mut hasher = Sha3_256::new();
    hasher.update(b".onion checksum");
    hasher.update(public_key);
    hasher.update([VERSION]);
    let checksum = hasher.finalize();
    let mut bytes = Vec::with_capacity(35);
    bytes.extend_from_slice(public_key);
    bytes.extend_from_slice(&checksum[..2]);
    bytes.push(VERSION);
    format!("{}.onion", base32_lower(&bytes))
}

/// RFC 4648 base32, lowercase, no padding (35 bytes give exactly 56 characters).
fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base32_decode(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buffer: u32 = 0;
        let mut bits = 0;
        for c in text.bytes() {
            let value = match c {
                b'a'..=b'z' => c - b'a',
                b'2'..=b'7' => c - b'2' + 26,
                _ => panic!("not base32: {c}"),
            };
            buffer = (buffer << 5) | u32::from(value);
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push((buffer >> bits) as u8);
            }
        }
        out
    }

    #[test]
    fn base32_rfc4648_vectors() {
        assert_eq!(base32_lower(b""), "");
        assert_eq!(base32_lower(b"f"), "my");
        assert_eq!(base32_lower(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn known_address_round_trips() {
        // A long-published v3 address: re-deriving it from its key checks the checksum.
        let known = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad";
        let bytes = base32_decode(known);
        let key: [u8; 32] = bytes[..32].try_into().unwrap();
        assert_eq!(onion_address(&key), format!("{known}.onion"));
    }

    #[test]
    fn fresh_and_malformed_shapes() {
        let fresh = fresh_onion_address();
        assert_eq!(fresh.len(), 62);
        assert!(
            fresh.ends_with("d.onion"),
            "version byte 3 ends in 'd': {fresh}"
        );
        assert_ne!(fresh, fresh_onion_address());
        assert_eq!(malformed_onion().len(), 62);
    }
}
