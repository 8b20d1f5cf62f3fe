//! The Alertmanager routing: amtool's checks, the receivers per severity, secrets only via files.

use std::process::Command;

use anyhow::{bail, Result};
use serde_norway::Value;

use super::{get, seq, ALERTMANAGER_FILE};

/// The receivers `amtool config routes test` must print for each set of labels.
pub const EXPECTED_ROUTES: &[(&[&str], &str)] = &[
    (
        &["severity=critical", "alertname=GethRelayClearnetLeak"],
        "slack,email",
    ),
    (
        &["severity=warning", "alertname=GethRelayLowPeerCount"],
        "slack",
    ),
    (
        &[
            "severity=info",
            "alertname=RelaywatchTorControlUnparsedLines",
        ],
        "null",
    ),
    (&["severity=none", "alertname=Watchdog"], "null"),
];

/// Receiver fields that would hold a secret inline; their `*_file` variants are the only way.
const INLINE_SECRETS: &[&str] = &[
    "slack_api_url",
    "api_url",
    "smtp_auth_password",
    "auth_password",
    "auth_secret",
    "smtp_auth_secret",
];

fn find_inline_secrets(value: &Value, path: &str, found: &mut Vec<String>) {
    match value {
        Value::Mapping(mapping) => {
            for (key, child) in mapping {
                let key = key.as_str().unwrap_or_default();
                let child_path = format!("{path}.{key}");
                if INLINE_SECRETS.contains(&key) {
                    found.push(child_path.clone());
                }
                find_inline_secrets(child, &child_path, found);
            }
        }
        Value::Sequence(items) => {
            for (index, child) in items.iter().enumerate() {
                find_inline_secrets(child, &format!("{path}[{index}]"), found);
            }
        }
        _ => {}
    }
}

/// Checks that need no tool: secrets via files only; the per-relay inhibition exists.
pub fn check_static(config: &Value) -> Result<()> {
    let mut problems = Vec::new();
    let mut inline = Vec::new();
    find_inline_secrets(config, "", &mut inline);
    for path in inline {
        problems.push(format!("{path}: secrets only via *_file"));
    }
    let per_relay = seq(get(config, "inhibit_rules")).iter().any(|rule| {
        let equal: Vec<&str> = seq(get(rule, "equal"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let matchers = |key: &str| -> Vec<&str> {
            seq(get(rule, key))
                .iter()
                .filter_map(Value::as_str)
                .collect()
        };
        equal == ["namespace", "pod"]
            && matchers("source_matchers").contains(&r#"severity = "critical""#)
            && matchers("target_matchers").contains(&r#"severity = "warning""#)
    });
    if !per_relay {
        problems.push(
            "inhibit_rules: critical must inhibit warning with equal [namespace, pod]".into(),
        );
    }
    if !problems.is_empty() {
        bail!("{ALERTMANAGER_FILE}:\n{}", problems.join("\n"));
    }
    Ok(())
}

/// `amtool check-config` and `amtool config routes test` for each expected route.
pub fn amtool() -> Result<()> {
    let mut check = Command::new("amtool");
    check.args(["check-config", ALERTMANAGER_FILE]);
    super::run(check)?;
    let mut problems = Vec::new();
    for (labels, expected) in EXPECTED_ROUTES {
        let mut test = Command::new("amtool");
        test.args([
            "config",
            "routes",
            "test",
            "--config.file",
            ALERTMANAGER_FILE,
        ]);
        test.args(labels.iter());
        let got = super::run(test)?;
        if got.trim() != *expected {
            problems.push(format!(
                "{labels:?}: receivers {:?}, want {expected:?}",
                got.trim()
            ));
        }
    }
    if !problems.is_empty() {
        bail!("{ALERTMANAGER_FILE} routes:\n{}", problems.join("\n"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::read_yaml;
    use super::*;

    #[test]
    fn amtool_accepts_the_config_and_routes_by_severity() {
        if !super::super::tool("amtool", "amtool check-config / config routes test") {
            return;
        }
        let started = std::time::Instant::now();
        amtool().unwrap();
        println!("amtool took {:?}", started.elapsed());
    }

    #[test]
    fn secrets_only_via_files_and_relays_inhibit_their_warnings() {
        check_static(&read_yaml(ALERTMANAGER_FILE).unwrap()).unwrap();
    }

    #[test]
    fn inline_secrets_are_found() {
        let config: Value = serde_norway::from_str(
            "receivers: [{name: s, slack_configs: [{api_url: 'https://x'}]}]\ninhibit_rules: []",
        )
        .unwrap();
        let error = check_static(&config).unwrap_err().to_string();
        assert!(
            error.contains(".receivers[0].slack_configs[0].api_url"),
            "{error}"
        );
        assert!(error.contains("equal [namespace, pod]"), "{error}");
    }
}
