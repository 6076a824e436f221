//! Reading an OCI image as containerd stores it: normalising a reference, choosing the
//! manifest for this platform from an index, and the layer chain IDs the snapshotter keys
//! unpacked layers by. Pure functions over the JSON documents; the I/O is in `containerd`.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Media types of image indexes (OCI and Docker's manifest list).
pub const INDEX_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// The fully qualified form of an image reference, as containerd names images:
/// `busybox` -> `docker.io/library/busybox:latest`.
pub fn normalize_reference(image: &str) -> String {
    let (name, has_tag) = match image.rsplit_once('@') {
        Some(_) => (image.to_string(), true),
        None => {
            let last = image.rsplit('/').next().unwrap_or(image);
            (image.to_string(), last.contains(':'))
        }
    };
    let name = match name.split_once('/') {
        None => format!("docker.io/library/{name}"),
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            name
        }
        Some(_) => format!("docker.io/{name}"),
    };
    if has_tag {
        name
    } else {
        format!("{name}:latest")
    }
}

/// From an index, the digest of the manifest for linux/amd64 (or the only/first one).
pub fn pick_manifest(index: &Value) -> Option<String> {
    let manifests = index.get("manifests")?.as_array()?;
    let for_platform = manifests.iter().find(|m| {
        m.pointer("/platform/os").and_then(Value::as_str) == Some("linux")
            && m.pointer("/platform/architecture").and_then(Value::as_str) == Some("amd64")
    });
    for_platform
        .or_else(|| manifests.first())?
        .get("digest")?
        .as_str()
        .map(str::to_string)
}

/// The chain IDs of layers with these diff IDs, bottom first (the OCI image spec's
/// `ChainID(L0|...|Ln) = sha256(ChainID(L0|...|Ln-1) + " " + DiffID(Ln))`).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => {
                let digest = Sha256::digest(format!("{parent} {diff_id}").as_bytes());
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                format!("sha256:{hex}")
            }
        };
        chain.push(next);
    }
    chain
}

/// Strings of a JSON array field, or none.
pub fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn short_references_expand_like_docker() {
        assert_eq!(
            normalize_reference("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(normalize_reference("me/app:1"), "docker.io/me/app:1");
        assert_eq!(
            normalize_reference("skiff.local/demo:1.0"),
            "skiff.local/demo:1.0"
        );
        assert_eq!(
            normalize_reference("localhost:5000/x"),
            "localhost:5000/x:latest"
        );
        assert_eq!(
            normalize_reference("r.io/x@sha256:abc"),
            "r.io/x@sha256:abc"
        );
    }

    #[test]
    fn the_first_chain_id_is_the_diff_id_and_later_ones_hash_their_parent() {
        let ids = chain_ids(&["sha256:a".into(), "sha256:b".into()]);
        assert_eq!(ids[0], "sha256:a");
        let expected: String = Sha256::digest(b"sha256:a sha256:b")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(ids[1], format!("sha256:{expected}"));
    }

    #[test]
    fn an_index_yields_the_linux_amd64_manifest() {
        let index = json!({"manifests": [
            {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
        ]});
        assert_eq!(pick_manifest(&index).as_deref(), Some("sha256:amd"));
        let single = json!({"manifests": [{"digest": "sha256:only"}]});
        assert_eq!(pick_manifest(&single).as_deref(), Some("sha256:only"));
    }
}
