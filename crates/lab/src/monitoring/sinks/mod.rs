//! In-process stand-ins for Slack and the SMTP relay: loopback servers that accept what
//! Alertmanager sends, answer as the real ones do, and record each notification.
//!
//! Each notification is appended as one JSON line to `<dir>/sinks/slack.jsonl` or
//! `<dir>/sinks/email.jsonl`, so another process (the drill command) can read what arrived
//! with [`read_notifications`] while the lab runs.

mod http;
mod journal;
mod listener;
mod mail;
mod smtp;
mod webhook;

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub use http::{parse_head, HttpServer, Request, RequestHead, Response};
pub use mail::{parse_mail, Mail};
pub use smtp::{mail_notification, Session as SmtpSession, SmtpSink, Step as SmtpStep};
pub use webhook::{parse_slack, WebhookSink};

/// Which sink received a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Slack,
    Email,
}

/// Firing or resolved, as the notification's title or subject says; `unknown` when it says
/// neither (a changed template), so the notification is still recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
    Unknown,
}

/// One notification as a sink received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub sink: SinkKind,
    pub received_unix_ms: u64,
    pub status: Status,
    /// Alert names it is about, sorted, without repeats.
    pub alertnames: Vec<String>,
    /// Pods it names, sorted, without repeats (none for a fleet-wide alert).
    pub pods: Vec<String>,
    /// Slack attachment title, or e-mail subject.
    pub title: String,
    /// Slack attachment text, or the e-mail's text (its HTML part reduced to text if it has
    /// no plain-text part).
    pub text: String,
}

impl Notification {
    /// Whether this notification is about `alertname` with `status`.
    pub fn is(&self, alertname: &str, status: Status) -> bool {
        self.status == status && self.alertnames.iter().any(|name| name == alertname)
    }
}

/// Reads a sink's JSON-lines file. A last line without its newline is being written right now
/// and is skipped; any other unreadable line is an error naming it.
pub fn read_notifications(path: &Path) -> Result<Vec<Notification>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).with_context(|| {
                format!(
                    "{} line {}: not a notification: {line}",
                    path.display(),
                    index + 1
                )
            })
        })
        .collect()
}

/// The status a title or subject starts with: `[FIRING:2] …` or `[RESOLVED] …`.
pub fn parse_status(title: &str) -> Status {
    let title = title.trim_start();
    if title.starts_with("[FIRING") {
        Status::Firing
    } else if title.starts_with("[RESOLVED") {
        Status::Resolved
    } else {
        Status::Unknown
    }
}

/// Pods named as `<namespace>/<pod>` anywhere in the text (every rule description names its pod
/// so, after varying words: "Relay gethrelay/x", "The sidecar of gethrelay/x") or as a
/// `pod = <name>` / `pod=<name>` label (the e-mail's label lists), sorted, without repeats.
/// A word with more than one `/` (a runbook URL) is not a pod, nor is `StatefulSet <ns>/<name>`.
pub fn find_pods(text: &str) -> Vec<String> {
    let mut pods = label_values(text, "pod");
    let mut previous = "";
    for word in text.split(|c: char| c.is_whitespace() || "()[],;'\"".contains(c)) {
        let word = word.trim_end_matches(['.', ':']);
        let after_statefulset = std::mem::replace(&mut previous, word) == "StatefulSet";
        if after_statefulset {
            continue;
        }
        let Some((namespace, pod)) = word.split_once('/') else {
            continue;
        };
        let dns_label = |part: &str| {
            !part.is_empty()
                && part.len() <= 63
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        if dns_label(namespace) && dns_label(pod) {
            pods.push(pod.to_string());
        }
    }
    pods.sort();
    pods.dedup();
    pods
}

/// Values of `name = value` or `name=value` in `text`, where `name` is a whole word.
pub fn label_values(text: &str, name: &str) -> Vec<String> {
    let mut values = Vec::new();
    for (start, _) in text.match_indices(name) {
        let before = text[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let after = text[start + name.len()..].trim_start_matches(' ');
        let Some(value) = after.strip_prefix('=') else {
            continue;
        };
        // `=~` and `==` are matchers or comparisons, not a label's value.
        if value.starts_with(['~', '=']) {
            continue;
        }
        let word = take_word(value.trim_start_matches(' '));
        if !word.is_empty() {
            values.push(word.to_string());
        }
    }
    values.sort();
    values.dedup();
    values
}

/// The leading run of characters a label value or pod name can hold.
fn take_word(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || "-_./:".contains(c)))
        .unwrap_or(text.len());
    text[..end].trim_end_matches(['.', ':'])
}

/// Milliseconds since the Unix epoch, now.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
