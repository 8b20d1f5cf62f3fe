//! The leak's fast path in numbers: the worst case from a leaking connection to Slack, read
//! step by step from the files that set each step (issue 11: goal 20 s).

use anyhow::{Context, Result};

use super::super::{get, get_str, read, read_yaml, seq, RULES_FILE};

/// A Prometheus duration (`5s`, `1m30s`, `250ms`, `0s`) in milliseconds.
pub fn duration_ms(text: &str) -> Option<u64> {
    let unit = regex::Regex::new(r"(\d+)(ms|s|m|h)").unwrap();
    let mut total = 0;
    let mut consumed = 0;
    for found in unit.captures_iter(text) {
        let value: u64 = found[1].parse().ok()?;
        total += value
            * match &found[2] {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                _ => 3_600_000,
            };
        consumed += found[0].len();
    }
    (consumed == text.len() && consumed > 0).then_some(total)
}

/// The goal for a leak, from the leaking connection to the Slack message (issue 11).
pub const LEAK_BUDGET_GOAL_MS: u64 = 20_000;
/// Prometheus → Alertmanager → Slack: one POST each; the lab measures it well below this.
const DELIVERY_ALLOWANCE_MS: u64 = 2_000;

/// The leak's worst case from the peer's connection to Slack: (step, milliseconds).
pub fn leak_budget() -> Result<Vec<(String, u64)>> {
    let cli = read("crates/relaywatch/src/cli.rs")?;
    let poll = regex::Regex::new(r#"env = "RELAYWATCH_POLL_INTERVAL", default_value = "([^"]+)""#)
        .unwrap()
        .captures(&cli)
        .and_then(|found| duration_ms(&found[1]))
        .context("crates/relaywatch/src/cli.rs: no RELAYWATCH_POLL_INTERVAL default")?;
    let monitor = read_yaml("deploy/kustomize/base/servicemonitor.yaml")?;
    let scrape = seq(get(&monitor, "spec").and_then(|spec| get(spec, "endpoints")))
        .iter()
        .find(|endpoint| get_str(endpoint, "port") == Some("relaywatch"))
        .and_then(|endpoint| get_str(endpoint, "interval"))
        .and_then(duration_ms)
        .context("servicemonitor.yaml: no interval on the relaywatch endpoint")?;
    let file = read_yaml(RULES_FILE)?;
    let group = seq(get(&file, "groups"))
        .iter()
        .find(|group| {
            seq(get(group, "rules"))
                .iter()
                .any(|rule| get_str(rule, "alert") == Some("GethRelayClearnetLeak"))
        })
        .context("no group holds GethRelayClearnetLeak")?;
    let evaluation = get_str(group, "interval")
        .and_then(duration_ms)
        .unwrap_or(30_000);
    let alertmanager = read_yaml(super::super::ALERTMANAGER_FILE)?;
    let group_wait = super::super::alertmanager::leak_route_group_wait(&alertmanager)
        .as_deref()
        .and_then(duration_ms)
        .context("alertmanager.yaml: no group_wait on the GethRelayClearnetLeak route")?;
    Ok(vec![
        (
            "relaywatch poll (RELAYWATCH_POLL_INTERVAL default)".into(),
            poll,
        ),
        (
            "scrape interval of the ServiceMonitor's relaywatch endpoint".into(),
            scrape,
        ),
        (
            "evaluation interval of the leak's rule group".into(),
            evaluation,
        ),
        ("group_wait of the leak's route".into(), group_wait),
        (
            "delivery allowance (Prometheus → Alertmanager → Slack)".into(),
            DELIVERY_ALLOWANCE_MS,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print_leak_budget() -> u64 {
        let budget = leak_budget().unwrap();
        let total: u64 = budget.iter().map(|(_, ms)| ms).sum();
        for (step, ms) in &budget {
            println!("leak budget: {step}: {ms} ms");
        }
        println!("leak budget: worst case {total} ms (goal {LEAK_BUDGET_GOAL_MS} ms)");
        total
    }

    #[test]
    fn the_leak_has_a_fast_path() {
        print_leak_budget();
        let budget = leak_budget().unwrap();
        assert!(
            budget[2].1 <= 5_000,
            "the leak's rule group: interval {} ms, want ≤ 5s",
            budget[2].1
        );
        assert_eq!(budget[3].1, 0, "the leak's route: group_wait 0s");
        assert_eq!(duration_ms("1m30s"), Some(90_000));
        assert_eq!(duration_ms("250ms"), Some(250));
        assert_eq!(duration_ms("soon"), None);
    }

    #[test]
    fn the_leak_reaches_slack_within_the_goal() {
        let total = print_leak_budget();
        assert!(
            total <= LEAK_BUDGET_GOAL_MS,
            "worst case {total} ms > {LEAK_BUDGET_GOAL_MS} ms"
        );
    }
}
