//! Minimal RLP (Recursive Length Prefix) encoding and decoding.
//!
//! Only what node records need: byte strings, unsigned integers and lists.
//! Decoding is strict in the same places as go-ethereum's `rlp` package:
//! non-canonical size prefixes, integers with leading zero bytes, values that
//! run past the end of their container and trailing data are all rejected.
//! Nested list payloads are not validated until they are decoded themselves
//! (geth's `rlp.RawValue` behaves the same way).

use thiserror::Error;

/// Decoding errors. Messages follow go-ethereum's `rlp` package where it has one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RlpError {
    #[error("rlp: unexpected end of input")]
    UnexpectedEof,
    #[error("rlp: non-canonical size information")]
    CanonSize,
    #[error("rlp: non-canonical integer (leading zero bytes)")]
    CanonInt,
    #[error("rlp: uint overflow (value longer than {max} bytes)")]
    UintOverflow { max: usize },
    #[error("rlp: value size exceeds available input length")]
    ValueTooLarge,
    #[error("rlp: element is larger than containing list")]
    ElemTooLarge,
    #[error("rlp: expected String or Byte")]
    ExpectedString,
    #[error("rlp: expected List")]
    ExpectedList,
    #[error("rlp: input contains more than one value")]
    MoreThanOneValue,
}

/// The three kinds of RLP items (geth distinguishes a single byte < 0x80
/// encoded as itself from a length-prefixed string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Byte,
    String,
    List,
}

/// One decoded RLP item, borrowing from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item<'a> {
    pub kind: Kind,
    /// The content: the byte itself, the string bytes, or the list payload
    /// (concatenated encodings of the elements).
    pub payload: &'a [u8],
    /// The complete encoding of this item, header included.
    pub raw: &'a [u8],
}

// ---------------------------------------------------------------- encoding

fn put_header(out: &mut Vec<u8>, len: usize, short: u8, long: u8) {
    if len < 56 {
        out.push(short + len as u8);
    } else {
        let be = (len as u64).to_be_bytes();
        let skip = be.iter().take_while(|&&b| b == 0).count();
        out.push(long + (8 - skip) as u8);
        out.extend_from_slice(&be[skip..]);
    }
}

/// Appends the encoding of a byte string.
pub fn encode_bytes(out: &mut Vec<u8>, b: &[u8]) {
    if b.len() == 1 && b[0] < 0x80 {
        out.push(b[0]);
    } else {
        put_header(out, b.len(), 0x80, 0xb7);
        out.extend_from_slice(b);
    }
}

/// Appends the canonical encoding of an unsigned integer (big-endian, no
/// leading zero bytes; zero is the empty string 0x80).
pub fn encode_uint(out: &mut Vec<u8>, v: u64) {
    let be = v.to_be_bytes();
    let skip = be.iter().take_while(|&&b| b == 0).count();
    encode_bytes(out, &be[skip..]);
}

/// Appends a list whose payload (the concatenated element encodings) is given.
pub fn encode_list(out: &mut Vec<u8>, payload: &[u8]) {
    put_header(out, payload.len(), 0xc0, 0xf7);
    out.extend_from_slice(payload);
}

/// Convenience: the encoding of a byte string as a new vector.
pub fn bytes(b: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(b.len() + 9);
    encode_bytes(&mut v, b);
    v
}

/// Convenience: the encoding of an unsigned integer as a new vector.
pub fn uint(v: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    encode_uint(&mut out, v);
    out
}

// ---------------------------------------------------------------- decoding

/// Decodes the first item of `input`, returning it and the remaining bytes.
pub fn decode_one(input: &[u8]) -> Result<(Item<'_>, &[u8]), RlpError> {
    let (&b, after) = input.split_first().ok_or(RlpError::UnexpectedEof)?;
    let (kind, hdr, len) = match b {
        0x00..=0x7f => {
            let item = Item {
                kind: Kind::Byte,
                payload: &input[..1],
                raw: &input[..1],
            };
            return Ok((item, after));
        }
        0x80..=0xb7 => {
            let len = usize::from(b - 0x80);
            // A single byte below 0x80 must be encoded as itself.
            if len == 1 && after.first().is_some_and(|&c| c < 0x80) {
                return Err(RlpError::CanonSize);
            }
            (Kind::String, 1, len)
        }
        0xb8..=0xbf => {
            let n = usize::from(b - 0xb7);
            (Kind::String, 1 + n, read_long_size(after, n)?)
        }
        0xc0..=0xf7 => (Kind::List, 1, usize::from(b - 0xc0)),
        0xf8..=0xff => {
            let n = usize::from(b - 0xf7);
            (Kind::List, 1 + n, read_long_size(after, n)?)
        }
    };
    let available = input.len() - hdr;
    if len > available {
        return Err(RlpError::ValueTooLarge);
    }
    let end = hdr + len;
    let item = Item {
        kind,
        payload: &input[hdr..end],
        raw: &input[..end],
    };
    Ok((item, &input[end..]))
}

fn read_long_size(after: &[u8], n: usize) -> Result<usize, RlpError> {
    let size_bytes = after.get(..n).ok_or(RlpError::ValueTooLarge)?;
    if size_bytes[0] == 0 {
        return Err(RlpError::CanonSize);
    }
    let mut size: u64 = 0;
    for &b in size_bytes {
        size = (size << 8) | u64::from(b);
    }
    if size < 56 {
        return Err(RlpError::CanonSize);
    }
    // Sizes that do not fit in usize can never fit in the input anyway.
    usize::try_from(size).map_err(|_| RlpError::ValueTooLarge)
}

/// Decodes exactly one item; trailing bytes are an error.
pub fn decode_exact(input: &[u8]) -> Result<Item<'_>, RlpError> {
    let (item, rest) = decode_one(input)?;
    if !rest.is_empty() {
        return Err(RlpError::MoreThanOneValue);
    }
    Ok(item)
}

impl<'a> Item<'a> {
    /// The content of a byte string (Byte or String kind).
    pub fn as_bytes(&self) -> Result<&'a [u8], RlpError> {
        match self.kind {
            Kind::Byte | Kind::String => Ok(self.payload),
            Kind::List => Err(RlpError::ExpectedString),
        }
    }

    /// A canonical unsigned integer of at most `max_bytes` bytes.
    pub fn as_uint(&self, max_bytes: usize) -> Result<u64, RlpError> {
        match self.kind {
            Kind::List => Err(RlpError::ExpectedString),
            // 0x00 as a single byte is not canonical: zero is 0x80.
            Kind::Byte if self.payload[0] == 0 => Err(RlpError::CanonInt),
            Kind::Byte => Ok(u64::from(self.payload[0])),
            Kind::String => {
                let p = self.payload;
                if p.len() > max_bytes.min(8) {
                    return Err(RlpError::UintOverflow {
                        max: max_bytes.min(8),
                    });
                }
                if p.first() == Some(&0) {
                    return Err(RlpError::CanonInt);
                }
                Ok(p.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
            }
        }
    }

    /// The elements of a list.
    pub fn as_list(&self) -> Result<Vec<Item<'a>>, RlpError> {
        if self.kind != Kind::List {
            return Err(RlpError::ExpectedList);
        }
        let mut rest = self.payload;
        let mut items = Vec::new();
        while !rest.is_empty() {
            let (item, r) = decode_one(rest).map_err(|e| match e {
                RlpError::ValueTooLarge => RlpError::ElemTooLarge,
                e => e,
            })?;
            items.push(item);
            rest = r;
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_table() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "80"),
            (&[0x00], "00"),
            (&[0x7f], "7f"),
            (&[0x80], "8180"),
            (b"dog", "83646f67"),
        ];
        for (input, want) in cases {
            assert_eq!(hex::encode(bytes(input)), *want, "bytes {input:?}");
        }
        let long = [0xaa; 56];
        assert_eq!(&bytes(&long)[..2], &[0xb8, 56]);
        let uints: &[(u64, &str)] = &[
            (0, "80"),
            (1, "01"),
            (0x7f, "7f"),
            (0x80, "8180"),
            (30303, "82765f"),
            (u64::MAX, "88ffffffffffffffff"),
        ];
        for (v, want) in uints {
            assert_eq!(hex::encode(uint(*v)), *want, "uint {v}");
        }
        let mut list = Vec::new();
        encode_list(&mut list, &[bytes(b"cat"), bytes(b"dog")].concat());
        assert_eq!(hex::encode(&list), "c88363617483646f67");
        let mut empty = Vec::new();
        encode_list(&mut empty, &[]);
        assert_eq!(empty, [0xc0]);
    }

    #[test]
    fn decode_roundtrip_and_list() {
        let enc = hex::decode("c88363617483646f67").unwrap();
        let item = decode_exact(&enc).unwrap();
        let elems = item.as_list().unwrap();
        assert_eq!(elems.len(), 2);
        assert_eq!(elems[0].as_bytes().unwrap(), b"cat");
        assert_eq!(elems[1].raw, &hex::decode("83646f67").unwrap()[..]);
        let long = bytes(&[7; 300]);
        assert_eq!(
            decode_exact(&long).unwrap().as_bytes().unwrap(),
            &[7; 300][..]
        );
        assert_eq!(decode_exact(&uint(30303)).unwrap().as_uint(2), Ok(30303));
        assert_eq!(decode_exact(&uint(0)).unwrap().as_uint(2), Ok(0));
    }

    #[test]
    fn decode_rejects_non_canonical() {
        let cases: &[(&str, RlpError)] = &[
            ("", RlpError::UnexpectedEof),
            ("8105", RlpError::CanonSize),
            ("b80100", RlpError::CanonSize),
            ("b83700", RlpError::CanonSize),
            ("b90038", RlpError::CanonSize),
            ("f800", RlpError::CanonSize),
            ("83646f", RlpError::ValueTooLarge),
            ("b9", RlpError::ValueTooLarge),
            ("bfffffffffffffffff", RlpError::ValueTooLarge),
            ("ffffffffffffffffff", RlpError::ValueTooLarge),
            ("0102", RlpError::MoreThanOneValue),
        ];
        for (input, want) in cases {
            let b = hex::decode(input).unwrap();
            assert_eq!(decode_exact(&b).err().as_ref(), Some(want), "input {input}");
        }
        // element larger than its list
        let b = hex::decode("c283646f67").unwrap();
        assert_eq!(
            decode_one(&b).unwrap().0.as_list(),
            Err(RlpError::ElemTooLarge)
        );
        let uint_cases: &[(&str, RlpError)] = &[
            ("00", RlpError::CanonInt),
            ("820001", RlpError::CanonInt),
            ("83010000", RlpError::UintOverflow { max: 2 }),
            ("c0", RlpError::ExpectedString),
        ];
        for (input, want) in uint_cases {
            let b = hex::decode(input).unwrap();
            assert_eq!(
                decode_exact(&b).unwrap().as_uint(2).as_ref(),
                Err(want),
                "uint {input}"
            );
        }
        assert_eq!(
            decode_exact(&[0x83, 1, 2, 3]).unwrap().as_list(),
            Err(RlpError::ExpectedList)
        );
    }
}
