//! The inhibitions of deploy/alertmanager/alertmanager.yaml, proved with a real Alertmanager
//! (Debian's `prometheus-alertmanager`): a cause silences its symptoms, nothing else is hidden.
//!
//! The config is the file's `route` and `inhibit_rules` verbatim; receivers keep their names
//! but lose their integrations (nothing is notified), and `global`/`templates` are dropped.

use std::time::{Duration, Instant, SystemTime};

use lab::monitoring::alertmanager::Alertmanager;
use serde_json::{json, Value as Json};
use serde_norway::{Mapping, Value};

use super::super::{get, read_yaml, seq, ALERTMANAGER_FILE};

/// The deploy file's routing and inhibitions with receivers that notify nobody.
fn silent_config() -> String {
    let file = read_yaml(ALERTMANAGER_FILE).unwrap();
    let receivers: Vec<Value> = seq(get(&file, "receivers"))
        .iter()
        .map(|receiver| {
            let mut only_name = Mapping::new();
            only_name.insert("name".into(), get(receiver, "name").unwrap().clone());
            Value::Mapping(only_name)
        })
        .collect();
    let mut config = Mapping::new();
    config.insert("route".into(), get(&file, "route").unwrap().clone());
    config.insert(
        "inhibit_rules".into(),
        get(&file, "inhibit_rules").unwrap().clone(),
    );
    config.insert("receivers".into(), Value::Sequence(receivers));
    serde_norway::to_string(&Value::Mapping(config)).unwrap()
}

/// RFC 3339 for Alertmanager's API, an hour from now (firing until then).
fn in_an_hour() -> String {
    lab::monitoring::alertmanager::rfc3339(SystemTime::now() + std::time::Duration::from_secs(3600))
}

/// An alert of the gethrelay namespace; `pod` empty for GethRelayDown's pod-less form.
fn alert(alertname: &str, severity: &str, pod: &str, mode: &str) -> Json {
    let mut labels = json!({"alertname": alertname, "severity": severity, "namespace": "gethrelay", "mode": mode});
    if !pod.is_empty() {
        labels["pod"] = json!(pod);
    }
    json!({"labels": labels, "endsAt": in_an_hour()})
}

/// Alertmanager's view of the alert `alertname` of `pod`: the names of the alerts inhibiting
/// it, found by fingerprint.
fn inhibitors(alerts: &[Json], alertname: &str, pod: &str) -> Vec<String> {
    let find = |predicate: &dyn Fn(&Json) -> bool| alerts.iter().find(|alert| predicate(alert));
    let target = find(&|alert| {
        alert["labels"]["alertname"] == alertname
            && alert["labels"]["pod"].as_str().unwrap_or_default() == pod
    })
    .unwrap_or_else(|| panic!("Alertmanager does not hold {alertname} of {pod:?}: {alerts:#?}"));
    target["status"]["inhibitedBy"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|fingerprint| {
            find(&|alert| &alert["fingerprint"] == fingerprint)
                .map(|alert| {
                    format!(
                        "{} of {}",
                        alert["labels"]["alertname"].as_str().unwrap_or("?"),
                        alert["labels"]["pod"].as_str().unwrap_or("no pod")
                    )
                })
                .unwrap_or_else(|| fingerprint.to_string())
        })
        .collect()
}

#[test]
fn a_cause_inhibits_its_symptoms_and_nothing_else() {
    if !super::super::tool(
        "prometheus-alertmanager",
        "inhibitions in a real Alertmanager",
    ) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("xtask-inhibition-{}", std::process::id()));
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], lab::tornet::free_port().unwrap()));
    let alertmanager = Alertmanager::start(&dir, &silent_config(), listen).unwrap();
    // First what must stay visible, then (second POST) the pair that must inhibit: once the
    // inhibitor has the second batch's source it has the first batch too (one ordered stream).
    alertmanager
        .post_alerts(&json!([
            alert(
                "GethRelayNoTorPeers",
                "critical",
                "gethrelay-only-onion-0",
                "only-onion"
            ),
            alert(
                "GethRelayTorControlPortDown",
                "warning",
                "gethrelay-only-onion-0",
                "only-onion"
            ),
            alert(
                "GethRelayClearnetLeak",
                "critical",
                "gethrelay-only-onion-1",
                "only-onion"
            ),
            alert(
                "RelaywatchLeakRemovalFailing",
                "warning",
                "gethrelay-only-onion-1",
                "only-onion"
            ),
            alert(
                "GethRelayNoTorPeers",
                "warning",
                "gethrelay-prefer-tor-0",
                "prefer-tor"
            ),
            alert("GethRelayDown", "critical", "", "clearnet"),
            alert(
                "RelaywatchExporterDown",
                "warning",
                "gethrelay-clearnet-1",
                "clearnet"
            ),
        ]))
        .unwrap();
    alertmanager
        .post_alerts(&json!([
            alert(
                "GethRelayDown",
                "critical",
                "gethrelay-prefer-tor-1",
                "prefer-tor"
            ),
            alert(
                "RelaywatchExporterDown",
                "warning",
                "gethrelay-prefer-tor-1",
                "prefer-tor"
            ),
            alert(
                "GethRelayTorNotBootstrapped",
                "warning",
                "gethrelay-prefer-tor-1",
                "prefer-tor"
            ),
        ]))
        .unwrap();
    let started = Instant::now();
    let alerts = loop {
        let alerts = alertmanager.alerts().unwrap();
        if alerts.len() == 10
            && !inhibitors(&alerts, "RelaywatchExporterDown", "gethrelay-prefer-tor-1").is_empty()
        {
            break alerts;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "GethRelayDown never inhibited RelaywatchExporterDown of the same pod: {alerts:#?}\n{}",
            alertmanager.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("inhibition visible {:?} after the POST", started.elapsed());
    assert_eq!(
        inhibitors(&alerts, "RelaywatchExporterDown", "gethrelay-prefer-tor-1"),
        ["GethRelayDown of gethrelay-prefer-tor-1"]
    );
    for (alertname, pod, why) in [
        (
            "GethRelayTorControlPortDown",
            "gethrelay-only-onion-0",
            "a standing critical GethRelayNoTorPeers must not hide a cause",
        ),
        (
            "RelaywatchLeakRemovalFailing",
            "gethrelay-only-onion-1",
            "a live leak must not hide the failing removal",
        ),
        (
            "GethRelayClearnetLeak",
            "gethrelay-only-onion-1",
            "nothing hides a leak",
        ),
        (
            "GethRelayNoTorPeers",
            "gethrelay-prefer-tor-0",
            "another pod's critical of the same name",
        ),
        (
            "RelaywatchExporterDown",
            "gethrelay-clearnet-1",
            "GethRelayDown without a pod (missing pods) names no pod",
        ),
        (
            "GethRelayTorNotBootstrapped",
            "gethrelay-prefer-tor-1",
            "Tor can be why the pod is down",
        ),
        (
            "GethRelayNoTorPeers",
            "gethrelay-only-onion-0",
            "a critical stays visible",
        ),
    ] {
        let by = inhibitors(&alerts, alertname, pod);
        assert!(
            by.is_empty(),
            "{alertname} of {pod} is inhibited by {by:?}: {why}"
        );
    }
    drop(alertmanager);
    let _ = std::fs::remove_dir_all(&dir);
}
