//! The lab's peering plan, pure: which node dials which, named how, and how many public-network
//! nodes a fleet needs so that every relay clears its `GethRelayLowPeerCount` threshold.
//!
//! Public nodes stand for the public Ethereum network: not monitored (no exporter, no scrape
//! target), some clearnet-only, some dual-stack with an onion service and a tor of their own.

use crate::pod::{low_peer_threshold, PEER_MARGIN};
use crate::relays::Mode;

/// What a lab node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A monitored relay pod.
    Pod(Mode),
    /// A public node without Tor (plain geth): clearnet only.
    PublicClearnet,
    /// A public node with clearnet and an onion service, in gethrelay's default mode with
    /// `--tor-proxy` (so it dials dual-stack peers on clearnet).
    PublicDual,
}

impl Kind {
    pub fn has_onion(self) -> bool {
        matches!(
            self,
            Kind::Pod(Mode::PreferTor | Mode::OnlyOnion) | Kind::PublicDual
        )
    }

    pub fn has_tor_proxy(self) -> bool {
        !matches!(self, Kind::PublicClearnet)
    }

    /// `Some(prefer_tor, only_onion)` for nodes that dial through a TorDialer.
    fn tor_switches(self) -> Option<(bool, bool)> {
        match self {
            Kind::Pod(Mode::Clearnet) | Kind::PublicDual => Some((false, false)),
            Kind::Pod(Mode::PreferTor) => Some((true, false)),
            // The bundle gives only-onion pods --prefer-tor too (pod.rs).
            Kind::Pod(Mode::OnlyOnion) => Some((true, true)),
            Kind::PublicClearnet => None,
        }
    }
}

/// How the dialer names its target, which decides the transport (gethrelay's TorDialer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Url {
    /// `enode://id@ip:port`: what a peer that knows only the IP uses.
    ClearnetEnode,
    /// The signed ENR: onion plus IP for dual-stack nodes.
    Enr,
    /// The enode as gethrelay prints it: `@onion:port` for nodes with an onion.
    Enode,
}

/// One planned peering: `from` calls `admin_addPeer` with `to`'s `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub url: Url,
}

/// How a planned dial goes, by gethrelay's rule
/// `useTor := hasOnion && (preferTor || !hasClearnet)`, only-onion refusing onion-less peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Tor,
    Clearnet,
    Refused,
}

pub fn route(from: Kind, to: Kind, url: Url) -> Route {
    let has_onion = to.has_onion() && url != Url::ClearnetEnode;
    let has_clearnet = !(to.has_onion() && url == Url::Enode);
    match from.tor_switches() {
        None if has_clearnet => Route::Clearnet,
        None => Route::Refused,
        Some((_, true)) if !has_onion => Route::Refused,
        Some((prefer_tor, _)) if has_onion && (prefer_tor || !has_clearnet) => Route::Tor,
        Some(_) if has_clearnet => Route::Clearnet,
        Some(_) => Route::Refused,
    }
}

/// Public nodes of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublicNodes {
    pub clearnet: usize,
    pub dual: usize,
}

/// At least this many of each public kind, so both kinds of public peering are always there.
pub const MIN_PUBLIC_EACH: usize = 2;

impl PublicNodes {
    pub const NONE: PublicNodes = PublicNodes {
        clearnet: 0,
        dual: 0,
    };

    /// The fewest public nodes (at least [`MIN_PUBLIC_EACH`] of each kind) with which every
    /// relay of the fleet has `threshold + PEER_MARGIN` peers under [`plan`]. With C clearnet,
    /// P prefer-tor and O only-onion relays, plan gives
    /// clearnet `C-1 + P + clearnet + dual`, prefer-tor `C + P-1 + O + clearnet + dual` and
    /// only-onion `P + O-1 + dual` peers (only-onion ones never meet clearnet-only nodes).
    /// So `dual` is set by only-onion's need, then `clearnet` by the larger of the other two.
    pub fn needed(relays: &[(Mode, usize)]) -> PublicNodes {
        let count = |mode: Mode| -> usize {
            relays
                .iter()
                .filter(|(m, _)| *m == mode)
                .map(|(_, n)| n)
                .sum()
        };
        let (c, p, o) = (
            count(Mode::Clearnet),
            count(Mode::PreferTor),
            count(Mode::OnlyOnion),
        );
        let want = |mode: Mode| low_peer_threshold(mode) + PEER_MARGIN;
        let mut dual = MIN_PUBLIC_EACH;
        if o > 0 {
            dual = dual.max(want(Mode::OnlyOnion).saturating_sub(p + o - 1));
        }
        let mut clearnet = MIN_PUBLIC_EACH;
        if c > 0 {
            clearnet = clearnet.max(want(Mode::Clearnet).saturating_sub(c - 1 + p + dual));
        }
        if p > 0 {
            clearnet = clearnet.max(want(Mode::PreferTor).saturating_sub(c + p - 1 + o + dual));
        }
        PublicNodes { clearnet, dual }
    }
}

/// The peering plan over named nodes, each pair once:
/// - clearnet relays dial each other (clearnet enode), the prefer-tor relays' and the dual-stack
///   public nodes' ENRs (clearnet, since default mode uses Tor only for onion-only peers);
/// - prefer-tor relays dial each other's and the dual-stack public nodes' ENRs (Tor) and the
///   only-onion relays' onion enodes (Tor);
/// - only-onion relays dial each other's and the dual-stack public nodes' onion enodes (Tor);
/// - clearnet-only public nodes dial the clearnet and prefer-tor relays by IP, as the public
///   network finds them (gethrelay puts no onion into its own ENR).
///
/// Only-onion relays appear only in Tor edges: they never get a clearnet peer from this plan.
pub fn plan(nodes: &[(String, Kind)]) -> Vec<Edge> {
    let mut edges = Vec::new();
    let mut add = |from: &str, to: &str, url: Url| {
        edges.push(Edge {
            from: from.to_string(),
            to: to.to_string(),
            url,
        })
    };
    for (i, (from, from_kind)) in nodes.iter().enumerate() {
        for (j, (to, to_kind)) in nodes.iter().enumerate() {
            if i == j {
                continue;
            }
            let later = j > i;
            use Kind::*;
            use Mode::*;
            match (from_kind, to_kind) {
                (Pod(Clearnet), Pod(Clearnet)) if later => add(from, to, Url::ClearnetEnode),
                (Pod(Clearnet), Pod(PreferTor) | PublicDual) => add(from, to, Url::Enr),
                (Pod(PreferTor), Pod(PreferTor)) if later => add(from, to, Url::Enr),
                (Pod(PreferTor), PublicDual) => add(from, to, Url::Enr),
                (Pod(PreferTor), Pod(OnlyOnion)) => add(from, to, Url::Enode),
                (Pod(OnlyOnion), Pod(OnlyOnion)) if later => add(from, to, Url::Enode),
                (Pod(OnlyOnion), PublicDual) => add(from, to, Url::Enode),
                (PublicClearnet, Pod(Clearnet | PreferTor)) => add(from, to, Url::ClearnetEnode),
                _ => {}
            }
        }
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(relays: &[(Mode, usize)], public: PublicNodes) -> Vec<(String, Kind)> {
        let mut nodes = Vec::new();
        for (mode, n) in relays {
            for i in 1..=*n {
                nodes.push((format!("{}-{i}", mode.as_str()), Kind::Pod(*mode)));
            }
        }
        for i in 1..=public.clearnet {
            nodes.push((format!("public-clearnet-{i}"), Kind::PublicClearnet));
        }
        for i in 1..=public.dual {
            nodes.push((format!("public-dual-{i}"), Kind::PublicDual));
        }
        nodes
    }

    fn kind_of(nodes: &[(String, Kind)], name: &str) -> Kind {
        nodes.iter().find(|(n, _)| n == name).unwrap().1
    }

    #[test]
    fn default_and_ci_fleets_need_these_public_nodes() {
        let fleet = [
            (Mode::Clearnet, 3),
            (Mode::PreferTor, 4),
            (Mode::OnlyOnion, 3),
        ];
        assert_eq!(
            PublicNodes::needed(&fleet),
            PublicNodes {
                clearnet: 4,
                dual: 2
            }
        );
        let reduced = [
            (Mode::Clearnet, 1),
            (Mode::PreferTor, 1),
            (Mode::OnlyOnion, 1),
        ];
        assert_eq!(
            PublicNodes::needed(&reduced),
            PublicNodes {
                clearnet: 7,
                dual: 4
            }
        );
    }

    /// Every shape up to 5 relays per mode: each relay has its threshold plus the margin, each
    /// planned dial is possible, and no edge touching an only-onion relay is clearnet.
    #[test]
    fn every_relay_clears_its_threshold_and_only_onion_stays_on_tor() {
        for c in 0..=5 {
            for p in 0..=5 {
                for o in 0..=5 {
                    let fleet = [
                        (Mode::Clearnet, c),
                        (Mode::PreferTor, p),
                        (Mode::OnlyOnion, o),
                    ];
                    let nodes = nodes(&fleet, PublicNodes::needed(&fleet));
                    let edges = plan(&nodes);
                    for edge in &edges {
                        let from = kind_of(&nodes, &edge.from);
                        let to = kind_of(&nodes, &edge.to);
                        let route = route(from, to, edge.url);
                        assert_ne!(route, Route::Refused, "{edge:?}");
                        if matches!(from, Kind::Pod(Mode::OnlyOnion))
                            || matches!(to, Kind::Pod(Mode::OnlyOnion))
                        {
                            assert_eq!(route, Route::Tor, "{edge:?}");
                        }
                    }
                    for (name, kind) in &nodes {
                        let Kind::Pod(mode) = kind else { continue };
                        let degree = edges
                            .iter()
                            .filter(|e| &e.from == name || &e.to == name)
                            .count();
                        assert!(
                            degree >= low_peer_threshold(*mode) + PEER_MARGIN,
                            "{c}/{p}/{o}: {name} has {degree} peers"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn routes_follow_gethrelays_rule() {
        use Kind::*;
        // Default mode dials a dual-stack ENR on clearnet, prefer-tor over Tor.
        assert_eq!(
            route(Pod(Mode::Clearnet), PublicDual, Url::Enr),
            Route::Clearnet
        );
        assert_eq!(
            route(Pod(Mode::PreferTor), PublicDual, Url::Enr),
            Route::Tor
        );
        // Only-onion refuses a clearnet-only peer; an onion enode goes over Tor from anyone
        // with a proxy, and cannot be dialed without one.
        assert_eq!(
            route(Pod(Mode::OnlyOnion), PublicClearnet, Url::ClearnetEnode),
            Route::Refused
        );
        assert_eq!(
            route(PublicDual, Pod(Mode::OnlyOnion), Url::Enode),
            Route::Tor
        );
        assert_eq!(
            route(PublicClearnet, Pod(Mode::OnlyOnion), Url::Enode),
            Route::Refused
        );
    }
}
