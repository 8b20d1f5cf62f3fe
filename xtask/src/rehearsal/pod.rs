//! The rendered pod template of one mode turned into what `podman kube play` runs, by code.
//! Pure: rendered objects in, a [`Plan`] out, with every difference from the cluster listed.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value as Json};

/// The rehearsal's own choices.
pub struct Options {
    /// Local image for each container name of the template.
    pub images: BTreeMap<String, String>,
    /// The podman network the pod joins.
    pub network: String,
    /// The pod is `rehearsal-<mode>-<owner>`: the owner is the test process's pid, so runs of
    /// two worktrees never share a pod, and pods of a dead run can be found and removed.
    pub owner: u32,
    /// TEMPORARY (issue 11 blocker 2): move tor's DataDirectory into a subdirectory of the
    /// volume when the rendered torrc has it at the volume's root. Remove once
    /// deploy/kustomize renders a subdirectory (the plan then reports nothing to fix).
    pub temporary_datadir_fix: bool,
}

/// A probe of the template, run by the rehearsal against the pod's IP, as kubelet would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub container: String,
    pub kind: String,
    pub port: u16,
    /// None for a tcpSocket probe.
    pub http_path: Option<String>,
}

/// What the rehearsal plays for one mode.
#[derive(Debug)]
pub struct Plan {
    pub mode: String,
    pub pod_name: String,
    /// ConfigMaps the pod mounts, then the Pod: the file given to `podman kube play`.
    pub yaml: String,
    /// podman volume names, one per volumeClaimTemplate, with the mount path tor sees.
    pub claims: Vec<(String, String)>,
    /// podman volumes that hold the played ConfigMaps' files.
    pub config_volumes: Vec<String>,
    pub probes: Vec<Probe>,
    /// The pod's fsGroup and whether its change policy is OnRootMismatch.
    pub fs_group: Option<(u32, bool)>,
    /// tor's DataDirectory as rendered was the volume's root (issue 11 blocker 2).
    pub datadir_at_volume_root: bool,
    /// HiddenServiceDir as played (inside the pod).
    pub hidden_service_dir: Option<String>,
    pub differences: Vec<String>,
}

/// Every rehearsal pod's and volume's name starts with this.
pub const POD_PREFIX: &str = "rehearsal-";

/// The test process that created a rehearsal pod or volume, from its name. Pure.
pub fn owner_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(POD_PREFIX)?;
    rest.split('-').find_map(|word| word.parse().ok())
}

/// The StatefulSet of `mode` in the rendered bundle.
pub fn stateful_set<'a>(objects: &'a [Json], mode: &str) -> Result<&'a Json> {
    objects
        .iter()
        .find(|object| {
            object["kind"] == "StatefulSet"
                && object["spec"]["template"]["metadata"]["labels"]["relaywatch.io/mode"] == mode
        })
        .with_context(|| {
            format!(
                "no StatefulSet with pod label relaywatch.io/mode={mode} in the rendered bundle"
            )
        })
}

fn torrc_value(torrc: &str, key: &str) -> Option<String> {
    torrc.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(key)).then(|| words.next().unwrap_or_default().to_owned())
    })
}

fn trimmed(path: &str) -> &str {
    path.trim_end_matches('/')
}

/// Builds the plan for `mode` from the rendered `objects`.
pub fn plan(objects: &[Json], mode: &str, options: &Options) -> Result<Plan> {
    let set = stateful_set(objects, mode)?;
    let template = &set["spec"]["template"];
    let pod_name = format!("{POD_PREFIX}{mode}-{}", options.owner);
    let mut spec = template["spec"].clone();
    let mut differences = Vec::new();
    let mut probes = Vec::new();

    // Claims become podman volumes named after the pod.
    let mut claims = Vec::new();
    let claim_names: Vec<String> = set["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|claim| claim["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    for claim in &claim_names {
        let volume = format!("{pod_name}-{claim}");
        claims.push((volume.clone(), String::new()));
        spec["volumes"]
            .as_array_mut()
            .context("pod template has no volumes list")?
            .push(json!({"name": claim, "persistentVolumeClaim": {"claimName": volume}}));
        differences.push(format!(
            "volumeClaimTemplate {claim} → podman volume {volume}, created root-owned 0755 like a fresh block volume"
        ));
    }

    // Init containers (none today) get local images the same way; they run to completion.
    for init in spec["initContainers"].as_array_mut().into_iter().flatten() {
        let name = init["name"].as_str().unwrap_or_default().to_owned();
        let image = options.images.get(&name).with_context(|| {
            format!(
                "init container {name} of {mode}: no local image for it (known: {:?})",
                options.images.keys()
            )
        })?;
        differences.push(format!("init container {name}: image → {image}"));
        init["image"] = json!(image);
        init["imagePullPolicy"] = json!("Never");
    }
    let containers = spec["containers"]
        .as_array_mut()
        .context("pod template has no containers")?;
    let mut tor_data_mount = None;
    let mut removed_ports = false;
    for container in containers.iter_mut() {
        let name = container["name"].as_str().unwrap_or_default().to_owned();
        let image = options.images.get(&name).with_context(|| {
            format!(
                "container {name} of {mode}: no local image for it (known: {:?})",
                options.images.keys()
            )
        })?;
        differences.push(format!(
            "container {name}: image {} → {image}",
            container["image"].as_str().unwrap_or("?")
        ));
        container["image"] = json!(image);
        container["imagePullPolicy"] = json!("Never");
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            if claim_names
                .iter()
                .any(|claim| mount["name"] == claim.as_str())
                && mount["readOnly"] != true
            {
                let path = mount["mountPath"].as_str().unwrap_or_default().to_owned();
                tor_data_mount = Some(path.clone());
                let volume = format!("{pod_name}-{}", mount["name"].as_str().unwrap_or_default());
                if let Some(entry) = claims.iter_mut().find(|(name, _)| *name == volume) {
                    entry.1 = path.clone();
                }
            }
        }
        let ports: BTreeMap<String, u16> = container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|port| {
                Some((
                    port["name"].as_str()?.to_owned(),
                    port["containerPort"].as_u64()? as u16,
                ))
            })
            .collect();
        let object = container
            .as_object_mut()
            .context("container is not a mapping")?;
        // podman kube play 4.3 publishes every containerPort on the host's same port; a pod on a
        // cluster publishes nothing, and the host's ports are not the rehearsal's to take.
        if object.remove("ports").is_some() {
            removed_ports = true;
        }
        for kind in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let Some(probe) = object.remove(kind) else {
                continue;
            };
            let (check, http_path) = if probe["httpGet"].is_object() {
                (
                    &probe["httpGet"],
                    Some(probe["httpGet"]["path"].as_str().unwrap_or("/").to_owned()),
                )
            } else if probe["tcpSocket"].is_object() {
                (&probe["tcpSocket"], None)
            } else {
                bail!("container {name}: {kind} is neither httpGet nor tcpSocket; the rehearsal cannot run it");
            };
            let port = match &check["port"] {
                Json::String(named) => *ports.get(named).with_context(|| {
                    format!("container {name}: {kind} port {named} is not a named port")
                })?,
                number => number.as_u64().context("probe port")? as u16,
            };
            probes.push(Probe {
                container: name.clone(),
                kind: kind.to_owned(),
                port,
                http_path,
            });
        }
    }
    if removed_ports {
        differences.push(
            "containerPorts removed (podman kube play would publish each on the host's same port); the pod IP serves them as on a cluster".into(),
        );
    }
    if !probes.is_empty() {
        differences.push(
            "probes removed from the Pod and run by the rehearsal against the pod IP, as kubelet does (podman would run them inside the container with curl, which a scratch image lacks)".into(),
        );
    }

    // ConfigMaps the pod mounts, from the render; a torrc gets DisableNetwork.
    let mut config_maps = Vec::new();
    let mut config_volumes = Vec::new();
    let mut datadir_at_volume_root = false;
    let mut hidden_service_dir = None;
    for volume in spec["volumes"].as_array_mut().into_iter().flatten() {
        let Some(name) = volume["configMap"]["name"].as_str().map(str::to_owned) else {
            continue;
        };
        // podman keeps a ConfigMap's files in a volume of the ConfigMap's name: the pod's own
        // name keeps runs apart, and lets the rehearsal remove it afterwards.
        let played = format!("{pod_name}-{name}");
        volume["configMap"]["name"] = json!(played);
        differences.push(format!(
            "ConfigMap {name} → {played} (podman stores it in a volume of that name)"
        ));
        let name = name.as_str();
        let mut config_map = objects
            .iter()
            .find(|object| object["kind"] == "ConfigMap" && object["metadata"]["name"] == name)
            .with_context(|| format!("ConfigMap {name} mounted by {mode} is not in the render"))?
            .clone();
        config_map["metadata"]
            .as_object_mut()
            .map(|meta| meta.remove("namespace"));
        config_map["metadata"]["name"] = json!(played);
        config_volumes.push(played.clone());
        let keys: Vec<String> = config_map["data"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let text = config_map["data"][&key]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let Some(datadir) = torrc_value(&text, "DataDirectory") else {
                continue;
            };
            let mut torrc = text.clone();
            if tor_data_mount.as_deref().map(trimmed) == Some(trimmed(&datadir)) {
                datadir_at_volume_root = true;
                if options.temporary_datadir_fix {
                    let fixed = format!("{}/data", trimmed(&datadir));
                    torrc = torrc.replace(
                        &format!("DataDirectory {datadir}\n"),
                        &format!("DataDirectory {fixed}\n"),
                    );
                    differences.push(format!(
                        "TEMPORARY (remove when deploy/kustomize is fixed): ConfigMap {name} {key}: DataDirectory {datadir} → {fixed}, a subdirectory tor creates and owns (issue 11 blocker 2)"
                    ));
                }
            }
            hidden_service_dir = torrc_value(&torrc, "HiddenServiceDir");
            torrc.push_str("# Added by the pod rehearsal: no tor of a rehearsal may reach the public Tor network.\nDisableNetwork 1\n");
            differences.push(format!(
                "ConfigMap {name} {key}: DisableNetwork 1 appended (never the public Tor network)"
            ));
            config_map["data"][&key] = json!(torrc);
        }
        config_maps.push(config_map);
    }

    let security = &spec["securityContext"];
    let fs_group = security["fsGroup"].as_u64().map(|gid| {
        (
            gid as u32,
            security["fsGroupChangePolicy"] == "OnRootMismatch",
        )
    });
    if let Some((gid, on_root_mismatch)) = fs_group {
        let policy = if on_root_mismatch {
            "OnRootMismatch"
        } else {
            "Always"
        };
        differences.push(format!(
            "fsGroup {gid} ({policy}): applied to the volume by the rehearsal before every start as kubelet does, and given to every container as a supplemental group (podman kube play ignores fsGroup)"
        ));
        let groups = &mut spec["securityContext"]["supplementalGroups"];
        if !groups
            .as_array()
            .is_some_and(|list| list.iter().any(|g| g.as_u64() == Some(u64::from(gid))))
        {
            let mut list = groups.as_array().cloned().unwrap_or_default();
            list.push(json!(gid));
            *groups = Json::Array(list);
        }
    }
    differences.push(format!(
        "network: podman network {} the rehearsal creates (internal: no route off this machine), not a cluster network; namespace dropped",
        options.network
    ));

    let mut metadata = json!({"name": pod_name, "labels": template["metadata"]["labels"].clone()});
    if let Some(annotations) = template["metadata"]["annotations"].as_object() {
        metadata["annotations"] = json!(annotations);
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
    let mut yaml = String::new();
    for document in config_maps.iter().chain(std::iter::once(&pod)) {
        yaml.push_str("---\n");
        yaml.push_str(&serde_norway::to_string(document).context("cannot write pod YAML")?);
    }
    Ok(Plan {
        mode: mode.to_owned(),
        pod_name,
        yaml,
        claims,
        config_volumes,
        probes,
        fs_group,
        datadir_at_volume_root,
        hidden_service_dir,
        differences,
    })
}

#[cfg(test)]
#[path = "pod_tests.rs"]
mod tests;
