//! Real Prometheus and Alertmanager with the deploy bundle's configs, as the lab runs them;
//! one Alertmanager (with both sinks) and one Prometheus for the whole binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use lab::monitoring::prometheus::{Prometheus, Target};
use lab::monitoring::sinks::{read_notifications, HttpServer, Notification, Response, Status};
use lab::monitoring::stack::{start_prometheus, Alerting};
use lab::monitoring::{binaries_available_or_skip, scale_duration};
use serde_json::{json, Value};

use lab::monitoring::alertmanager::{rfc3339, unix_ms};

/// The drills' speed-up: production timers divided by 20.
const TIME_SCALE: f64 = 20.0;
const NAMESPACE: &str = "gethrelay";

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// A directory kept after the run (under target/tmp), so logs can be read after a failure.
fn work_dir(name: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(name)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .keep()
}

fn localhost_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], lab::tornet::free_port().unwrap()))
}

/// The binary's Alertmanager, loading deploy/alertmanager/alertmanager.yaml through
/// `lab_config`, with the Slack and SMTP sinks behind it.
fn stack() -> &'static Alerting {
    static STACK: OnceLock<Alerting> = OnceLock::new();
    STACK.get_or_init(|| {
        let dir = work_dir("alertmanager");
        let started = Instant::now();
        let alerting = Alerting::start(&dir, &repo(""), localhost_port(), TIME_SCALE).unwrap();
        eprintln!(
            "lab Alertmanager config differs from the source:\n  {}",
            alerting.changes.join("\n  ")
        );
        eprintln!(
            "Alertmanager and sinks ready in {:?} (dir {})",
            started.elapsed(),
            dir.display()
        );
        alerting
    })
}

fn skip(test: &str) -> bool {
    !binaries_available_or_skip(
        test,
        &[
            "prometheus",
            "promtool",
            "prometheus-alertmanager",
            "amtool",
        ],
    )
}

/// An alert as Prometheus would send it for `alertname` of the rule file, its annotations
/// taken from the rule (with `$labels` filled in).
fn alert(alertname: &str, severity: &str, pod: &str, mode: &str) -> Value {
    let rules: Value = serde_norway::from_str(&read("deploy/rules/gethrelay.rules.yaml")).unwrap();
    let rule = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap())
        .find(|rule| rule["alert"] == alertname && rule["labels"]["severity"] == severity)
        .unwrap_or_else(|| panic!("no {severity} rule {alertname} in the rule file"));
    let mut annotations = serde_json::Map::new();
    for (key, value) in rule["annotations"].as_object().unwrap() {
        let mut text = value.as_str().unwrap().to_string();
        // The one conditional the rules use: `{{ if $labels.pod }}…{{ else }}…{{ end }}`.
        if let Some(rest) = text.strip_prefix("{{ if $labels.pod }}") {
            text = rest.split("{{ else }}").next().unwrap().to_string();
        }
        let text = text
            .replace("{{ $labels.namespace }}", NAMESPACE)
            .replace("{{ $labels.pod }}", pod)
            .replace("{{ $labels.mode }}", mode);
        annotations.insert(key.clone(), json!(text));
    }
    json!({
        "labels": {"alertname": alertname, "severity": severity, "namespace": NAMESPACE, "pod": pod, "mode": mode},
        "annotations": annotations,
    })
}

/// Posts `alert` as firing until `ends` (past: resolved); returns when it was posted.
fn post(alert: &Value, starts: SystemTime, ends: SystemTime) -> u64 {
    let mut alert = alert.clone();
    alert["startsAt"] = json!(rfc3339(starts));
    alert["endsAt"] = json!(rfc3339(ends));
    let posted = unix_ms(SystemTime::now());
    stack().alertmanager.post_alerts(&json!([alert])).unwrap();
    posted
}

fn matching(path: &Path, alertname: &str, pod: &str, status: Status) -> Option<Notification> {
    read_notifications(path)
        .unwrap()
        .into_iter()
        .find(|notification| {
            notification.is(alertname, status) && notification.pods.iter().any(|p| p == pod)
        })
}

/// Waits (up to 60 s) for the notification in a sink's file; prints how long it took since `since`.
fn arrival(
    sink: &str,
    path: &Path,
    alertname: &str,
    pod: &str,
    status: Status,
    (since, posted): (&str, u64),
) -> Notification {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(notification) = matching(path, alertname, pod, status) {
            eprintln!(
                "{alertname} {status:?} for {pod} → {sink}: {} ms after {since} (time scale {TIME_SCALE})",
                notification.received_unix_ms.saturating_sub(posted)
            );
            return notification;
        }
        if Instant::now() > deadline {
            panic!(
                "no {status:?} {alertname} for {pod} at the {sink} sink within 60 s; it has {:#?}\nAlertmanager log:\n{}",
                read_notifications(path).unwrap(),
                stack().alertmanager.log_tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn alertmanager_loads_the_lab_config_with_both_receivers() {
    if skip("alertmanager_loads_the_lab_config_with_both_receivers") {
        return;
    }
    let receivers = stack().alertmanager.receivers().unwrap();
    for receiver in ["slack", "email", "null"] {
        assert!(
            receivers.iter().any(|name| name == receiver),
            "{receivers:?}"
        );
    }
    let status = stack().alertmanager.status().unwrap();
    let loaded = status["config"]["original"].as_str().unwrap();
    assert!(
        loaded.contains(&stack().email.addr().to_string()),
        "{loaded}"
    );
}

#[test]
fn critical_alert_reaches_slack_and_email() {
    if skip("critical_alert_reaches_slack_and_email") {
        return;
    }
    let pod = "gethrelay-only-onion-0";
    let alert = alert("GethRelayClearnetLeak", "critical", pod, "only-onion");
    let now = SystemTime::now();
    let posted = post(&alert, now, now + Duration::from_secs(600));
    let stack = stack();
    let slack = arrival(
        "slack",
        stack.slack.journal_path(),
        "GethRelayClearnetLeak",
        pod,
        Status::Firing,
        ("the POST", posted),
    );
    assert!(
        slack.title.starts_with("[FIRING:1] GethRelayClearnetLeak"),
        "{}",
        slack.title
    );
    assert!(
        slack.text.contains("*critical* An only-onion gethrelay"),
        "{}",
        slack.text
    );
    let email = arrival(
        "email",
        stack.email.journal_path(),
        "GethRelayClearnetLeak",
        pod,
        Status::Firing,
        ("the POST", posted),
    );
    assert!(
        email
            .title
            .starts_with("[FIRING:1] GethRelayClearnetLeak gethrelay"),
        "{}",
        email.title
    );
    // Alertmanager authenticated, so it read the lab's smtp_auth_password_file.
    assert!(stack.email.authentications() >= 1);
    assert!(stack.slack.is_healthy() && stack.email.is_healthy());
}

#[test]
fn warning_alert_reaches_slack_only() {
    if skip("warning_alert_reaches_slack_only") {
        return;
    }
    let pod = "gethrelay-clearnet-0";
    let alert = alert("GethRelayLowPeerCount", "warning", pod, "clearnet");
    let now = SystemTime::now();
    let posted = post(&alert, now, now + Duration::from_secs(600));
    let stack = stack();
    arrival(
        "slack",
        stack.slack.journal_path(),
        "GethRelayLowPeerCount",
        pod,
        Status::Firing,
        ("the POST", posted),
    );
    // E-mail and Slack groups start their group_wait together: once Slack has it, an e-mail
    // would have been sent by now too. Wait three more group_waits to be sure it is not.
    let (group_wait_ms, _) = scale_duration("30s", TIME_SCALE, 1000).unwrap();
    std::thread::sleep(Duration::from_millis(3 * group_wait_ms + 1000));
    let mail = read_notifications(stack.email.journal_path()).unwrap();
    assert!(
        !mail.iter().any(|notification| notification
            .alertnames
            .iter()
            .any(|name| name == "GethRelayLowPeerCount")),
        "a warning was e-mailed: {mail:#?}"
    );
}

#[test]
fn resolved_alert_sends_resolved_notifications() {
    if skip("resolved_alert_sends_resolved_notifications") {
        return;
    }
    let pod = "gethrelay-prefer-tor-0";
    let alert = alert("GethRelayDown", "critical", pod, "prefer-tor");
    let started = SystemTime::now();
    let posted = post(&alert, started, started + Duration::from_secs(600));
    let stack = stack();
    arrival(
        "slack",
        stack.slack.journal_path(),
        "GethRelayDown",
        pod,
        Status::Firing,
        ("the POST", posted),
    );
    arrival(
        "email",
        stack.email.journal_path(),
        "GethRelayDown",
        pod,
        Status::Firing,
        ("the POST", posted),
    );
    let resolved = post(&alert, started, SystemTime::now() - Duration::from_secs(1));
    let slack = arrival(
        "slack",
        stack.slack.journal_path(),
        "GethRelayDown",
        pod,
        Status::Resolved,
        ("the POST", resolved),
    );
    assert!(
        slack.title.starts_with("[RESOLVED] GethRelayDown"),
        "{}",
        slack.title
    );
    arrival(
        "email",
        stack.email.journal_path(),
        "GethRelayDown",
        pod,
        Status::Resolved,
        ("the POST", resolved),
    );
}

/// The metrics one lab relay serves: one kept series, and one the ServiceMonitor's
/// metricRelabelings drop (gethrelay's never-enabled p2p_handle* family).
fn relay_target() -> HttpServer {
    HttpServer::start("relay-target", |request| match request.head.path.as_str() {
        "/debug/metrics/prometheus" => Response::text(
            200,
            "# TYPE lab_kept_total counter\nlab_kept_total 7\n# TYPE p2p_handle_eth_68_0x00 gauge\np2p_handle_eth_68_0x00 3\n",
        ),
        "/metrics" => Response::text(200, "# TYPE relaywatch_lab_info gauge\nrelaywatch_lab_info 1\n"),
        _ => Response::text(404, "not found"),
    })
    .unwrap()
}

/// Polls `condition` (up to 60 s) and returns the time it took.
fn wait_until(
    what: &str,
    prometheus: &Prometheus,
    mut condition: impl FnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    while !condition() {
        if started.elapsed() > Duration::from_secs(60) {
            panic!(
                "{what} did not happen within 60 s; Prometheus log:\n{}",
                prometheus.log_tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

#[test]
fn prometheus_scrapes_with_the_servicemonitor_labels_and_drops() {
    if skip("prometheus_scrapes_with_the_servicemonitor_labels_and_drops") {
        return;
    }
    let dir = work_dir("prometheus");
    let target_server = relay_target();
    let pod = "lab-test-only-onion-0";
    // A relay whose port nothing listens on: GethRelayDown must fire for it, end to end.
    let down_pod = "lab-test-down-0";
    let targets = [
        Target {
            namespace: "lab-test".into(),
            pod: pod.into(),
            mode: "only-onion".into(),
            gethrelay: target_server.addr(),
            relaywatch: Some(target_server.addr()),
        },
        Target {
            namespace: "lab-test".into(),
            pod: down_pod.into(),
            mode: "clearnet".into(),
            gethrelay: localhost_port(),
            relaywatch: None,
        },
    ];
    let started = Instant::now();
    let (prometheus, differences) = start_prometheus(
        &dir,
        &repo(""),
        &targets,
        stack().alertmanager.addr,
        localhost_port(),
        TIME_SCALE,
    )
    .unwrap();
    eprintln!(
        "lab Prometheus config differs from the cluster:\n  {}",
        differences.join("\n  ")
    );
    eprintln!(
        "Prometheus ready in {:?} (dir {})",
        started.elapsed(),
        dir.display()
    );

    let ready = unix_ms(SystemTime::now());
    let took = wait_until("both targets up", &prometheus, || {
        prometheus.query("up == 1").unwrap().len() == 2
    });
    eprintln!("both targets up {took:?} after ready");
    for series in prometheus.query(&format!(r#"up{{pod="{pod}"}}"#)).unwrap() {
        let labels = &series["metric"];
        assert_eq!(labels["namespace"], "lab-test", "{series}");
        assert_eq!(labels["pod"], pod, "{series}");
        assert_eq!(labels["mode"], "only-onion", "{series}");
        assert!(
            labels["job"] == "gethrelay" || labels["job"] == "relaywatch",
            "{series}"
        );
    }
    let kept = prometheus.query("lab_kept_total").unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["metric"]["job"], "gethrelay");
    assert!(prometheus
        .query("p2p_handle_eth_68_0x00")
        .unwrap()
        .is_empty());
    // Scraped two samples, kept one: the drop happened at the scrape, not by absence.
    let post = prometheus
        .query(&format!(
            r#"scrape_samples_post_metric_relabeling{{job="gethrelay", pod="{pod}"}}"#
        ))
        .unwrap();
    assert_eq!(post[0]["value"][1], "1", "{post:?}");
    let scraped = prometheus
        .query(&format!(
            r#"scrape_samples_scraped{{job="gethrelay", pod="{pod}"}}"#
        ))
        .unwrap();
    assert_eq!(scraped[0]["value"][1], "2", "{scraped:?}");

    // Every rule of the scaled rule file evaluates without error.
    let took = wait_until("every rule evaluated", &prometheus, || {
        prometheus
            .rules_health()
            .unwrap()
            .iter()
            .all(|rule| rule.health != "unknown")
    });
    eprintln!("every rule evaluated {took:?} after that");
    let rules = prometheus.rules_health().unwrap();
    assert!(!rules.is_empty());
    let failing: Vec<_> = rules.iter().filter(|rule| rule.health != "ok").collect();
    assert!(failing.is_empty(), "{failing:#?}");

    // The down relay: scrape fails → GethRelayDown (for: 2m / 20) → Alertmanager → both sinks.
    let stack = stack();
    arrival(
        "slack",
        stack.slack.journal_path(),
        "GethRelayDown",
        down_pod,
        Status::Firing,
        ("Prometheus was ready", ready),
    );
    arrival(
        "email",
        stack.email.journal_path(),
        "GethRelayDown",
        down_pod,
        Status::Firing,
        ("Prometheus was ready", ready),
    );
}

#[test]
fn bad_configs_and_busy_ports_are_clear_errors() {
    if skip("bad_configs_and_busy_ports_are_clear_errors") {
        return;
    }
    let dir = work_dir("bad-configs");
    let bad_prometheus = "global:\n  scrape_interval: soon\n";
    let error = Prometheus::start(&dir.join("prometheus"), bad_prometheus, localhost_port())
        .err()
        .expect("a bad Prometheus config must not start");
    let error = format!("{error:#}");
    assert!(error.contains("promtool check config rejects"), "{error}");
    assert!(error.contains("soon"), "{error}");

    let bad_alertmanager = "route:\n  receiver: nowhere\nreceivers: []\n";
    let error = lab::monitoring::alertmanager::Alertmanager::start(
        &dir.join("alertmanager"),
        bad_alertmanager,
        localhost_port(),
    )
    .err()
    .expect("a bad Alertmanager config must not start");
    let error = format!("{error:#}");
    assert!(error.contains("amtool check-config rejects"), "{error}");
    assert!(error.contains("nowhere"), "{error}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let error = Prometheus::start(
        &dir.join("busy"),
        "global: {}\n",
        busy.local_addr().unwrap(),
    )
    .err()
    .expect("a busy port must be refused");
    assert!(format!("{error:#}").contains("already in use"), "{error:#}");
}
