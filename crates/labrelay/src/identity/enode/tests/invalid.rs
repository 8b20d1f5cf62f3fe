//! The table of enode URLs `parse` must refuse, each with the words its error must hold.

use super::*;

#[test]
fn parse_invalid_enode_urls() {
    let upper_onion = ONION.replace("mcad.onion", "mcaD.onion");
    let cases: Vec<(String, EnodeError)> = vec![
        (
            format!("enode://{ID}@127.0.0.1:foo"),
            EnodeError::InvalidPort { port: "foo".into() },
        ),
        (
            format!("enode://{ID}@127.0.0.1:65536"),
            EnodeError::InvalidPort {
                port: "65536".into(),
            },
        ),
        (
            format!("enode://{ID}@127.0.0.1:+1"),
            EnodeError::InvalidPort { port: "+1".into() },
        ),
        (
            format!("enode://{ID}@127.0.0.1:3?discport=foo"),
            EnodeError::InvalidDiscport {
                value: "foo".into(),
            },
        ),
        (
            format!("enode://{ID}@127.0.0.1"),
            EnodeError::MissingPort {
                host: "127.0.0.1".into(),
                hint: "",
            },
        ),
        (
            format!("enode://{ID}@127.0.0.1:"),
            EnodeError::MissingPort {
                host: "127.0.0.1".into(),
                hint: "",
            },
        ),
        (
            format!("enode://{ID}@[::1]"),
            EnodeError::MissingPort {
                host: "::1".into(),
                hint: "",
            },
        ),
        (
            format!("enode://{ID}@2001:db8::1"),
            EnodeError::MissingPort {
                host: "2001:db8::1".into(),
                hint: "; IPv6 addresses go in brackets: [addr]:port",
            },
        ),
        (format!("enode://{ID}@:30303"), EnodeError::MissingHost),
        (format!("enode://{ID}@"), EnodeError::MissingHost),
        (
            format!("enode://{ID}@[::1:30303"),
            EnodeError::MalformedHost {
                host: "[::1:30303".into(),
                reason: "missing ']'",
            },
        ),
        (
            format!("enode://{ID}@{upper_onion}:30303"),
            EnodeError::OnionUppercase {
                host: upper_onion.clone(),
            },
        ),
        (
            format!("enode://{ID}@{}:30303", ONION.to_uppercase()),
            EnodeError::OnionUppercase {
                host: ONION.to_uppercase(),
            },
        ),
        (
            format!("enode://{ID}@tooshort.onion:30303"),
            EnodeError::InvalidOnion {
                host: "tooshort.onion".into(),
                source: Onion3Error::Length { got: 14 },
            },
        ),
        (
            format!("enode://{ID}@{}:30303", ONION.replace("darf", "dar1")),
            EnodeError::InvalidOnion {
                host: abbreviate(&ONION.replace("darf", "dar1")),
                source: Onion3Error::InvalidChar { pos: 3, ch: '1' },
            },
        ),
        (
            format!("enode://{ID}@valid.:3"),
            EnodeError::NotIpOrOnion {
                host: "valid.".into(),
            },
        ),
        (
            format!("enode://{ID}@localhost:30303"),
            EnodeError::NotIpOrOnion {
                host: "localhost".into(),
            },
        ),
        (
            format!("enode://{ID}@01.2.3.4:30303"),
            EnodeError::NotIpOrOnion {
                host: "01.2.3.4".into(),
            },
        ),
        (
            "enode://01010101@123.124.125.126:3".into(),
            EnodeError::NodeIdLength { got: 8 },
        ),
        (
            "enode://zz@1.2.3.4:3".into(),
            EnodeError::NodeIdLength { got: 2 },
        ),
        (
            format!("enode://{}zz@1.2.3.4:3", &ID[..126]),
            EnodeError::NodeIdHex { ch: 'z', pos: 126 },
        ),
        (
            format!("enode://{}@1.2.3.4:3", "0".repeat(128)),
            EnodeError::InvalidPublicKey,
        ),
        (format!("enode://{ID}"), EnodeError::Incomplete),
        (
            "enode://01010101".into(),
            EnodeError::NodeIdLength { got: 8 },
        ),
        (
            format!("enode://{}", "0".repeat(128)),
            EnodeError::InvalidPublicKey,
        ),
        ("enode://1.2.3.4:30303".into(), EnodeError::MissingNodeId),
        ("enode://@1.2.3.4:30303".into(), EnodeError::MissingNodeId),
        ("enode://".into(), EnodeError::MissingNodeId),
    ];
    for (input, want) in cases {
        match NodeRecord::parse(&input) {
            Err(ParseError::Enode { reason, .. }) => assert_eq!(reason, want, "{input}"),
            other => panic!("{input}: got {other:?}"),
        }
    }
    for input in ["", "http://foobar", "://foo", "ENODE://abc", ID] {
        assert!(
            matches!(
                NodeRecord::parse(input),
                Err(ParseError::MissingPrefix { .. })
            ),
            "{input}"
        );
    }
}
