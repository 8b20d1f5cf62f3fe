//! The metric catalog: every series relaywatch exports, with kind, help and labels, in one table.
//!
//! Registration, the exposition encoder, docs and the deploy bundle's checks all read names
//! from here, so a rename breaks a test instead of a dashboard. Names the PRD fixes without
//! `_total` (`p2p_ingress_tor`, …) are counters all the same: they are cumulative byte counts.

/// Prometheus metric kinds as written on `# TYPE` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// Label names; every label's values come from a closed set (see `labels`).
    pub labels: &'static [&'static str],
}

const fn metric(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    labels: &'static [&'static str],
) -> Metric {
    Metric {
        name,
        kind,
        help,
        labels,
    }
}

pub const PEERS_TOR: Metric = metric(
    "p2p_peers_tor",
    Kind::Gauge,
    "Connected peers that reached the relay over Tor.",
    &["direction"],
);
pub const PEERS_CLEARNET: Metric = metric(
    "p2p_peers_clearnet",
    Kind::Gauge,
    "Connected peers that reached the relay over clearnet.",
    &["direction"],
);
pub const INGRESS_TOR: Metric = metric(
    "p2p_ingress_tor",
    Kind::Counter,
    "Bytes received from peers connected over Tor (kernel socket counters).",
    &[],
);
pub const EGRESS_TOR: Metric = metric(
    "p2p_egress_tor",
    Kind::Counter,
    "Bytes sent to peers connected over Tor (kernel socket counters).",
    &[],
);
pub const INGRESS_CLEARNET: Metric = metric(
    "p2p_ingress_clearnet",
    Kind::Counter,
    "Bytes received from peers connected over clearnet (kernel socket counters).",
    &[],
);
pub const EGRESS_CLEARNET: Metric = metric(
    "p2p_egress_clearnet",
    Kind::Counter,
    "Bytes sent to peers connected over clearnet (kernel socket counters).",
    &[],
);
pub const CLEARNET_LEAKS: Metric = metric(
    "relaywatch_clearnet_leaks_total",
    Kind::Counter,
    "Clearnet peer connections seen while the relay runs in only-onion mode.",
    &[],
);
pub const LEAK_REMOVALS: Metric = metric(
    "relaywatch_leak_removals_total",
    Kind::Counter,
    "Leaking clearnet peers removed with admin_removePeer (only with --enforce).",
    &["result"],
);
pub const ONION_FALLBACK_PEERS: Metric = metric(
    "relaywatch_onion_fallback_peers",
    Kind::Gauge,
    "Connected peers whose enode names an onion address but that are connected over clearnet.",
    &[],
);
pub const SOURCE_UP: Metric = metric(
    "relaywatch_source_up",
    Kind::Gauge,
    "Whether the last poll of the source succeeded (1) or failed (0).",
    &["source"],
);
pub const SOURCE_LAST_SUCCESS: Metric = metric(
    "relaywatch_source_last_success_timestamp_seconds",
    Kind::Gauge,
    "Unix time of the source's last successful poll.",
    &["source"],
);
pub const SOURCE_POLL_DURATION: Metric = metric(
    "relaywatch_source_poll_duration_seconds",
    Kind::Gauge,
    "Duration of the source's last poll.",
    &["source"],
);
pub const DIALS_TOR: Metric = metric(
    "p2p_dials_tor_total",
    Kind::Counter,
    "Streams the relay opened to an onion address through the pod's tor.",
    &[],
);
pub const DIALS_TOR_SUCCESS: Metric = metric(
    "p2p_dials_tor_success_total",
    Kind::Counter,
    "Tor dials that reached the onion service (STREAM SUCCEEDED).",
    &[],
);
pub const DIALS_TOR_ERROR_CIRCUIT: Metric = metric(
    "p2p_dials_tor_error_circuit",
    Kind::Counter,
    "Failed Tor dials caused by a circuit or onion-service path failure, not by the peer refusing.",
    &[],
);
pub const DIALS_TOR_ERRORS: Metric = metric(
    "p2p_dials_tor_errors_total",
    Kind::Counter,
    "Failed Tor dials by reason (see the README's mapping table).",
    &["reason"],
);
pub const TOR_CIRCUITS_BUILT: Metric = metric(
    "tor_circuits_built_total",
    Kind::Counter,
    "Circuits the pod's tor built.",
    &[],
);
pub const TOR_CIRCUITS_FAILED: Metric = metric(
    "tor_circuits_failed_total",
    Kind::Counter,
    "Circuits the pod's tor failed to build or lost, by purpose and reason.",
    &["purpose", "reason"],
);
pub const TOR_ORCONN_FAILED: Metric = metric(
    "tor_orconn_failed_total",
    Kind::Counter,
    "Connections to Tor relays that failed, by reason.",
    &["reason"],
);
pub const TOR_BOOTSTRAP: Metric = metric(
    "tor_bootstrap_progress_ratio",
    Kind::Gauge,
    "Bootstrap progress of the pod's tor, 0 to 1.",
    &[],
);
pub const TOR_NETWORK_LIVENESS: Metric = metric(
    "tor_network_liveness",
    Kind::Gauge,
    "Whether the pod's tor considers the network live (1) or down (0); slow to flip.",
    &[],
);
pub const TOR_CIRCUIT_ESTABLISHED: Metric = metric(
    "tor_circuit_established",
    Kind::Gauge,
    "Whether the pod's tor has established a circuit (1) or not (0).",
    &[],
);
pub const TOR_UNPARSED_LINES: Metric = metric(
    "relaywatch_tor_control_unparsed_lines_total",
    Kind::Counter,
    "Control-port lines that were malformed or over the length limit and were skipped.",
    &[],
);
pub const DESTROY_OVERRUNS: Metric = metric(
    "relaywatch_socket_destroy_overruns_total",
    Kind::Counter,
    "Times the kernel dropped socket destroy events because they were read too slowly; the last bytes of sockets closed then are missing.",
    &[],
);
pub const DESTROY_EVENTS_DROPPED: Metric = metric(
    "relaywatch_socket_destroy_events_dropped_total",
    Kind::Counter,
    "Destroy events of sockets not (yet) listed by admin_peers that were dropped because 20000 already waited for the next poll; a peer's last bytes may be among them.",
    &[],
);
pub const RELAY_UNPARSED_PEERS: Metric = metric(
    "relaywatch_relay_unparsed_peers_total",
    Kind::Counter,
    "admin_peers entries with a missing or malformed field, counted at every poll they appear in; what they hold that can be classified still is.",
    &[],
);
pub const LEAK_REMOVALS_PENDING: Metric = metric(
    "relaywatch_leak_removals_pending",
    Kind::Gauge,
    "Leaking peers waiting for, or in, an admin_removePeer call.",
    &[],
);
pub const WORKERS_UP: Metric = metric(
    "relaywatch_worker_up",
    Kind::Gauge,
    "1 while the worker thread runs; a worker that stopped makes /healthz fail and the process exit.",
    &["worker"],
);
pub const LOG_LINES_DROPPED: Metric = metric(
    "relaywatch_log_lines_dropped_total",
    Kind::Counter,
    "Log lines dropped because stderr did not keep up (logging never blocks a worker).",
    &[],
);
pub const PROCESS_START_TIME: Metric = metric(
    "process_start_time_seconds",
    Kind::Gauge,
    "Start time of the process since the Unix epoch, in seconds; a change means the exporter restarted and its counters began again.",
    &[],
);
pub const BUILD_INFO: Metric = metric(
    "relaywatch_build_info",
    Kind::Gauge,
    "Always 1; the version label says which relaywatch is running.",
    &["version"],
);

/// Every family, in exposition order.
pub const ALL: &[Metric] = &[
    PEERS_TOR,
    PEERS_CLEARNET,
    INGRESS_TOR,
    EGRESS_TOR,
    INGRESS_CLEARNET,
    EGRESS_CLEARNET,
    CLEARNET_LEAKS,
    LEAK_REMOVALS,
    ONION_FALLBACK_PEERS,
    DIALS_TOR,
    DIALS_TOR_SUCCESS,
    DIALS_TOR_ERROR_CIRCUIT,
    DIALS_TOR_ERRORS,
    TOR_CIRCUITS_BUILT,
    TOR_CIRCUITS_FAILED,
    TOR_ORCONN_FAILED,
    TOR_BOOTSTRAP,
    TOR_NETWORK_LIVENESS,
    TOR_CIRCUIT_ESTABLISHED,
    TOR_UNPARSED_LINES,
    DESTROY_OVERRUNS,
    DESTROY_EVENTS_DROPPED,
    RELAY_UNPARSED_PEERS,
    LEAK_REMOVALS_PENDING,
    SOURCE_UP,
    SOURCE_LAST_SUCCESS,
    SOURCE_POLL_DURATION,
    WORKERS_UP,
    LOG_LINES_DROPPED,
    PROCESS_START_TIME,
    BUILD_INFO,
];

/// The closed set of values each label may take (except `version`, which is ours).
pub mod labels {
    /// `unknown`: admin_peers gave no `network.inbound` for a peer whose route is clear either
    /// way (the entry also counts in `relaywatch_relay_unparsed_peers_total`); rendered only
    /// when such a peer is connected.
    pub const DIRECTION: [&str; 3] = ["inbound", "outbound", "unknown"];
    pub const SOURCE: [&str; 3] = ["relay", "sockets", "tor"];
    pub const REMOVAL_RESULT: [&str; 2] = ["ok", "error"];
    pub const WORKER: [&str; 4] = ["poller", "destroy-listener", "tor-control", "leak-remover"];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_valid_and_documented() {
        let mut seen = std::collections::HashSet::new();
        for metric in ALL {
            assert!(seen.insert(metric.name), "{} twice", metric.name);
            assert!(
                metric
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                metric.name
            );
            assert!(
                metric.help.ends_with('.') && metric.help.len() > 10,
                "{}",
                metric.name
            );
            for label in metric.labels {
                for forbidden in ["ip", "addr", "enode", "onion", "peer", "id"] {
                    assert!(!label.contains(forbidden), "{}: label {label}", metric.name);
                }
            }
        }
    }

    #[test]
    fn prd_names_are_kept() {
        let names: Vec<&str> = ALL.iter().map(|metric| metric.name).collect();
        for prd in [
            "p2p_peers_tor",
            "p2p_peers_clearnet",
            "p2p_ingress_tor",
            "p2p_egress_tor",
            "p2p_dials_tor_total",
            "p2p_dials_tor_success_total",
            "p2p_dials_tor_error_circuit",
        ] {
            assert!(names.contains(&prd), "{prd}");
        }
    }
}
