//! Metric names in PromQL expressions, and the one list of names the bundle may use.
//!
//! Not a PromQL parser: promtool checks the syntax; this only finds the selectors' metric names.

use std::collections::BTreeSet;

use anyhow::{bail, Result};

/// The sidecar's catalog, the source of truth for relaywatch's names.
pub const CATALOG_FILE: &str = "crates/relaywatch/src/catalog.rs";

/// Names accepted before the catalog has them, each marked with the issue that adds it.
/// **Pending issue 5** was here (p2p_dials_tor_*, tor_*, relaywatch_tor_control_unparsed_lines_total);
/// the catalog has all of them now, so the list is empty and every name is checked against
/// the catalog alone. `pending_names_still_pending` reports entries the catalog has caught up with.
pub const PENDING_ISSUE_5: &[&str] = &[];

/// gethrelay's own series on /debug/metrics/prometheus that carry data (geth text format).
pub const GETHRELAY: &[&str] = &[
    "p2p_peers",
    "p2p_peers_inbound",
    "p2p_peers_outbound",
    "p2p_dials",
    "p2p_dials_success",
    "p2p_dials_error_connection",
    "p2p_serves",
    "p2p_serves_success",
];

/// Series of Prometheus itself and of kube-state-metrics (shipped by kube-prometheus-stack,
/// which scrapes it with honorLabels, so `namespace` and `pod` are the object's).
pub const PLATFORM: &[&str] = &[
    "up",
    "kube_statefulset_replicas",
    "kube_statefulset_status_replicas",
    "kube_statefulset_status_replicas_ready",
    "kube_pod_info",
    "kube_pod_status_ready",
];

/// The exposed names of `crates/relaywatch/src/catalog.rs`: every `metric("name", …)` entry.
pub fn catalog_names(catalog_source: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = catalog_source;
    while let Some(at) = rest.find("metric(") {
        rest = &rest[at + "metric(".len()..];
        let trimmed = rest.trim_start();
        if let Some(literal) = trimmed.strip_prefix('"') {
            if let Some(end) = literal.find('"') {
                names.insert(literal[..end].to_string());
            }
        }
    }
    names
}

/// Every name a rule or dashboard may select: catalog, pending issue 5, gethrelay, platform,
/// plus the recording rules the bundle defines itself.
pub fn known_names(catalog_source: &str, recorded: &[String]) -> BTreeSet<String> {
    let mut names = catalog_names(catalog_source);
    for name in PENDING_ISSUE_5.iter().chain(GETHRELAY).chain(PLATFORM) {
        names.insert(name.to_string());
    }
    names.extend(recorded.iter().cloned());
    names
}

/// Fails naming every unknown metric name in `expressions` (`(where, expr)` pairs).
pub fn check_names(expressions: &[(String, String)], known: &BTreeSet<String>) -> Result<()> {
    let mut problems = Vec::new();
    for (place, expr) in expressions {
        for name in metric_names(expr) {
            if !known.contains(&name) {
                problems.push(format!("{place}: unknown metric {name:?} in `{expr}`"));
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "metric names not in {CATALOG_FILE} (nor gethrelay's, kube-state-metrics', `up`):\n{}",
            problems.join("\n")
        );
    }
    Ok(())
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "limitk",
    "limit_ratio",
];
/// Keywords followed by a parenthesised label list.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const OTHER_KEYWORDS: &[&str] = &[
    "bool", "and", "or", "unless", "offset", "atan2", "inf", "nan", "start", "end",
];

/// The metric names selected in `expr` (Grafana variables must be substituted first).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        match c {
            '"' | '\'' | '`' => at = skip_string(&chars, at),
            '{' => at = skip_until(&chars, at, '}'),
            '[' => at = skip_until(&chars, at, ']'),
            '#' => {
                while at < chars.len() && chars[at] != '\n' {
                    at += 1;
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while at < chars.len() && (chars[at].is_ascii_alphanumeric() || chars[at] == '.') {
                    at += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = at;
                while at < chars.len()
                    && (chars[at].is_ascii_alphanumeric() || chars[at] == '_' || chars[at] == ':')
                {
                    at += 1;
                }
                let word: String = chars[start..at].iter().collect();
                let mut next = at;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let lower = word.to_ascii_lowercase();
                if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                    if next < chars.len() && chars[next] == '(' {
                        at = skip_until(&chars, next, ')');
                    }
                } else if AGGREGATIONS.contains(&lower.as_str())
                    || OTHER_KEYWORDS.contains(&lower.as_str())
                    || (next < chars.len() && chars[next] == '(')
                {
                    // An aggregation, keyword or function call, not a selector.
                } else {
                    names.insert(word);
                }
            }
            _ => at += 1,
        }
    }
    names
}

fn skip_string(chars: &[char], open: usize) -> usize {
    let quote = chars[open];
    let mut at = open + 1;
    while at < chars.len() {
        if chars[at] == '\\' && quote != '`' {
            at += 2;
            continue;
        }
        if chars[at] == quote {
            return at + 1;
        }
        at += 1;
    }
    at
}

/// Skips from an opening bracket to just after `close`, stepping over strings inside.
fn skip_until(chars: &[char], open: usize, close: char) -> usize {
    let mut at = open + 1;
    while at < chars.len() {
        match chars[at] {
            '"' | '\'' | '`' => at = skip_string(chars, at),
            c if c == close => return at + 1,
            _ => at += 1,
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expr: &str, expect: &[&str]) {
        let got: Vec<String> = metric_names(expr).into_iter().collect();
        assert_eq!(got, expect, "{expr}");
    }

    #[test]
    fn selectors_are_found_and_the_rest_is_not() {
        check("up", &["up"]);
        check(r#"up{job="gethrelay", pod=~"a|b"} == 0"#, &["up"]);
        check(
            r#"sum by (mode) (rate(p2p_ingress_tor{mode="only-onion"}[5m]))"#,
            &["p2p_ingress_tor"],
        );
        check(
            "sum without (direction) (p2p_peers_tor) < on (mode) group_left () gethrelay:low_peer_threshold",
            &["gethrelay:low_peer_threshold", "p2p_peers_tor"],
        );
        check(
            r#"label_replace(vector(10), "mode", "clearnet", "", "") or x_total offset 15m"#,
            &["x_total"],
        );
        check(
            "count(up) by (pod) and 1e3 > bool p2p_dials # comment names_nothing",
            &["p2p_dials", "up"],
        );
        check(r#"max_over_time(a[10m:1m]) unless b{c="}"}"#, &["a", "b"]);
    }

    #[test]
    fn catalog_names_are_read_from_the_source() {
        let source = r#"
            pub const A: Metric = metric(
                "p2p_peers_tor",
                Kind::Gauge,
            );
            const fn metric(name: &'static str) -> Metric {}
            pub const B: Metric = metric("relaywatch_build_info", Kind::Gauge, "x", &[]);
        "#;
        let names: Vec<String> = catalog_names(source).into_iter().collect();
        assert_eq!(names, ["p2p_peers_tor", "relaywatch_build_info"]);
    }

    #[test]
    fn the_contract_names_are_in_the_catalog() {
        let source = crate::deploy_checks::read(CATALOG_FILE).unwrap();
        let catalog = catalog_names(&source);
        for name in [
            "p2p_peers_tor",
            "p2p_peers_clearnet",
            "p2p_ingress_tor",
            "p2p_egress_tor",
            "p2p_ingress_clearnet",
            "p2p_egress_clearnet",
            "relaywatch_clearnet_leaks_total",
            "relaywatch_leak_removals_total",
            "relaywatch_onion_fallback_peers",
            "relaywatch_source_up",
            "relaywatch_source_last_success_timestamp_seconds",
            "relaywatch_source_poll_duration_seconds",
            "relaywatch_build_info",
        ] {
            assert!(catalog.contains(name), "{name} missing from {CATALOG_FILE}");
        }
    }

    /// Reports (without failing) which issue-5 names the catalog has by now.
    #[test]
    fn pending_names_still_pending() {
        let source = crate::deploy_checks::read(CATALOG_FILE).unwrap();
        let catalog = catalog_names(&source);
        let landed: Vec<&str> = PENDING_ISSUE_5
            .iter()
            .copied()
            .filter(|name| catalog.contains(*name))
            .collect();
        let pending: Vec<&str> = PENDING_ISSUE_5
            .iter()
            .copied()
            .filter(|name| !catalog.contains(*name))
            .collect();
        println!(
            "issue 5 names already in the catalog (drop them from PENDING_ISSUE_5): {landed:?}"
        );
        println!("issue 5 names still pending: {pending:?}");
    }
}
