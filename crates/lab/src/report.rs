//! The lab's printout: every relay with its peers, Tor or clearnet, then the public nodes.

use std::collections::HashMap;

use anyhow::Result;

use crate::lab::Lab;
use crate::relays::{peer_route, PeerRoute, Relay};
use crate::topology::Kind;

/// Peers of one node: total, over Tor, over clearnet.
pub fn peer_counts(relay: &Relay) -> Result<(usize, usize, usize)> {
    let peers = relay.peers()?;
    let tor = peers
        .iter()
        .filter(|peer| peer_route(peer, relay.spec.socks) != PeerRoute::Clearnet)
        .count();
    Ok((peers.len(), tor, peers.len() - tor))
}

pub fn report(lab: &Lab) -> Result<String> {
    let names: HashMap<String, &str> = lab
        .relays
        .iter()
        .chain(&lab.public)
        .map(|relay| (relay.id(), relay.name()))
        .collect();
    let mut out = String::new();
    for relay in &lab.relays {
        let peers = relay.peers()?;
        let (total, tor, clearnet) = peer_counts(relay)?;
        out.push_str(&format!(
            "{:<13} {:<15} admin {}  peers {:>2} (tor {:>2}, clearnet {:>2}){}\n",
            relay.name(),
            relay.spec.ip,
            relay.spec.admin_addr(),
            total,
            tor,
            clearnet,
            onion_excerpt(relay),
        ));
        for peer in &peers {
            let id = peer["id"].as_str().unwrap_or_default();
            let network = &peer["network"];
            let route = match peer_route(peer, relay.spec.socks) {
                PeerRoute::TorOutbound => "tor      (outbound via SOCKS)",
                PeerRoute::TorInbound => "tor      (inbound from tor) ",
                PeerRoute::Clearnet => "clearnet                     ",
            };
            out.push_str(&format!(
                "    {} {:<17} {} remoteAddress {}\n",
                if network["inbound"].as_bool() == Some(true) {
                    "<-"
                } else {
                    "->"
                },
                names.get(id).copied().unwrap_or("?"),
                route,
                network["remoteAddress"].as_str().unwrap_or_default(),
            ));
        }
    }
    if !lab.public.is_empty() {
        out.push_str("public network (not monitored):\n");
    }
    for node in &lab.public {
        let (total, tor, clearnet) = peer_counts(node)?;
        let kind = match lab.kind(node.name()) {
            Some(Kind::PublicDual) => "dual-stack",
            _ => "clearnet-only",
        };
        out.push_str(&format!(
            "{:<17} {:<15} {kind:<13} peers {:>2} (tor {:>2}, clearnet {:>2}){}\n",
            node.name(),
            node.spec.ip,
            total,
            tor,
            clearnet,
            onion_excerpt(node),
        ));
    }
    Ok(out)
}

fn onion_excerpt(relay: &Relay) -> String {
    relay
        .spec
        .onion
        .as_deref()
        .map(|onion| format!("  onion {}…", &onion[..12]))
        .unwrap_or_default()
}
