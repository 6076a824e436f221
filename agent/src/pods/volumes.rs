//! Pod volumes on this node: emptyDir (a directory in the pod's state), hostPath, and
//! configMap and secret (their keys written as files, rewritten when the object changes),
//! each bind-mounted into the containers that name it in `volumeMounts`.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Pod, Secret, Volume};
use skiff_api::client::Client;

use crate::runtime::spec::BindMount;

/// Errors preparing volumes; each names the volume and says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume}: {kind} \"{name}\" not found; create it, or mark the volume optional")]
    SourceMissing {
        volume: String,
        kind: &'static str,
        name: String,
    },
    #[error(
        "volume {volume}: hostPath {path} does not exist (use type DirectoryOrCreate to create it)"
    )]
    HostPathMissing { volume: String, path: String },
    #[error("volume {volume}: reading its {kind}")]
    Api {
        volume: String,
        kind: &'static str,
        #[source]
        source: skiff_api::client::ClientError,
    },
    #[error("volume {volume}: writing {path}")]
    Io {
        volume: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("volumeMounts[{index}]: no volume named {name} in spec.volumes")]
    UnknownVolume { index: usize, name: String },
    #[error("volume {volume}: only emptyDir, hostPath, configMap and secret volumes are supported")]
    Unsupported { volume: String },
}

/// The files a configMap or secret volume holds: every key, or only `items` (key -> path).
pub fn projected_files(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
) -> Vec<(String, Vec<u8>)> {
    match items {
        Some(items) if !items.is_empty() => items
            .iter()
            .filter_map(|item| Some((item.path.clone(), data.get(&item.key)?.clone())))
            .collect(),
        _ => data.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

/// Bind mounts for `container`, from the host paths of the pod's volumes.
///
/// # Errors
/// [`VolumeError::UnknownVolume`] when a mount names no volume.
pub fn container_mounts(
    container: &Container,
    volumes: &HashMap<String, (PathBuf, bool)>,
) -> Result<Vec<BindMount>, VolumeError> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .enumerate()
        .map(|(index, mount)| {
            let (source, forced_read_only) =
                volumes
                    .get(&mount.name)
                    .ok_or_else(|| VolumeError::UnknownVolume {
                        index,
                        name: mount.name.clone(),
                    })?;
            let mut source = source.clone();
            if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
                source = source.join(sub);
            }
            Ok(BindMount {
                source,
                destination: mount.mount_path.clone(),
                read_only: *forced_read_only || mount.read_only.unwrap_or(false),
            })
        })
        .collect()
}

fn write_files(volume: &str, dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), VolumeError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        let volume = volume.to_string();
        move |source| VolumeError::Io {
            volume,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for (name, bytes) in files {
        let path = dir.join(name);
        if std::fs::read(&path).ok().as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        // Written beside and renamed over, so a reader never sees half a file.
        let temp = dir.join(format!(".{}.tmp", name.replace('/', "_")));
        std::fs::write(&temp, bytes).map_err(io(&temp))?;
        std::fs::rename(&temp, &path).map_err(io(&path))?;
    }
    Ok(())
}

/// Makes every volume of `pod` ready under `pod_dir` and returns, by volume name, its host
/// path and whether it must be mounted read-only. Called on every reconcile, so configMap
/// and secret files follow their objects.
///
/// # Errors
/// When a source is missing or a file cannot be written.
pub async fn prepare(
    client: &Client,
    pod: &Pod,
    pod_dir: &Path,
) -> Result<HashMap<String, (PathBuf, bool)>, VolumeError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out = HashMap::new();
    let volumes: &[Volume] = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    for volume in volumes {
        let name = volume.name.clone();
        let dir = pod_dir.join("volumes").join(&name);
        if volume.empty_dir.is_some() {
            std::fs::create_dir_all(&dir).map_err(|source| VolumeError::Io {
                volume: name.clone(),
                path: dir.clone(),
                source,
            })?;
            out.insert(name, (dir, false));
        } else if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            if !path.exists() {
                if host.type_.as_deref() == Some("DirectoryOrCreate") {
                    std::fs::create_dir_all(&path).map_err(|source| VolumeError::Io {
                        volume: name.clone(),
                        path: path.clone(),
                        source,
                    })?;
                } else {
                    return Err(VolumeError::HostPathMissing {
                        volume: name,
                        path: host.path.clone(),
                    });
                }
            }
            out.insert(name, (path, false));
        } else if let Some(source) = &volume.config_map {
            let object = client
                .get_as::<ConfigMap>("configmaps", &namespace, &source.name)
                .await;
            let data = match object {
                Ok(cm) => {
                    let mut data: BTreeMap<String, Vec<u8>> = cm
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    for (k, v) in cm.binary_data.unwrap_or_default() {
                        data.insert(k, v.0);
                    }
                    data
                }
                Err(e) if e.is(skiff_api::status::Reason::NotFound) => {
                    if source.optional == Some(true) {
                        BTreeMap::new()
                    } else {
                        return Err(VolumeError::SourceMissing {
                            volume: name,
                            kind: "configmap",
                            name: source.name.clone(),
                        });
                    }
                }
                Err(source) => {
                    return Err(VolumeError::Api {
                        volume: name,
                        kind: "configmap",
                        source,
                    });
                }
            };
            write_files(
                &name,
                &dir,
                &projected_files(&data, source.items.as_deref()),
            )?;
            out.insert(name, (dir, true));
        } else if let Some(source) = &volume.secret {
            let secret_name = source.secret_name.clone().unwrap_or_default();
            let object = client
                .get_as::<Secret>("secrets", &namespace, &secret_name)
                .await;
            let data = match object {
                Ok(secret) => {
                    let mut data: BTreeMap<String, Vec<u8>> = secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    for (k, v) in secret.string_data.unwrap_or_default() {
                        data.insert(k, v.into_bytes());
                    }
                    data
                }
                Err(e) if e.is(skiff_api::status::Reason::NotFound) => {
                    if source.optional == Some(true) {
                        BTreeMap::new()
                    } else {
                        return Err(VolumeError::SourceMissing {
                            volume: name,
                            kind: "secret",
                            name: secret_name,
                        });
                    }
                }
                Err(source) => {
                    return Err(VolumeError::Api {
                        volume: name,
                        kind: "secret",
                        source,
                    });
                }
            };
            write_files(
                &name,
                &dir,
                &projected_files(&data, source.items.as_deref()),
            )?;
            out.insert(name, (dir, true));
        } else {
            return Err(VolumeError::Unsupported { volume: name });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::VolumeMount;

    use super::*;

    #[test]
    fn items_pick_and_rename_keys_and_without_items_every_key_is_a_file() {
        let data = BTreeMap::from([
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ]);
        assert_eq!(projected_files(&data, None).len(), 2);
        let items = [KeyToPath {
            key: "b".into(),
            path: "dir/bee".into(),
            mode: None,
        }];
        assert_eq!(
            projected_files(&data, Some(&items)),
            vec![("dir/bee".to_string(), b"2".to_vec())]
        );
    }

    #[test]
    fn mounts_follow_volume_mounts_and_sources_can_force_read_only() {
        let volumes = HashMap::from([
            (
                "data".to_string(),
                (PathBuf::from("/p/volumes/data"), false),
            ),
            ("conf".to_string(), (PathBuf::from("/p/volumes/conf"), true)),
        ]);
        let container = Container {
            name: "c".into(),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "data".into(),
                    mount_path: "/data".into(),
                    sub_path: Some("sub".into()),
                    ..Default::default()
                },
                VolumeMount {
                    name: "conf".into(),
                    mount_path: "/etc/app".into(),
                    read_only: Some(false),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let mounts = container_mounts(&container, &volumes).unwrap();
        assert_eq!(mounts[0].source, PathBuf::from("/p/volumes/data/sub"));
        assert!(!mounts[0].read_only);
        assert!(mounts[1].read_only);
        let bad = Container {
            volume_mounts: Some(vec![VolumeMount {
                name: "nope".into(),
                mount_path: "/x".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(matches!(
            container_mounts(&bad, &volumes),
            Err(VolumeError::UnknownVolume { index: 0, .. })
        ));
    }
}
