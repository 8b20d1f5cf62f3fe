//! The only-onion leak guard: every clearnet peer of an only-onion relay is a privacy leak.
//!
//! Each distinct connection is counted once. With `--enforce` the guard asks the relay to drop
//! it (admin_removePeer), again on every poll while it is still listed; admin_removePeer does
//! not ban, so a peer that reconnects is a new connection, counted and removed again.
//! This is the only place where the sidecar writes to the relay.

use std::collections::HashSet;
use std::net::SocketAddr;

use crate::traffic::ConnKey;

/// A clearnet peer seen in only-onion mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    pub id: String,
    pub enode: String,
    pub key: ConnKey,
    /// True the first poll it is seen: it is counted then, and only then.
    pub new: bool,
}

#[derive(Debug, Default)]
pub struct LeakGuard {
    /// Connections already counted, kept while they are listed: node ID and remote address
    /// (not the local address, which a malformed entry may omit on one poll and not the next).
    seen: HashSet<(String, SocketAddr)>,
    pub leaks_total: u64,
    pub removals_ok: u64,
    pub removals_failed: u64,
}

impl LeakGuard {
    /// Takes the clearnet peers listed now; returns every one of them, marking the new ones.
    /// A connection listed twice in one reply is one leak.
    pub fn observe(&mut self, clearnet_peers: Vec<(String, String, ConnKey)>) -> Vec<Leak> {
        let mut listed: HashSet<(String, SocketAddr)> = HashSet::new();
        let leaks = clearnet_peers
            .into_iter()
            .filter_map(|(id, enode, key)| {
                let identity = (id.clone(), key.1);
                let new = !self.seen.contains(&identity);
                listed.insert(identity).then_some(Leak {
                    id,
                    enode,
                    key,
                    new,
                })
            })
            .collect::<Vec<_>>();
        self.leaks_total += leaks.iter().filter(|leak| leak.new).count() as u64;
        self.seen = listed;
        leaks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, port: u16) -> (String, String, ConnKey) {
        let key = (
            "10.0.0.5:30303".parse().unwrap(),
            std::net::SocketAddr::new("198.51.100.7".parse().unwrap(), port),
        );
        (id.into(), format!("enode://{id}@198.51.100.7:{port}"), key)
    }

    #[test]
    fn each_connection_counts_once_and_a_reconnect_counts_again() {
        let mut guard = LeakGuard::default();
        let first = guard.observe(vec![peer("a", 1000)]);
        assert!(first[0].new);
        let again = guard.observe(vec![peer("a", 1000)]);
        assert!(!again[0].new, "still listed: not a new leak");
        assert_eq!(guard.leaks_total, 1);
        guard.observe(vec![]);
        // Same peer, new connection (new source port) after it was removed.
        guard.observe(vec![peer("a", 1001)]);
        // Same peer and 4-tuple reappearing after a gap is a new connection too.
        guard.observe(vec![]);
        guard.observe(vec![peer("a", 1001)]);
        assert_eq!(guard.leaks_total, 3);
    }

    #[test]
    fn duplicates_and_a_flickering_local_address_count_once() {
        let mut guard = LeakGuard::default();
        let listed = guard.observe(vec![peer("a", 1000), peer("a", 1000), peer("a", 1000)]);
        assert_eq!(listed.len(), 1);
        assert_eq!(guard.leaks_total, 1);
        let (id, enode, (_, remote)) = peer("a", 1000);
        let unknown_local = "0.0.0.0:0".parse().unwrap();
        for _ in 0..5 {
            guard.observe(vec![(id.clone(), enode.clone(), (unknown_local, remote))]);
            guard.observe(vec![peer("a", 1000)]);
        }
        assert_eq!(guard.leaks_total, 1);
    }
}
