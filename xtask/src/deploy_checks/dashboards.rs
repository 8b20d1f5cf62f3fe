//! Grafana dashboards: the PRD's panels and settings, and every query parsed by promtool and
//! checked against the metric catalog.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value as Json;

use super::{read, DASHBOARDS_DIR};

/// Every dashboard file: its stem and its text, sorted by file name.
pub fn dashboard_files() -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for path in super::files(DASHBOARDS_DIR, ".json")? {
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        out.push((stem, read(&super::shown(&path))?));
    }
    Ok(out)
}

/// A dashboard's file stem and its parsed JSON.
pub fn dashboards() -> Result<Vec<(String, Json)>> {
    dashboard_files()?
        .into_iter()
        .map(|(stem, text)| {
            let json = serde_json::from_str(&text)
                .with_context(|| format!("{DASHBOARDS_DIR}/{stem}.json: not JSON"))?;
            Ok((stem, json))
        })
        .collect()
}

/// Every panel, rows' nested panels included, in reading order (top to bottom, left to right).
pub fn panels(dashboard: &Json) -> Vec<&Json> {
    let mut all: Vec<&Json> = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all.sort_by_key(|panel| {
        (
            panel["gridPos"]["y"].as_u64(),
            panel["gridPos"]["x"].as_u64(),
        )
    });
    all
}

/// `(panel title, expr)` of every query.
pub fn queries(dashboard: &Json) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_string();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |target| {
                    Some((title.clone(), target["expr"].as_str()?.to_string()))
                })
        })
        .collect()
}

/// Substitutes Grafana's variables: `$__rate_interval` and friends by a duration, our variables
/// by `values` (a regex, as the queries use `=~`).
pub fn substitute(expr: &str, values: &BTreeMap<&str, &str>) -> String {
    let mut out = expr.to_string();
    for (name, duration) in [
        ("__rate_interval", "1m"),
        ("__interval", "15s"),
        ("__range", "1h"),
    ] {
        out = out
            .replace(&format!("${{{name}}}"), duration)
            .replace(&format!("${name}"), duration);
    }
    for (name, value) in values {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

pub fn all_values() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([("namespace", ".*"), ("mode", ".*"), ("pod", ".*")])
}

/// Static checks: refresh, variables, datasource, the PRD's panels, the mode dashboards.
pub fn check(dashboards: &[(String, Json)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (stem, dashboard) in dashboards {
        let place = format!("{DASHBOARDS_DIR}/{stem}.json");
        if dashboard["refresh"] != "10s" {
            problems.push(format!("{place}: refresh must be 10s"));
        }
        let variables: Vec<&str> = dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|variable| variable["name"].as_str())
            .collect();
        if variables != ["namespace", "mode", "pod"] {
            problems.push(format!(
                "{place}: variables {variables:?}, want namespace, mode, pod"
            ));
        }
        if dashboard["uid"]
            .as_str()
            .is_none_or(|uid| !uid.starts_with("gethrelay-"))
        {
            problems.push(format!("{place}: uid must start with gethrelay-"));
        }
        for panel in panels(dashboard) {
            if panel["datasource"]["uid"] != "prometheus" {
                problems.push(format!(
                    "{place}: panel {} must use the datasource uid prometheus",
                    panel["title"]
                ));
            }
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                for variable in ["$namespace", "$mode", "$pod"] {
                    if !expr.contains(variable) {
                        problems.push(format!(
                            "{place}: panel {}: query ignores {variable}: {expr}",
                            panel["title"]
                        ));
                    }
                }
            }
        }
        if *stem != "overview" {
            let mode = dashboard["templating"]["list"][1]["query"]
                .as_str()
                .unwrap_or_default();
            if mode != stem {
                problems.push(format!(
                    "{place}: the mode variable must be the constant {stem}"
                ));
            }
        }
    }
    let by_stem: BTreeMap<&str, &Json> = dashboards
        .iter()
        .map(|(stem, d)| (stem.as_str(), d))
        .collect();
    for stem in ["overview", "clearnet", "prefer-tor", "only-onion"] {
        if !by_stem.contains_key(stem) {
            problems.push(format!("{DASHBOARDS_DIR}/{stem}.json missing"));
        }
    }
    if let Some(overview) = by_stem.get("overview") {
        if overview["title"] != "Gethrelay Tor Metrics Overview" {
            problems.push("overview: title must be \"Gethrelay Tor Metrics Overview\"".into());
        }
        let exprs: Vec<String> = queries(overview)
            .into_iter()
            .map(|(_, expr)| expr)
            .collect();
        let has = |needle: &str| exprs.iter().any(|expr| expr.contains(needle));
        for (what, needles) in [
            (
                "peer connections by type",
                &["p2p_peers_tor", "p2p_peers_clearnet"][..],
            ),
            (
                "Tor dial success rate",
                &["p2p_dials_tor_success_total", "p2p_dials_tor_total"][..],
            ),
            (
                "traffic by network type",
                &["p2p_ingress_tor", "p2p_egress_clearnet"][..],
            ),
            ("deployment-mode distribution", &["count by (mode)"][..]),
            (
                "Tor circuit failures by reason",
                &["sum by (reason) (rate(tor_circuits_failed_total"][..],
            ),
        ] {
            if !needles.iter().all(|needle| has(needle)) {
                problems.push(format!("overview: panel for {what} missing"));
            }
        }
    }
    if let Some(only_onion) = by_stem.get("only-onion") {
        let first = panels(only_onion).into_iter().next();
        if first.is_none_or(|panel| {
            !panel
                .to_string()
                .contains("relaywatch_clearnet_leaks_total")
        }) {
            problems.push("only-onion: the leak panel must come first".into());
        }
    }
    problems
}

/// Parses every query with promtool (as recording rules of a scratch rule file).
pub fn promtool_parse(dashboards: &[(String, Json)]) -> Result<()> {
    let mut rules = Vec::new();
    for (stem, dashboard) in dashboards {
        for (index, (_, expr)) in queries(dashboard).into_iter().enumerate() {
            let record = format!("dashboard:{}:q{index}", stem.replace('-', "_"));
            rules.push(
                serde_json::json!({"record": record, "expr": substitute(&expr, &all_values())}),
            );
        }
    }
    let file = serde_json::json!({"groups": [{"name": "dashboard-queries", "rules": rules}]});
    let dir: PathBuf = super::root().join("target/deploy-checks");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("dashboard-queries.rules.yaml");
    std::fs::write(&path, serde_norway::to_string(&file)?)?;
    let mut check = Command::new("promtool");
    check.arg("check").arg("rules").arg(&path);
    super::run(check)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::promql;
    use super::*;

    #[test]
    fn dashboards_have_the_prd_panels_and_settings() {
        let problems = check(&dashboards().unwrap());
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn dashboard_queries_parse_and_use_known_metrics() {
        let dashboards = dashboards().unwrap();
        let catalog = read(promql::CATALOG_FILE).unwrap();
        let recorded: Vec<String> = super::super::rules::rules()
            .unwrap()
            .into_iter()
            .filter_map(|rule| rule.record)
            .collect();
        let known = promql::known_names(&catalog, &recorded);
        let mut expressions = Vec::new();
        for (stem, dashboard) in &dashboards {
            for (title, expr) in queries(dashboard) {
                expressions.push((
                    format!("{stem}.json: {title}"),
                    substitute(&expr, &all_values()),
                ));
            }
        }
        assert!(expressions.len() > 20, "only {} queries", expressions.len());
        promql::check_names(&expressions, &known).unwrap();
        if super::super::tool("promtool", "dashboard queries through promtool") {
            promtool_parse(&dashboards).unwrap();
        }
    }

    #[test]
    fn variables_are_substituted() {
        let got = substitute(
            r#"rate(x{pod=~"$pod", mode=~"${mode}"}[$__rate_interval])"#,
            &all_values(),
        );
        assert_eq!(got, r#"rate(x{pod=~".*", mode=~".*"}[1m])"#);
    }
}
