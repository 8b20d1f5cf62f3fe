//! What the values reserve against the PRD's budget, the chart version every install command
//! pins, and the offline overlay.

use serde_norway::Value;

use super::super::{get, VALUES_FILE};
use super::lookup;

/// The kube-prometheus-stack chart version the values are written for and checked against
/// (`../shared/reference/k8s-schemas/kube-prometheus-stack-values.yaml` is its values file).
pub const CHART_VERSION: &str = "88.5.3";

/// The overlay for clusters without egress to grafana.com.
pub const OFFLINE_FILE: &str = "deploy/kube-prometheus-stack/offline.yaml";

/// Files whose `helm install`/`helm upgrade` commands must pin [`CHART_VERSION`].
pub const PINNED_COMMAND_FILES: &[&str] = &[VALUES_FILE, OFFLINE_FILE, "docs"];

/// `helm install` or `helm upgrade` commands of `text` (continuation lines joined, comment
/// markers dropped) that install the chart without `--version <CHART_VERSION>`.
pub fn unpinned_installs(text: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim().trim_start_matches('#').trim();
        let continued = line.ends_with('\\');
        current.push_str(line.trim_end_matches('\\'));
        current.push(' ');
        if !continued {
            commands.push(std::mem::take(&mut current));
        }
    }
    commands.push(current);
    let pin = format!("--version {CHART_VERSION}");
    commands
        .into_iter()
        .filter(|command| {
            (command.contains("helm upgrade") || command.contains("helm install"))
                && command.contains("kube-prometheus-stack")
                && !command.contains(&pin)
        })
        .map(|command| command.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// A CPU quantity in millicores (`500m`, `1.5`, `2`).
fn millicores(value: &Value) -> Option<f64> {
    let text = match value {
        Value::Number(number) => return number.as_f64().map(|cores| cores * 1000.0),
        Value::String(text) => text,
        _ => return None,
    };
    match text.strip_suffix('m') {
        Some(milli) => milli.parse().ok(),
        None => text.parse::<f64>().ok().map(|cores| cores * 1000.0),
    }
}

/// A memory or storage quantity in MiB (`256Mi`, `4Gi`).
fn mebibytes(value: &Value) -> Option<f64> {
    let text = value.as_str()?;
    if let Some(gi) = text.strip_suffix("Gi") {
        return gi.parse::<f64>().ok().map(|gi| gi * 1024.0);
    }
    text.strip_suffix("Mi")?.parse().ok()
}

/// What the values reserve, summed over replicas.
#[derive(Debug)]
pub struct Sums {
    /// `requests` and `limits`: (kind, millicores, MiB).
    pub resources: Vec<(&'static str, f64, f64)>,
    /// MiB of all volumes.
    pub storage: f64,
    /// Quantities missing or unreadable.
    pub problems: Vec<String>,
}

/// What the values reserve, summed over replicas; problems for quantities it cannot read.
pub fn resource_sums(ours: &Value) -> Sums {
    let replicas = |path: &[&str]| lookup(ours, path).and_then(Value::as_u64).unwrap_or(1) as f64;
    let components: [(&[&str], f64); 4] = [
        (
            &["prometheus", "prometheusSpec", "resources"],
            replicas(&["prometheus", "prometheusSpec", "replicas"]),
        ),
        (
            &["alertmanager", "alertmanagerSpec", "resources"],
            replicas(&["alertmanager", "alertmanagerSpec", "replicas"]),
        ),
        (&["grafana", "resources"], 1.0),
        (&["prometheusOperator", "resources"], 1.0),
    ];
    let mut problems = Vec::new();
    let mut sums = Vec::new();
    for kind in ["requests", "limits"] {
        let (mut cpu, mut memory) = (0.0, 0.0);
        for (path, count) in components {
            let shown = path.join(".");
            let Some(set) = lookup(ours, path).and_then(|r| get(r, kind)) else {
                problems.push(format!("{shown}.{kind} missing"));
                continue;
            };
            match get(set, "cpu").and_then(millicores) {
                Some(value) => cpu += value * count,
                None => problems.push(format!("{shown}.{kind}.cpu missing or unreadable")),
            }
            match get(set, "memory").and_then(mebibytes) {
                Some(value) => memory += value * count,
                None => problems.push(format!("{shown}.{kind}.memory missing or unreadable")),
            }
        }
        sums.push((kind, cpu, memory));
    }
    let volume = |path: &[&str], count: f64| {
        lookup(ours, path)
            .and_then(mebibytes)
            .map(|mib| mib * count)
    };
    let volumes = [
        volume(
            &[
                "prometheus",
                "prometheusSpec",
                "storageSpec",
                "volumeClaimTemplate",
                "spec",
                "resources",
                "requests",
                "storage",
            ],
            replicas(&["prometheus", "prometheusSpec", "replicas"]),
        ),
        volume(
            &[
                "alertmanager",
                "alertmanagerSpec",
                "storage",
                "volumeClaimTemplate",
                "spec",
                "resources",
                "requests",
                "storage",
            ],
            replicas(&["alertmanager", "alertmanagerSpec", "replicas"]),
        ),
        volume(&["grafana", "persistence", "size"], 1.0),
    ];
    Sums {
        resources: sums,
        storage: volumes.iter().flatten().sum(),
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::read_yaml;
    use super::*;

    #[test]
    fn resources_fit_the_prd_budget() {
        let ours = read_yaml(VALUES_FILE).unwrap();
        let Sums {
            resources: sums,
            storage,
            problems,
        } = resource_sums(&ours);
        assert!(
            problems.is_empty(),
            "{VALUES_FILE}:\n{}",
            problems.join("\n")
        );
        for (kind, cpu, memory) in &sums {
            println!(
                "{kind}: {:.2} CPU, {:.2} GiB",
                cpu / 1000.0,
                memory / 1024.0
            );
        }
        println!("volumes: {:.0} GiB", storage / 1024.0);
        // The PRD gives the stack 4-6 cores, 10-20 GB RAM and 120 GB of storage. What we set
        // stays within the lower ends, leaving the rest for the components that keep the
        // chart's defaults (kube-state-metrics, node-exporters, config reloaders).
        let (_, cpu, memory) = sums[1];
        assert!(cpu <= 4000.0, "limits {cpu} millicores exceed 4 cores");
        assert!(memory <= 10.0 * 1024.0, "limits {memory} MiB exceed 10 GiB");
        assert!(
            storage <= 120.0 * 1024.0,
            "volumes {storage} MiB exceed 120 GiB"
        );
        let (_, cpu, memory) = sums[0];
        assert!(cpu > 0.0 && memory > 0.0);
    }

    #[test]
    fn persistence_cluster_label_and_pinned_installs() {
        let ours = read_yaml(VALUES_FILE).unwrap();
        assert_eq!(
            lookup(&ours, &["grafana", "persistence", "enabled"]),
            Some(&Value::Bool(true)),
            "Grafana keeps its database on a volume"
        );
        assert_eq!(
            lookup(&ours, &["grafana", "deploymentStrategy", "type"]).and_then(Value::as_str),
            Some("Recreate"),
            "a ReadWriteOnce volume cannot be attached to the old and the new pod at once"
        );
        assert!(
            lookup(
                &ours,
                &["prometheus", "prometheusSpec", "externalLabels", "cluster"]
            )
            .and_then(Value::as_str)
            .is_some_and(|name| !name.is_empty()),
            "externalLabels.cluster names the cluster"
        );
        let mut files = Vec::new();
        for entry in PINNED_COMMAND_FILES {
            let path = super::super::super::root().join(entry);
            if path.is_dir() {
                files.extend(super::super::super::files(entry, ".md").unwrap());
            } else {
                files.push(path);
            }
        }
        let mut unpinned = Vec::new();
        let mut commands = 0;
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            commands += text.matches("helm upgrade --install").count();
            for command in unpinned_installs(&text) {
                unpinned.push(format!("{}: {command}", super::super::super::shown(file)));
            }
        }
        assert!(
            unpinned.is_empty(),
            "install commands without --version {CHART_VERSION}:\n{}",
            unpinned.join("\n")
        );
        assert!(commands >= 2, "no install command found in {files:?}");
        assert_eq!(
            unpinned_installs("helm upgrade --install kube-prometheus-stack \\\n  prometheus-community/kube-prometheus-stack -n monitoring"),
            ["helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack -n monitoring"]
        );
    }

    #[test]
    fn the_offline_overlay_drops_the_download_and_only_that() {
        let offline = read_yaml(OFFLINE_FILE).unwrap();
        let ours = read_yaml(VALUES_FILE).unwrap();
        let dashboards = lookup(&offline, &["grafana", "dashboards"])
            .and_then(Value::as_mapping)
            .unwrap();
        let imported = lookup(&ours, &["grafana", "dashboards"])
            .and_then(Value::as_mapping)
            .unwrap();
        // Every provider that imports by gnetId or url is nulled; nothing else is set.
        for (provider, _) in imported {
            assert_eq!(
                dashboards.get(provider),
                Some(&Value::Null),
                "{provider:?} must be null in {OFFLINE_FILE}"
            );
        }
        assert_eq!(dashboards.len(), imported.len());
        assert_eq!(offline.as_mapping().unwrap().len(), 1);
        assert_eq!(
            get(&offline, "grafana")
                .and_then(Value::as_mapping)
                .unwrap()
                .len(),
            1
        );
    }
}
