//! Criterion 2: Prometheus scrapes the relays' targets cleanly. Pure.
//!
//! Judged from the relays' own targets only: in a shared kube-prometheus-stack, Prometheus's
//! own counters (`prometheus_target_scrapes_exceeded_sample_limit_total`) and rules that are not
//! the project's describe other teams' targets, so they are listed, never judged.

use std::collections::BTreeSet;

use serde_json::Value as Json;

use super::api::Labels;
use super::config::Config;
use super::dashboards;
use super::gather::Facts;
use super::verdict::Verdict;
use crate::log::excerpt;

/// Jobs of the deploy bundle's ServiceMonitor.
const JOBS: [&str; 2] = ["gethrelay", "relaywatch"];

/// The deploy bundle's ServiceMonitor, for its per-target `sampleLimit`.
const SERVICE_MONITOR: &str = include_str!("../../../../deploy/kustomize/base/servicemonitor.yaml");

/// The ServiceMonitor's `spec.sampleLimit`: the limit assumed where Prometheus does not say.
pub fn bundle_sample_limit() -> Option<f64> {
    let monitor: Json = serde_norway::from_str(SERVICE_MONITOR).ok()?;
    monitor["spec"]["sampleLimit"].as_f64()
}

fn is_relay(labels: &Labels, namespace: &str, pod: &str) -> bool {
    labels.get("namespace").map(String::as_str) == Some(namespace)
        && labels.get("pod").map(String::as_str) == Some(pod)
}

fn job(labels: &Labels) -> &str {
    labels.get("job").map_or("?", String::as_str)
}

/// Criterion 2: the relays' targets scrape without errors and under their sample limit in the
/// last hour, and the project's rules are healthy.
pub fn check_scrapes(config: &Config, facts: &Facts) -> Verdict {
    let summary = "scrapes";
    let all_pods = || config.relays.iter().map(|relay| relay.name()).collect();
    let targets = match &facts.targets {
        Ok(targets) => targets,
        Err(error) => return Verdict::failed(2, summary, error, all_pods()),
    };
    let mut problems = Vec::new();
    let mut details = Vec::new();
    let mut failed = BTreeSet::new();
    let (mut n_targets, mut n_errors) = (0, 0);
    let post_relabel = facts.samples_post_relabel.as_ref();
    for relay in &config.relays {
        for target in targets.iter().filter(|target| {
            JOBS.contains(&job(&target.labels))
                && is_relay(&target.labels, &relay.namespace, &relay.pod)
        }) {
            n_targets += 1;
            let job = job(&target.labels);
            if !target.last_error.is_empty() {
                n_errors += 1;
                let what = if target.last_error.to_lowercase().contains("sample limit") {
                    "last scrape over the sample limit"
                } else {
                    "last scrape failed"
                };
                problems.push(format!(
                    "{} job=\"{job}\": {what}: {}",
                    relay.name(),
                    excerpt(&target.last_error)
                ));
                failed.insert(relay.name());
            }
            let sampled = post_relabel
                .is_ok_and(|samples| samples.iter().any(|sample| sample.labels == target.labels));
            if post_relabel.is_ok() && !sampled {
                problems.push(format!("{} job=\"{job}\": no scrape_samples_post_metric_relabeling in the last hour, so its sample limit cannot be judged", relay.name()));
                failed.insert(relay.name());
            }
        }
    }
    // Samples per scrape against the target's limit, over the last hour and every target the
    // pods had (a recreated pod's old target included). At the limit counts as a hit: Prometheus
    // may stop counting a rejected scrape's samples there.
    let bundle_limit = bundle_sample_limit();
    let (mut n_hits, mut assumed) = (0, false);
    match post_relabel {
        Ok(samples) => {
            for sample in samples {
                let (Some(namespace), Some(pod)) =
                    (sample.labels.get("namespace"), sample.labels.get("pod"))
                else {
                    continue;
                };
                let reported = facts.sample_limits.as_ref().ok().and_then(|limits| {
                    limits
                        .iter()
                        .find(|limit| limit.labels == sample.labels && limit.value > 0.0)
                        .map(|limit| limit.value)
                });
                assumed |= reported.is_none();
                let Some(limit) = reported.or(bundle_limit) else {
                    continue;
                };
                if sample.value >= limit {
                    n_hits += 1;
                    problems.push(format!(
                        "{namespace}/{pod} job=\"{}\": up to {} samples per scrape in the last hour, at or over its sample limit {limit}{}",
                        job(&sample.labels),
                        sample.value,
                        if reported.is_none() { " (the deploy bundle's, assumed)" } else { "" }
                    ));
                    failed.insert(format!("{namespace}/{pod}"));
                }
            }
        }
        Err(error) => problems.push(format!(
            "scrape_samples_post_metric_relabeling query failed: {error}"
        )),
    }
    if let Err(error) = &facts.sample_limits {
        problems.push(format!("scrape_sample_limit query failed: {error}"));
    }
    if assumed {
        details.push(format!(
            "sample limit: Prometheus reports none (scrape_sample_limit needs --enable-feature=extra-scrape-metrics); assumed the deploy bundle's ServiceMonitor sampleLimit {}",
            bundle_limit.map_or("(unreadable)".to_string(), |limit| limit.to_string())
        ));
    }
    let rules_part = judge_rules(facts, &mut problems, &mut details);
    Verdict::new(
        2,
        format!(
            "{summary}: {} of {n_targets} relay targets scrape without errors, {n_hits} at or over their sample limit in 1h, {rules_part}",
            n_targets - n_errors
        ),
        details,
        problems,
        failed,
    )
}

/// The project's rule groups (those of the embedded rule file) must be healthy; other groups'
/// unhealthy rules are listed, not judged.
fn judge_rules(facts: &Facts, problems: &mut Vec<String>, details: &mut Vec<String>) -> String {
    let groups = match dashboards::rule_groups() {
        Ok(groups) => groups,
        Err(error) => {
            problems.push(error);
            return "project rules unknown".into();
        }
    };
    let rules = match &facts.rules {
        Ok(rules) => rules,
        Err(error) => {
            problems.push(format!("cannot read /api/v1/rules: {error}"));
            return "rules unreadable".into();
        }
    };
    let (mut n_ours, mut n_healthy) = (0, 0);
    for rule in rules {
        let ours = groups.contains(&rule.group);
        n_ours += usize::from(ours);
        if rule.health == "ok" {
            n_healthy += usize::from(ours);
            continue;
        }
        let line = format!(
            "rule {} (group {}): health {:?} {}",
            rule.name,
            rule.group,
            rule.health,
            excerpt(&rule.last_error)
        );
        if ours {
            problems.push(line);
        } else {
            details.push(format!("{line}: not a project rule group, not judged"));
        }
    }
    format!("{n_healthy} of {n_ours} rules of the project's groups healthy")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bundle_sample_limit_is_read() {
        assert_eq!(super::bundle_sample_limit(), Some(2000.0));
    }
}
