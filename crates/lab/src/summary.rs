//! The lab's live summary: per relay what monitoring sees (from Prometheus, the way a dashboard
//! would), the alerts firing, the notifications each sink received, and where to look next.
//!
//! `gather` asks Prometheus; `render` is pure, so the screen's layout has tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use serde_json::Value;

use crate::monitoring::prometheus::Prometheus;
use crate::monitoring::sinks::{read_notifications, Notification};
use crate::stack::{repo_root, Stack};

/// What one relay looks like from Prometheus.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RelayRow {
    pub pod: String,
    pub mode: String,
    pub relay_up: Option<f64>,
    pub exporter_up: Option<f64>,
    pub peers_tor: Option<f64>,
    pub peers_clearnet: Option<f64>,
    pub dials: Option<f64>,
    pub dials_ok: Option<f64>,
    pub bytes_tor: Option<f64>,
    pub bytes_clearnet: Option<f64>,
    pub leaks: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub relays: Vec<RelayRow>,
    /// (alert name, pod or "", severity, state) from Prometheus.
    pub alerts: Vec<(String, String, String, String)>,
    pub slack: Vec<Notification>,
    pub email: Vec<Notification>,
    pub died: Vec<String>,
    /// Errors met while gathering (Prometheus down…): shown, never fatal.
    pub problems: Vec<String>,
}

/// `sum by (pod) (<expr>)` → pod → value.
fn by_pod(
    prometheus: &Prometheus,
    expr: &str,
    problems: &mut Vec<String>,
) -> BTreeMap<String, f64> {
    match prometheus.query(&format!("sum by (pod) ({expr})")) {
        Ok(result) => result
            .iter()
            .filter_map(|series| {
                let pod = series["metric"]["pod"].as_str()?.to_string();
                let value = series["value"][1].as_str()?.parse().ok()?;
                Some((pod, value))
            })
            .collect(),
        Err(error) => {
            problems.push(format!("Prometheus: {error:#}"));
            BTreeMap::new()
        }
    }
}

/// Reads the current state from Prometheus, the sinks' logs and the fleet.
pub fn gather(stack: &Stack) -> Summary {
    let mut problems = Vec::new();
    let prom = &stack.prometheus;
    let mut q = |expr: &str| by_pod(prom, expr, &mut problems);
    let relay_up = q(r#"up{job="gethrelay"}"#);
    let exporter_up = q(r#"up{job="relaywatch"}"#);
    let peers_tor = q(r#"p2p_peers_tor{job="relaywatch"}"#);
    let peers_clearnet = q(r#"p2p_peers_clearnet{job="relaywatch"}"#);
    let dials = q(r#"p2p_dials_tor_total{job="relaywatch"}"#);
    let dials_ok = q(r#"p2p_dials_tor_success_total{job="relaywatch"}"#);
    let bytes_tor = q(r#"p2p_ingress_tor{job="relaywatch"} + p2p_egress_tor{job="relaywatch"}"#);
    let bytes_clearnet =
        q(r#"p2p_ingress_clearnet{job="relaywatch"} + p2p_egress_clearnet{job="relaywatch"}"#);
    let leaks = q(r#"relaywatch_clearnet_leaks_total{job="relaywatch"}"#);
    let mut fleet = stack.fleet();
    let mut died = fleet.died();
    for (name, pid) in [
        ("Prometheus", stack.prometheus.pid()),
        ("Alertmanager", stack.alertmanager.pid()),
    ] {
        if !alive(pid) {
            died.push(format!(
                "{name} exited; its log is under {}/monitoring",
                stack.dir.display()
            ));
        }
    }
    if !stack.slack.is_healthy() || !stack.email.is_healthy() {
        died.push("a notification sink stopped accepting connections".into());
    }
    let relays = stack
        .file
        .relays
        .iter()
        .map(|relay| {
            let get = |map: &BTreeMap<String, f64>| map.get(&relay.pod).copied();
            RelayRow {
                pod: relay.pod.clone(),
                mode: relay.mode.clone(),
                relay_up: get(&relay_up),
                exporter_up: get(&exporter_up),
                peers_tor: get(&peers_tor),
                peers_clearnet: get(&peers_clearnet),
                dials: get(&dials),
                dials_ok: get(&dials_ok),
                bytes_tor: get(&bytes_tor),
                bytes_clearnet: get(&bytes_clearnet),
                leaks: get(&leaks),
            }
        })
        .collect();
    drop(fleet);
    let alerts = match prom.alerts() {
        Ok(alerts) => alerts.iter().map(alert_row).collect(),
        Err(error) => {
            problems.push(format!("Prometheus alerts: {error:#}"));
            Vec::new()
        }
    };
    Summary {
        relays,
        alerts,
        slack: read_notifications(&stack.file.slack_log).unwrap_or_default(),
        email: read_notifications(&stack.file.email_log).unwrap_or_default(),
        died,
        problems,
    }
}

/// Whether `pid` runs (a zombie, exited but not yet reaped, does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

fn alert_row(alert: &Value) -> (String, String, String, String) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        text(&alert["labels"]["alertname"]),
        text(&alert["labels"]["pod"]),
        text(&alert["labels"]["severity"]),
        text(&alert["state"]),
    )
}

fn number(value: Option<f64>) -> String {
    match value {
        Some(v) => format!("{v:.0}"),
        None => "-".into(),
    }
}

fn bytes(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(v) if v >= 1e6 => format!("{:.1} MB", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.1} kB", v / 1e3),
        Some(v) => format!("{v:.0} B"),
    }
}

fn up(relay: Option<f64>, exporter: Option<f64>) -> &'static str {
    match (relay, exporter) {
        (Some(r), Some(e)) if r == 1.0 && e == 1.0 => "up",
        (Some(r), _) if r != 1.0 => "RELAY DOWN",
        (None, _) => "relay ?",
        (_, Some(e)) if e != 1.0 => "EXPORTER DOWN",
        _ => "exporter ?",
    }
}

/// Percent-encodes a PromQL expression for a URL query.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The overview dashboard's queries as (panel title, expression) with its variables set for
/// the whole lab, for graph links.
pub fn overview_queries() -> Vec<(String, String)> {
    let path = repo_root().join("deploy/dashboards/overview.json");
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(dashboard) = serde_json::from_str::<Value>(&text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    collect_queries(&dashboard, &mut out);
    out.into_iter()
        .map(|(title, expr)| {
            let expr = expr
                .replace("$namespace", ".*")
                .replace("$mode", ".*")
                .replace("$pod", ".*")
                .replace("$__rate_interval", "1m");
            (title, expr)
        })
        .collect()
}

fn collect_queries(node: &Value, out: &mut Vec<(String, String)>) {
    for panel in node["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.to_string(), expr.to_string()));
            }
        }
        collect_queries(panel, out);
    }
}

/// Static part of the screen: URLs and what the lab changed.
pub struct Links {
    pub prometheus: String,
    pub alertmanager: String,
    pub slack_log: String,
    pub email_log: String,
    pub time_scale: f64,
}

/// The screen, as text.
pub fn render(summary: &Summary, links: &Links, uptime_secs: f64) -> String {
    let mut out = String::new();
    let timing = if links.time_scale == 1.0 {
        "production rule timing".to_string()
    } else {
        format!(
            "rule and Alertmanager timing scaled down ×{} (for: 5m waits {:.0} s)",
            links.time_scale,
            300.0 / links.time_scale
        )
    };
    let _ = writeln!(out, "relaywatch lab — up {uptime_secs:.0} s — {timing}");
    let _ = writeln!(
        out,
        "{:<26} {:<10} {:<13} {:>5} {:>6} {:>9} {:>10} {:>10} {:>5}",
        "pod", "mode", "state", "tor", "clear", "tor dials", "tor bytes", "clear bytes", "leaks"
    );
    for row in &summary.relays {
        let dials = match (row.dials_ok, row.dials) {
            (Some(ok), Some(all)) => format!("{ok:.0}/{all:.0}"),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<26} {:<10} {:<13} {:>5} {:>6} {:>9} {:>10} {:>10} {:>5}",
            row.pod,
            row.mode,
            up(row.relay_up, row.exporter_up),
            number(row.peers_tor),
            number(row.peers_clearnet),
            dials,
            bytes(row.bytes_tor),
            bytes(row.bytes_clearnet),
            number(row.leaks),
        );
    }
    let firing: Vec<String> = summary
        .alerts
        .iter()
        .map(|(name, pod, severity, state)| {
            let pod = if pod.is_empty() {
                String::new()
            } else {
                format!(" {pod}")
            };
            format!("{name}{pod} ({severity}, {state})")
        })
        .collect();
    let _ = writeln!(
        out,
        "\nalerts: {}",
        if firing.is_empty() {
            "none".to_string()
        } else {
            firing.join("; ")
        }
    );
    for (sink, notes) in [("slack", &summary.slack), ("email", &summary.email)] {
        let last = notes
            .last()
            .map(|n| format!(", last: {:?} {}", n.status, n.alertnames.join(",")))
            .unwrap_or_default();
        let _ = writeln!(out, "notifications at {sink}: {}{last}", notes.len());
    }
    for line in &summary.died {
        let _ = writeln!(out, "DIED: {line}");
    }
    for line in &summary.problems {
        let _ = writeln!(out, "problem: {line}");
    }
    let _ = writeln!(
        out,
        "\nPrometheus {}  (alerts: {}/alerts, targets: {}/targets)\nAlertmanager API {}/api/v2/alerts\nsinks: {} · {}",
        links.prometheus, links.prometheus, links.prometheus, links.alertmanager, links.slack_log, links.email_log
    );
    out
}

/// The overview dashboard's queries as Prometheus graph links, for the start-up screen.
pub fn graph_links(prometheus: &str) -> String {
    let mut out = String::from("overview dashboard queries in Prometheus:\n");
    for (title, expr) in overview_queries() {
        let _ = writeln!(
            out,
            "  {title}: {prometheus}/graph?g0.expr={}&g0.tab=0&g0.range_input=15m",
            url_encode(&expr)
        );
    }
    out
}

/// Runs `gather` + `render` and returns the screen.
pub fn screen(stack: &Stack) -> Result<String> {
    let links = Links {
        prometheus: format!("http://{}", stack.file.prometheus),
        alertmanager: format!("http://{}", stack.file.alertmanager),
        slack_log: stack.file.slack_log.display().to_string(),
        email_log: stack.file.email_log.display().to_string(),
        time_scale: stack.time_scale,
    };
    Ok(render(
        &gather(stack),
        &links,
        stack.started.elapsed().as_secs_f64(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_states_and_missing_values() {
        let summary = Summary {
            relays: vec![
                RelayRow {
                    pod: "gethrelay-clearnet-0".into(),
                    mode: "clearnet".into(),
                    relay_up: Some(1.0),
                    exporter_up: Some(1.0),
                    peers_tor: Some(0.0),
                    peers_clearnet: Some(12.0),
                    dials: Some(4.0),
                    dials_ok: Some(3.0),
                    bytes_tor: Some(0.0),
                    bytes_clearnet: Some(2_500_000.0),
                    leaks: Some(0.0),
                },
                RelayRow {
                    pod: "gethrelay-only-onion-0".into(),
                    mode: "only-onion".into(),
                    relay_up: Some(0.0),
                    ..RelayRow::default()
                },
            ],
            alerts: vec![(
                "GethRelayDown".into(),
                "gethrelay-only-onion-0".into(),
                "critical".into(),
                "firing".into(),
            )],
            died: vec!["relay only-onion-1 exited: signal 9".into()],
            ..Summary::default()
        };
        let links = Links {
            prometheus: "http://127.0.0.1:9".into(),
            alertmanager: "http://127.0.0.1:8".into(),
            slack_log: "s".into(),
            email_log: "e".into(),
            time_scale: 20.0,
        };
        let text = render(&summary, &links, 61.0);
        assert!(text.contains("×20"), "{text}");
        assert!(text.contains("2.5 MB"), "{text}");
        assert!(text.contains("3/4"), "{text}");
        assert!(text.contains("RELAY DOWN"), "{text}");
        assert!(
            text.contains("GethRelayDown gethrelay-only-onion-0 (critical, firing)"),
            "{text}"
        );
        assert!(text.contains("DIED: relay only-onion-1"), "{text}");
        assert!(text.contains("notifications at email: 0"), "{text}");
    }

    #[test]
    fn a_zombie_or_missing_process_is_not_alive() {
        assert!(alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!alive(pid), "an exited child not yet reaped is a zombie");
        child.wait().unwrap();
        assert!(!alive(pid));
    }

    #[test]
    fn overview_queries_have_no_variables_left() {
        let queries = overview_queries();
        assert!(queries.len() > 10, "{queries:?}");
        for (title, expr) in queries {
            assert!(!expr.contains('$'), "{title}: {expr}");
        }
    }
}
