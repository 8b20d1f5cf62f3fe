//! The lab's Prometheus config, derived from the ServiceMonitor of the deploy bundle.
//!
//! In the cluster the Prometheus Operator turns `deploy/kustomize/base/servicemonitor.yaml`
//! into scrape jobs over Kubernetes service discovery. The lab has no Kubernetes, so each
//! endpoint becomes one job over static targets, and the `relabelings` that copy pod metadata
//! (`__meta_kubernetes_*`) into target labels become static labels with the lab's values.
//! Everything else (job name, path, intervals, sample limit, metric relabelings) is read from
//! the file. Anything in it this code does not know is an error, so a new endpoint or option
//! can never be silently dropped from the lab.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value as Json};
use serde_norway::Value;

use crate::monitoring::scale_duration;

/// One lab relay pod: its Kubernetes identity and where its two endpoints listen.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub namespace: String,
    pub pod: String,
    pub mode: String,
    pub gethrelay: SocketAddr,
    pub relaywatch: Option<SocketAddr>,
}

/// kube-prometheus-stack's default `evaluationInterval` (and `scrapeInterval`, which an
/// endpoint without `interval` gets).
const STACK_DEFAULT_INTERVAL: &str = "30s";
/// The Prometheus Operator's default `path`.
const DEFAULT_PATH: &str = "/metrics";
/// Nothing scheduled faster than this: a sub-second scrape would measure the scraper.
const MIN_INTERVAL_MS: u64 = 1_000;

/// Keys of `spec` the lab reproduces (or, for the selectors, replaces with static targets).
const SPEC_KEYS: &[&str] = &["selector", "namespaceSelector", "sampleLimit", "endpoints"];
/// Keys of an endpoint the lab reproduces.
const ENDPOINT_KEYS: &[&str] = &[
    "port",
    "path",
    "interval",
    "scrapeTimeout",
    "relabelings",
    "metricRelabelings",
    "honorLabels",
    "honorTimestamps",
    "scheme",
];
/// A RelabelConfig's fields, camelCase as in the CRD, with Prometheus' snake_case names.
const RELABEL_KEYS: &[(&str, &str)] = &[
    ("sourceLabels", "source_labels"),
    ("separator", "separator"),
    ("targetLabel", "target_label"),
    ("regex", "regex"),
    ("modulus", "modulus"),
    ("replacement", "replacement"),
    ("action", "action"),
];

/// The pod metadata the lab can stand in for, by the `Target` field that holds its value.
fn meta_label_value<'t>(meta_label: &str, target: &'t Target) -> Option<&'t str> {
    match meta_label {
        "__meta_kubernetes_namespace" => Some(&target.namespace),
        "__meta_kubernetes_pod_name" => Some(&target.pod),
        "__meta_kubernetes_pod_label_relaywatch_io_mode" => Some(&target.mode),
        _ => None,
    }
}

/// Which address of a target an endpoint port names; `None` for a port the lab does not run.
fn port_address(port: &str, target: &Target) -> Result<Option<SocketAddr>> {
    match port {
        "metrics" => Ok(Some(target.gethrelay)),
        "relaywatch" => Ok(target.relaywatch),
        other => bail!(
            "ServiceMonitor endpoint port `{other}` is unknown to the lab (it knows `metrics` = gethrelay and \
             `relaywatch`); teach crates/lab/src/monitoring/prometheus/config.rs which lab address serves it"
        ),
    }
}

/// A target with empty values, to ask what the lab knows before any target is given.
fn probe_target() -> Target {
    Target {
        namespace: String::new(),
        pod: String::new(),
        mode: String::new(),
        gethrelay: SocketAddr::from(([127, 0, 0, 1], 0)),
        relaywatch: None,
    }
}

/// A static label a relabeling sets: its name, and the Target field that gives its value.
#[derive(Debug)]
struct StaticLabel {
    name: String,
    meta_label: String,
}

/// One ServiceMonitor endpoint, read.
#[derive(Debug)]
struct Endpoint {
    port: String,
    job: String,
    labels: Vec<StaticLabel>,
    scrape: Map<String, Json>,
}

/// The Prometheus config (YAML) for the lab, and a human-readable list of how it differs from
/// what the Prometheus Operator generates in the cluster.
pub fn prometheus_config(
    servicemonitor_yaml: &str,
    targets: &[Target],
    rule_file: &Path,
    alertmanager: SocketAddr,
    time_scale: f64,
) -> Result<(String, Vec<String>)> {
    let mut differences = vec![
        "targets are static lab addresses instead of Kubernetes pod discovery (selector and namespaceSelector are not used)".to_string(),
        "the relabelings that copy pod metadata (__meta_kubernetes_*) become static labels with each lab target's namespace, pod and mode".to_string(),
        "the operator's own labels service and container are absent; endpoint is set to the port name as the operator does; instance is the loopback address".to_string(),
        format!("Alertmanager is the lab's at {alertmanager}, without discovery"),
    ];
    let endpoints = read_servicemonitor(servicemonitor_yaml, time_scale, &mut differences)?;
    let (_, evaluation) = scale_duration(STACK_DEFAULT_INTERVAL, time_scale, MIN_INTERVAL_MS)?;
    if time_scale != 1.0 {
        differences.push(format!(
            "evaluation_interval is {evaluation} (kube-prometheus-stack's {STACK_DEFAULT_INTERVAL} / {time_scale})"
        ));
    }
    let mut jobs = Vec::new();
    for endpoint in &endpoints {
        let mut static_configs = Vec::new();
        for target in targets {
            let Some(address) = port_address(&endpoint.port, target)? else {
                continue;
            };
            let mut labels = Map::new();
            for label in &endpoint.labels {
                let value = meta_label_value(&label.meta_label, target).unwrap_or_default();
                labels.insert(label.name.clone(), json!(value));
            }
            labels.insert("endpoint".into(), json!(endpoint.port));
            static_configs.push(json!({"targets": [address.to_string()], "labels": labels}));
        }
        let mut job = endpoint.scrape.clone();
        job.insert("job_name".into(), json!(endpoint.job));
        job.insert("static_configs".into(), Json::Array(static_configs));
        jobs.push(Json::Object(job));
    }
    let config = json!({
        "global": {"evaluation_interval": evaluation},
        "rule_files": [rule_file.display().to_string()],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager.to_string()]}]}]},
        "scrape_configs": jobs,
    });
    let yaml =
        serde_norway::to_string(&config).context("cannot write the Prometheus config as YAML")?;
    let header = "# Generated by the lab (crates/lab/src/monitoring/prometheus/config.rs) from\n\
                  # deploy/kustomize/base/servicemonitor.yaml. Never commit it.\n";
    Ok((format!("{header}{yaml}"), differences))
}

/// Reads the ServiceMonitor's endpoints into scrape settings.
fn read_servicemonitor(
    yaml: &str,
    time_scale: f64,
    differences: &mut Vec<String>,
) -> Result<Vec<Endpoint>> {
    let document: Value = serde_norway::from_str(yaml).context("ServiceMonitor: not valid YAML")?;
    let kind = document.get("kind").and_then(Value::as_str);
    if kind != Some("ServiceMonitor") {
        bail!(
            "ServiceMonitor: `kind` is {kind:?}, expected ServiceMonitor (is this the right file?)"
        );
    }
    let spec = document
        .get("spec")
        .and_then(Value::as_mapping)
        .context("ServiceMonitor: no `spec:` mapping")?;
    for key in spec.keys() {
        let key = key.as_str().unwrap_or("?");
        if !SPEC_KEYS.contains(&key) {
            bail!("ServiceMonitor: spec.{key} is not reproduced by the lab; teach crates/lab/src/monitoring/prometheus/config.rs about it");
        }
    }
    let sample_limit = match spec.get("sampleLimit") {
        None => None,
        Some(value) => Some(value.as_u64().with_context(|| {
            format!("ServiceMonitor: spec.sampleLimit is {value:?}, not a whole number")
        })?),
    };
    let endpoints = spec
        .get("endpoints")
        .and_then(Value::as_sequence)
        .filter(|endpoints| !endpoints.is_empty())
        .context(
            "ServiceMonitor: spec.endpoints is missing or empty; there is nothing to scrape",
        )?;
    let mut read = Vec::new();
    for (index, endpoint) in endpoints.iter().enumerate() {
        let port = endpoint
            .get("port")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let endpoint = read_endpoint(endpoint, sample_limit, time_scale, differences)
            .with_context(|| format!("ServiceMonitor: endpoint {index} (port {port})"))?;
        if read
            .iter()
            .any(|other: &Endpoint| other.job == endpoint.job)
        {
            bail!(
                "ServiceMonitor: two endpoints give job `{}`; Prometheus needs unique job names",
                endpoint.job
            );
        }
        read.push(endpoint);
    }
    Ok(read)
}

fn read_endpoint(
    endpoint: &Value,
    sample_limit: Option<u64>,
    time_scale: f64,
    differences: &mut Vec<String>,
) -> Result<Endpoint> {
    let endpoint = endpoint.as_mapping().context("not a mapping")?;
    for key in endpoint.keys() {
        let key = key.as_str().unwrap_or("?");
        if !ENDPOINT_KEYS.contains(&key) {
            bail!("`{key}` is not reproduced by the lab; teach crates/lab/src/monitoring/prometheus/config.rs about it");
        }
    }
    let text = |key: &str| -> Result<Option<&str>> {
        match endpoint.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => bail!("`{key}` is {other:?}, not a string"),
        }
    };
    let port = text("port")?
        .context("no `port:` (the lab maps endpoints by port name)")?
        .to_string();
    // Fails here for an unknown port, even when no target would use it.
    port_address(&port, &probe_target())?;

    let mut scrape = Map::new();
    scrape.insert(
        "metrics_path".into(),
        json!(text("path")?.unwrap_or(DEFAULT_PATH)),
    );
    if let Some(scheme) = text("scheme")? {
        scrape.insert("scheme".into(), json!(scheme));
    }
    for (key, name) in [
        ("honorLabels", "honor_labels"),
        ("honorTimestamps", "honor_timestamps"),
    ] {
        if let Some(value) = endpoint.get(key) {
            let flag = value
                .as_bool()
                .with_context(|| format!("`{key}` is {value:?}, not true or false"))?;
            scrape.insert(name.into(), json!(flag));
        }
    }
    let interval_text = text("interval")?.unwrap_or(STACK_DEFAULT_INTERVAL);
    if crate::timescale::parse_duration(interval_text).context("`interval`")? == 0 {
        bail!("`interval: {interval_text}` is zero; Prometheus needs a positive scrape interval");
    }
    let (interval_ms, interval) =
        scale_duration(interval_text, time_scale, MIN_INTERVAL_MS).context("`interval`")?;
    let timeout_text = text("scrapeTimeout")?.unwrap_or(interval_text);
    let (timeout_ms, _) =
        scale_duration(timeout_text, time_scale, MIN_INTERVAL_MS).context("`scrapeTimeout`")?;
    let timeout_ms = timeout_ms.min(interval_ms);
    let timeout = crate::timescale::format_duration(timeout_ms);
    if interval_text != interval || timeout_text != timeout {
        differences.push(format!(
            "port {port}: scrape_interval {interval} and scrape_timeout {timeout} (ServiceMonitor: {interval_text} and {timeout_text}, / {time_scale}, at least 1s, timeout at most the interval)"
        ));
    }
    scrape.insert("scrape_interval".into(), json!(interval));
    scrape.insert("scrape_timeout".into(), json!(timeout));
    if let Some(limit) = sample_limit {
        scrape.insert("sample_limit".into(), json!(limit));
    }
    if let Some(rules) = endpoint.get("metricRelabelings") {
        scrape.insert(
            "metric_relabel_configs".into(),
            relabel_configs(rules).context("`metricRelabelings`")?,
        );
    }

    let mut job = None;
    let mut labels = Vec::new();
    for (index, rule) in endpoint
        .get("relabelings")
        .map(|rules| rules.as_sequence().context("`relabelings` is not a list"))
        .transpose()?
        .into_iter()
        .flatten()
        .enumerate()
    {
        read_relabeling(rule, &mut job, &mut labels)
            .with_context(|| format!("relabelings[{index}]"))?;
    }
    let job = job.context(
        "no relabeling sets `targetLabel: job` with a `replacement`; the alert rules select on job, so the lab needs it",
    )?;
    Ok(Endpoint {
        port,
        job,
        labels,
        scrape,
    })
}

/// One relabeling: a fixed `job`, or a copy of pod metadata the lab can stand in for.
fn read_relabeling(
    rule: &Value,
    job: &mut Option<String>,
    labels: &mut Vec<StaticLabel>,
) -> Result<()> {
    let rule = rule.as_mapping().context("not a mapping")?;
    let field = |key: &str| rule.get(key).and_then(Value::as_str);
    let action = field("action").unwrap_or("replace").to_ascii_lowercase();
    let target = field("targetLabel")
        .context("no `targetLabel`; the lab reproduces only relabelings that set a label")?;
    for key in rule.keys() {
        let key = key.as_str().unwrap_or("?");
        if !["sourceLabels", "targetLabel", "replacement", "action"].contains(&key) {
            bail!("`{key}` is not reproduced by the lab (only fixed values and plain copies of pod metadata are)");
        }
    }
    if action != "replace" {
        bail!("action `{action}` is not reproduced by the lab (only replace is)");
    }
    let sources: Vec<&str> = match rule.get("sourceLabels") {
        None => Vec::new(),
        Some(list) => list
            .as_sequence()
            .context("`sourceLabels` is not a list")?
            .iter()
            .map(|label| label.as_str().context("`sourceLabels` holds a non-string"))
            .collect::<Result<_>>()?,
    };
    match (sources.as_slice(), field("replacement")) {
        ([], Some(replacement)) if target == "job" => *job = Some(replacement.to_string()),
        ([], _) => bail!("sets `{target}` without a source; the lab reproduces only a fixed `job`"),
        ([meta_label], None | Some("$1")) => {
            if meta_label_value(meta_label, &probe_target()).is_none() {
                bail!(
                    "copies `{meta_label}`, which the lab has no value for (it knows the pod's namespace, name and relaywatch.io/mode label)"
                );
            }
            labels.push(StaticLabel {
                name: target.to_string(),
                meta_label: meta_label.to_string(),
            });
        }
        _ => bail!("sets `{target}` from {sources:?} in a way the lab cannot reproduce (only a plain copy of one label)"),
    }
    Ok(())
}

/// Converts the CRD's RelabelConfig list to Prometheus' `*_relabel_configs`, every field.
fn relabel_configs(rules: &Value) -> Result<Json> {
    let rules = rules.as_sequence().context("not a list")?;
    let mut converted = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let rule = rule
            .as_mapping()
            .with_context(|| format!("[{index}] is not a mapping"))?;
        let mut out = Map::new();
        for (key, value) in rule {
            let key = key.as_str().unwrap_or("?");
            let Some((_, name)) = RELABEL_KEYS.iter().find(|(camel, _)| *camel == key) else {
                bail!("[{index}]: `{key}` is not a RelabelConfig field");
            };
            let mut value: Json =
                serde_json::to_value(value).with_context(|| format!("[{index}].{key}"))?;
            // The operator accepts `Drop` as well as `drop`; Prometheus wants lower case.
            if key == "action" {
                value = json!(value.as_str().unwrap_or_default().to_ascii_lowercase());
            }
            out.insert(name.to_string(), value);
        }
        converted.push(Json::Object(out));
    }
    Ok(Json::Array(converted))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
