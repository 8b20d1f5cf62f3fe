//! Every rendered container image is pinned: a tag other than `latest`, or a digest. A tagless
//! or `latest` image changes under a running fleet at the next pull, and a rollback by
//! re-applying the old manifests then brings back nothing.

use serde_json::Value as Json;

use super::{containers, name, workloads};

/// The images the release workflow publishes at the workspace version (`Cargo.toml`).
pub const RELEASED: &[&str] = &["relaywatch", "relaywatch-tor"];

/// `registry/path/name`, tag and digest of an image reference (`name:tag@sha256:…` allowed).
pub fn parse(image: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    // A colon after the last slash is a tag; before it, a registry port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].rfind(':') {
        Some(colon) => {
            let colon = last_slash + colon;
            (&rest[..colon], Some(&rest[colon + 1..]), digest)
        }
        None => (rest, None, digest),
    }
}

/// Problems with one image reference, or none.
pub fn check_image(place: &str, image: &str) -> Option<String> {
    let (_, tag, digest) = parse(image);
    if let Some(digest) = digest {
        if !digest.starts_with("sha256:") || digest.len() != "sha256:".len() + 64 {
            return Some(format!(
                "{place}: image {image}: digest is not sha256:<64 hex>"
            ));
        }
        return None;
    }
    match tag {
        None => Some(format!(
            "{place}: image {image} has no tag, so it means latest: pin a version (kustomize images: newTag)"
        )),
        Some("latest") => Some(format!(
            "{place}: image {image} is tagged latest: pin a version (kustomize images: newTag)"
        )),
        Some(_) => None,
    }
}

/// Every container of every workload.
pub fn check_images(objects: &[Json]) -> Vec<String> {
    let mut problems = Vec::new();
    for workload in workloads(objects) {
        for container in containers(&workload["spec"]["template"]["spec"]) {
            let place = format!("{} container {}", name(workload), container["name"]);
            match container["image"].as_str() {
                Some(image) => problems.extend(check_image(&place, image)),
                None => problems.push(format!("{place}: no image")),
            }
        }
    }
    problems
}

/// The workspace version, `[workspace.package] version` of the root `Cargo.toml`.
pub fn workspace_version() -> anyhow::Result<String> {
    let text = super::super::read("Cargo.toml")?;
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[workspace.package]";
        } else if in_package {
            if let Some(value) = line.strip_prefix("version").map(str::trim) {
                if let Some(value) = value.strip_prefix('=') {
                    return Ok(value.trim().trim_matches('"').to_string());
                }
            }
        }
    }
    anyhow::bail!("Cargo.toml: no version in [workspace.package]")
}

/// Our own images are deployed at the version this checkout builds, so a release changes
/// `Cargo.toml` and `deploy/kustomize/kustomization.yaml` together.
pub fn check_release_version(objects: &[Json]) -> Vec<String> {
    let version = match workspace_version() {
        Ok(version) => version,
        Err(error) => return vec![format!("{error:#}")],
    };
    let mut problems = Vec::new();
    let mut seen = 0;
    for workload in workloads(objects) {
        for container in containers(&workload["spec"]["template"]["spec"]) {
            let image = container["image"].as_str().unwrap_or_default();
            let (path, tag, _) = parse(image);
            let base = path.rsplit('/').next().unwrap_or_default();
            if !RELEASED.contains(&base) {
                continue;
            }
            seen += 1;
            if tag != Some(version.as_str()) {
                problems.push(format!(
                    "{} container {}: image {image}, want tag {version} (Cargo.toml), or change both",
                    name(workload),
                    container["name"]
                ));
            }
        }
    }
    if seen == 0 {
        problems.push(format!("no container runs one of our images {RELEASED:?}"));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_are_parsed() {
        assert_eq!(parse("tor"), ("tor", None, None));
        assert_eq!(
            parse("registry:5000/a/relaywatch:0.1.0"),
            ("registry:5000/a/relaywatch", Some("0.1.0"), None)
        );
        assert_eq!(
            parse("registry:5000/relaywatch@sha256:ab"),
            ("registry:5000/relaywatch", None, Some("sha256:ab"))
        );
    }

    #[test]
    fn unpinned_images_are_reported() {
        let digest = format!("ghcr.io/x/relaywatch@sha256:{}", "a".repeat(64));
        assert_eq!(check_image("c", &digest), None);
        assert_eq!(check_image("c", "ghcr.io/x/relaywatch:0.1.0"), None);
        for bad in [
            "ghcr.io/x/relaywatch",
            "ghcr.io/x/relaywatch:latest",
            "localhost:5000/relaywatch",
            "ghcr.io/x/relaywatch@sha256:abc",
        ] {
            assert!(check_image("c", bad).is_some(), "{bad} passed");
        }
    }

    #[test]
    fn the_bundles_images_are_pinned_at_the_workspace_version() {
        if !super::super::super::tool("kubectl", "image pins") {
            return;
        }
        let mut objects = super::super::render().unwrap();
        let problems = check_images(&objects);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        let problems = check_release_version(&objects);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        // The checks can fail: a bundle whose exporter is latest fails both.
        for set in objects.iter_mut().filter(|o| o["kind"] == "StatefulSet") {
            for container in set["spec"]["template"]["spec"]["containers"]
                .as_array_mut()
                .unwrap()
            {
                if container["name"] == "relaywatch" {
                    container["image"] = "ghcr.io/igor53627/relaywatch:latest".into();
                }
            }
        }
        assert_eq!(check_images(&objects).len(), 3);
        assert_eq!(check_release_version(&objects).len(), 3);
    }
}
