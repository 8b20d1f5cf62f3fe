//! The Pod Security Standard "restricted" (Kubernetes docs, "Pod Security Standards"), checked
//! on every rendered pod template, and the namespace label that makes the API server enforce it.
//! Without a cluster here, this is the admission check the namespace label would run at apply
//! time: a container that fails it would never start.

use serde_json::Value as Json;

use super::{containers, name, of_kind, strings, workloads};

/// The namespace labels of `base/namespace.yaml`.
pub const NAMESPACE_LABELS: &[(&str, &str)] = &[
    ("pod-security.kubernetes.io/enforce", "restricted"),
    ("pod-security.kubernetes.io/audit", "restricted"),
    ("pod-security.kubernetes.io/warn", "restricted"),
];

/// Volume types "restricted" allows.
const VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Sysctls "baseline" (and so "restricted") allows.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

const SELINUX_TYPES: &[&str] = &[
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn seccomp_allowed(profile: &Json) -> bool {
    matches!(
        profile["type"].as_str(),
        Some("RuntimeDefault" | "Localhost")
    )
}

/// One container against "restricted", given the pod's securityContext (`Json::Null` for none).
pub fn check_container(place: &str, container: &Json, pod_context: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    let context = &container["securityContext"];
    let mut fail = |rule: &str| problems.push(format!("{place}: {rule} (Pod Security restricted)"));
    if context["privileged"] == true {
        fail("privileged");
    }
    if context["allowPrivilegeEscalation"] != false {
        fail("allowPrivilegeEscalation must be false");
    }
    if !strings(&context["capabilities"]["drop"]).contains(&"ALL") {
        fail("capabilities.drop must contain ALL");
    }
    if strings(&context["capabilities"]["add"])
        .iter()
        .any(|cap| *cap != "NET_BIND_SERVICE")
    {
        fail("capabilities.add may only hold NET_BIND_SERVICE");
    }
    let non_root = match context["runAsNonRoot"].as_bool() {
        Some(value) => value,
        None => pod_context["runAsNonRoot"] == true,
    };
    if !non_root {
        fail("runAsNonRoot must be true in the container or the pod");
    }
    if context["runAsUser"] == 0 {
        fail("runAsUser 0");
    }
    let seccomp = &context["seccompProfile"];
    let seccomp_ok = if seccomp.is_null() {
        seccomp_allowed(&pod_context["seccompProfile"])
    } else {
        seccomp_allowed(seccomp)
    };
    if !seccomp_ok {
        fail("seccompProfile must be RuntimeDefault or Localhost in the container or the pod");
    }
    if context["windowsOptions"]["hostProcess"] == true {
        fail("windowsOptions.hostProcess");
    }
    if !context["procMount"].is_null() && context["procMount"] != "Default" {
        fail("procMount must be Default");
    }
    if context["appArmorProfile"]["type"] == "Unconfined" {
        fail("appArmorProfile Unconfined");
    }
    if let Some(kind) = context["seLinuxOptions"]["type"].as_str() {
        if !SELINUX_TYPES.contains(&kind) {
            fail("seLinuxOptions.type not allowed");
        }
    }
    for port in container["ports"].as_array().into_iter().flatten() {
        if port["hostPort"].as_u64().is_some_and(|p| p != 0) {
            fail("hostPort");
        }
    }
    problems
}

/// A pod spec against "restricted".
pub fn check_pod(shown: &str, pod: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    let context = &pod["securityContext"];
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[host] == true {
            problems.push(format!("{shown}: {host} (Pod Security restricted)"));
        }
    }
    if context["runAsUser"] == 0 {
        problems.push(format!(
            "{shown}: pod runAsUser 0 (Pod Security restricted)"
        ));
    }
    if context["seccompProfile"]["type"] == "Unconfined" {
        problems.push(format!(
            "{shown}: pod seccompProfile Unconfined (Pod Security restricted)"
        ));
    }
    for sysctl in context["sysctls"].as_array().into_iter().flatten() {
        let sysctl = sysctl["name"].as_str().unwrap_or_default();
        if !SAFE_SYSCTLS.contains(&sysctl) {
            problems.push(format!(
                "{shown}: sysctl {sysctl} (Pod Security restricted)"
            ));
        }
    }
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        let kinds: Vec<&String> = volume
            .as_object()
            .into_iter()
            .flat_map(|fields| fields.keys())
            .filter(|key| *key != "name")
            .collect();
        for kind in kinds {
            if !VOLUME_TYPES.contains(&kind.as_str()) {
                problems.push(format!(
                    "{shown}: volume {} of type {kind} (Pod Security restricted)",
                    volume["name"]
                ));
            }
        }
    }
    for container in
        containers(pod).chain(pod["ephemeralContainers"].as_array().into_iter().flatten())
    {
        let place = format!("{shown} container {}", container["name"]);
        problems.extend(check_container(&place, container, context));
    }
    problems
}

/// The namespace enforces "restricted", and every workload's pod template passes it.
pub fn check_restricted(objects: &[Json]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut namespaces = 0;
    for namespace in of_kind(objects, "Namespace") {
        namespaces += 1;
        for (key, value) in NAMESPACE_LABELS {
            if namespace["metadata"]["labels"][key] != *value {
                problems.push(format!("{}: label {key}: {value} missing", name(namespace)));
            }
        }
    }
    if namespaces == 0 {
        problems.push("no Namespace in the bundle to carry the Pod Security labels".to_string());
    }
    for workload in workloads(objects) {
        problems.extend(check_pod(
            &name(workload),
            &workload["spec"]["template"]["spec"],
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pod_of_the_bundle_is_restricted() {
        if !super::super::super::tool("kubectl", "Pod Security restricted") {
            return;
        }
        let mut objects = super::super::render().unwrap();
        let problems = check_restricted(&objects);
        assert!(problems.is_empty(), "{}", problems.join("\n"));

        // The check can fail: loosen one thing in each StatefulSet and in the namespace.
        for set in objects.iter_mut().filter(|o| o["kind"] == "StatefulSet") {
            let which = set["metadata"]["name"].as_str().unwrap().to_string();
            let pod = &mut set["spec"]["template"]["spec"];
            match which.as_str() {
                "gethrelay-clearnet" => {
                    pod["containers"][1]["securityContext"]["capabilities"]["add"] =
                        serde_json::json!(["NET_ADMIN"]);
                }
                "gethrelay-prefer-tor" => {
                    pod["securityContext"]
                        .as_object_mut()
                        .unwrap()
                        .remove("seccompProfile");
                }
                _ => {
                    pod["volumes"]
                        .as_array_mut()
                        .unwrap()
                        .push(serde_json::json!({"name": "host", "hostPath": {"path": "/"}}));
                }
            }
        }
        for namespace in objects.iter_mut().filter(|o| o["kind"] == "Namespace") {
            namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] =
                "baseline".into();
        }
        let problems = check_restricted(&objects);
        let shown = problems.join("\n");
        assert_eq!(problems.len(), 6, "{shown}");
        assert!(
            shown.contains("gethrelay-clearnet container \"tor\": capabilities.add"),
            "{shown}"
        );
        // Without the pod's seccomp profile, all three containers of the pod fail.
        assert_eq!(
            shown.matches("gethrelay-prefer-tor container").count(),
            3,
            "{shown}"
        );
        assert!(
            shown.contains("volume \"host\" of type hostPath"),
            "{shown}"
        );
        assert!(
            shown.contains("pod-security.kubernetes.io/enforce"),
            "{shown}"
        );
    }
}
