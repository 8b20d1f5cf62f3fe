//! Criteria 1, 3 and 5 of the PRD's success criteria, as pure functions of the gathered facts
//! (targets up, dashboards live, alerts explained); 2 is in `scrapes`, 6 in `only_onion`.

use std::collections::{BTreeMap, BTreeSet};

use super::api::Labels;
use super::config::Config;
use super::dashboards;
use super::gather::Facts;
use super::verdict::Verdict;

/// Jobs of the deploy bundle's ServiceMonitor.
const JOBS: [&str; 2] = ["gethrelay", "relaywatch"];
/// kube-prometheus-stack's always-on alerts, never a sign of trouble.
const HEARTBEATS: [&str; 2] = ["Watchdog", "InfoInhibitor"];
/// Receivers the deploy bundle's Alertmanager configuration defines.
const RECEIVERS: [&str; 2] = ["slack", "email"];

fn is_relay(labels: &Labels, namespace: &str, pod: &str) -> bool {
    labels.get("namespace").map(String::as_str) == Some(namespace)
        && labels.get("pod").map(String::as_str) == Some(pod)
}

fn all_pods(config: &Config) -> BTreeSet<String> {
    config.relays.iter().map(|relay| relay.name()).collect()
}

/// 1. Every relay has an `up == 1` target of job gethrelay and one of job relaywatch.
pub fn check_targets(config: &Config, facts: &Facts) -> Verdict {
    let summary = "targets up";
    let up = match &facts.up {
        Ok(up) => up,
        Err(error) => return Verdict::failed(1, summary, error, all_pods(config)),
    };
    let mut problems = Vec::new();
    let mut failed = BTreeSet::new();
    let mut details = Vec::new();
    for relay in &config.relays {
        let mut counts = Vec::new();
        for job in JOBS {
            // Every target of the pod and job must be up: with duplicates (two ServiceMonitors,
            // a stale endpoint), one down target is a scrape that fails.
            let samples: Vec<f64> = up
                .iter()
                .filter(|sample| {
                    sample.labels.get("job").map(String::as_str) == Some(job)
                        && is_relay(&sample.labels, &relay.namespace, &relay.pod)
                })
                .map(|sample| sample.value)
                .collect();
            let n_down = samples.iter().filter(|value| **value != 1.0).count();
            counts.push(format!("{} {job}", samples.len()));
            let problem = match (samples.len(), n_down) {
                (0, _) => format!("{}: no job=\"{job}\" target", relay.name()),
                (_, 0) => continue,
                (1, _) => format!(
                    "{}: job=\"{job}\" target down (up {})",
                    relay.name(),
                    samples[0]
                ),
                (n, down) => format!("{}: {down} of {n} job=\"{job}\" targets down", relay.name()),
            };
            problems.push(problem);
            failed.insert(relay.name());
        }
        details.push(format!("{}: targets {}", relay.name(), counts.join(", ")));
    }
    let n = config.relays.len();
    Verdict::new(
        1,
        format!(
            "{summary}: {} of {n} relays have only up == 1 targets of job gethrelay and of job relaywatch",
            n - failed.len()
        ),
        details,
        problems,
        failed,
    )
}

/// 3. Every dashboard query runs; an empty result only where event-only counters allow it.
pub fn check_dashboards(facts: &Facts) -> Verdict {
    let summary = "dashboards";
    let outcomes = match &facts.dashboards {
        Ok(outcomes) => outcomes,
        Err(error) => return Verdict::failed(3, summary, error, BTreeSet::new()),
    };
    let mut problems = Vec::new();
    let mut details = Vec::new();
    // Query errors grouped by their text: an unreachable Prometheus is one line, not 65.
    let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut n_data, mut n_allowed, mut n_errors, mut n_empty) = (0, 0, 0, 0);
    for outcome in outcomes {
        let place = format!("{}.json {:?}", outcome.query.dashboard, outcome.query.panel);
        let names = match &outcome.names {
            Ok(names) => names,
            Err(error) => {
                n_errors += 1;
                problems.push(format!(
                    "{place}: does not parse: {error}: {}",
                    outcome.expr
                ));
                continue;
            }
        };
        match &outcome.result {
            Err(error) => {
                n_errors += 1;
                errors
                    .entry(error.clone())
                    .or_default()
                    .push(format!("{place}: {error}: {}", outcome.expr));
            }
            Ok(0) if dashboards::empty_allowed(names) => {
                n_allowed += 1;
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                details.push(format!(
                    "{place}: no data, allowed (event-only: {})",
                    names.join(", ")
                ));
            }
            Ok(0) => {
                n_empty += 1;
                problems.push(format!("{place}: no data, not allowed: {}", outcome.expr));
            }
            Ok(_) => n_data += 1,
        }
    }
    for (error, lines) in errors {
        if lines.len() > 3 {
            problems.push(format!("{} queries failed: {error}", lines.len()));
        } else {
            problems.extend(lines);
        }
    }
    let n_dashboards: BTreeSet<&str> = outcomes
        .iter()
        .map(|outcome| outcome.query.dashboard.as_str())
        .collect();
    Verdict::new(
        3,
        format!(
            "{summary}: {} queries of {} dashboards: {n_data} with data, {n_allowed} empty as allowed, {n_empty} empty not allowed, {n_errors} errors",
            outcomes.len(),
            n_dashboards.len()
        ),
        details,
        problems,
        BTreeSet::new(),
    )
}

/// Criterion 5: rules loaded, Alertmanager configured, and every firing alert explained by a
/// failure of another criterion for the same pod (`explained` holds those pods).
pub fn check_alerts(config: &Config, facts: &Facts, explained: &BTreeSet<String>) -> Verdict {
    let summary = "alerts";
    let mut problems = Vec::new();
    let mut details = Vec::new();
    let project = dashboards::alert_names().unwrap_or_default();
    let rules_part = match &facts.rules {
        Ok(rules) => {
            let loaded: BTreeSet<&str> = rules
                .iter()
                .filter(|rule| rule.alerting)
                .map(|rule| rule.name.as_str())
                .collect();
            let missing: Vec<&str> = project
                .iter()
                .map(String::as_str)
                .filter(|name| !loaded.contains(name))
                .collect();
            if loaded.is_empty() {
                problems.push("no alerting rules loaded".into());
            }
            if !missing.is_empty() {
                problems.push(format!(
                    "project alerts not loaded: {} (apply deploy/kustomize: the PrometheusRule)",
                    missing.join(", ")
                ));
            }
            format!(
                "{} alerting rules loaded ({} of {} project alerts)",
                loaded.len(),
                project.len() - missing.len(),
                project.len()
            )
        }
        Err(error) => {
            problems.push(format!("cannot read /api/v1/rules: {error}"));
            "rules unreadable".into()
        }
    };
    let alertmanager_part = match &facts.receivers {
        Ok(receivers) => {
            let missing: Vec<&str> = RECEIVERS
                .into_iter()
                .filter(|name| !receivers.iter().any(|receiver| receiver == name))
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "Alertmanager lacks receivers {} (configure it from deploy/alertmanager/alertmanager.yaml)",
                    missing.join(", ")
                ));
            }
            format!("Alertmanager up with {} receivers", receivers.len())
        }
        Err(error) => {
            problems.push(format!("Alertmanager: {error}"));
            "Alertmanager unreachable".into()
        }
    };
    let (mut n_firing, mut n_explained, mut n_unexplained) = (0, 0, 0);
    match &facts.alerts {
        Ok(alerts) => {
            for alert in alerts.iter().filter(|alert| alert.state == "firing") {
                n_firing += 1;
                let name = alert.name();
                let namespace = alert.labels.get("namespace").map_or("", String::as_str);
                let pod = alert.labels.get("pod").map(String::as_str);
                let who = match pod {
                    Some(pod) => format!("{namespace}/{pod}"),
                    None if namespace.is_empty() => "no pod".to_string(),
                    None => format!("{namespace}, no pod"),
                };
                let listed = pod.is_some_and(|pod| {
                    config
                        .relays
                        .iter()
                        .any(|relay| relay.namespace == namespace && relay.pod == pod)
                });
                if HEARTBEATS.contains(&name) {
                    details.push(format!("firing {name} ({who}): heartbeat, fine"));
                } else if listed && explained.contains(&who) {
                    n_explained += 1;
                    details.push(format!(
                        "firing {name} ({who}): explained by a failed criterion of that pod"
                    ));
                } else if listed || project.contains(name) {
                    n_unexplained += 1;
                    problems.push(format!(
                        "firing {name} ({who}): not explained by any other criterion"
                    ));
                } else {
                    details.push(format!(
                        "firing {name} ({who}): not a gethrelay alert nor about a listed relay, not judged"
                    ));
                }
            }
        }
        Err(error) => problems.push(format!("cannot read /api/v1/alerts: {error}")),
    }
    Verdict::new(
        5,
        format!("{summary}: {rules_part}, {alertmanager_part}, {n_firing} firing: {n_explained} explained, {n_unexplained} unexplained"),
        details,
        problems,
        BTreeSet::new(),
    )
}
