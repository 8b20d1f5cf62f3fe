//! CPU of decoding a geth-shaped admin_peers reply of 1,000 peers (0.5 MB), the poll's biggest
//! user-space cost once the socket dump is not taken every poll. Figures are printed, not asserted.
//!
//! Run: cargo test --release -p relaywatch --lib decode::bench -- --ignored --nocapture

use std::time::{Duration, Instant};

use super::*;

const PEERS: usize = 1000;
const ROUNDS: usize = 300;

fn no_zones(_: &str) -> Option<u32> {
    None
}

/// One entry as geth prints it (fields, order and sizes of `p2p.PeerInfo`).
fn entry(index: usize) -> String {
    let inbound = index % 3 != 0;
    let (local, remote) = if inbound {
        (
            "127.0.0.1:30303".to_string(),
            format!(
                "127.0.{}.{}:{}",
                index / 250,
                index % 250 + 1,
                40000 + index
            ),
        )
    } else {
        (
            format!("127.0.0.1:{}", 50000 + index),
            format!("127.0.{}.{}:30303", index / 250, index % 250 + 1),
        )
    };
    format!(
        concat!(
            r#"{{"enode":"enode://{pubkey:0>128x}@{remote}","id":"{id:0>64x}","name":"Geth/v1.14.12-stable/linux-amd64/go1.23.4","caps":["eth/68","eth/69"],"#,
            r#""network":{{"localAddress":"{local}","remoteAddress":"{remote}","inbound":{inbound},"trusted":false,"static":false}},"#,
            r#""protocols":{{"eth":{{"network":1,"relay":true}}}}}}"#
        ),
        pubkey = index * 7919,
        id = index * 104729,
        local = local,
        remote = remote,
        inbound = inbound,
    )
}

fn reply(peers: usize) -> String {
    let entries: Vec<String> = (0..peers).map(entry).collect();
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":[{}]}}"#,
        entries.join(",")
    )
}

#[test]
#[ignore = "benchmark: prints figures"]
fn decode_cpu() {
    let body = reply(PEERS);
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            let list = parse_admin_peers(body.as_bytes(), &no_zones).unwrap();
            assert_eq!(list.peers.len(), PEERS);
            started.elapsed()
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "admin_peers decode, {PEERS} peers ({:.1} kB): median {:.3} ms, p90 {:.3} ms, min {:.3} ms over {ROUNDS} rounds ({:.0} MB/s at the median)",
        body.len() as f64 / 1000.0,
        ms(times[ROUNDS / 2]),
        ms(times[ROUNDS * 9 / 10]),
        ms(times[0]),
        body.len() as f64 / times[ROUNDS / 2].as_secs_f64() / 1e6,
    );
}
