//! Where the relays run and what they keep: a PodDisruptionBudget and a preferred anti-affinity
//! per mode, the Tor volume from the cluster's default StorageClass, and static peers from the
//! ConfigMap operators edit.

use serde_json::Value as Json;

use crate::deploy_checks::kustomize::{name, of_kind};

/// The ConfigMap and key that feed gethrelay's `--staticnodes` (`GETHRELAY_STATICNODES`).
pub const STATIC_PEERS: (&str, &str) = ("gethrelay-static-peers", "staticnodes");

/// Whether `selector` (matchLabels only) selects pods labelled `labels`, and nothing else of
/// the fleet: it must name every label that tells the mode's pods apart.
fn selects_exactly(selector: &Json, labels: &Json) -> bool {
    let Some(match_labels) = selector["matchLabels"].as_object() else {
        return false;
    };
    selector["matchExpressions"].is_null()
        && match_labels
            .iter()
            .all(|(key, value)| labels[key] == *value)
        && match_labels.contains_key("relaywatch.io/mode")
}

pub fn check_placement(objects: &[Json]) -> Vec<String> {
    let mut problems = Vec::new();
    for set in of_kind(objects, "StatefulSet") {
        let shown = name(set);
        let labels = &set["spec"]["template"]["metadata"]["labels"];
        let budgets: Vec<&Json> = of_kind(objects, "PodDisruptionBudget")
            .filter(|pdb| selects_exactly(&pdb["spec"]["selector"], labels))
            .collect();
        match budgets.as_slice() {
            [pdb] if pdb["spec"]["maxUnavailable"] == 1 && pdb["spec"]["minAvailable"].is_null() => {}
            [pdb] => problems.push(format!(
                "{}: want maxUnavailable 1 for {shown}, one relay of a mode down at a time",
                name(pdb)
            )),
            _ => problems.push(format!(
                "{shown}: want exactly one PodDisruptionBudget selecting its pods by mode, found {}",
                budgets.len()
            )),
        }
        let spread = set["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
            ["preferredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|term| {
                let term = &term["podAffinityTerm"];
                term["topologyKey"] == "kubernetes.io/hostname"
                    && selects_exactly(&term["labelSelector"], labels)
            });
        if !spread {
            problems.push(format!("{shown}: want a preferred pod anti-affinity on kubernetes.io/hostname against its own mode's pods"));
        }
        if set["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]
            .is_array()
        {
            problems.push(format!("{shown}: a required anti-affinity leaves relays pending on a cluster with fewer nodes than relays; prefer it"));
        }
        for claim in set["spec"]["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if !claim["spec"]["storageClassName"].is_null() {
                problems.push(format!(
                    "{shown}: volumeClaimTemplate {} sets storageClassName; the bundle leaves it to the cluster default (operators patch it)",
                    claim["metadata"]["name"]
                ));
            }
        }
        let feeds_static_peers = set["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["name"] == "gethrelay")
            .flat_map(|c| c["env"].as_array().into_iter().flatten())
            .any(|env| {
                let key_ref = &env["valueFrom"]["configMapKeyRef"];
                env["name"] == "GETHRELAY_STATICNODES"
                    && key_ref["name"] == STATIC_PEERS.0
                    && key_ref["key"] == STATIC_PEERS.1
            });
        if !feeds_static_peers {
            problems.push(format!(
                "{shown}: gethrelay must read GETHRELAY_STATICNODES from ConfigMap {} key {}",
                STATIC_PEERS.0, STATIC_PEERS.1
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_without_budgets_spread_or_default_storage_is_reported() {
        if !crate::deploy_checks::tool("kubectl", "relay placement") {
            return;
        }
        let mut objects = crate::deploy_checks::kustomize::render().unwrap();
        assert!(
            check_placement(&objects).is_empty(),
            "{:?}",
            check_placement(&objects)
        );
        objects.retain(|o| {
            o["metadata"]["name"] != "gethrelay-prefer-tor" || o["kind"] != "PodDisruptionBudget"
        });
        for set in objects.iter_mut().filter(|o| o["kind"] == "StatefulSet") {
            if set["metadata"]["name"] == "gethrelay-only-onion" {
                set["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] = "fast".into();
                set["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
                    ["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
                    ["labelSelector"]["matchLabels"]
                    .as_object_mut()
                    .unwrap()
                    .remove("relaywatch.io/mode");
            }
        }
        let problems = check_placement(&objects);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        for expected in [
            "gethrelay-prefer-tor: want exactly one PodDisruptionBudget",
            "gethrelay-only-onion: want a preferred pod anti-affinity",
            "gethrelay-only-onion: volumeClaimTemplate \"tor-data\" sets storageClassName",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected}: {problems:#?}"
            );
        }
    }
}
