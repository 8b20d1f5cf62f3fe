//! The lab's Alertmanager config: `deploy/alertmanager/alertmanager.yaml` with only what must
//! change on one machine changed here, by code, and listed.
//!
//! What changes: every `*_file` path (secrets mounted from a Kubernetes Secret) moves to the
//! same file name in the lab's secrets directory, where the lab writes the sink's webhook URL
//! and a throwaway SMTP password; the SMTP smarthost becomes the lab's SMTP sink without TLS;
//! template globs move to the secrets directory (no `.tmpl` file is shipped, so they match
//! nothing there, as in the cluster); and the route timers and `resolve_timeout` are divided by
//! the time scale. Routes, matchers, receivers' templates and inhibitions are kept as they are,
//! which is what the lab tests.
//!
//! A receiver kind the lab has no sink for, or a Slack URL written inline, is an error: the
//! lab must never notify anything outside the machine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_norway::{Mapping, Value};

use crate::monitoring::{check_time_scale, scale_duration};

/// Route keys that hold a duration.
const ROUTE_TIMERS: &[&str] = &["group_wait", "group_interval", "repeat_interval"];
/// Receiver kinds the lab has a sink for.
const SINK_KINDS: &[&str] = &["slack_configs", "email_configs"];
/// Keys that hold a secret URL inline; the lab refuses them (they would leave the machine).
const INLINE_URL_KEYS: &[&str] = &["slack_api_url", "api_url"];
/// The password the lab writes for the SMTP sink, which accepts any.
pub const LAB_SMTP_PASSWORD: &str = "lab-smtp-password";

/// One `*_file` key of the config: where it is, and the file name it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// YAML path of the key, e.g. `global.slack_api_url_file`.
    pub key_path: String,
    /// The original path, e.g. `/etc/alertmanager/secrets/alertmanager-notifications/smtp-password`.
    pub original: String,
    /// The file name the lab writes under its secrets directory, e.g. `smtp-password`.
    pub file_name: String,
}

/// Every `*_file` key of the config, anywhere in it, in document order.
pub fn secret_files(alertmanager_yaml: &str) -> Result<Vec<SecretFile>> {
    let config: Value =
        serde_norway::from_str(alertmanager_yaml).context("alertmanager config: not valid YAML")?;
    let mut found = Vec::new();
    collect_secret_files(&config, "", &mut found)?;
    // Two different secrets under one file name would read the same lab file.
    let mut by_name: BTreeMap<&str, &str> = BTreeMap::new();
    for secret in &found {
        if let Some(other) = by_name.insert(&secret.file_name, &secret.original) {
            if other != secret.original {
                bail!(
                    "alertmanager config: {other} and {} share the file name `{}`; the lab keeps secrets by file name",
                    secret.original,
                    secret.file_name
                );
            }
        }
    }
    Ok(found)
}

fn collect_secret_files(value: &Value, path: &str, found: &mut Vec<SecretFile>) -> Result<()> {
    match value {
        Value::Mapping(mapping) => {
            for (key, child) in mapping {
                let key = key.as_str().unwrap_or("?");
                let child_path = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                if key.ends_with("_file") {
                    let original = child.as_str().with_context(|| {
                        format!("alertmanager config: {child_path} is not a path")
                    })?;
                    let file_name = Path::new(original)
                        .file_name()
                        .and_then(|name| name.to_str())
                        .filter(|name| !name.is_empty())
                        .with_context(|| {
                            format!(
                                "alertmanager config: {child_path} `{original}` has no file name"
                            )
                        })?;
                    found.push(SecretFile {
                        key_path: child_path,
                        original: original.to_string(),
                        file_name: file_name.to_string(),
                    });
                } else {
                    collect_secret_files(child, &child_path, found)?;
                }
            }
        }
        Value::Sequence(items) => {
            for (index, child) in items.iter().enumerate() {
                collect_secret_files(child, &format!("{path}[{index}]"), found)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// What the lab writes into each secret file: the Slack sink's URL for Slack webhook URLs, a
/// throwaway password for SMTP; any other secret is an error (the lab cannot make one up).
pub fn secret_contents(alertmanager_yaml: &str, slack_url: &str) -> Result<Vec<(String, String)>> {
    let mut contents = Vec::new();
    for secret in secret_files(alertmanager_yaml)? {
        let key = secret.key_path.rsplit('.').next().unwrap_or_default();
        let content = match key {
            "slack_api_url_file" => slack_url,
            "api_url_file" if secret.key_path.contains("slack_configs") => slack_url,
            "smtp_auth_password_file" | "auth_password_file" => LAB_SMTP_PASSWORD,
            // The dead man's switch's URL: lab_config removes that webhook, nothing reads it.
            "url_file" if secret.key_path.contains("webhook_configs") => continue,
            _ => bail!(
                "alertmanager config: the lab has nothing to write into {} ({}); teach crates/lab/src/monitoring/alertmanager/config.rs",
                secret.key_path,
                secret.original
            ),
        };
        match contents.iter().find(|(name, _)| name == &secret.file_name) {
            None => contents.push((secret.file_name, content.to_string())),
            Some((_, other)) if other == content => {}
            Some(_) => bail!(
                "alertmanager config: {} is read both as a Slack URL and as a password ({}); give each secret its own file",
                secret.original,
                secret.key_path
            ),
        }
    }
    Ok(contents)
}

/// The lab's Alertmanager config (YAML) and the list of what differs from the source file.
pub fn lab_config(
    alertmanager_yaml: &str,
    secrets_dir: &Path,
    smtp: SocketAddr,
    time_scale: f64,
) -> Result<(String, Vec<String>)> {
    check_time_scale(time_scale)?;
    let secrets = secret_files(alertmanager_yaml)?;
    if !secrets
        .iter()
        .any(|secret| is_slack_url_file(&secret.key_path))
    {
        bail!(
            "alertmanager config has no slack_api_url_file (nor a slack_configs api_url_file): the lab points Slack at \
             its sink by writing that file; read the webhook URL from a file as deploy/alertmanager/alertmanager.yaml does"
        );
    }
    let mut config: Value =
        serde_norway::from_str(alertmanager_yaml).context("alertmanager config: not valid YAML")?;
    let root = config
        .as_mapping_mut()
        .context("alertmanager config: not a mapping")?;
    let mut changes = Vec::new();

    refuse_inline_urls(root, "")?;
    move_secret_files(root, secrets_dir);
    for secret in &secrets {
        changes.push(format!(
            "{}: {} → {}",
            secret.key_path,
            secret.original,
            secrets_dir.join(&secret.file_name).display()
        ));
    }

    let global = mapping_entry(root, "global")?;
    let smtp_text = smtp.to_string();
    let old = global.insert("smtp_smarthost".into(), Value::String(smtp_text.clone()));
    changes.push(format!(
        "global.smtp_smarthost: {} → {smtp_text} (the lab's SMTP sink)",
        show(old.as_ref())
    ));
    let old = global.insert("smtp_require_tls".into(), Value::Bool(false));
    changes.push(format!(
        "global.smtp_require_tls: {} → false (the sink speaks plain SMTP on loopback)",
        show(old.as_ref())
    ));
    if let Some(timeout) = global.get_mut("resolve_timeout") {
        scale_timer(timeout, "global.resolve_timeout", time_scale, &mut changes)?;
    }

    if !root.contains_key("route") {
        bail!("alertmanager config: no `route:`; Alertmanager needs a root route");
    }
    check_receivers(root, &smtp_text, &mut changes)?;

    if let Some(templates) = root.get_mut("templates") {
        let templates = templates
            .as_sequence_mut()
            .context("alertmanager config: templates is not a list")?;
        for template in templates {
            let glob = template
                .as_str()
                .context("alertmanager config: a template is not a string")?
                .to_string();
            let name = Path::new(&glob)
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("*.tmpl");
            let moved = secrets_dir.join(name).display().to_string();
            changes.push(format!(
                "templates: {glob} → {moved} (the repository ships no template file, so this matches nothing, as in the cluster)"
            ));
            *template = Value::String(moved);
        }
    }

    let route = root
        .get_mut("route")
        .context("alertmanager config: no `route:`; Alertmanager needs a root route")?;
    scale_route(route, "route", time_scale, &mut changes)?;

    let yaml =
        serde_norway::to_string(&config).context("cannot write the Alertmanager config as YAML")?;
    let header = "# Generated by the lab (crates/lab/src/monitoring/alertmanager/config.rs) from\n\
                  # deploy/alertmanager/alertmanager.yaml. Never commit it.\n";
    Ok((format!("{header}{yaml}"), changes))
}

fn is_slack_url_file(key_path: &str) -> bool {
    key_path == "global.slack_api_url_file"
        || (key_path.contains("slack_configs") && key_path.ends_with(".api_url_file"))
}

fn show(value: Option<&Value>) -> String {
    match value {
        None => "(unset)".to_string(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// The mapping under `key`, created empty when absent.
fn mapping_entry<'m>(mapping: &'m mut Mapping, key: &str) -> Result<&'m mut Mapping> {
    mapping
        .entry(Value::String(key.to_string()))
        .or_insert_with(|| Value::Mapping(Mapping::new()))
        .as_mapping_mut()
        .with_context(|| format!("alertmanager config: `{key}` is not a mapping"))
}

fn refuse_inline_urls(mapping: &Mapping, path: &str) -> Result<()> {
    for (key, child) in mapping {
        let key = key.as_str().unwrap_or("?");
        let child_path = if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        };
        if INLINE_URL_KEYS.contains(&key) {
            bail!("alertmanager config: {child_path} holds a URL inline; the lab would notify it for real. Read it from a file (`{key}_file`) instead");
        }
        match child {
            Value::Mapping(inner) => refuse_inline_urls(inner, &child_path)?,
            Value::Sequence(items) => {
                for (index, item) in items.iter().enumerate() {
                    if let Value::Mapping(inner) = item {
                        refuse_inline_urls(inner, &format!("{child_path}[{index}]"))?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn move_secret_files(mapping: &mut Mapping, secrets_dir: &Path) {
    for (key, child) in mapping.iter_mut() {
        let is_file = key.as_str().is_some_and(|key| key.ends_with("_file"));
        match child {
            Value::String(path) if is_file => {
                if let Some(name) = Path::new(path.as_str()).file_name() {
                    *path = secrets_dir.join(name).display().to_string();
                }
            }
            Value::Mapping(inner) => move_secret_files(inner, secrets_dir),
            Value::Sequence(items) => {
                for item in items {
                    if let Value::Mapping(inner) = item {
                        move_secret_files(inner, secrets_dir);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Receivers of routes that match exactly one thing, `alertname = "Watchdog"`.
fn watchdog_receivers(route: &Value, found: &mut Vec<String>) {
    let matchers: Vec<&str> = route["matchers"]
        .as_sequence()
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let [only] = matchers.as_slice() {
        let words: String = only.chars().filter(|c| !c.is_whitespace()).collect();
        if words == "alertname=\"Watchdog\"" || words == "alertname=Watchdog" {
            if let Some(receiver) = route["receiver"].as_str() {
                found.push(receiver.to_string());
            }
        }
    }
    for child in route["routes"].as_sequence().into_iter().flatten() {
        watchdog_receivers(child, found);
    }
}

/// Refuses receivers the lab has no sink for, and points e-mail receivers' own smarthost (if
/// any) at the sink.
fn check_receivers(root: &mut Mapping, smtp: &str, changes: &mut Vec<String>) -> Result<()> {
    let mut watchdog = Vec::new();
    if let Some(route) = root.get("route") {
        watchdog_receivers(route, &mut watchdog);
    }
    let Some(receivers) = root.get_mut("receivers") else {
        return Ok(());
    };
    let receivers = receivers
        .as_sequence_mut()
        .context("alertmanager config: receivers is not a list")?;
    for (index, receiver) in receivers.iter_mut().enumerate() {
        let receiver = receiver
            .as_mapping_mut()
            .with_context(|| format!("alertmanager config: receivers[{index}] is not a mapping"))?;
        let name = receiver
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        // The dead man's switch (a webhook that only Watchdog reaches) would call a service
        // outside this machine, and no Watchdog rule runs in the lab: it keeps no integration.
        if watchdog.contains(&name) && receiver.contains_key("webhook_configs") {
            receiver.remove("webhook_configs");
            changes.push(format!(
                "receiver {name}: webhook_configs removed (the dead man's switch only Watchdog reaches; the lab runs no Watchdog and must not call out)"
            ));
        }
        for (key, configs) in receiver.iter_mut() {
            let key = key.as_str().unwrap_or("?");
            if key == "name" {
                continue;
            }
            if !SINK_KINDS.contains(&key) {
                bail!(
                    "alertmanager config: receiver `{name}` has {key}, for which the lab has no sink (it has Slack and e-mail); \
                     add a sink to crates/lab/src/monitoring/sinks before adding the receiver"
                );
            }
            if key != "email_configs" {
                continue;
            }
            let configs = configs
                .as_sequence_mut()
                .with_context(|| format!("receiver `{name}`: {key} is not a list"))?;
            for (position, config) in configs.iter_mut().enumerate() {
                let config = config.as_mapping_mut().with_context(|| {
                    format!("receiver `{name}`: {key}[{position}] is not a mapping")
                })?;
                for (field, value) in [
                    ("smarthost", Value::String(smtp.to_string())),
                    ("require_tls", Value::Bool(false)),
                ] {
                    if let Some(old) = config.get_mut(field) {
                        changes.push(format!(
                            "receiver {name} {key}[{position}].{field}: {} → {}",
                            show(Some(old)),
                            show(Some(&value))
                        ));
                        *old = value;
                    }
                }
            }
        }
    }
    Ok(())
}

fn scale_timer(
    value: &mut Value,
    path: &str,
    time_scale: f64,
    changes: &mut Vec<String>,
) -> Result<()> {
    let text = value
        .as_str()
        .with_context(|| format!("alertmanager config: {path} is not a duration such as 5m"))?
        .to_string();
    let (millis, scaled) = scale_duration(&text, time_scale, 1_000)
        .with_context(|| format!("alertmanager config: {path}"))?;
    // Zero stays zero: the leak's route sends at once (group_wait: 0s) in production too.
    let scaled = if crate::timescale::parse_duration(&text).ok() == Some(0) {
        text.clone()
    } else {
        let _ = millis;
        scaled
    };
    if scaled != text {
        changes.push(format!(
            "{path}: {text} → {scaled} (/ {time_scale}, at least 1s)"
        ));
    }
    *value = Value::String(scaled);
    Ok(())
}

fn scale_route(
    route: &mut Value,
    path: &str,
    time_scale: f64,
    changes: &mut Vec<String>,
) -> Result<()> {
    let route = route
        .as_mapping_mut()
        .with_context(|| format!("alertmanager config: {path} is not a mapping"))?;
    for timer in ROUTE_TIMERS {
        if let Some(value) = route.get_mut(*timer) {
            scale_timer(value, &format!("{path}.{timer}"), time_scale, changes)?;
        }
    }
    if let Some(children) = route.get_mut("routes") {
        let children = children
            .as_sequence_mut()
            .with_context(|| format!("alertmanager config: {path}.routes is not a list"))?;
        for (index, child) in children.iter_mut().enumerate() {
            scale_route(
                child,
                &format!("{path}.routes[{index}]"),
                time_scale,
                changes,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
