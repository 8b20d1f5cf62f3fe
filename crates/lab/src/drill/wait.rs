//! Waiting for notifications in the sinks' logs, and for a quiet pod before a drill.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use serde_json::Value;

use crate::labfile::LabFile;
use crate::monitoring::sinks::{read_notifications, Notification, Status};

/// The alert a drill waits for.
pub struct Want {
    pub alert: String,
    pub pod: String,
}

impl Want {
    fn matches(&self, note: &Notification, status: Status) -> bool {
        note.status == status
            && note.alertnames.contains(&self.alert)
            && note.pods.contains(&self.pod)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Both sinks' notifications at one moment.
pub struct Seen {
    pub unix_ms: u64,
    pub slack: Vec<Notification>,
    pub email: Vec<Notification>,
}

impl Seen {
    pub fn now(file: &LabFile) -> Result<Seen> {
        Ok(Seen {
            unix_ms: unix_ms(),
            slack: read_notifications(&file.slack_log).unwrap_or_default(),
            email: read_notifications(&file.email_log).unwrap_or_default(),
        })
    }

    fn of(&self, sink: &str) -> &[Notification] {
        match sink {
            "slack" => &self.slack,
            _ => &self.email,
        }
    }

    /// Notifications at `sink` that arrived after `before` was taken.
    fn new_since<'a>(&'a self, before: &Seen, sink: &str) -> &'a [Notification] {
        let old = before.of(sink).len();
        let all = self.of(sink);
        &all[old.min(all.len())..]
    }

    pub fn any_since(&self, before: &Seen, sink: &str, want: &Want) -> bool {
        self.new_since(before, sink)
            .iter()
            .any(|note| note.alertnames.contains(&want.alert) && note.pods.contains(&want.pod))
    }

    /// Other alerts that notified about `pod` since `before`: (alert, sink, unix ms).
    pub fn others_since(
        &self,
        before: &Seen,
        pod: &str,
        alert: &str,
    ) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for sink in ["slack", "email"] {
            for note in self.new_since(before, sink) {
                if note.status != Status::Firing || !note.pods.iter().any(|p| p == pod) {
                    continue;
                }
                for name in &note.alertnames {
                    if name != alert && !out.iter().any(|(n, s, _)| n == name && s == sink) {
                        out.push((name.clone(), sink.to_string(), note.received_unix_ms));
                    }
                }
            }
        }
        out.sort_by_key(|(_, _, at)| *at);
        out
    }
}

pub struct Waited {
    pub arrived: Vec<(String, Instant)>,
    pub missing: Vec<String>,
}

/// Waits until every sink in `sinks` has a `status` notification of `want` newer than `floor`,
/// calling `tick` between looks (a fault that must be kept up, e.g. re-injected).
pub fn wait_for(
    file: &LabFile,
    floor: &Seen,
    want: &Want,
    status: Status,
    sinks: &[&str],
    patience: Duration,
    tick: &mut dyn FnMut() -> Result<()>,
) -> Waited {
    let deadline = Instant::now() + patience;
    let mut arrived: Vec<(String, Instant)> = Vec::new();
    loop {
        if let Ok(now) = Seen::now(file) {
            for sink in sinks {
                if arrived.iter().any(|(s, _)| s == sink) {
                    continue;
                }
                if now
                    .new_since(floor, sink)
                    .iter()
                    .any(|note| want.matches(note, status))
                {
                    arrived.push((sink.to_string(), Instant::now()));
                }
            }
        }
        if arrived.len() == sinks.len() || Instant::now() > deadline || super::interrupted() {
            break;
        }
        let _ = tick();
        std::thread::sleep(Duration::from_millis(200));
    }
    let missing = sinks
        .iter()
        .filter(|sink| !arrived.iter().any(|(s, _)| s == *sink))
        .map(|sink| sink.to_string())
        .collect();
    Waited { arrived, missing }
}

fn prometheus_alerts(file: &LabFile) -> Result<Vec<Value>> {
    let text = crate::rpc::get_text(file.prometheus, "/api/v1/alerts")?;
    let reply: Value = serde_json::from_str(&text)?;
    Ok(reply["data"]["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Waits until Prometheus has no pending or firing alert about `pod`, so that this drill's
/// notification cannot be hidden in a group that is already firing.
pub fn wait_quiet(file: &LabFile, pod: &str, patience: Duration) -> Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        let busy: Vec<String> = prometheus_alerts(file)?
            .iter()
            .filter(|alert| alert["labels"]["pod"] == pod)
            .map(|alert| {
                format!(
                    "{} ({})",
                    alert["labels"]["alertname"].as_str().unwrap_or("?"),
                    alert["state"].as_str().unwrap_or("?")
                )
            })
            .collect();
        if busy.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline || super::interrupted() {
            bail!(
                "{pod} still has alerts before the drill: {}",
                busy.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
