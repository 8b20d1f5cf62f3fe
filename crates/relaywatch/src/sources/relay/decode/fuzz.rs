//! Property tests (a stable-Rust fuzzer) for the admin_peers decoder.
//! `PROPTEST_CASES=200000 cargo test -p relaywatch --lib decode::fuzz` runs long locally;
//! the default count keeps CI to a second or two.

use proptest::prelude::*;

use super::*;

fn no_zones(_: &str) -> Option<u32> {
    None
}

/// Any JSON value, a few levels deep, as text.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[ -~]{0,20}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just(r#""[fe80::1%eth0]:30303""#.to_string()),
        Just(r#""198.51.100.7:30303""#.to_string()),
        // Valid JSON text that serde_json will not hold: it must cost only its own entry.
        Just("1e400".to_string()),
        Just(r#""\ud800""#.to_string()),
        any::<f64>().prop_map(|n| format!("{n:e}")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec(("[a-zA-Z]{1,14}", inner), 0..4).prop_map(|members| {
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(key, value)| format!("{}:{value}", serde_json::to_string(&key).unwrap()))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

/// An entry with each field either right or replaced by any JSON value.
fn entry() -> impl Strategy<Value = String> {
    let field = |good: &'static str| prop_oneof![Just(good.to_string()), json_value()];
    (
        field(r#""0a""#),
        field(r#""enode://0a@198.51.100.9:30303""#),
        field(r#""10.0.0.5:30303""#),
        field(r#""198.51.100.9:30303""#),
        field("true"),
    )
        .prop_map(|(id, enode, local, remote, inbound)| {
            format!(
                r#"{{"id":{id},"enode":{enode},"network":{{"localAddress":{local},"remoteAddress":{remote},"inbound":{inbound}}}}}"#
            )
        })
}

const CLEARNET_PEER: &str = r#"{"id":"ff","enode":"enode://ff@203.0.113.5:1","network":{"localAddress":"10.0.0.5:30303","remoteAddress":"203.0.113.5:1","inbound":true}}"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_admin_peers(&bytes, &no_zones);
    }

    /// Whatever the other entries hold, a well-formed clearnet peer is always returned, and
    /// every problem names an entry that exists.
    #[test]
    fn a_good_peer_survives_any_neighbours(
        before in prop::collection::vec(entry(), 0..4),
        after in prop::collection::vec(prop_oneof![entry(), json_value()], 0..4),
    ) {
        let mut entries = before.clone();
        entries.push(CLEARNET_PEER.to_string());
        entries.extend(after);
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"result":[{}]}}"#, entries.join(","));
        let list = parse_admin_peers(body.as_bytes(), &no_zones).unwrap();
        let good = list.peers.iter().filter(|peer| peer.id == "ff" && peer.remote.port() == 1).count();
        prop_assert_eq!(good, 1);
        prop_assert!(list.problems.iter().all(|problem| problem.index < entries.len()));
        prop_assert!(list.problems.iter().all(|problem| problem.index != before.len()));
    }

    /// Cutting a valid reply anywhere never panics.
    #[test]
    fn truncated_replies_never_panic(entries in prop::collection::vec(entry(), 0..5), cut in any::<prop::sample::Index>()) {
        let body = format!(r#"{{"result":[{}]}}"#, entries.join(","));
        let cut = cut.index(body.len() + 1);
        let _ = parse_admin_peers(&body.as_bytes()[..cut], &no_zones);
    }
}
