//! Criterion 6: zero clearnet peers on only-onion relays, in Prometheus, over the admin API and
//! in the leak counter's last hour. Pure; pod names and counts only.
//!
//! Every doubt fails the relay: a peer the classifier cannot place, a restart that cannot be
//! seen, an only-onion pod Prometheus knows but the configuration does not list as one.

use std::collections::{BTreeMap, BTreeSet};

use super::api::Series;
use super::config::Config;
use super::gather::Facts;
use super::leaks::{pod_leaks, LeakCount};
use super::verdict::Verdict;
use crate::cli::Mode;
use clap::ValueEnum;

/// The leak window of criterion 6.
const LEAK_WINDOW_SECONDS: f64 = 3600.0;

fn blind_note(count: &LeakCount) -> String {
    match count.blind {
        0 => String::new(),
        n => format!(
            " (an upper bound: {n} samples without a process_start_time_seconds of the same scrape count as restarts)"
        ),
    }
}

fn pod_of(series: &Series) -> Option<(&str, &str)> {
    Some((
        series.labels.get("namespace")?.as_str(),
        series.labels.get("pod")?.as_str(),
    ))
}

/// 6. Only-onion relays: no clearnet peer in Prometheus nor over the admin API, no leak in 1h.
pub fn check_only_onion(config: &Config, facts: &Facts) -> Verdict {
    let mut details = Vec::new();
    let mut problems = Vec::new();
    let mut failed = BTreeSet::new();
    let window_start = facts.now - LEAK_WINDOW_SECONDS;
    // The leak series per pod (the only-onion ones Prometheus holds), however many each has.
    let by_pod: Result<BTreeMap<(&str, &str), Vec<&Series>>, &String> =
        facts.leaks.as_ref().map(|series| {
            let mut by_pod: BTreeMap<_, Vec<_>> = BTreeMap::new();
            for one in series {
                if let Some(pod) = pod_of(one) {
                    by_pod.entry(pod).or_default().push(one);
                }
            }
            by_pod
        });
    let starts = facts.process_starts.as_ref();
    let count = |series: &[&Series]| {
        starts.map(|starts| pod_leaks(series, starts, window_start, facts.leak_scrape_interval))
    };
    let mut n_relays = 0;
    for (relay, attempts) in config.relays.iter().zip(&facts.peers) {
        if relay.mode != Mode::OnlyOnion {
            continue;
        }
        n_relays += 1;
        let name = relay.name();
        let mut fail = |problem: String| {
            problems.push(format!("{name}: {problem}"));
            failed.insert(name.clone());
        };
        let prometheus: Vec<f64> = attempts
            .iter()
            .filter_map(|attempt| attempt.clearnet.clone().ok().flatten())
            .collect();
        // (clearnet, unclassified) per admin read: on an only-onion relay a peer that is not
        // surely Tor may be clearnet.
        let admin: Vec<(usize, usize)> = attempts
            .iter()
            .flat_map(|attempt| [&attempt.before, &attempt.after])
            .filter_map(|read| read.as_ref().ok())
            .map(|counts| (counts.clearnet, counts.unclassified))
            .collect();
        let prometheus_max = prometheus.iter().copied().fold(0.0, f64::max);
        let admin_max = admin.iter().map(|read| read.0).max().unwrap_or(0);
        let unclassified_max = admin.iter().map(|read| read.1).max().unwrap_or(0);
        if prometheus.is_empty() {
            fail("no p2p_peers_clearnet series in Prometheus".into());
        } else if prometheus_max > 0.0 {
            fail(format!("Prometheus shows {prometheus_max} clearnet peers"));
        }
        if admin.is_empty() {
            fail("admin_peers could not be read".into());
        } else if admin_max > 0 {
            fail(format!("admin_peers lists {admin_max} clearnet peers"));
        }
        if unclassified_max > 0 {
            fail(format!("admin_peers lists {unclassified_max} peers that cannot be classified as Tor (malformed, or no direction to tell Tor from clearnet): possibly clearnet"));
        }
        let pod_series = by_pod
            .as_ref()
            .map_err(|error| *error)
            .map(|by_pod| by_pod.get(&(relay.namespace.as_str(), relay.pod.as_str())));
        let leaks = match (
            pod_series,
            count(pod_series.ok().flatten().map_or(&[], Vec::as_slice)),
        ) {
            (Err(error), _) | (_, Err(error)) => {
                fail(format!("leak counter query failed: {error}"));
                None
            }
            (Ok(None), _) => {
                fail("no relaywatch_clearnet_leaks_total{mode=\"only-onion\"} series in the last hour (is the relaywatch target labelled mode=only-onion?)".into());
                None
            }
            (Ok(Some(series)), Ok(count)) => {
                if count.leaks > 0.0 {
                    fail(format!(
                        "{} clearnet leaks counted in the last hour over {} series{}",
                        count.leaks,
                        series.len(),
                        blind_note(&count)
                    ));
                }
                Some(format!("{} over {} series", count.leaks, series.len()))
            }
        };
        let max = |n_reads: usize, max: String| match n_reads {
            0 => "unknown (no read)".to_string(),
            n => format!("max {max} over {n} reads"),
        };
        details.push(format!(
            "{name}: clearnet peers: Prometheus {}, admin_peers {}; leaks in 1h: {}",
            max(prometheus.len(), prometheus_max.to_string()),
            max(admin.len(), admin_max.to_string()),
            leaks.unwrap_or_else(|| "unknown".into())
        ));
    }
    // Only-onion pods Prometheus holds that the configuration does not list as only-onion: a
    // leak there would otherwise pass unseen.
    for ((namespace, pod), series) in by_pod.iter().flatten() {
        let name = format!("{namespace}/{pod}");
        let listed = config
            .relays
            .iter()
            .find(|relay| relay.namespace == *namespace && relay.pod == *pod);
        if listed.is_some_and(|relay| relay.mode == Mode::OnlyOnion) {
            continue;
        }
        let leaks = count(series).map_or(f64::NAN, |count| count.leaks);
        let last_seen = series
            .iter()
            .filter_map(|one| one.samples.last().map(|sample| sample.0))
            .fold(f64::NEG_INFINITY, f64::max);
        let current = facts.now - last_seen <= 3.0 * facts.scrape_interval.as_secs_f64();
        let problem = match listed {
            Some(relay) => format!(
                "listed as {} but its relaywatch target has mode=\"only-onion\"; list it as only-onion",
                relay
                    .mode
                    .to_possible_value()
                    .map_or(String::new(), |value| value.get_name().to_string())
            ),
            None if current => {
                "an only-onion pod in Prometheus that the configuration does not list; list every relay".into()
            }
            None if leaks.is_nan() || leaks > 0.0 => {
                format!("an only-onion pod gone from Prometheus (not listed), {leaks} clearnet leaks counted in its last hour")
            }
            None => {
                details.push(format!(
                    "{name}: an only-onion pod gone from Prometheus, not listed, no leak in 1h, not judged"
                ));
                continue;
            }
        };
        problems.push(format!("{name}: {problem}"));
        failed.insert(name);
    }
    Verdict::new(
        6,
        format!(
            "only-onion: {} of {n_relays} only-onion relays without clearnet peers or leaks in 1h",
            n_relays - config_failed(config, &failed)
        ),
        details,
        problems,
        failed,
    )
}

/// How many listed only-onion relays failed.
fn config_failed(config: &Config, failed: &BTreeSet<String>) -> usize {
    config
        .relays
        .iter()
        .filter(|relay| relay.mode == Mode::OnlyOnion && failed.contains(&relay.name()))
        .count()
}
