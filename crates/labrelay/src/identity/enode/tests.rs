//! Tests of `identity::enode`.
use super::*;
use std::net::Ipv4Addr;

mod invalid;

const ID: &str = "1dd9d65c4552b5eb43d5ad55a2ee3f56c6cbc1c64a5c8d659f51fcd51bace24351232b8d7821617d2b29b54b81cdefb9b3e9c37d7fd5f63270bcc9e1a6f6a439";
const ONION: &str = "darfuqg4jxsyjib7mjoyg555bnumyxrlm3surzav2ztuy3cssjshmcad.onion";
const EIP778_KEY: &str = "b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291";
const EIP778_TEXT: &str = "enr:-IS4QHCYrYZbAKWCBRlAy5zzaDZXJBGkcnh4MHcBFZntXNFrdvJjX04jRzjzCBOonrkTfj499SZuOh8R33Ls8RRcy5wBgmlkgnY0gmlwhH8AAAGJc2VjcDI1NmsxoQPKY0yuDUmstAHYpMa2_oxVtw0RW_QAdpzBQA8yWM0xOIN1ZHCCdl8";

fn id() -> PublicId {
    PublicId::from_hex(ID).unwrap()
}

fn node(ip: Option<&str>, tcp: Option<u16>, udp: Option<u16>, onion: Option<&str>) -> NodeRecord {
    NodeRecord {
        id: id(),
        ip: ip.map(|s| s.parse().unwrap()),
        tcp,
        udp,
        onion3: onion.map(str::to_owned),
        enr: None,
        seq: 0,
    }
}

#[test]
fn parse_valid_enode_urls() {
    // (input, expected node, expected url_v4 if different from input)
    let cases: Vec<(String, NodeRecord, Option<String>)> = vec![
        (
            format!("enode://{ID}@127.0.0.1:52150"),
            node(Some("127.0.0.1"), Some(52150), Some(52150), None),
            None,
        ),
        (
            format!("enode://{ID}@127.0.0.1:52150?discport=22334"),
            node(Some("127.0.0.1"), Some(52150), Some(22334), None),
            None,
        ),
        (
            format!("enode://{ID}@[::]:52150"),
            node(Some("::"), Some(52150), Some(52150), None),
            None,
        ),
        (
            format!("enode://{ID}@[2001:db8:3c4d:15::abcd:ef12]:52150"),
            node(
                Some("2001:db8:3c4d:15::abcd:ef12"),
                Some(52150),
                Some(52150),
                None,
            ),
            None,
        ),
        (
            format!("enode://{ID}@[::ffff:10.0.0.1]:30303"),
            node(Some("10.0.0.1"), Some(30303), Some(30303), None),
            Some(format!("enode://{ID}@10.0.0.1:30303")),
        ),
        (
            format!("enode://{ID}@{ONION}:30303"),
            node(None, Some(30303), None, Some(ONION)),
            None,
        ),
        (
            format!("enode://{ID}@{ONION}:30303?discport=30301"),
            node(None, Some(30303), Some(30301), Some(ONION)),
            None,
        ),
        // uppercase hex node ID, path and fragment ignored, empty discport = tcp
        (
            format!(
                "enode://{}@1.2.3.4:30303/?discport=#frag",
                ID.to_uppercase()
            ),
            node(Some("1.2.3.4"), Some(30303), Some(30303), None),
            Some(format!("enode://{ID}@1.2.3.4:30303")),
        ),
        // port 0: no tcp entry in geth's record; url prints :0 and discport
        (
            format!("enode://{ID}@1.2.3.4:0?discport=30303"),
            node(Some("1.2.3.4"), None, Some(30303), None),
            None,
        ),
        // leading zeros in the port are accepted by Go's ParseUint
        (
            format!("enode://{ID}@1.2.3.4:030303"),
            node(Some("1.2.3.4"), Some(30303), Some(30303), None),
            Some(format!("enode://{ID}@1.2.3.4:30303")),
        ),
        // multicast IPs are dropped by geth's endpoint selection
        (
            format!("enode://{ID}@224.0.0.1:30303"),
            node(None, Some(30303), Some(30303), None),
            Some(format!("enode://{ID}")),
        ),
    ];
    for (input, want, want_url) in cases {
        let got = NodeRecord::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(got, want, "{input}");
        assert_eq!(
            got.url_v4(),
            want_url.unwrap_or(input.clone()),
            "url_v4 of {input}"
        );
        assert_eq!(got.to_string(), got.url_v4());
    }
}

#[test]
fn error_messages_name_problem_and_input() {
    let e = NodeRecord::parse("enode://zzzz@1.2.3.4:30303").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"invalid enode URL "enode://zzzz@1.2.3.4:30303": node ID must be 128 hex characters, got 4"#
    );
    let e = NodeRecord::parse(&format!("enode://{ID}@127.0.0.1:foo")).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"invalid enode URL "enode://1dd9d65c4552b5eb...e1a6f6a439@127.0.0.1:foo": invalid port "foo" (want an integer 0-65535)"#
    );
    let e = NodeRecord::parse(&format!("enode://{ID}@example.com:30303")).unwrap_err();
    assert!(e
        .to_string()
        .ends_with(r#": hostname "example.com" must be an IP address or a .onion address"#));
    let upper = ONION.to_uppercase();
    let e = NodeRecord::parse(&format!("enode://{ID}@{upper}:1")).unwrap_err();
    assert!(e
        .to_string()
        .ends_with(&format!("onion address {upper:?} must be lower case")));
    let e = NodeRecord::parse("enr:x").unwrap_err();
    assert!(
        e.to_string()
            .starts_with(r#"invalid node record "enr:x": invalid base64"#),
        "{e}"
    );
    let e = NodeRecord::parse("bogus").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"invalid node "bogus": want an enode:// URL or an enr: record"#
    );
}

#[test]
fn parse_enr_records() {
    let n = NodeRecord::parse(EIP778_TEXT).unwrap();
    let key = NodeKey::from_hex(EIP778_KEY).unwrap();
    assert_eq!(n.id, key.public_id());
    assert_eq!(n.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!((n.tcp, n.udp, n.seq), (None, Some(30303), 1));
    assert_eq!(n.onion3, None);
    assert_eq!(n.enr.as_deref(), Some(EIP778_TEXT));
    assert_eq!(n.to_string(), EIP778_TEXT);
    assert_eq!(n.tcp_endpoint(), None);
    // geth prints a missing TCP port as 0 and adds the differing discport
    assert_eq!(
        n.url_v4(),
        format!(
            "enode://{}@127.0.0.1:0?discport=30303",
            key.public_id().to_hex()
        )
    );
    let e = NodeRecord::parse("enr:-EmGZm9vYmFyY4JpZIJ2NIJpcIR_AAABiXNlY3AyNTZrMaEDOlFBdkZvqBXtSB_60JEQotNE9sm3jB0Ur8NRw6Ub4z2DdWRwgnZf").unwrap_err();
    assert!(
        matches!(
            e,
            ParseError::Enr {
                reason: EnrError::InvalidSignature,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn local_record_roundtrip() {
    let key = NodeKey::from_hex(EIP778_KEY).unwrap();
    // The EIP-778 example through local_record.
    let n = local_record(
        &key,
        1,
        Some("127.0.0.1".parse().unwrap()),
        None,
        Some(30303),
        None,
    )
    .unwrap();
    assert_eq!(n.enr.as_deref(), Some(EIP778_TEXT));

    let onion = ONION;
    type Case<'a> = (Option<IpAddr>, Option<u16>, Option<u16>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            Some("203.0.113.9".parse().unwrap()),
            Some(30303),
            Some(30303),
            None,
        ),
        (
            Some("2001:db8::7".parse().unwrap()),
            Some(30303),
            Some(30301),
            None,
        ),
        (None, Some(30303), None, Some(onion)),
        (
            Some("203.0.113.9".parse().unwrap()),
            Some(30303),
            Some(30303),
            Some(onion),
        ),
        (None, None, None, None),
    ];
    for (seq, (ip, tcp, udp, onion3)) in cases.into_iter().enumerate() {
        let seq = seq as u64 + 10;
        let n = local_record(&key, seq, ip, tcp, udp, onion3).unwrap();
        assert_eq!(
            (n.ip, n.tcp, n.udp, n.onion3.as_deref(), n.seq),
            (ip, tcp, udp, onion3, seq)
        );
        let text = n.enr.clone().unwrap();
        let back = NodeRecord::parse(&text).unwrap();
        assert_eq!(back, n, "{text}");
        assert_eq!(back.id, key.public_id());
    }
    assert!(matches!(
        local_record(&key, 1, None, None, None, Some("NOPE.onion")),
        Err(EnrError::InvalidOnion3(_))
    ));
}

#[test]
fn dual_stack_url_shows_onion_and_endpoints() {
    let key = NodeKey::generate();
    let n = local_record(
        &key,
        3,
        Some("203.0.113.9".parse().unwrap()),
        Some(30303),
        Some(30301),
        Some(ONION),
    )
    .unwrap();
    let hex = key.public_id().to_hex();
    assert!(n.has_onion());
    assert_eq!(
        n.url_v4(),
        format!("enode://{hex}@{ONION}:30303?discport=30301")
    );
    assert_eq!(n.tcp_endpoint(), Some("203.0.113.9:30303".parse().unwrap()));
    assert_eq!(n.onion_target(), Some((ONION.to_owned(), 30303)));
    assert!(n.to_string().starts_with("enr:"));

    let clear = node(Some("::1"), Some(30303), Some(30303), None);
    assert_eq!(clear.url_v4(), format!("enode://{ID}@[::1]:30303"));
    assert_eq!(clear.tcp_endpoint(), Some("[::1]:30303".parse().unwrap()));
    assert_eq!(clear.onion_target(), None);
    assert_eq!(
        node(Some("0.0.0.0"), Some(1), None, None).tcp_endpoint(),
        None
    );
    assert_eq!(
        node(Some("1.2.3.4"), None, None, None).url_v4(),
        format!("enode://{ID}@1.2.3.4:0")
    );
    assert_eq!(
        node(None, Some(30303), None, None).url_v4(),
        format!("enode://{ID}")
    );
    let onion_only = node(None, None, None, Some(ONION));
    assert_eq!(onion_only.url_v4(), format!("enode://{ID}@{ONION}:0"));
    assert_eq!(
        onion_only.onion_target(),
        Some((ONION.to_owned(), DEFAULT_TOR_PORT))
    );
    assert_eq!(onion_only.tcp_endpoint(), None);
}

#[test]
fn endpoint_selection_prefers_global_address() {
    let key = NodeKey::generate();
    let rec = RecordBuilder::new(1)
        .ip("192.168.1.5".parse().unwrap())
        .set_raw(
            "ip6",
            super::super::rlp::bytes(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets()),
        )
        .tcp(1000)
        .set_raw("tcp6", super::super::rlp::uint(2000))
        .sign_v4(&key)
        .unwrap();
    let n = NodeRecord::from_record(&rec);
    assert_eq!(n.ip, Some("2001:db8::9".parse().unwrap()));
    assert_eq!(n.tcp, Some(2000));
    let rec = RecordBuilder::new(1)
        .ip("8.8.8.8".parse().unwrap())
        .set_raw(
            "ip6",
            super::super::rlp::bytes(&Ipv6Addr::LOCALHOST.octets()),
        )
        .tcp(1000)
        .sign_v4(&key)
        .unwrap();
    let n = NodeRecord::from_record(&rec);
    assert_eq!(
        (n.ip, n.tcp),
        (Some("8.8.8.8".parse().unwrap()), Some(1000))
    );
    // invalid onion3 in a received record is ignored, as geth's Load error is
    let rec = RecordBuilder::new(1)
        .set_raw("onion3", super::super::rlp::bytes(b"x.onion"))
        .sign_v4(&key)
        .unwrap();
    assert_eq!(NodeRecord::from_record(&rec).onion3, None);
}

#[test]
fn is_onion_host_table() {
    for (h, want) in [
        (ONION, true),
        ("ABC.ONION", true),
        ("x.Onion", true),
        (".onion", true),
        ("onion", false),
        ("example.com", false),
        ("onion.example", false),
        ("", false),
        ("é.onion", true),
    ] {
        assert_eq!(is_onion_host(h), want, "{h}");
    }
}

#[test]
fn parse_never_panics_on_truncations_and_mutations() {
    use rand::{Rng, SeedableRng};
    let seeds = [
        format!("enode://{ID}@127.0.0.1:52150?discport=22334"),
        format!("enode://{ID}@[2001:db8::1]:30303"),
        format!("enode://{ID}@{ONION}:30303?discport=30301"),
        EIP778_TEXT.to_owned(),
    ];
    let alphabet: Vec<char> = "0123456789abcdefABCDEF@:[]?=&#/.%+-_ zé\u{0}enodr"
        .chars()
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0e0de);
    for seed in &seeds {
        let chars: Vec<char> = seed.chars().collect();
        for n in 0..=chars.len() {
            let s: String = chars[..n].iter().collect();
            let _ = NodeRecord::parse(&s).map(|r| r.url_v4());
            let s: String = chars[n..].iter().collect();
            let _ = NodeRecord::parse(&s);
        }
        for _ in 0..2000 {
            let mut c = chars.clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..c.len());
                match rng.gen_range(0..3) {
                    0 => c[i] = alphabet[rng.gen_range(0..alphabet.len())],
                    1 => {
                        c.remove(i);
                    }
                    _ => c.insert(i, alphabet[rng.gen_range(0..alphabet.len())]),
                }
                if c.is_empty() {
                    break;
                }
            }
            let s: String = c.iter().collect();
            match NodeRecord::parse(&s) {
                Ok(n) => {
                    // whatever parses must print and re-parse
                    let url = n.url_v4();
                    let _ = n.tcp_endpoint();
                    if n.ip.is_some() || n.onion3.is_some() {
                        let again =
                            NodeRecord::parse(&url).unwrap_or_else(|e| panic!("{s} -> {url}: {e}"));
                        assert_eq!(again.id, n.id);
                    }
                }
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
    }
}
