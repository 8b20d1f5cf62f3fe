//! kube-prometheus-stack values: every key exists in the pinned chart values, free-form parts
//! follow the documented shapes (anchors.md §1), and alertmanager.config is the standalone file.

use serde_norway::Value;

use super::{get, seq};

/// Keys the chart leaves free-form; below them `check_free_form` checks the documented shapes.
pub const FREE_FORM: &[&str] = &[
    "prometheus.prometheusSpec.storageSpec",
    "alertmanager.alertmanagerSpec.storage",
    "grafana.dashboards",
    "grafana.dashboardProviders",
    "alertmanager.config",
];

/// Keys the chart documents only as a commented-out default (`# ingressClassName: nginx`), with
/// the chart file that carries that comment; the test checks the comment is there.
pub const COMMENTED_IN_CHART: &[(&str, &str)] = &[(
    "grafana.ingress.ingressClassName",
    "k8s-schemas/grafana-chart-values.yaml",
)];

fn lookup<'a>(root: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(root, |value, key| get(value, key))
}

fn is_empty_mapping(value: &Value) -> bool {
    value.as_mapping().is_some_and(|mapping| mapping.is_empty())
}

/// Key paths of `ours` that neither chart values file has. The grafana subchart's keys
/// (`grafana.*`) may come from either file. A chart value of `{}` or a list accepts anything below.
pub fn missing_keys(ours: &Value, chart: &Value, grafana_chart: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    walk(ours, &mut Vec::new(), chart, grafana_chart, &mut missing);
    missing
}

fn walk<'a>(
    value: &'a Value,
    path: &mut Vec<&'a str>,
    chart: &Value,
    grafana_chart: &Value,
    missing: &mut Vec<String>,
) {
    let Some(mapping) = value.as_mapping() else {
        return;
    };
    for (key, child) in mapping {
        let Some(key) = key.as_str() else { continue };
        path.push(key);
        let dotted = path.join(".");
        let in_chart = lookup(chart, path).or_else(|| {
            (path[0] == "grafana")
                .then(|| lookup(grafana_chart, &path[1..]))
                .flatten()
        });
        match in_chart {
            None if COMMENTED_IN_CHART.iter().any(|(key, _)| *key == dotted) => {}
            None => missing.push(dotted),
            Some(found) => {
                let open = is_empty_mapping(found)
                    || found.is_sequence()
                    || FREE_FORM.contains(&dotted.as_str());
                if !open {
                    walk(child, path, chart, grafana_chart, missing);
                }
            }
        }
        path.pop();
    }
}

/// The documented shapes below the free-form keys (anchors.md §1.1, §1.2).
pub fn check_free_form(ours: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let storage = lookup(
        ours,
        &[
            "prometheus",
            "prometheusSpec",
            "storageSpec",
            "volumeClaimTemplate",
            "spec",
        ],
    );
    match storage {
        Some(spec) => {
            for key in ["accessModes", "resources"] {
                if get(spec, key).is_none() {
                    problems.push(format!(
                        "storageSpec.volumeClaimTemplate.spec.{key} missing"
                    ));
                }
            }
            if lookup(spec, &["resources", "requests", "storage"]).and_then(Value::as_str)
                != Some("50Gi")
            {
                problems.push("storageSpec: 50Gi per replica".into());
            }
        }
        None => problems
            .push("prometheus.prometheusSpec.storageSpec.volumeClaimTemplate.spec missing".into()),
    }
    let alertmanager_storage = lookup(
        ours,
        &[
            "alertmanager",
            "alertmanagerSpec",
            "storage",
            "volumeClaimTemplate",
            "spec",
        ],
    );
    if alertmanager_storage
        .and_then(|spec| lookup(spec, &["resources", "requests", "storage"]))
        .is_none()
    {
        problems.push("alertmanager.alertmanagerSpec.storage: a volume, so silences and the notification log survive restarts".into());
    }
    for (what, spec) in [
        ("prometheus", storage),
        ("alertmanager", alertmanager_storage),
    ] {
        if spec
            .and_then(|spec| get(spec, "storageClassName"))
            .is_some()
        {
            problems.push(format!(
                "{what} storage: no storageClassName by default (the cluster's default StorageClass); the operator sets one if needed"
            ));
        }
    }
    let providers = lookup(
        ours,
        &["grafana", "dashboardProviders", "dashboardproviders.yaml"],
    );
    let mut provider_names = Vec::new();
    for provider in seq(providers.and_then(|p| get(p, "providers"))) {
        for key in ["name", "orgId", "folder", "type", "options"] {
            if get(provider, key).is_none() {
                problems.push(format!(
                    "grafana.dashboardProviders provider field {key} missing"
                ));
            }
        }
        let name = get(provider, "name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let path = lookup(provider, &["options", "path"])
            .and_then(Value::as_str)
            .unwrap_or_default();
        if path != format!("/var/lib/grafana/dashboards/{name}") {
            problems.push(format!(
                "provider {name}: options.path must be /var/lib/grafana/dashboards/{name}"
            ));
        }
        provider_names.push(name.to_string());
    }
    let dashboards = lookup(ours, &["grafana", "dashboards"]).and_then(Value::as_mapping);
    let mut gnet_ids = Vec::new();
    for (provider, entries) in dashboards.into_iter().flatten() {
        let provider = provider.as_str().unwrap_or_default();
        if !provider_names.iter().any(|name| name == provider) {
            problems.push(format!(
                "grafana.dashboards.{provider}: no dashboard provider of that name"
            ));
        }
        for (key, entry) in entries.as_mapping().into_iter().flatten() {
            for field in entry
                .as_mapping()
                .into_iter()
                .flatten()
                .filter_map(|(field, _)| field.as_str())
            {
                if ![
                    "gnetId",
                    "revision",
                    "datasource",
                    "title",
                    "url",
                    "json",
                    "file",
                    "curlOptions",
                    "token",
                ]
                .contains(&field)
                {
                    problems.push(format!(
                        "grafana.dashboards.{provider}.{key:?}.{field}: not a documented field"
                    ));
                }
            }
            gnet_ids.extend(get(entry, "gnetId").and_then(Value::as_u64));
        }
    }
    if gnet_ids != [18463] {
        problems.push(format!(
            "grafana.dashboards: gnetIds {gnet_ids:?}, want only 18463 (13877 is InfluxDB)"
        ));
    }
    problems
}

#[path = "values_budget.rs"]
pub mod budget;

#[cfg(test)]
mod tests {
    use super::super::{read_yaml, ALERTMANAGER_FILE, VALUES_FILE};
    use super::*;

    #[test]
    fn values_keys_exist_in_the_pinned_chart() {
        let Some(chart) = super::super::reference(
            "k8s-schemas/kube-prometheus-stack-values.yaml",
            "values key check",
        ) else {
            return;
        };
        let Some(grafana) =
            super::super::reference("k8s-schemas/grafana-chart-values.yaml", "values key check")
        else {
            return;
        };
        let chart: Value =
            serde_norway::from_str(&std::fs::read_to_string(chart).unwrap()).unwrap();
        let grafana: Value =
            serde_norway::from_str(&std::fs::read_to_string(grafana).unwrap()).unwrap();
        let ours = read_yaml(VALUES_FILE).unwrap();
        let missing = missing_keys(&ours, &chart, &grafana);
        assert!(
            missing.is_empty(),
            "{VALUES_FILE}: keys not in the pinned chart values: {missing:?}"
        );
        for (key, file) in COMMENTED_IN_CHART {
            let text =
                std::fs::read_to_string(super::super::reference(file, "values key check").unwrap())
                    .unwrap();
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                text.lines()
                    .any(|line| line.trim_start().starts_with(&format!("# {leaf}:"))),
                "{key}: no commented default `# {leaf}:` in {file}"
            );
        }
        let typo: Value =
            serde_norway::from_str("prometheus: {prometheusSpec: {retension: 15d}}").unwrap();
        assert_eq!(
            missing_keys(&typo, &chart, &grafana),
            ["prometheus.prometheusSpec.retension"]
        );
    }

    #[test]
    fn values_follow_the_prd_and_the_documented_shapes() {
        let ours = read_yaml(VALUES_FILE).unwrap();
        let problems = check_free_form(&ours);
        assert!(
            problems.is_empty(),
            "{VALUES_FILE}:\n{}",
            problems.join("\n")
        );
        let spec = |path: &[&str]| lookup(&ours, path).cloned();
        assert_eq!(
            spec(&["prometheus", "prometheusSpec", "retention"]),
            Some("15d".into())
        );
        assert_eq!(
            spec(&["prometheus", "prometheusSpec", "replicas"]),
            Some(2.into())
        );
        assert!(spec(&["grafana", "admin", "existingSecret"]).is_some());
        assert!(
            !seq(lookup(&ours, &["grafana", "ingress", "tls"])).is_empty(),
            "Grafana ingress needs TLS"
        );
        assert!(lookup(&ours, &["grafana", "adminPassword"]).is_none());
        assert_eq!(
            seq(lookup(
                &ours,
                &["alertmanager", "alertmanagerSpec", "secrets"]
            )),
            [Value::from("alertmanager-notifications")]
        );
    }

    #[test]
    fn values_carry_the_standalone_alertmanager_config() {
        let ours = read_yaml(VALUES_FILE).unwrap();
        let standalone = read_yaml(ALERTMANAGER_FILE).unwrap();
        assert!(
            lookup(&ours, &["alertmanager", "config"]) == Some(&standalone),
            "{VALUES_FILE} alertmanager.config differs from {ALERTMANAGER_FILE}; copy the file's content under alertmanager.config"
        );
    }
}
