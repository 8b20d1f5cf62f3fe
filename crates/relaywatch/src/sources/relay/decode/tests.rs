use super::*;

const TWO_PEERS: &str = r#"{"jsonrpc":"2.0","id":1,"result":[
  {"enode":"enode://aa@127.0.0.1:41000","id":"01","name":"x","caps":[],
   "network":{"localAddress":"10.0.0.5:30303","remoteAddress":"127.0.0.1:41000","inbound":true,"trusted":false,"static":false},
   "protocols":{"eth":{"network":1}}},
  {"enode":"enode://bb@abc.onion:30303","id":"02","name":"y","caps":[],
   "network":{"localAddress":"127.0.0.1:50000","remoteAddress":"127.0.0.1:9050","inbound":false,"trusted":false,"static":true},
   "protocols":{"eth":"handshake"}}]}"#;

fn no_zones(_: &str) -> Option<u32> {
    None
}

fn parse(body: &str) -> Result<PeerList, RelayError> {
    parse_admin_peers(body.as_bytes(), &no_zones)
}

fn entry(network: &str) -> String {
    format!(r#"{{"id":"03","enode":"enode://cc@198.51.100.77:30303","network":{network}}}"#)
}

#[test]
fn parses_geth_peer_info() {
    let list = parse(TWO_PEERS).unwrap();
    assert!(list.problems.is_empty(), "{:?}", list.problems);
    let peers = list.peers;
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[0].direction, Some(Direction::Inbound));
    assert_eq!(peers[0].remote, "127.0.0.1:41000".parse().unwrap());
    assert_eq!(peers[1].direction, Some(Direction::Outbound));
    assert_eq!(peers[1].local, Some("127.0.0.1:50000".parse().unwrap()));
    assert_eq!(peers[1].enode, "enode://bb@abc.onion:30303");
}

#[test]
fn bad_replies_are_named_errors() {
    let cases: &[(&str, &str)] = &[
        ("", "invalid JSON"),
        ("<html>", "invalid JSON"),
        ("[1,2]", "not a JSON object"),
        (r#"[[{"id":"1"}], null]"#, "not a JSON object"),
        (r#"{"result":{}}"#, "no `result` array"),
        (r#"{"result":null}"#, "no `result` array"),
        (r#"{"jsonrpc":"2.0"}"#, "no `result` array"),
        (
            r#"{"error":{"code":-32601,"message":"nope"}}"#,
            "JSON-RPC error",
        ),
    ];
    for (body, expected) in cases {
        let error = parse(body).unwrap_err().to_string();
        assert!(error.contains(expected), "{body}: {error}");
    }
}

/// The defect this decoder exists for: one malformed entry made the whole poll fail, so a
/// clearnet leak listed in the same reply was neither counted nor removed.
#[test]
fn a_malformed_entry_never_hides_a_clearnet_peer() {
    let leak = entry(
        r#"{"localAddress":"10.0.0.5:30303","remoteAddress":"198.51.100.77:30303","inbound":true}"#,
    );
    let broken = [
        r#"{"id":"04","enode":"e"}"#.to_string(),
        entry(r#"{"localAddress":"10.0.0.5:30303","remoteAddress":"","inbound":true}"#),
        entry(r#"{"localAddress":"10.0.0.5:30303","remoteAddress":"nonsense","inbound":true}"#),
        entry(r#"{"localAddress":"x","remoteAddress":"203.0.113.1:1","inbound":"yes"}"#),
        entry("42"),
        entry(r#"["10.0.0.5:30303", "198.51.100.8:1", true]"#),
        r#"["01", "enode://dd@198.51.100.9:1", {"localAddress":"10.0.0.5:30303","remoteAddress":"198.51.100.9:1","inbound":true}]"#.to_string(),
        entry("null"),
        "17".to_string(),
        r#""a string""#.to_string(),
        r#"{"id":5,"enode":[],"network":{"remoteAddress":{"a":1},"inbound":[true]}}"#.to_string(),
    ];
    for bad in &broken {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"result":[{bad},{leak}]}}"#);
        let list = parse(&body).unwrap_or_else(|error| panic!("{bad}: {error}"));
        let clearnet = list
            .peers
            .iter()
            .find(|peer| peer.remote == "198.51.100.77:30303".parse().unwrap())
            .unwrap_or_else(|| panic!("{bad}: the clearnet peer is gone"));
        assert_eq!(clearnet.direction, Some(Direction::Inbound));
        assert_eq!(clearnet.enode, "enode://cc@198.51.100.77:30303");
        assert!(
            list.problems.iter().any(|problem| problem.index == 0),
            "{bad}: the broken entry is not reported"
        );
        assert!(
            list.problems.iter().all(|problem| problem.index == 0),
            "{bad}: the good entry is reported: {:?}",
            list.problems
        );
    }
}

#[test]
fn incomplete_entries_keep_what_classifies() {
    let body = format!(
        r#"{{"result":[{}]}}"#,
        entry(r#"{"remoteAddress":"203.0.113.1:30303","inbound":"yes"}"#)
    );
    let list = parse(&body).unwrap();
    assert_eq!(list.peers.len(), 1);
    assert_eq!(list.peers[0].direction, None);
    assert_eq!(list.peers[0].local, None);
    let problems: Vec<&str> = list.problems.iter().map(|p| p.problem).collect();
    assert_eq!(
        problems,
        [
            "network.localAddress missing or not ip:port",
            "network.inbound missing or not a boolean"
        ]
    );
}

#[test]
fn zoned_ipv6_addresses_as_go_prints_them() {
    let zones = |name: &str| (name == "eth0").then_some(2);
    let cases = [
        ("[fe80::1%eth0]:30303", Some(("fe80::1", 30303, 2))),
        ("[fe80::1%7]:30303", Some(("fe80::1", 30303, 7))),
        ("[fe80::1%unknown]:1", Some(("fe80::1", 1, 0))),
        ("[fe80::1%eth0]", None),
        ("[fe80::1%eth0]:99999", None),
        ("[zz%eth0]:1", None),
        ("fe80::1%eth0:1", None),
    ];
    for (text, expected) in cases {
        let got = parse_endpoint(text, &zones);
        let expected = expected.map(|(ip, port, scope)| {
            SocketAddr::V6(SocketAddrV6::new(ip.parse().unwrap(), port, 0, scope))
        });
        assert_eq!(got, expected, "{text}");
    }
    let body = format!(
        r#"{{"result":[{}]}}"#,
        entry(
            r#"{"localAddress":"[fe80::2%eth0]:30303","remoteAddress":"[fe80::1%eth0]:30303","inbound":true}"#
        )
    );
    let list = parse_admin_peers(body.as_bytes(), &zones).unwrap();
    assert!(list.problems.is_empty(), "{:?}", list.problems);
    assert_eq!(list.peers[0].remote.port(), 30303);
}

#[test]
fn escaped_strings_are_decoded() {
    let body = r#"{"result":[{"id":"0\u0031","enode":"enode://aa@1.2.3.4:5","network":{"localAddress":"10.0.0.5:3030\u0033","remoteAddress":"1.2.3.4:5","inbound":false}}]}"#;
    let list = parse(body).unwrap();
    assert_eq!(list.peers[0].id, "01");
    assert_eq!(list.peers[0].local, Some("10.0.0.5:30303".parse().unwrap()));
}

#[test]
fn never_panics_on_mangled_input() {
    let bytes = TWO_PEERS.as_bytes();
    for cut in 0..bytes.len() {
        let _ = parse_admin_peers(&bytes[..cut], &no_zones);
    }
    for byte in [b'"', b'{', b']', b'\\', 0xff] {
        let mut mangled = bytes.to_vec();
        for index in (0..mangled.len()).step_by(7) {
            mangled[index] = byte;
            let _ = parse_admin_peers(&mangled, &no_zones);
        }
    }
}

#[test]
fn entries_past_the_limit_are_counted_not_decoded() {
    let entry = entry(
        r#"{"localAddress":"10.0.0.5:30303","remoteAddress":"198.51.100.77:30303","inbound":true}"#,
    );
    let body = format!(
        r#"{{"result":[{}]}}"#,
        vec![entry; MAX_ENTRIES + 3].join(",")
    );
    let list = parse(&body).unwrap();
    assert_eq!(list.peers.len(), MAX_ENTRIES);
    assert_eq!(list.over_limit, 3);
}

/// A key given twice used to make serde reject the whole entry, so a clearnet peer behind a
/// duplicated key was neither classified nor counted as a leak. Now the last value is used (as
/// Go's encoding/json does) and the entry is reported.
#[test]
fn duplicated_keys_use_the_last_value_and_are_reported() {
    let cases = [
        r#"{"id":"01","id":"02","enode":"enode://cc@198.51.100.77:30303","network":{"localAddress":"10.0.0.5:30303","remoteAddress":"198.51.100.77:30303","inbound":true}}"#,
        r#"{"id":"02","enode":"enode://cc@198.51.100.77:30303","network":{"remoteAddress":"127.0.0.1:9050"},"network":{"localAddress":"10.0.0.5:30303","remoteAddress":"198.51.100.77:30303","inbound":true}}"#,
        r#"{"id":"02","enode":"enode://cc@198.51.100.77:30303","network":{"localAddress":"10.0.0.5:30303","remoteAddress":"127.0.0.1:9050","remoteAddress":"198.51.100.77:30303","inbound":true}}"#,
    ];
    for case in cases {
        let list = parse(&format!(r#"{{"result":[{case}]}}"#)).unwrap();
        assert_eq!(list.peers.len(), 1, "{case}");
        let peer = &list.peers[0];
        assert_eq!(peer.id, "02", "{case}");
        assert_eq!(
            peer.remote,
            "198.51.100.77:30303".parse().unwrap(),
            "{case}"
        );
        assert_eq!(peer.direction, Some(Direction::Inbound), "{case}");
        let problems: Vec<&str> = list.problems.iter().map(|p| p.problem).collect();
        assert_eq!(
            problems,
            ["a key appears twice (the last one is used)"],
            "{case}"
        );
    }
    // A repeated `result`: the last array is the reply.
    let list = parse(&format!(
        r#"{{"result":[],"result":[{}]}}"#,
        entry(r#"{"localAddress":"10.0.0.5:30303","remoteAddress":"198.51.100.77:30303","inbound":true}"#)
    ))
    .unwrap();
    assert_eq!(list.peers.len(), 1);
}

/// Bytes that are not UTF-8 in a field the decoder skips (a peer chooses its own client name)
/// must not cost the other peers: the fast path (one UTF-8 check for the whole reply) falls
/// back to checking string by string.
#[test]
fn bytes_that_are_not_utf8_in_a_skipped_field_do_not_hide_peers() {
    let mut body = br#"{"result":[{"name":"Geth/"#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(
        format!(
            r#"","id":"01","enode":"enode://cc@198.51.100.77:30303","network":{}}}]}}"#,
            r#"{"localAddress":"10.0.0.5:30303","remoteAddress":"198.51.100.77:30303","inbound":true}"#
        )
        .as_bytes(),
    );
    assert!(std::str::from_utf8(&body).is_err());
    let list = parse_admin_peers(&body, &no_zones).unwrap();
    assert_eq!(list.peers.len(), 1);
    assert_eq!(list.peers[0].remote, "198.51.100.77:30303".parse().unwrap());
}

/// Values that are valid JSON text but that serde_json refuses to turn into a Rust value (a
/// number beyond f64, a lone UTF-16 surrogate) in a field the decoder reads, or as a whole
/// entry: only that entry may suffer. The one-pass decoder failed the whole reply on them, so a
/// clearnet peer listed beside such an entry was neither classified nor counted as a leak.
#[test]
fn a_value_serde_cannot_hold_spoils_only_its_own_entry() {
    let clearnet = entry(
        r#"{"localAddress":"10.0.0.5:30303","remoteAddress":"198.51.100.77:30303","inbound":true}"#,
    );
    let spoilers = [
        r#"1e400"#,
        r#"-1e400"#,
        r#"{"id":1e400}"#,
        r#"{"id":"\ud800"}"#,
        r#"{"enode":"\udc00x"}"#,
        r#"{"\ud800":1}"#,
        r#"{"network":1e999}"#,
        r#"{"network":{"inbound":1e400}}"#,
        r#"{"network":{"remoteAddress":"\ud800"}}"#,
        r#"{"network":{"\udfff":true}}"#,
        r#"{"network":[1e400]}"#,
        r#"[1e400]"#,
        r#"{"id":{"a":1e400}}"#,
    ];
    for spoiler in spoilers {
        for body in [
            format!(r#"{{"result":[{spoiler},{clearnet}]}}"#),
            format!(r#"{{"result":[{clearnet},{spoiler}]}}"#),
        ] {
            let list = parse(&body).unwrap_or_else(|error| panic!("{body}: {error}"));
            assert_eq!(list.entries, 2, "{body}");
            let leaks: Vec<_> = list
                .peers
                .iter()
                .filter(|peer| peer.remote == "198.51.100.77:30303".parse().unwrap())
                .collect();
            assert_eq!(leaks.len(), 1, "{body}");
            assert!(
                !list.problems.is_empty(),
                "{body}: the spoiled entry is reported"
            );
        }
    }
}
