//! The Alertmanager routing: amtool's checks, the receivers per alert, secrets only via files,
//! inhibitions that name their cause (proved against a real Alertmanager in
//! `alertmanager_inhibition.rs`).

use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_norway::Value;

use super::{get, get_str, seq, ALERTMANAGER_FILE};

/// The receivers `amtool config routes test` must print for each set of labels.
pub const EXPECTED_ROUTES: &[(&[&str], &str)] = &[
    (
        &[
            "severity=critical",
            "alertname=GethRelayClearnetLeak",
            "namespace=gethrelay",
        ],
        "slack,email",
    ),
    (
        &[
            "severity=warning",
            "alertname=GethRelayLowPeerCount",
            "namespace=gethrelay",
        ],
        "slack",
    ),
    // Our alerts in another namespace (the monitoring overlay for an existing fleet).
    (
        &[
            "severity=critical",
            "alertname=GethRelayDown",
            "namespace=eth",
        ],
        "slack,email",
    ),
    (
        &[
            "severity=info",
            "alertname=RelaywatchTorControlUnparsedLines",
            "namespace=gethrelay",
        ],
        "null",
    ),
    (
        &[
            "severity=none",
            "alertname=Watchdog",
            "namespace=monitoring",
        ],
        "deadmansswitch",
    ),
    // The chart's alerts about the relays' namespace reach the gethrelay channel.
    (
        &[
            "severity=warning",
            "alertname=KubePodCrashLooping",
            "namespace=gethrelay",
        ],
        "slack",
    ),
    // The chart's cluster-wide alerts do not.
    (
        &[
            "severity=critical",
            "alertname=KubeControllerManagerDown",
            "namespace=kube-system",
        ],
        "cluster",
    ),
    (
        &[
            "severity=warning",
            "alertname=TargetDown",
            "namespace=monitoring",
        ],
        "cluster",
    ),
];

/// Receiver fields that would hold a secret inline; their `*_file` variants are the only way.
const INLINE_SECRETS: &[&str] = &[
    "slack_api_url",
    "api_url",
    "url",
    "smtp_auth_password",
    "auth_password",
    "auth_secret",
    "smtp_auth_secret",
];

/// The target matcher that keeps an inhibition away from our alerts.
const NOT_OURS: &str = r#"alertname !~ "GethRelay.+|Relaywatch.+""#;

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

fn strings(value: &Value, key: &str) -> Vec<String> {
    seq(get(value, key))
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Problems of the inhibitions that need no tool: every inhibition that can reach our alerts
/// names its source alert (a cause, not "any critical"), and none reaches the leak.
pub fn inhibition_problems(config: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, rule) in seq(get(config, "inhibit_rules")).iter().enumerate() {
        let sources = strings(rule, "source_matchers");
        let targets = strings(rule, "target_matchers");
        let place = format!("inhibit_rules[{index}]");
        if targets.iter().any(|matcher| matcher == NOT_OURS) {
            continue;
        }
        let names_cause = sources
            .iter()
            .any(|matcher| matcher.starts_with("alertname = "));
        let targets_all = !targets
            .iter()
            .any(|matcher| matcher.starts_with("alertname"));
        if !names_cause {
            problems.push(format!(
                "{place}: an inhibition that reaches GethRelay*/Relaywatch* alerts must name its source alert \
                 (`alertname = \"…\"`), or exclude ours with `{NOT_OURS}`"
            ));
        }
        let reaches_leak = targets_all
            || targets.iter().any(|matcher| {
                matcher.contains("GethRelayClearnetLeak")
                    || matcher.contains("RelaywatchLeakRemovalFailing")
            });
        let is_info_only = targets
            .iter()
            .any(|matcher| matcher == r#"severity = "info""#);
        if reaches_leak && !is_info_only {
            problems.push(format!(
                "{place}: nothing may inhibit GethRelayClearnetLeak or RelaywatchLeakRemovalFailing"
            ));
        }
    }
    problems
}

/// Checks that need no tool: secrets via files only, inhibitions by cause, a real heartbeat.
pub fn check_static(config: &Value) -> Result<()> {
    let mut problems = Vec::new();
    let mut inline = Vec::new();
    find_inline_secrets(config, "", &mut inline);
    for path in inline {
        problems.push(format!("{path}: secrets only via *_file"));
    }
    problems.extend(inhibition_problems(config));
    let watchdog = seq(get(config, "route").and_then(|route| get(route, "routes")))
        .iter()
        .find(|route| strings(route, "matchers") == [r#"alertname = "Watchdog""#])
        .and_then(|route| get_str(route, "receiver"));
    let notifies = |name: &str| {
        seq(get(config, "receivers"))
            .iter()
            .find(|receiver| get_str(receiver, "name") == Some(name))
            .and_then(Value::as_mapping)
            .is_some_and(|receiver| receiver.len() > 1)
    };
    match watchdog {
        Some(name) if notifies(name) => {}
        other => problems.push(format!(
            "route: Watchdog must go to a dead man's switch receiver that notifies something, not {other:?}"
        )),
    }
    if !problems.is_empty() {
        bail!("{ALERTMANAGER_FILE}:\n{}", problems.join("\n"));
    }
    Ok(())
}

/// The config as Debian's Alertmanager 0.25 can load it: each webhook `url_file` (newer than
/// 0.25; the chart runs 0.34) becomes a placeholder `url`. Everything else is the file's own.
pub fn for_alertmanager_025(config: &Value) -> Value {
    let mut config = config.clone();
    for receiver in config
        .get_mut("receivers")
        .and_then(Value::as_sequence_mut)
        .into_iter()
        .flatten()
    {
        for webhook in receiver
            .get_mut("webhook_configs")
            .and_then(Value::as_sequence_mut)
            .into_iter()
            .flatten()
        {
            if let Some(mapping) = webhook.as_mapping_mut() {
                if mapping.remove("url_file").is_some() {
                    mapping.insert(
                        "url".into(),
                        "http://127.0.0.1:9/placeholder-for-url_file".into(),
                    );
                }
            }
        }
    }
    config
}

/// The file amtool checks: the real one, or, when this amtool predates webhook `url_file`, a
/// copy from [`for_alertmanager_025`] (said on stdout).
fn checkable_file() -> Result<String> {
    let mut check = Command::new("amtool");
    check.args(["check-config", ALERTMANAGER_FILE]);
    let Err(error) = super::run(check) else {
        return Ok(ALERTMANAGER_FILE.to_string());
    };
    if !format!("{error:#}").contains("field url_file not found") {
        return Err(error);
    }
    let copy = std::env::temp_dir().join(format!("xtask-alertmanager-{}.yaml", std::process::id()));
    let config = for_alertmanager_025(&super::read_yaml(ALERTMANAGER_FILE)?);
    std::fs::write(&copy, serde_norway::to_string(&config)?)
        .with_context(|| format!("cannot write {}", copy.display()))?;
    let mut check = Command::new("amtool");
    check.arg("check-config").arg(&copy);
    super::run(check)?;
    println!(
        "amtool predates webhook url_file (Alertmanager 0.25): checked {} with url_file as a placeholder url",
        copy.display()
    );
    Ok(copy.display().to_string())
}

/// `amtool check-config` and `amtool config routes test` for each expected route.
pub fn amtool() -> Result<()> {
    let file = checkable_file()?;
    let mut problems = Vec::new();
    for (labels, expected) in EXPECTED_ROUTES {
        let mut test = Command::new("amtool");
        test.args(["config", "routes", "test", "--config.file", &file]);
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

/// The route of the leak's fast path: its `group_wait` (what [`super::rules`]' budget adds).
pub fn leak_route_group_wait(config: &Value) -> Option<String> {
    seq(get(config, "route").and_then(|route| get(route, "routes")))
        .iter()
        .find(|route| strings(route, "matchers") == [r#"alertname = "GethRelayClearnetLeak""#])
        .and_then(|route| get_str(route, "group_wait"))
        .map(str::to_string)
}

#[cfg(test)]
#[path = "alertmanager_inhibition.rs"]
mod inhibition;

#[cfg(test)]
mod tests {
    use super::super::read_yaml;
    use super::*;

    #[test]
    fn amtool_accepts_the_config_and_routes_by_alert() {
        if !super::super::tool("amtool", "amtool check-config / config routes test") {
            return;
        }
        let started = std::time::Instant::now();
        amtool().unwrap();
        println!("amtool took {:?}", started.elapsed());
    }

    #[test]
    fn secrets_via_files_inhibitions_by_cause_and_a_heartbeat() {
        check_static(&read_yaml(ALERTMANAGER_FILE).unwrap()).unwrap();
    }

    #[test]
    fn inline_secrets_blanket_inhibitions_and_a_silent_watchdog_are_found() {
        let config: Value = serde_norway::from_str(
            "receivers: [{name: s, slack_configs: [{api_url: 'https://x'}]}, {name: 'null'}]\n\
             route: {receiver: 'null', routes: [{receiver: 'null', matchers: ['alertname = \"Watchdog\"']}]}\n\
             inhibit_rules:\n\
             - {source_matchers: ['severity = \"critical\"'], target_matchers: ['severity = \"warning\"'], equal: [namespace, pod]}\n",
        )
        .unwrap();
        let error = check_static(&config).unwrap_err().to_string();
        assert!(
            error.contains(".receivers[0].slack_configs[0].api_url"),
            "{error}"
        );
        assert!(error.contains("must name its source alert"), "{error}");
        assert!(
            error.contains("nothing may inhibit GethRelayClearnetLeak"),
            "{error}"
        );
        assert!(
            error.contains("Watchdog must go to a dead man's switch"),
            "{error}"
        );
    }

    #[test]
    fn webhook_url_files_become_placeholders_for_old_amtool_only() {
        let config = read_yaml(ALERTMANAGER_FILE).unwrap();
        let copy = for_alertmanager_025(&config);
        let webhooks = |config: &Value| -> String {
            seq(get(config, "receivers"))
                .iter()
                .filter_map(|receiver| get(receiver, "webhook_configs"))
                .map(|webhooks| serde_norway::to_string(webhooks).unwrap())
                .collect()
        };
        assert!(webhooks(&config).contains("url_file:"));
        let text = webhooks(&copy);
        assert!(!text.contains("url_file:"), "{text}");
        assert!(text.contains("placeholder-for-url_file"), "{text}");
        assert_eq!(get(&copy, "global"), get(&config, "global"));
        // Only that changed.
        assert_eq!(get(&copy, "route"), get(&config, "route"));
        assert_eq!(get(&copy, "inhibit_rules"), get(&config, "inhibit_rules"));
    }

    #[test]
    fn the_leak_route_waits_for_nothing() {
        let config = read_yaml(ALERTMANAGER_FILE).unwrap();
        assert_eq!(leak_route_group_wait(&config).as_deref(), Some("0s"));
    }
}
