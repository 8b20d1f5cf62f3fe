//! The Slack stand-in: takes Alertmanager's Slack webhook POSTs, answers `ok` as Slack does,
//! and records each one.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::http::{HttpServer, Request, Response};
use super::journal::Journal;
use super::{find_pods, parse_status, unix_ms, Notification, SinkKind};

/// The path Alertmanager is told to post to.
const PATH: &str = "/slack";

/// Reads a Slack webhook payload (`{"channel", "attachments": [{"title", "text", …}]}`) into a
/// notification; the title's `[FIRING:n] <alertname>` gives status and alert name, the text's
/// `Relay <namespace>/<pod>` the pods.
pub fn parse_slack(body: &[u8], received_unix_ms: u64) -> Result<Notification> {
    let payload: Value = serde_json::from_slice(body).context("Slack payload is not JSON")?;
    if !payload.is_object() {
        bail!("Slack payload is not a JSON object");
    }
    let mut titles = Vec::new();
    let mut texts = Vec::new();
    if let Some(text) = payload["text"].as_str() {
        texts.push(text.to_string());
    }
    for attachment in payload["attachments"].as_array().into_iter().flatten() {
        if let Some(title) = attachment["title"].as_str() {
            titles.push(title.to_string());
        }
        if let Some(text) = attachment["text"].as_str() {
            texts.push(text.to_string());
        }
    }
    if titles.is_empty() && texts.is_empty() {
        bail!("Slack payload has neither text nor attachments with a title or text");
    }
    let title = titles.join("\n");
    let text = texts.join("\n");
    let mut alertnames: Vec<String> = titles
        .iter()
        .filter_map(|title| title.split_once("] "))
        .map(|(_, name)| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .collect();
    alertnames.sort();
    alertnames.dedup();
    Ok(Notification {
        sink: SinkKind::Slack,
        received_unix_ms,
        status: parse_status(&title),
        alertnames,
        pods: find_pods(&text),
        title,
        text,
    })
}

/// A running Slack stand-in; stops when dropped.
pub struct WebhookSink {
    server: HttpServer,
    journal: Arc<Journal>,
}

impl WebhookSink {
    /// Serves on a free loopback port, recording to `<dir>/sinks/slack.jsonl`.
    pub fn start(dir: &Path) -> Result<WebhookSink> {
        let journal = Arc::new(Journal::open(dir, "slack")?);
        let recorder = journal.clone();
        let server = HttpServer::start("slack-sink", move |request: &Request| {
            handle(request, &recorder)
        })?;
        Ok(WebhookSink { server, journal })
    }

    /// The webhook URL to give Alertmanager (`http://127.0.0.1:<port>/slack`).
    pub fn url(&self) -> String {
        format!("http://{}{PATH}", self.server.addr())
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    pub fn count(&self) -> usize {
        self.journal.count()
    }

    pub fn notifications(&self) -> Vec<Notification> {
        self.journal.notifications()
    }

    pub fn journal_path(&self) -> &Path {
        self.journal.path()
    }

    /// True while the accept loop runs.
    pub fn is_healthy(&self) -> bool {
        self.server.is_healthy()
    }
}

fn handle(request: &Request, journal: &Journal) -> Response {
    match (request.head.method.as_str(), request.head.path.as_str()) {
        ("POST", PATH) => match parse_slack(&request.body, unix_ms()) {
            Ok(notification) => {
                journal.record(notification);
                Response::text(200, "ok")
            }
            // What Slack answers to a payload it cannot read.
            Err(_) => Response::text(400, "invalid_payload"),
        },
        (_, PATH) => Response::text(405, "use POST"),
        _ => Response::text(404, "no_service"),
    }
}
