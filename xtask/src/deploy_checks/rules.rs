//! The alert rules: promtool checks, one test file per group, runbooks, and the names they use.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use anyhow::{bail, Result};
use serde_norway::Value;

use super::{get, get_str, read, read_yaml, seq, RULES_FILE, RULE_TESTS_DIR, RUNBOOKS_DIR};

/// One rule of the rule file, as far as the checks care.
#[derive(Debug, Clone)]
pub struct Rule {
    pub group: String,
    /// The alert name, or `None` for a recording rule.
    pub alert: Option<String>,
    pub record: Option<String>,
    pub expr: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_mapping)
        .map(|mapping| {
            mapping
                .iter()
                .filter_map(|(key, value)| {
                    Some((key.as_str()?.to_string(), value.as_str()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the rules of a parsed rule file (`groups:` at the top, as promtool wants it).
pub fn rules_of(file: &Value) -> Vec<Rule> {
    let mut rules = Vec::new();
    for group in seq(get(file, "groups")) {
        let group_name = get_str(group, "name").unwrap_or_default().to_string();
        for rule in seq(get(group, "rules")) {
            rules.push(Rule {
                group: group_name.clone(),
                alert: get_str(rule, "alert").map(str::to_string),
                record: get_str(rule, "record").map(str::to_string),
                expr: get_str(rule, "expr").unwrap_or_default().to_string(),
                labels: string_map(get(rule, "labels")),
                annotations: string_map(get(rule, "annotations")),
            });
        }
    }
    rules
}

pub fn rules() -> Result<Vec<Rule>> {
    Ok(rules_of(&read_yaml(RULES_FILE)?))
}

/// Alert names, each once, in file order.
pub fn alert_names(rules: &[Rule]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in rules.iter().filter_map(|rule| rule.alert.clone()) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// For each alert, whether some promtool test expects it firing and some expects it quiet.
fn tested_alerts() -> Result<BTreeMap<String, (bool, bool)>> {
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for path in super::files(RULE_TESTS_DIR, ".yaml")? {
        let text = std::fs::read_to_string(&path)?;
        let file = super::parse_yaml(&text, &super::shown(&path))?;
        for test in seq(get(&file, "tests")) {
            for case in seq(get(test, "alert_rule_test")) {
                let Some(name) = get_str(case, "alertname") else {
                    continue;
                };
                let entry = seen.entry(name.to_string()).or_default();
                if seq(get(case, "exp_alerts")).is_empty() {
                    entry.1 = true;
                } else {
                    entry.0 = true;
                }
            }
        }
    }
    Ok(seen)
}

pub fn runbook_url(alert: &str) -> String {
    format!("{}/{alert}.md", super::RUNBOOK_BASE_URL)
}

/// Rewrites every `runbook_url: …/<Name>.md` line to the one base URL.
pub fn with_runbook_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(url) = trimmed.strip_prefix("runbook_url: ") {
            let url = url.trim_end();
            if let Some(file) = url.rsplit('/').next().filter(|file| file.ends_with(".md")) {
                let indent = &line[..line.len() - trimmed.len()];
                let alert = file.trim_end_matches(".md");
                let ending = if line.ends_with('\n') { "\n" } else { "" };
                out.push_str(&format!(
                    "{indent}runbook_url: {}{ending}",
                    runbook_url(alert)
                ));
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

/// The files whose `runbook_url` lines `cargo xtask codegen` keeps in step with the base URL.
pub fn runbook_url_files() -> Result<Vec<String>> {
    let mut files = vec![RULES_FILE.to_string()];
    for path in super::files(RULE_TESTS_DIR, ".yaml")? {
        files.push(super::shown(&path));
    }
    Ok(files)
}

/// The operator documentation beside the runbooks.
pub const DOCS_DIR: &str = "docs";

/// The NetworkPolicies the kustomize base defines, by name.
pub const NETWORK_POLICIES_FILE: &str = "deploy/kustomize/base/networkpolicies.yaml";

/// Where a `runbook_url` points inside the repository: the file under [`RUNBOOKS_DIR`], or a
/// problem when the URL is not below [`super::RUNBOOK_BASE_URL`] or the base URL does not end
/// in the runbooks directory (then no URL could resolve to a file of this repository).
pub fn runbook_file(url: &str) -> std::result::Result<String, String> {
    let base = super::RUNBOOK_BASE_URL;
    if !base.ends_with(&format!("/{RUNBOOKS_DIR}")) {
        return Err(format!(
            "RUNBOOK_BASE_URL {base} must end in /{RUNBOOKS_DIR}, where the runbooks are"
        ));
    }
    match url
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        Some(name) if !name.is_empty() && !name.contains('/') => {
            Ok(format!("{RUNBOOKS_DIR}/{name}"))
        }
        _ => Err(format!(
            "runbook_url {url} is not <RUNBOOK_BASE_URL>/<file>"
        )),
    }
}

/// Problems of the links a document (workspace-relative path `doc`) makes: relative Markdown
/// links to files that do not exist, and NetworkPolicies named in backticks that `policies`
/// does not define.
pub fn doc_link_problems(doc: &str, text: &str, policies: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let link = regex::Regex::new(r"\]\(([^)#\s]+)(#[^)]*)?\)").unwrap();
    for found in link.captures_iter(text) {
        let target = &found[1];
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let dir = std::path::Path::new(doc)
            .parent()
            .unwrap_or(std::path::Path::new(""));
        let path = super::root().join(dir).join(target);
        if !path.exists() {
            problems.push(format!("{doc}: links to {target}, which does not exist"));
        }
    }
    let named = regex::Regex::new(r"NetworkPolic(?:y|ies) `([a-z0-9.-]+)`").unwrap();
    for found in named.captures_iter(text) {
        if !policies.iter().any(|policy| policy == &found[1]) {
            problems.push(format!(
                "{doc}: names NetworkPolicy `{}`, which {NETWORK_POLICIES_FILE} does not define (it has {policies:?})",
                &found[1]
            ));
        }
    }
    problems
}

/// The names of the NetworkPolicies of [`NETWORK_POLICIES_FILE`].
pub fn network_policy_names() -> Result<Vec<String>> {
    let text = read(NETWORK_POLICIES_FILE)?;
    Ok(super::parse_yaml_documents(&text, NETWORK_POLICIES_FILE)?
        .iter()
        .filter(|document| get_str(document, "kind") == Some("NetworkPolicy"))
        .filter_map(|document| get(document, "metadata").and_then(|m| get_str(m, "name")))
        .map(str::to_string)
        .collect())
}

#[path = "leak_budget.rs"]
pub mod leak_budget;

/// Checks everything about the rules that needs no tool; returns all problems at once.
pub fn check_static(rules: &[Rule]) -> Result<()> {
    let mut problems = Vec::new();
    let tested = tested_alerts()?;
    for rule in rules {
        let Some(alert) = &rule.alert else { continue };
        let place = format!("{RULES_FILE}: {alert}");
        if !alert.starts_with("GethRelay") && !alert.starts_with("Relaywatch") {
            problems.push(format!(
                "{place}: alert names start with GethRelay or Relaywatch"
            ));
        }
        match rule.labels.get("severity").map(String::as_str) {
            Some("critical" | "warning" | "info") => {}
            other => problems.push(format!(
                "{place}: severity {other:?}; use critical, warning or info"
            )),
        }
        for key in ["summary", "description", "runbook_url"] {
            if rule
                .annotations
                .get(key)
                .is_none_or(|value| value.trim().is_empty())
            {
                problems.push(format!("{place}: annotation {key} missing"));
            }
        }
        if let Some(summary) = rule.annotations.get("summary") {
            if summary.contains("{{") || !summary.ends_with('.') {
                problems.push(format!(
                    "{place}: summary is one sentence without labels, ending in a period"
                ));
            }
        }
        if let Some(url) = rule.annotations.get("runbook_url") {
            match runbook_file(url) {
                Ok(file) if super::root().join(&file).is_file() => {}
                Ok(file) => problems.push(format!(
                    "{place}: runbook_url {url} points at {file}, which does not exist"
                )),
                Err(problem) => problems.push(format!("{place}: {problem}")),
            }
        }
        if rule.annotations.get("runbook_url") != Some(&runbook_url(alert)) {
            problems.push(format!(
                "{place}: runbook_url must be {} (run `cargo xtask codegen`)",
                runbook_url(alert)
            ));
        }
        for label in rule.labels.keys() {
            if ["ip", "enode", "onion", "peer_id"].contains(&label.as_str()) {
                problems.push(format!(
                    "{place}: label {label} would carry a peer identifier"
                ));
            }
        }
    }
    for alert in alert_names(rules) {
        let runbook = format!("{RUNBOOKS_DIR}/{alert}.md");
        match read(&runbook) {
            Ok(text) => {
                for section in ["Meaning", "Impact", "Diagnosis", "Mitigation"] {
                    if !text
                        .lines()
                        .any(|line| line.trim() == format!("## {section}"))
                    {
                        problems.push(format!("{runbook}: section `## {section}` missing"));
                    }
                }
                if !text.starts_with(&format!("# {alert}")) {
                    problems.push(format!("{runbook}: must start with `# {alert}`"));
                }
            }
            Err(_) => problems.push(format!("{alert}: runbook {runbook} missing")),
        }
        match tested.get(&alert) {
            Some((true, true)) => {}
            Some((firing, quiet)) => problems.push(format!(
                "{alert}: promtool tests need a firing and a quiet case (firing: {firing}, quiet: {quiet})"
            )),
            None => problems.push(format!("{alert}: no promtool test in {RULE_TESTS_DIR}")),
        }
    }
    let groups: BTreeSet<&str> = rules.iter().map(|rule| rule.group.as_str()).collect();
    for group in groups {
        let test = format!("{RULE_TESTS_DIR}/{group}_test.yaml");
        if !super::root().join(&test).is_file() {
            problems.push(format!("group {group}: test file {test} missing"));
        }
    }
    let policies = network_policy_names()?;
    for doc in super::files(DOCS_DIR, ".md")? {
        let text = std::fs::read_to_string(&doc)?;
        problems.extend(doc_link_problems(&super::shown(&doc), &text, &policies));
    }
    for runbook in super::files(RUNBOOKS_DIR, ".md")? {
        let text = std::fs::read_to_string(&runbook)?;
        problems.extend(doc_link_problems(&super::shown(&runbook), &text, &policies));
        let name = runbook
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !alert_names(rules).contains(&name) {
            problems.push(format!("{}: no alert of that name", super::shown(&runbook)));
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}

/// `promtool check rules` and `promtool test rules` over the rule file and every test file.
pub fn promtool() -> Result<String> {
    let mut check = Command::new("promtool");
    check.args(["check", "rules", RULES_FILE]);
    let mut out = super::run(check)?;
    let mut test = Command::new("promtool");
    test.args(["test", "rules"]);
    for path in super::files(RULE_TESTS_DIR, ".yaml")? {
        test.arg(path);
    }
    out.push_str(&super::run(test)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promtool_checks_and_tests_the_rules() {
        if !super::super::tool("promtool", "promtool check/test rules") {
            return;
        }
        let started = std::time::Instant::now();
        let out = promtool().unwrap();
        println!("{out}promtool took {:?}", started.elapsed());
    }

    #[test]
    fn every_alert_has_severity_annotations_runbook_and_tests() {
        check_static(&rules().unwrap()).unwrap();
    }

    #[test]
    fn rules_use_only_known_metric_names() {
        let rules = rules().unwrap();
        let recorded: Vec<String> = rules
            .iter()
            .filter_map(|rule| rule.record.clone())
            .collect();
        let catalog = read(super::super::promql::CATALOG_FILE).unwrap();
        let known = super::super::promql::known_names(&catalog, &recorded);
        let expressions: Vec<(String, String)> = rules
            .iter()
            .map(|rule| {
                let name = rule
                    .alert
                    .clone()
                    .or(rule.record.clone())
                    .unwrap_or_default();
                (format!("{RULES_FILE}: {name}"), rule.expr.clone())
            })
            .collect();
        super::super::promql::check_names(&expressions, &known).unwrap();
    }

    #[test]
    fn runbook_links_and_network_policies_are_checked() {
        let policies = vec!["gethrelay-p2p".to_string()];
        let text =
            "See [the other](GethRelayDown.md) and [gone](Nope.md), [web](https://x.example/a).\n\
                    NetworkPolicy `gethrelay-p2p` and NetworkPolicy `gethrelay-only-onion-p2p`.";
        let problems = doc_link_problems("docs/runbooks/r.md", text, &policies);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("Nope.md"), "{problems:?}");
        assert!(
            problems[1].contains("gethrelay-only-onion-p2p"),
            "{problems:?}"
        );
        assert!(network_policy_names()
            .unwrap()
            .contains(&"gethrelay-p2p".to_string()));
        assert_eq!(
            runbook_file(&runbook_url("GethRelayDown")).unwrap(),
            format!("{RUNBOOKS_DIR}/GethRelayDown.md")
        );
        assert!(runbook_file("https://elsewhere.example/GethRelayDown.md").is_err());
    }

    #[test]
    fn runbook_url_rewrite_keeps_everything_else() {
        let text = "a: 1\n      runbook_url: https://old.example/x/GethRelayDown.md\nb: 2";
        let want = format!(
            "a: 1\n      runbook_url: {}\nb: 2",
            runbook_url("GethRelayDown")
        );
        assert_eq!(with_runbook_urls(text), want);
    }
}
