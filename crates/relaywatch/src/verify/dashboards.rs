//! The deploy bundle's dashboards and alert rules, embedded so `relaywatch verify` works away
//! from the repository: their queries with Grafana's variables substituted, and the metric
//! names a query selects (found by `promql-parser`, not by patterns). Pure.
//!
//! xtask's `deploy_checks/dashboards.rs` has a similar panel walk and substitution. It is not
//! shared because the sidecar may not link xtask (anyhow, tool runners, the repository's
//! paths), and xtask reads the files from disk while this reads the copies built into the
//! binary; what both must agree on, the dashboards themselves, is one set of files.

use std::collections::{BTreeMap, BTreeSet};

use promql_parser::parser::Expr;
use promql_parser::util::{walk_expr, ExprVisitor};
use serde_json::Value as Json;

use crate::catalog;

/// `deploy/dashboards/*.json`, as `(file stem, text)`.
pub const DASHBOARDS: &[(&str, &str)] = &[
    (
        "clearnet",
        include_str!("../../../../deploy/dashboards/clearnet.json"),
    ),
    (
        "only-onion",
        include_str!("../../../../deploy/dashboards/only-onion.json"),
    ),
    (
        "overview",
        include_str!("../../../../deploy/dashboards/overview.json"),
    ),
    (
        "prefer-tor",
        include_str!("../../../../deploy/dashboards/prefer-tor.json"),
    ),
];

/// `deploy/rules/gethrelay.rules.yaml`, for the project's alert names.
pub const RULES: &str = include_str!("../../../../deploy/rules/gethrelay.rules.yaml");

/// Counters whose series appear only at their first event (labelled counters whose label
/// values are not known in advance): a query of them alone may return nothing on a healthy fleet.
/// The catalog has no such flag, so the list is here; a test checks each entry against it.
pub const EVENT_ONLY: &[&str] = &[
    catalog::LEAK_REMOVALS.name,
    catalog::DIALS_TOR_ERRORS.name,
    catalog::TOR_CIRCUITS_FAILED.name,
    catalog::TOR_ORCONN_FAILED.name,
];

/// One dashboard query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub dashboard: String,
    pub panel: String,
    /// As written in the dashboard, variables unsubstituted.
    pub expr: String,
    /// The dashboard's `mode` variable when it is a constant (the per-mode dashboards).
    pub mode: Option<String>,
}

/// Every query of every embedded dashboard, rows' nested panels included.
pub fn queries() -> Result<Vec<Query>, String> {
    let mut out = Vec::new();
    for (stem, text) in DASHBOARDS {
        let dashboard: Json = serde_json::from_str(text)
            .map_err(|error| format!("dashboard {stem}.json is not JSON: {error}"))?;
        let mode = dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|variable| variable["name"] == "mode" && variable["type"] == "constant")
            .and_then(|variable| variable["query"].as_str())
            .map(str::to_string);
        let mut panels: Vec<&Json> = Vec::new();
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            panels.push(panel);
            panels.extend(panel["panels"].as_array().into_iter().flatten());
        }
        for panel in panels {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(Query {
                        dashboard: stem.to_string(),
                        panel: panel["title"].as_str().unwrap_or_default().to_string(),
                        expr: expr.to_string(),
                        mode: mode.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Replaces Grafana's variables (`$name`, `${name}`, `${name:format}`, `[[name]]`) by
/// `values`; unknown names are left as written, so the query then fails to parse and says so.
pub fn substitute(expr: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(at) = rest.find(['$', '[']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let (name, len) = if let Some(braced) = tail.strip_prefix("${") {
            match braced.find('}') {
                Some(end) => (braced[..end].split(':').next().unwrap_or(""), end + 3),
                None => ("", 1),
            }
        } else if let Some(bracketed) = tail.strip_prefix("[[") {
            match bracketed.find("]]") {
                Some(end) => (bracketed[..end].split(':').next().unwrap_or(""), end + 4),
                None => ("", 1),
            }
        } else if let Some(bare) = tail.strip_prefix('$') {
            let end = bare
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(bare.len());
            (&bare[..end], end + 1)
        } else {
            ("", 1)
        };
        match values.get(name) {
            Some(value) if !name.is_empty() => out.push_str(value),
            _ => out.push_str(&tail[..len]),
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// A regex matching exactly these label values (`a|b`, with regex metacharacters escaped).
pub fn alternation<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let set: BTreeSet<&str> = values.into_iter().collect();
    set.into_iter()
        .map(|value| {
            value
                .chars()
                .flat_map(|c| {
                    let escape = "\\.+*?()|[]{}^$".contains(c);
                    escape.then_some('\\').into_iter().chain([c])
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("|")
        // A PromQL string holds the regex: its backslashes are escaped once more.
        .replace('\\', "\\\\")
}

/// The metric names a query selects; `Err` when it does not parse.
pub fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    struct Names(BTreeSet<String>);
    impl ExprVisitor for Names {
        type Error = String;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
            let selector = match expr {
                Expr::VectorSelector(selector) => selector,
                Expr::MatrixSelector(matrix) => &matrix.vs,
                _ => return Ok(true),
            };
            if let Some(name) = &selector.name {
                self.0.insert(name.clone());
            }
            for matcher in &selector.matchers.matchers {
                if matcher.name == "__name__" {
                    self.0.insert(matcher.value.clone());
                }
            }
            Ok(true)
        }
    }
    let parsed = promql_parser::parser::parse(expr)?;
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, &parsed)?;
    Ok(names.0)
}

/// Whether an empty result is allowed: every metric of the query is an event-only counter.
pub fn empty_allowed(names: &BTreeSet<String>) -> bool {
    !names.is_empty() && names.iter().all(|name| EVENT_ONLY.contains(&name.as_str()))
}

/// The alert names of the embedded rule file.
pub fn alert_names() -> Result<BTreeSet<String>, String> {
    let rules: Json = serde_norway::from_str(RULES)
        .map_err(|error| format!("the embedded rule file is not YAML: {error}"))?;
    Ok(rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().into_iter().flatten())
        .filter_map(|rule| rule["alert"].as_str().map(str::to_string))
        .collect())
}

/// The group names of the embedded rule file: the project's rule groups in Prometheus.
pub fn rule_groups() -> Result<BTreeSet<String>, String> {
    let rules: Json = serde_norway::from_str(RULES)
        .map_err(|error| format!("the embedded rule file is not YAML: {error}"))?;
    Ok(rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|group| group["name"].as_str().map(str::to_string))
        .collect())
}

/// The overview dashboard's per-pod peer count (gethrelay's `p2p_peers`), for criterion 7.
pub fn peer_count_query(queries: &[Query]) -> Option<&Query> {
    queries.iter().find(|query| {
        query.dashboard == "overview"
            && metric_names(&query.expr)
                .is_ok_and(|names| names.len() == 1 && names.contains("p2p_peers"))
            && query.expr.contains("by (pod)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_only_names_are_counters_of_the_catalog() {
        for name in EVENT_ONLY {
            let metric = catalog::ALL.iter().find(|metric| metric.name == *name);
            assert!(
                metric.is_some_and(
                    |metric| metric.kind == catalog::Kind::Counter && !metric.labels.is_empty()
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn every_dashboard_is_embedded_and_its_queries_parse_after_substitution() {
        let files: BTreeSet<String> = std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/dashboards"
        ))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
        let embedded: BTreeSet<String> = DASHBOARDS
            .iter()
            .map(|(stem, _)| format!("{stem}.json"))
            .collect();
        assert_eq!(files, embedded, "embed every dashboard in DASHBOARDS");
        let values = BTreeMap::from([
            ("namespace", "gethrelay".to_string()),
            ("mode", ".*".to_string()),
            ("pod", alternation(["a.b", "c"])),
            ("__rate_interval", "2m".to_string()),
        ]);
        let queries = queries().unwrap();
        assert!(queries.len() > 20);
        for query in &queries {
            let expr = substitute(&query.expr, &values);
            assert!(!expr.contains('$'), "{expr}");
            let names = metric_names(&expr).unwrap_or_else(|error| panic!("{expr}: {error}"));
            assert!(!names.is_empty(), "{expr}");
        }
        let peers = peer_count_query(&queries).expect("the overview's peer-count panel");
        assert!(peers.expr.contains("job=\"gethrelay\""), "{}", peers.expr);
        let names = alert_names().unwrap();
        for alert in [
            "GethRelayDown",
            "RelaywatchExporterDown",
            "GethRelayClearnetLeak",
        ] {
            assert!(names.contains(alert), "{alert}");
        }
    }

    #[test]
    fn substitution_forms() {
        let values = BTreeMap::from([
            ("pod", "p".to_string()),
            ("__rate_interval", "1m".to_string()),
            ("__interval", "15s".to_string()),
        ]);
        for (input, want) in [
            ("x{pod=~\"$pod\"}", "x{pod=~\"p\"}"),
            ("x{pod=~\"${pod}\"}", "x{pod=~\"p\"}"),
            ("x{pod=~\"${pod:regex}\"}", "x{pod=~\"p\"}"),
            ("x{pod=~\"[[pod]]\"}", "x{pod=~\"p\"}"),
            ("rate(x[$__rate_interval])", "rate(x[1m])"),
            ("rate(x[$__interval])", "rate(x[15s])"),
            ("x{a=\"$unknown\"}[5m]", "x{a=\"$unknown\"}[5m]"),
            ("x{a=\"${open\"}", "x{a=\"${open\"}"),
            ("$", "$"),
        ] {
            assert_eq!(substitute(input, &values), want, "{input}");
        }
    }

    #[test]
    fn names_from_the_syntax_tree_not_from_patterns() {
        let names =
            metric_names(r#"sum(rate(a_total{x="b_total"}[1m])) / on() c or {__name__="d"}"#)
                .unwrap();
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["a_total", "c", "d"]);
        assert!(metric_names("sum(").is_err());
        assert!(empty_allowed(&BTreeSet::from([
            "tor_orconn_failed_total".to_string()
        ])));
        assert!(!empty_allowed(&BTreeSet::from([
            "tor_orconn_failed_total".to_string(),
            "p2p_peers_tor".to_string()
        ])));
        assert!(!empty_allowed(&BTreeSet::new()));
    }

    #[test]
    fn alternations_escape_regex_and_string() {
        assert_eq!(alternation(["b", "a.c", "b"]), "a\\\\.c|b");
    }
}
