//! What an image archive holds, for import: an OCI image layout (`index.json` and
//! `blobs/<alg>/<hex>`) or a `docker save` tarball (`manifest.json`, a config and layer
//! tars), read as the blobs to store and the images to name. Pure functions over the
//! archive's small JSON files; reading the tar and writing content is in `import`.

use serde_json::{Value, json};

use super::image::normalize_reference;

/// Why an archive cannot be imported.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArchiveError {
    #[error(
        "the archive has neither index.json (an OCI image layout) nor manifest.json (docker save)"
    )]
    UnknownFormat,
    #[error("{file} is not valid: {reason}")]
    Invalid { file: String, reason: String },
    #[error("{file} names {path}, which the archive does not hold")]
    Missing { file: String, path: String },
    #[error(
        "the archive names no image: give its index.json entries an io.containerd.image.name or org.opencontainers.image.ref.name annotation with a full reference, or its manifest.json RepoTags"
    )]
    Unnamed,
}

/// A blob to store: where it is in the archive, or its bytes (made here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobSource {
    /// An archive member, by path.
    Member(String),
    /// Made by the import (a manifest for a docker archive).
    Bytes(Vec<u8>),
}

/// A content descriptor (OCI).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    /// Empty when still to be computed from the blob.
    pub digest: String,
    pub size: i64,
}

/// An image to create: its name and the descriptor of its manifest or index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedImage {
    pub name: String,
    pub target: Descriptor,
}

/// The blobs to store (digest and where from) and the images to name.
pub type Contents = (Vec<(String, BlobSource)>, Vec<NamedImage>);

/// The OCI layout case: every blob under `blobs/`, and the images `index.json` names.
///
/// # Errors
/// An `index.json` that is not an index, or entries without a usable name.
pub fn oci_layout(index: &[u8], members: &[String]) -> Result<Contents, ArchiveError> {
    let invalid = |reason: String| ArchiveError::Invalid {
        file: "index.json".into(),
        reason,
    };
    let index: Value = serde_json::from_slice(index).map_err(|e| invalid(e.to_string()))?;
    let manifests = index["manifests"]
        .as_array()
        .ok_or_else(|| invalid("no manifests list".into()))?;
    let blobs: Vec<(String, BlobSource)> = members
        .iter()
        .filter_map(|path| {
            let rest = path.trim_start_matches("./").strip_prefix("blobs/")?;
            let (algorithm, hex) = rest.split_once('/')?;
            (!hex.is_empty() && !hex.contains('/')).then(|| {
                (
                    format!("{algorithm}:{hex}"),
                    BlobSource::Member(path.clone()),
                )
            })
        })
        .collect();
    let mut images = Vec::new();
    for entry in manifests {
        let annotations = &entry["annotations"];
        let name = annotations["io.containerd.image.name"]
            .as_str()
            .or_else(|| {
                annotations["org.opencontainers.image.ref.name"]
                    .as_str()
                    .filter(|n| n.contains('/') || n.contains(':'))
            });
        let Some(name) = name else { continue };
        let digest = entry["digest"].as_str().unwrap_or_default().to_string();
        if !blobs.iter().any(|(d, _)| *d == digest) {
            return Err(ArchiveError::Missing {
                file: "index.json".into(),
                path: format!("blob {digest}"),
            });
        }
        images.push(NamedImage {
            name: normalize_reference(name),
            target: Descriptor {
                media_type: entry["mediaType"]
                    .as_str()
                    .unwrap_or("application/vnd.oci.image.manifest.v1+json")
                    .to_string(),
                digest,
                size: entry["size"].as_i64().unwrap_or_default(),
            },
        });
    }
    if images.is_empty() {
        return Err(ArchiveError::Unnamed);
    }
    Ok((blobs, images))
}

/// One image of a `docker save` archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerImage {
    /// Archive path of the config JSON.
    pub config: String,
    /// Archive paths of the layer tars, bottom first.
    pub layers: Vec<String>,
    pub names: Vec<String>,
}

/// The images of a `docker save` archive's `manifest.json`.
///
/// # Errors
/// A manifest that is not docker's list, or members it names that are missing.
pub fn docker_images(
    manifest: &[u8],
    members: &[String],
) -> Result<Vec<DockerImage>, ArchiveError> {
    let invalid = |reason: String| ArchiveError::Invalid {
        file: "manifest.json".into(),
        reason,
    };
    let list: Value = serde_json::from_slice(manifest).map_err(|e| invalid(e.to_string()))?;
    let list = list
        .as_array()
        .ok_or_else(|| invalid("not a list of images".into()))?;
    let present = |path: &str| members.iter().any(|m| m.trim_start_matches("./") == path);
    let mut images = Vec::new();
    for item in list {
        let config = item["Config"]
            .as_str()
            .ok_or_else(|| invalid("an entry has no Config".into()))?
            .to_string();
        let layers: Vec<String> = item["Layers"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        for path in std::iter::once(&config).chain(&layers) {
            if !present(path) {
                return Err(ArchiveError::Missing {
                    file: "manifest.json".into(),
                    path: path.clone(),
                });
            }
        }
        let names: Vec<String> = item["RepoTags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(Value::as_str)
                    .map(normalize_reference)
                    .collect()
            })
            .unwrap_or_default();
        if names.is_empty() {
            return Err(ArchiveError::Unnamed);
        }
        images.push(DockerImage {
            config,
            layers,
            names,
        });
    }
    Ok(images)
}

/// Whether bytes start like gzip.
pub fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
}

/// The OCI manifest for a docker image whose config and layers are stored as `config`
/// and `layers` (a layer's media type says whether it is gzip-compressed).
pub fn oci_manifest(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    let descriptor =
        |d: &Descriptor| json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size});
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor(config),
        "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
    }))
    .unwrap_or_default()
}

/// The labels that make containerd's garbage collector keep what a manifest or index
/// refers to (as containerd's own importer sets them).
pub fn gc_labels(document: &Value) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    if let Some(digest) = document.pointer("/config/digest").and_then(Value::as_str) {
        labels.push((
            "containerd.io/gc.ref.content.config".to_string(),
            digest.to_string(),
        ));
    }
    for (key, prefix) in [("layers", "l"), ("manifests", "m")] {
        for (i, item) in document[key].as_array().into_iter().flatten().enumerate() {
            if let Some(digest) = item["digest"].as_str() {
                labels.push((
                    format!("containerd.io/gc.ref.content.{prefix}.{i}"),
                    digest.to_string(),
                ));
            }
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|p| (*p).to_string()).collect()
    }

    #[test]
    fn an_oci_layout_yields_its_blobs_and_named_images() {
        let index = br#"{"schemaVersion":2,"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":3,
             "annotations":{"io.containerd.image.name":"skiff.test/app:1","org.opencontainers.image.ref.name":"1"}},
            {"digest":"sha256:bb","size":4,"annotations":{"org.opencontainers.image.ref.name":"other:2"}}]}"#;
        let (blobs, images) = oci_layout(
            index,
            &members(&[
                "oci-layout",
                "index.json",
                "blobs/sha256/aa",
                "blobs/sha256/bb",
                "blobs/sha256/cc",
            ]),
        )
        .unwrap();
        assert_eq!(blobs.len(), 3);
        assert_eq!(
            blobs[0],
            (
                "sha256:aa".into(),
                BlobSource::Member("blobs/sha256/aa".into())
            )
        );
        assert_eq!(images[0].name, "skiff.test/app:1");
        assert_eq!(images[0].target.size, 3);
        assert_eq!(images[1].name, "docker.io/library/other:2");
        let missing = oci_layout(index, &members(&["blobs/sha256/aa"])).unwrap_err();
        assert!(matches!(missing, ArchiveError::Missing { .. }));
        let unnamed = br#"{"manifests":[{"digest":"sha256:aa","annotations":{"org.opencontainers.image.ref.name":"1"}}]}"#;
        assert_eq!(
            oci_layout(unnamed, &members(&["blobs/sha256/aa"])).unwrap_err(),
            ArchiveError::Unnamed
        );
    }

    #[test]
    fn a_docker_archive_yields_its_images_and_checks_the_members_it_names() {
        let manifest = br#"[{"Config":"abc.json","RepoTags":["web:1.0"],"Layers":["l1/layer.tar","l2/layer.tar"]}]"#;
        let all = members(&["abc.json", "l1/layer.tar", "l2/layer.tar", "manifest.json"]);
        let images = docker_images(manifest, &all).unwrap();
        assert_eq!(images[0].names, ["docker.io/library/web:1.0"]);
        assert_eq!(images[0].layers, ["l1/layer.tar", "l2/layer.tar"]);
        let error = docker_images(manifest, &members(&["abc.json"])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "manifest.json names l1/layer.tar, which the archive does not hold"
        );
    }

    #[test]
    fn manifests_keep_their_config_and_layers_from_the_garbage_collector() {
        let config = Descriptor {
            media_type: "application/vnd.oci.image.config.v1+json".into(),
            digest: "sha256:c".into(),
            size: 2,
        };
        let layer = Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            digest: "sha256:l".into(),
            size: 9,
        };
        let manifest: Value = serde_json::from_slice(&oci_manifest(&config, &[layer])).unwrap();
        assert_eq!(manifest["layers"][0]["digest"], "sha256:l");
        assert_eq!(
            gc_labels(&manifest),
            vec![
                (
                    "containerd.io/gc.ref.content.config".to_string(),
                    "sha256:c".to_string()
                ),
                (
                    "containerd.io/gc.ref.content.l.0".to_string(),
                    "sha256:l".to_string()
                ),
            ]
        );
        let index = json!({"manifests": [{"digest": "sha256:m"}]});
        assert_eq!(
            gc_labels(&index),
            vec![(
                "containerd.io/gc.ref.content.m.0".to_string(),
                "sha256:m".to_string()
            )]
        );
        assert!(is_gzip(&[0x1f, 0x8b, 8]) && !is_gzip(b"ustar"));
    }
}
