use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::*;

fn source() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/alertmanager/alertmanager.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn lab(yaml: &str, time_scale: f64) -> anyhow::Result<(Json, Vec<String>)> {
    let smtp = "127.0.0.1:2525".parse().unwrap();
    let (text, changes) = lab_config(yaml, Path::new("/lab/secrets"), smtp, time_scale)?;
    Ok((serde_norway::from_str(&text).unwrap(), changes))
}

#[test]
fn real_config_points_secrets_and_smtp_at_the_lab() {
    let (config, changes) = lab(&source(), 20.0).unwrap();
    let global = &config["global"];
    assert_eq!(
        global["slack_api_url_file"],
        "/lab/secrets/slack-webhook-url"
    );
    assert_eq!(
        global["smtp_auth_password_file"],
        "/lab/secrets/smtp-password"
    );
    assert_eq!(global["smtp_smarthost"], "127.0.0.1:2525");
    assert_eq!(global["smtp_require_tls"], false);
    assert_eq!(global["resolve_timeout"], "15s");
    // Kept as they are: sender, user, routing.
    assert_eq!(global["smtp_from"], "alertmanager@example.com");
    assert_eq!(config["route"]["group_by"][1], "alertname");
    assert_eq!(config["route"]["group_wait"], "1s500ms");
    assert_eq!(config["route"]["group_interval"], "15s");
    assert_eq!(config["route"]["repeat_interval"], "36m");
    assert_eq!(config["route"]["routes"][2]["receiver"], "slack");
    assert_eq!(config["templates"][0], "/lab/secrets/*.tmpl");
    assert_eq!(config["inhibit_rules"].as_array().unwrap().len(), 4);

    let changes = changes.join("\n");
    for expected in [
        "global.slack_api_url_file: /etc/alertmanager/secrets/alertmanager-notifications/slack-webhook-url → /lab/secrets/slack-webhook-url",
        "global.smtp_smarthost: smtp.example.com:587 → 127.0.0.1:2525",
        "global.smtp_require_tls: true → false",
        "route.group_wait: 30s → 1s500ms",
        "global.resolve_timeout: 5m → 15s",
        "templates: /etc/alertmanager/config/*.tmpl → /lab/secrets/*.tmpl",
    ] {
        assert!(changes.contains(expected), "missing `{expected}` in:\n{changes}");
    }
}

#[test]
fn child_route_timers_are_scaled_too() {
    let yaml = source().replacen(
        "          matchers: ['severity = \"warning\"']\n",
        "          matchers: ['severity = \"warning\"']\n          group_wait: 1m\n          routes:\n            - receiver: email\n              repeat_interval: 1h\n",
        1,
    );
    let (config, _) = lab(&yaml, 20.0).unwrap();
    let warning = &config["route"]["routes"][4]["routes"][2];
    assert_eq!(warning["group_wait"], "3s");
    assert_eq!(warning["routes"][0]["repeat_interval"], "3m");
}

#[test]
fn secret_files_and_their_contents() {
    let names: Vec<String> = secret_files(&source())
        .unwrap()
        .into_iter()
        .map(|secret| secret.file_name)
        .collect();
    assert_eq!(
        names,
        ["slack-webhook-url", "smtp-password", "deadmansswitch-url"]
    );
    // The dead man's switch's webhook is removed from the lab's config: nothing to write.
    let contents = secret_contents(&source(), "http://127.0.0.1:1/slack").unwrap();
    assert_eq!(
        contents,
        [
            (
                "slack-webhook-url".to_string(),
                "http://127.0.0.1:1/slack".to_string()
            ),
            ("smtp-password".to_string(), LAB_SMTP_PASSWORD.to_string()),
        ]
    );
}

#[test]
fn one_file_for_two_different_secrets_is_an_error() {
    let yaml = source().replace("smtp-password", "slack-webhook-url");
    let message = format!(
        "{:#}",
        secret_contents(&yaml, "http://127.0.0.1:1/slack").unwrap_err()
    );
    assert!(message.contains("both"), "{message}");
}

#[test]
fn receiver_level_secrets_and_smarthost_move_too() {
    let yaml = source().replace(
        "      - to: gethrelay-oncall@example.com\n",
        "      - to: gethrelay-oncall@example.com\n        smarthost: mail.example.org:25\n        require_tls: true\n        auth_password_file: /run/other/mail-password\n",
    );
    let (config, changes) = lab(&yaml, 20.0).unwrap();
    let email = &config["receivers"][4]["email_configs"][0];
    assert_eq!(email["smarthost"], "127.0.0.1:2525");
    assert_eq!(email["require_tls"], false);
    assert_eq!(email["auth_password_file"], "/lab/secrets/mail-password");
    let changes = changes.join("\n");
    assert!(
        changes.contains(
            "receiver email email_configs[0].smarthost: mail.example.org:25 → 127.0.0.1:2525"
        ),
        "{changes}"
    );
    assert!(
        changes.contains("receivers[4].email_configs[0].auth_password_file"),
        "{changes}"
    );
}

fn error(yaml: &str) -> String {
    format!("{:#}", lab(yaml, 20.0).unwrap_err())
}

#[test]
fn hostile_configs_are_clear_errors() {
    let real = source();
    let cases: Vec<(String, &str)> = vec![
        ("{{{".into(), "not valid YAML"),
        ("route: {receiver: x}".into(), "no slack_api_url_file"),
        (real.replace("  slack_api_url_file: /etc/alertmanager/secrets/alertmanager-notifications/slack-webhook-url\n", ""), "no slack_api_url_file"),
        (real.replace("        send_resolved: true\n        title", "        api_url: https://hooks.slack.com/x\n        send_resolved: true\n        title"), "holds a URL inline"),
        (real.replace("  - name: \"null\"\n", "  - name: \"null\"\n  - name: pager\n    pagerduty_configs: [{routing_key: x}]\n"), "no sink"),
        (real.replace("group_wait: 30s", "group_wait: half a minute"), "route.group_wait"),
        (real.replace("resolve_timeout: 5m", "resolve_timeout: [5m]"), "global.resolve_timeout is not a duration"),
        (real.replace("/etc/alertmanager/secrets/alertmanager-notifications/smtp-password", "/run/smtp/slack-webhook-url"), "share the file name"),
        (real.replace("smtp_auth_password_file: /etc/alertmanager/secrets/alertmanager-notifications/smtp-password", "smtp_auth_password_file: 7"), "is not a path"),
        (real.replace("route:\n  receiver: cluster", "router:\n  receiver: cluster"), "no `route:`"),
    ];
    for (yaml, expected) in cases {
        let message = error(&yaml);
        assert!(
            message.contains(expected),
            "expected `{expected}` in: {message}"
        );
    }
    let message = format!("{:#}", lab(&real, 0.5).unwrap_err());
    assert!(message.contains("time scale"), "{message}");
}
