//! Criteria 4 and 7: Prometheus's and the dashboard's peer numbers against each relay's
//! admin_peers. Pure; counts and pod names only.

use std::collections::BTreeSet;

use super::config::Config;
use super::gather::{Attempt, Facts};
use super::verdict::Verdict;

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
