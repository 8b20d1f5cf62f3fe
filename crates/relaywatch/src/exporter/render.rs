//! The Prometheus text exposition of the published state. Reads copies only: a scrape never
//! waits for a poll, a dump or a removal.

use super::{lock, process_start_time, Exporter};
use crate::catalog::{self, *};
use crate::exposition::Exposition;
use crate::sources::tor::TorState;
use crate::sources::{Health, Source};

impl Exporter {
    /// The Prometheus text exposition of the current state.
    pub fn render(&self) -> String {
        let published = self.published();
        let peers = published.peers;
        let totals = published.traffic;
        let (leaks, removals_ok, removals_failed, unparsed) = (
            published.leaks_total,
            published.removals_ok,
            published.removals_failed,
            published.unparsed_peers,
        );
        let (overruns, dropped) = (published.destroy_overruns, published.destroy_events_dropped);
        let sources: Vec<(&str, Health)> = Source::ALL
            .iter()
            .filter_map(|source| Some((source.as_str(), *published.health.get(source.as_str())?)))
            .collect();
        drop(published);

        let mut out = Exposition::default();
        if let Some(peers) = peers {
            for (metric, values) in [(&PEERS_TOR, peers.tor), (&PEERS_CLEARNET, peers.clearnet)] {
                out.family(metric);
                for (index, direction) in labels::DIRECTION.iter().enumerate() {
                    // `unknown` only when a relay sent a peer without a direction.
                    if index < 2 || values[index] > 0 {
                        out.sample(metric, &[direction], values[index] as f64);
                    }
                }
            }
            out.single(&ONION_FALLBACK_PEERS, peers.onion_fallback as f64);
        }
        out.single(&INGRESS_TOR, totals.tor_received as f64);
        out.single(&EGRESS_TOR, totals.tor_sent as f64);
        out.single(&INGRESS_CLEARNET, totals.clearnet_received as f64);
        out.single(&EGRESS_CLEARNET, totals.clearnet_sent as f64);
        out.single(&CLEARNET_LEAKS, leaks as f64);
        out.single(&DESTROY_OVERRUNS, overruns as f64);
        out.single(&DESTROY_EVENTS_DROPPED, dropped as f64);
        out.single(&RELAY_UNPARSED_PEERS, unparsed as f64);
        out.family(&LEAK_REMOVALS)
            .sample(&LEAK_REMOVALS, &["ok"], removals_ok as f64)
            .sample(&LEAK_REMOVALS, &["error"], removals_failed as f64);
        out.single(&LEAK_REMOVALS_PENDING, self.removals.pending() as f64);
        if self.tor_control.is_some() {
            render_tor(&mut out, &lock(&self.tor_state));
        }
        out.family(&SOURCE_UP);
        for (name, health) in &sources {
            out.sample(&SOURCE_UP, &[name], if health.up { 1.0 } else { 0.0 });
        }
        out.family(&SOURCE_LAST_SUCCESS);
        for (name, health) in &sources {
            if let Some(at) = health.last_success_unix {
                out.sample(&SOURCE_LAST_SUCCESS, &[name], at);
            }
        }
        out.family(&SOURCE_POLL_DURATION);
        for (name, health) in &sources {
            out.sample(
                &SOURCE_POLL_DURATION,
                &[name],
                health.last_duration.as_secs_f64(),
            );
        }
        out.family(&WORKERS_UP);
        let workers = self.workers.snapshot();
        for name in labels::WORKER {
            let mut of_name = workers
                .iter()
                .filter(|(worker, _)| *worker == name)
                .peekable();
            if of_name.peek().is_some() {
                let all_alive = of_name.all(|(_, alive)| *alive);
                out.sample(&WORKERS_UP, &[name], if all_alive { 1.0 } else { 0.0 });
            }
        }
        out.single(&LOG_LINES_DROPPED, crate::log::dropped_lines() as f64);
        out.single(&PROCESS_START_TIME, process_start_time());
        out.family(&BUILD_INFO)
            .sample(&BUILD_INFO, &[env!("CARGO_PKG_VERSION")], 1.0);
        out.finish()
    }
}

/// The Tor source's families; health gauges only while connected (unknown otherwise).
fn render_tor(out: &mut Exposition, tor: &TorState) {
    use catalog::*;
    let counters = tor.tracker.counters();
    out.single(&DIALS_TOR, counters.dials_total as f64);
    out.single(&DIALS_TOR_SUCCESS, counters.dials_success_total as f64);
    out.single(
        &DIALS_TOR_ERROR_CIRCUIT,
        counters.dials_error_circuit as f64,
    );
    out.family(&DIALS_TOR_ERRORS);
    for (reason, count) in counters.dial_errors() {
        out.sample(&DIALS_TOR_ERRORS, &[reason.as_str()], count as f64);
    }
    out.single(&TOR_CIRCUITS_BUILT, counters.circuits_built_total as f64);
    out.family(&TOR_CIRCUITS_FAILED);
    for (purpose, reason, count) in counters.circuits_failed() {
        out.sample(&TOR_CIRCUITS_FAILED, &[purpose, reason], count as f64);
    }
    out.family(&TOR_ORCONN_FAILED);
    for (reason, count) in counters.orconn_failed() {
        out.sample(&TOR_ORCONN_FAILED, &[reason], count as f64);
    }
    out.single(
        &TOR_UNPARSED_LINES,
        (tor.unparsed_lines + counters.events_malformed) as f64,
    );
    if tor.connected {
        let health = tor.tracker.health();
        let flag = |value: bool| if value { 1.0 } else { 0.0 };
        if let Some(progress) = health.bootstrap_progress {
            out.single(&TOR_BOOTSTRAP, f64::from(progress) / 100.0);
        }
        if let Some(live) = health.network_live {
            out.single(&TOR_NETWORK_LIVENESS, flag(live));
        }
        if let Some(established) = health.circuit_established {
            out.single(&TOR_CIRCUIT_ESTABLISHED, flag(established));
        }
    }
}
