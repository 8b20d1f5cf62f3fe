//! Criteria 4, 6 and 7: Prometheus's and the dashboard's peer numbers against each relay's
//! admin_peers, and no clearnet on only-onion relays. Pure; counts and pod names only.

use std::collections::BTreeSet;
use std::time::Duration;

use super::config::Config;
use super::gather::{Attempt, Facts};
use super::verdict::Verdict;
use crate::cli::Mode;

/// The leak window of criterion 6.
const LEAK_WINDOW_SECONDS: f64 = 3600.0;

fn value(reading: &Result<Option<f64>, String>) -> String {
    match reading {
        Ok(Some(value)) => value.to_string(),
        Ok(None) => "no series".into(),
        Err(error) => format!("query failed ({error})"),
    }
}

/// Why an attempt could not be compared, or its numbers.
fn describe(attempt: &Attempt, numbers: impl Fn(&Attempt) -> String) -> String {
    match (&attempt.before, &attempt.after) {
        (Err(error), _) | (_, Err(error)) => format!("admin_peers failed: {error}"),
        _ if attempt.stable().is_none() => "admin_peers changed between the two reads".into(),
        _ => numbers(attempt),
    }
}

fn routes(attempt: &Attempt) -> String {
    let counts = attempt.stable().expect("describe checks stable");
    format!(
        "Prometheus tor {} clearnet {}, admin_peers tor {} clearnet {} ({} unclassified)",
        value(&attempt.tor),
        value(&attempt.clearnet),
        counts.tor,
        counts.clearnet,
        counts.unclassified
    )
}

fn totals(attempt: &Attempt) -> String {
    let counts = attempt.stable().expect("describe checks stable");
    format!(
        "dashboard {}, len(admin_peers) {}",
        value(&attempt.dashboard),
        counts.entries
    )
}

/// Criteria 4 and 7 have one shape: per relay, a matching attempt or the last attempt's numbers.
fn per_relay(
    number: u8,
    summary: &str,
    config: &Config,
    facts: &Facts,
    matches: fn(&Attempt) -> bool,
    numbers: fn(&Attempt) -> String,
) -> Verdict {
    let mut details = Vec::new();
    let mut problems = Vec::new();
    let mut failed = BTreeSet::new();
    for (relay, attempts) in config.relays.iter().zip(&facts.peers) {
        match attempts.iter().position(matches) {
            Some(index) => details.push(format!(
                "{}: {} (attempt {})",
                relay.name(),
                numbers(&attempts[index]),
                index + 1
            )),
            None => {
                let last = attempts
                    .last()
                    .map_or("not compared".to_string(), |attempt| {
                        describe(attempt, numbers)
                    });
                let n = attempts.len();
                problems.push(format!(
                    "{}: no match in {n} attempt{}; last: {last}",
                    relay.name(),
                    if n == 1 { "" } else { "s" }
                ));
                failed.insert(relay.name());
            }
        }
    }
    let n = config.relays.len();
    Verdict::new(
        number,
        format!("{summary}: {} of {n} relays match", n - failed.len()),
        details,
        problems,
        failed,
    )
}

/// 4. `sum(p2p_peers_tor)` and `sum(p2p_peers_clearnet)` equal the classification of admin_peers.
pub fn check_routes(config: &Config, facts: &Facts) -> Verdict {
    per_relay(
        4,
        "tor vs clearnet (Prometheus = admin_peers)",
        config,
        facts,
        Attempt::routes_match,
        routes,
    )
}

/// 7. The overview dashboard's per-pod peer count equals `len(admin_peers)`.
pub fn check_peer_counts(config: &Config, facts: &Facts) -> Verdict {
    per_relay(
        7,
        "dashboard peer counts (= admin_peers)",
        config,
        facts,
        Attempt::total_matches,
        totals,
    )
}

/// Leaks counted inside the window from a counter's raw samples (oldest first): increases,
/// with a reset counting its new value. A series that began inside the window (its first
/// sample is more than two scrape intervals after the window's start) is a young exporter
/// whose counter started at 0, so its first value was counted inside the window too. That
/// can count a leak from before the window when Prometheus, not the exporter, is young: a
/// false alarm, never a missed leak.
pub fn leaks_in_window(samples: &[(f64, f64)], window_start: f64, scrape: Duration) -> f64 {
    let mut total: f64 = samples
        .windows(2)
        .map(|pair| {
            let (previous, current) = (pair[0].1, pair[1].1);
            if current >= previous {
                current - previous
            } else {
                current
            }
        })
        .sum();
    if let Some(&(first_time, first_value)) = samples.first() {
        if first_time > window_start + 2.0 * scrape.as_secs_f64() {
            total += first_value;
        }
    }
    total
}

/// 6. Only-onion relays: no clearnet peer in Prometheus nor over the admin API, no leak in 1h.
pub fn check_only_onion(config: &Config, facts: &Facts) -> Verdict {
    let mut details = Vec::new();
    let mut problems = Vec::new();
    let mut failed = BTreeSet::new();
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
        let admin: Vec<usize> = attempts
            .iter()
            .flat_map(|attempt| [&attempt.before, &attempt.after])
            .filter_map(|read| read.as_ref().ok().map(|counts| counts.clearnet))
            .collect();
        let prometheus_max = prometheus.iter().copied().fold(0.0, f64::max);
        let admin_max = admin.iter().copied().max().unwrap_or(0);
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
        let leaks = match &facts.leaks {
            Err(error) => {
                fail(format!("leak counter query failed: {error}"));
                None
            }
            Ok(series) => {
                let ours = series.iter().find(|series| {
                    series.labels.get("namespace") == Some(&relay.namespace)
                        && series.labels.get("pod") == Some(&relay.pod)
                });
                match ours {
                    None => {
                        fail("no relaywatch_clearnet_leaks_total{mode=\"only-onion\"} series in the last hour (is the relaywatch target labelled mode=only-onion?)".into());
                        None
                    }
                    Some(series) => {
                        let leaks = leaks_in_window(
                            &series.samples,
                            facts.now - LEAK_WINDOW_SECONDS,
                            facts.scrape_interval,
                        );
                        if leaks > 0.0 {
                            fail(format!("{leaks} clearnet leaks counted in the last hour"));
                        }
                        Some(leaks)
                    }
                }
            }
        };
        let max = |n_reads: usize, max: String| match n_reads {
            0 => "unknown (no read)".to_string(),
            n => format!("max {max} over {n} reads"),
        };
        details.push(format!(
            "{}: clearnet peers: Prometheus {}, admin_peers {}; leaks in 1h: {}",
            relay.name(),
            max(prometheus.len(), prometheus_max.to_string()),
            max(admin.len(), admin_max.to_string()),
            leaks.map_or("unknown".to_string(), |leaks| leaks.to_string())
        ));
    }
    Verdict::new(
        6,
        format!(
            "only-onion: {} of {n_relays} only-onion relays without clearnet peers or leaks in 1h",
            n_relays - failed.len()
        ),
        details,
        problems,
        failed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaks_in_the_window() {
        let scrape = Duration::from_secs(30);
        let start = 1000.0;
        for (samples, want, why) in [
            (vec![], 0.0, "no samples"),
            (vec![(1010.0, 5.0), (1040.0, 5.0)], 0.0, "old series, flat"),
            (
                vec![(1010.0, 5.0), (1040.0, 6.0)],
                1.0,
                "old series, one leak",
            ),
            (
                vec![(1010.0, 5.0), (1040.0, 1.0), (1070.0, 2.0)],
                2.0,
                "restart",
            ),
            (
                vec![(2000.0, 0.0), (2030.0, 0.0)],
                0.0,
                "young series without leaks",
            ),
            (
                vec![(2000.0, 3.0), (2030.0, 3.0)],
                3.0,
                "young series that counted before its first scrape",
            ),
        ] {
            assert_eq!(leaks_in_window(&samples, start, scrape), want, "{why}");
        }
    }
}
