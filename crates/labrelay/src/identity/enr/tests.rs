//! Tests of `identity::enr`.
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
    let key = NodeKey::from_hex("45a915e4d060149eb4365960e6a7a45f334393093061116b197e3240065ff2d8")
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
