//! What `verify` reads, gathered once through a [`Sources`] so that the checks stay pure.
//!
//! The peer comparisons (criteria 4 and 7) read two clocks: the relay's admin API now and
//! Prometheus's last scrape. So each attempt reads admin_peers, queries Prometheus, reads
//! admin_peers again, and is compared only when the two admin reads agree; a mismatch is
//! retried after one scrape interval, up to [`ATTEMPTS`] times. The comparison itself stays exact.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use super::api::{self, Alert, Rule, Sample, Series, Target};
use super::config::{Config, Relay};
use super::dashboards::{self, Query};
use crate::classify::{classify_maybe, Route, TorEndpoints};
use crate::sources::relay::PeerList;

/// Peer comparisons tried at most this many times.
pub const ATTEMPTS: usize = 5;
/// The scrape interval assumed when Prometheus does not say (kube-prometheus-stack's default).
pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(30);

/// Where `verify` reads from; [`super::client::HttpSources`] in production, canned replies in tests.
pub trait Sources {
    /// GETs a Prometheus API path such as `/api/v1/targets`: the body, whatever the status.
    fn prometheus(&self, path: &str) -> Result<String, String>;
    /// An instant query.
    fn query(&self, expr: &str) -> Result<String, String> {
        self.prometheus(&format!(
            "/api/v1/query?query={}",
            super::client::percent_encode(expr)
        ))
    }
    /// An instant query evaluated at `time` (unix seconds), so that a range selector's window
    /// is exactly `(time - range, time]` whatever this machine's clock says.
    fn query_at(&self, expr: &str, time: f64) -> Result<String, String> {
        self.prometheus(&format!(
            "/api/v1/query?query={}&time={time:.3}",
            super::client::percent_encode(expr)
        ))
    }
    /// Alertmanager's `/api/v2/status`.
    fn alertmanager_status(&self) -> Result<String, String>;
    /// One relay's admin_peers, decoded; the error names no peer.
    fn admin_peers(&self, relay: &Relay) -> Result<PeerList, String>;
    /// Unix time in seconds.
    fn now(&self) -> f64;
    fn sleep(&self, duration: Duration);
}

/// One relay's peers as its admin API lists them, classified as the exporter does.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerCounts {
    /// `len(admin_peers)`, every entry.
    pub entries: usize,
    pub tor: usize,
    pub clearnet: usize,
    /// Entries the exporter cannot count as Tor or clearnet (malformed).
    pub unclassified: usize,
    /// A hash of the peer ids and routes, so two reads can be compared without keeping ids.
    fingerprint: u64,
}

impl std::fmt::Debug for PeerCounts {
    // By hand, so that no future field can print a peer.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} peers ({} tor, {} clearnet, {} unclassified)",
            self.entries, self.tor, self.clearnet, self.unclassified
        )
    }
}

/// Classifies a decoded admin_peers reply exactly as the exporter's poller counts
/// `p2p_peers_tor` and `p2p_peers_clearnet`: a peer counts with a route, with or without a
/// direction (`direction="unknown"`).
pub fn peer_counts(list: &PeerList, tor: &TorEndpoints) -> PeerCounts {
    let mut counts = PeerCounts {
        entries: list.entries,
        tor: 0,
        clearnet: 0,
        unclassified: 0,
        fingerprint: 0,
    };
    // Routes as small numbers: `Route` has no order, and sorting makes the hash order-free.
    let mut identity: Vec<(&str, u8)> = Vec::new();
    for peer in &list.peers {
        let route = classify_maybe(peer.direction, peer.remote, tor);
        identity.push((&peer.id, route.map_or(0, |route| route as u8 + 1)));
        match route {
            Some(Route::Tor) => counts.tor += 1,
            Some(Route::Clearnet) => counts.clearnet += 1,
            None => {}
        }
    }
    counts.unclassified = list.entries.saturating_sub(counts.tor + counts.clearnet);
    identity.sort();
    let mut hasher = DefaultHasher::new();
    identity.hash(&mut hasher);
    counts.fingerprint = hasher.finish();
    counts
}

/// One attempt of the peer comparison for one relay.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub before: Result<PeerCounts, String>,
    pub after: Result<PeerCounts, String>,
    /// `sum(p2p_peers_tor{job="relaywatch", namespace, pod})`; `None` when there is no series.
    pub tor: Result<Option<f64>, String>,
    pub clearnet: Result<Option<f64>, String>,
    /// The overview dashboard's peer-count query for the pod.
    pub dashboard: Result<Option<f64>, String>,
}

impl Attempt {
    /// The admin reads, when both succeeded and agree.
    pub fn stable(&self) -> Option<&PeerCounts> {
        match (&self.before, &self.after) {
            (Ok(before), Ok(after)) if before == after => Some(before),
            _ => None,
        }
    }

    /// Criterion 4: Prometheus's Tor and clearnet counts equal the classification.
    pub fn routes_match(&self) -> bool {
        self.stable().is_some_and(|counts| {
            self.tor == Ok(Some(counts.tor as f64))
                && self.clearnet == Ok(Some(counts.clearnet as f64))
        })
    }

    /// Criterion 7: the dashboard's peer count equals `len(admin_peers)`.
    pub fn total_matches(&self) -> bool {
        self.stable()
            .is_some_and(|counts| self.dashboard == Ok(Some(counts.entries as f64)))
    }
}

/// One dashboard query's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutcome {
    pub query: Query,
    /// With the variables substituted.
    pub expr: String,
    pub names: Result<BTreeSet<String>, String>,
    /// Series returned.
    pub result: Result<usize, String>,
}

/// Everything the checks read.
#[derive(Debug, Clone)]
pub struct Facts {
    pub up: Result<Vec<Sample>, String>,
    pub targets: Result<Vec<Target>, String>,
    /// Per relay target, `max_over_time(scrape_samples_post_metric_relabeling[1h])`.
    pub samples_post_relabel: Result<Vec<Sample>, String>,
    /// Per relay target, `max_over_time(scrape_sample_limit[1h])`: only with Prometheus's
    /// `extra-scrape-metrics` feature, else empty.
    pub sample_limits: Result<Vec<Sample>, String>,
    pub rules: Result<Vec<Rule>, String>,
    pub dashboards: Result<Vec<QueryOutcome>, String>,
    /// Per relay, in the configuration's order.
    pub peers: Vec<Vec<Attempt>>,
    /// Raw samples of the only-onion leak counters over the last hour, in the relays' namespaces.
    pub leaks: Result<Vec<Series>, String>,
    /// Raw samples of the same targets' `process_start_time_seconds`, to see restarts.
    pub process_starts: Result<Vec<Series>, String>,
    /// Prometheus's time of the leak queries (this machine's when Prometheus does not answer).
    pub now: f64,
    /// The slowest scrape interval of the relays' targets (retries wait this long).
    pub scrape_interval: Duration,
    /// The relays' relaywatch targets' scrape interval (the leak counter's sample spacing).
    pub leak_scrape_interval: Duration,
    pub alerts: Result<Vec<Alert>, String>,
    pub receivers: Result<Vec<String>, String>,
}

/// A PromQL string literal.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The relay's series of one metric: the value, `None` when Prometheus has none.
fn one_value(sources: &dyn Sources, expr: &str) -> Result<Option<f64>, String> {
    let samples = api::vector(&sources.query(expr)?)?;
    Ok(samples.first().map(|sample| sample.value))
}

/// Variables for dashboard queries, as Grafana would set them for these relays.
fn variables(
    namespaces: &str,
    pods: &str,
    mode: &str,
    scrape_interval: Duration,
) -> BTreeMap<&'static str, String> {
    let seconds = scrape_interval.as_secs().max(1);
    BTreeMap::from([
        ("namespace", namespaces.to_string()),
        ("pod", pods.to_string()),
        ("mode", mode.to_string()),
        // Grafana's $__rate_interval is at least four scrape intervals.
        ("__rate_interval", format!("{}s", 4 * seconds)),
        ("__interval", format!("{seconds}s")),
        ("__range", "1h".to_string()),
    ])
}

/// Reads everything, sleeping only between peer-comparison attempts.
pub fn gather(config: &Config, sources: &dyn Sources) -> Facts {
    let targets = sources
        .prometheus("/api/v1/targets?state=active")
        .and_then(|body| api::targets(&body));
    let ours = |labels: &api::Labels| {
        config.relays.iter().any(|relay| {
            labels.get("namespace") == Some(&relay.namespace)
                && labels.get("pod") == Some(&relay.pod)
        })
    };
    // The slowest job for retries (a comparison may read either job's series); the
    // relaywatch job's own for the leak counter's samples.
    let interval = |jobs: &[&str]| {
        targets
            .as_ref()
            .ok()
            .and_then(|targets| {
                targets
                    .iter()
                    .filter(|target| ours(&target.labels))
                    .filter(|target| {
                        jobs.contains(&target.labels.get("job").map_or("", String::as_str))
                    })
                    .filter_map(|target| target.scrape_interval)
                    .max()
            })
            .unwrap_or(DEFAULT_SCRAPE_INTERVAL)
    };
    let scrape_interval = interval(&["gethrelay", "relaywatch"]);
    let leak_scrape_interval = interval(&["relaywatch"]);
    let namespaces = dashboards::alternation(config.relays.iter().map(|r| r.namespace.as_str()));
    let pods = dashboards::alternation(config.relays.iter().map(|r| r.pod.as_str()));
    let vector = |expr: &str| sources.query(expr).and_then(|body| api::vector(&body));
    let up = vector(r#"up{job=~"gethrelay|relaywatch"}"#);
    let relay_targets =
        format!(r#"{{job=~"gethrelay|relaywatch", namespace=~"{namespaces}", pod=~"{pods}"}}"#);
    let samples_post_relabel = vector(&format!(
        "max_over_time(scrape_samples_post_metric_relabeling{relay_targets}[1h])"
    ));
    let sample_limits = vector(&format!(
        "max_over_time(scrape_sample_limit{relay_targets}[1h])"
    ));
    let rules = sources
        .prometheus("/api/v1/rules")
        .and_then(|body| api::rules(&body));
    let queries = dashboards::queries();
    let dashboards = queries.as_ref().map_err(Clone::clone).map(|queries| {
        queries
            .iter()
            .map(|query| {
                let mode = query.mode.as_deref().unwrap_or(".*");
                let values = variables(&namespaces, &pods, mode, scrape_interval);
                let expr = dashboards::substitute(&query.expr, &values);
                QueryOutcome {
                    query: query.clone(),
                    names: dashboards::metric_names(&expr),
                    result: vector(&expr).map(|samples| samples.len()),
                    expr,
                }
            })
            .collect()
    });
    let peer_query = queries
        .as_ref()
        .ok()
        .and_then(|queries| dashboards::peer_count_query(queries).cloned());
    // Retrying helps when Prometheus lags the relay, not when it cannot answer at all.
    let attempts = if targets.is_ok() { ATTEMPTS } else { 1 };
    let peers = compare_peers(
        config,
        sources,
        peer_query.as_ref(),
        scrape_interval,
        attempts,
    );

    // Prometheus's clock, not this machine's: a window read with a skewed clock could miss the
    // newest samples or take a young series for an old one.
    let now = vector("time()")
        .ok()
        .and_then(|samples| samples.first().map(|sample| sample.value))
        .unwrap_or_else(|| sources.now());
    let matrix = |name: &str| {
        let expr = format!(
            r#"{name}{{job="relaywatch", mode="only-onion", namespace=~"{namespaces}"}}[1h]"#
        );
        sources
            .query_at(&expr, now)
            .and_then(|body| api::matrix(&body))
    };
    let leaks = matrix("relaywatch_clearnet_leaks_total");
    let process_starts = matrix("process_start_time_seconds");
    let alerts = sources
        .prometheus("/api/v1/alerts")
        .and_then(|body| api::alerts(&body));
    let receivers = sources
        .alertmanager_status()
        .and_then(|body| api::alertmanager_receivers(&body));
    Facts {
        up,
        targets,
        samples_post_relabel,
        sample_limits,
        rules,
        dashboards,
        peers,
        leaks,
        process_starts,
        now,
        scrape_interval,
        leak_scrape_interval,
        alerts,
        receivers,
    }
}

/// Criteria 4 and 7's attempts, for all relays at once, until each relay matched both or
/// `max_attempts` ran out.
fn compare_peers(
    config: &Config,
    sources: &dyn Sources,
    peer_query: Option<&Query>,
    scrape_interval: Duration,
    max_attempts: usize,
) -> Vec<Vec<Attempt>> {
    let mut attempts: Vec<Vec<Attempt>> = vec![Vec::new(); config.relays.len()];
    let settled = |tries: &Vec<Attempt>| {
        tries.iter().any(Attempt::routes_match) && tries.iter().any(Attempt::total_matches)
    };
    for round in 0..max_attempts {
        let pending: Vec<usize> = (0..config.relays.len())
            .filter(|index| !settled(&attempts[*index]))
            .collect();
        if pending.is_empty() {
            break;
        }
        if round > 0 {
            // One scrape interval plus a poll of the exporter, so the next read is newer.
            sources.sleep(scrape_interval + Duration::from_secs(1));
        }
        let read = |relay: &Relay| {
            sources
                .admin_peers(relay)
                .map(|list| peer_counts(&list, &relay.tor))
        };
        let before: Vec<_> = pending.iter().map(|i| read(&config.relays[*i])).collect();
        let mut prometheus = Vec::new();
        for index in &pending {
            let relay = &config.relays[*index];
            let selector = format!(
                "{{job=\"relaywatch\", namespace={}, pod={}}}",
                quoted(&relay.namespace),
                quoted(&relay.pod)
            );
            let tor = one_value(sources, &format!("sum(p2p_peers_tor{selector})"));
            let clearnet = one_value(sources, &format!("sum(p2p_peers_clearnet{selector})"));
            let dashboard = match peer_query {
                None => Err("the overview dashboard has no per-pod p2p_peers panel".to_string()),
                Some(query) => {
                    let values = variables(
                        &dashboards::alternation([relay.namespace.as_str()]),
                        &dashboards::alternation([relay.pod.as_str()]),
                        ".*",
                        scrape_interval,
                    );
                    sources
                        .query(&dashboards::substitute(&query.expr, &values))
                        .and_then(|body| api::vector(&body))
                        .map(|samples| {
                            samples
                                .iter()
                                .find(|sample| sample.labels.get("pod") == Some(&relay.pod))
                                .map(|sample| sample.value)
                        })
                }
            };
            prometheus.push((tor, clearnet, dashboard));
        }
        for ((index, before), (tor, clearnet, dashboard)) in
            pending.iter().zip(before).zip(prometheus)
        {
            attempts[*index].push(Attempt {
                before,
                after: read(&config.relays[*index]),
                tor,
                clearnet,
                dashboard,
            });
        }
    }
    attempts
}
