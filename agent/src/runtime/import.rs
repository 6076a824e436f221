//! Importing an image archive (OCI layout or `docker save` tarball) into this node's
//! containerd namespace, as `ctr images import` does: blobs written to the content store
//! under a lease, manifests labelled so the garbage collector keeps what they refer to,
//! the image records created, and the layers unpacked. Also the images directory the agent
//! watches (k3s's `agent/images`): archives dropped there are imported. A pull from a
//! registry (`registry`) stores its blobs the same way.

use std::{
    collections::HashMap,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use containerd_client::{
    services::v1::{
        CreateImageRequest, Image, Info as ContentInfo, InfoRequest, UpdateImageRequest,
        UpdateRequest as ContentUpdateRequest, WriteAction, WriteContentRequest,
        content_client::ContentClient, images_client::ImagesClient,
    },
    types::Descriptor as ContainerdDescriptor,
};
use futures::StreamExt;
use prost_types::FieldMask;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tonic::{Code, Request};
use tracing::{info, warn};

use super::{
    Runtime, RuntimeError,
    archive::{self, ArchiveError, BlobSource, Descriptor, NamedImage},
    containerd::{Containerd, call},
    image::{normalize_reference, pick_manifest},
    registry::{PullError, RegistryRef, Session},
};

/// Bytes per content write message.
const CHUNK: usize = 1 << 20;

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading the archive {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the archive {path}: {source}")]
    Archive {
        path: PathBuf,
        #[source]
        source: ArchiveError,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Where each member's data is in the archive file: offset and size.
type Members = HashMap<String, (u64, u64)>;

fn read_members(path: &Path) -> Result<Members, ImportError> {
    let read = |source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut tar = tar::Archive::new(file);
    let mut members = Members::new();
    for entry in tar.entries().map_err(read)? {
        let entry = entry.map_err(read)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(read)?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./").to_string();
        members.insert(name, (entry.raw_file_position(), entry.size()));
    }
    Ok(members)
}

fn read_member(path: &Path, (offset, size): (u64, u64)) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = vec![0; usize::try_from(size).unwrap_or(0)];
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn hex_digest(hasher: Sha256) -> String {
    let digest = hasher.finalize();
    format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// The sha256 digest of an archive member.
fn member_digest(path: &Path, (offset, size): (u64, u64)) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = file.take(size);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; CHUNK];
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex_digest(hasher))
}

impl Containerd {
    fn in_lease<T>(&self, message: T) -> Request<T> {
        let mut request = self.request(message);
        if let Some(lease) = &self.lease
            && let Ok(value) = lease.parse()
        {
            request.metadata_mut().insert("containerd-lease", value);
        }
        request
    }

    async fn has_blob(&self, digest: &str) -> Result<bool, RuntimeError> {
        match ContentClient::new(self.channel.clone())
            .info(self.request(InfoRequest {
                digest: digest.to_string(),
            }))
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(s) => Err(call("content info", digest, s)),
        }
    }

    /// Writes one blob (from the archive file or from memory) unless the store has it.
    async fn write_blob(
        &self,
        archive: &Path,
        digest: &str,
        source: &BlobSource,
        members: &Members,
    ) -> Result<(), ImportError> {
        if self.has_blob(digest).await? {
            return Ok(());
        }
        let read_err = |source| ImportError::Read {
            path: archive.to_path_buf(),
            source,
        };
        // Archive members are streamed from the file a chunk at a time, never whole.
        let (reader, size): (Box<dyn Read + Send>, u64) = match source {
            BlobSource::Bytes(bytes) => (
                Box::new(std::io::Cursor::new(bytes.clone())),
                bytes.len() as u64,
            ),
            BlobSource::Member(name) => {
                let (offset, size) = *members.get(name).ok_or_else(|| ImportError::Archive {
                    path: archive.to_path_buf(),
                    source: ArchiveError::Missing {
                        file: "the archive".into(),
                        path: name.clone(),
                    },
                })?;
                let mut file = std::fs::File::open(archive).map_err(read_err)?;
                file.seek(SeekFrom::Start(offset)).map_err(read_err)?;
                (Box::new(file.take(size)), size)
            }
        };
        let total = i64::try_from(size).unwrap_or(i64::MAX);
        let reference = format!("skiff-import-{digest}");
        let expected = digest.to_string();
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        // Read on a blocking thread, a chunk at a time; a short read ends the stream
        // without a commit, and the write fails below.
        tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            let mut offset = 0u64;
            while offset < size {
                let want = usize::try_from((size - offset).min(CHUNK as u64)).unwrap_or(CHUNK);
                let mut data = vec![0; want];
                if reader.read_exact(&mut data).is_err() {
                    return;
                }
                let write = WriteContentRequest {
                    action: WriteAction::Write as i32,
                    r#ref: reference.clone(),
                    total,
                    offset: i64::try_from(offset).unwrap_or(i64::MAX),
                    data,
                    ..Default::default()
                };
                offset += want as u64;
                if tx.blocking_send(write).is_err() {
                    return;
                }
            }
            let _ = tx.blocking_send(WriteContentRequest {
                action: WriteAction::Commit as i32,
                r#ref: reference,
                total,
                expected,
                offset: total,
                ..Default::default()
            });
        });
        let messages = tokio_stream::wrappers::ReceiverStream::new(rx);
        let result = ContentClient::new(self.channel.clone())
            .write(self.in_lease(messages))
            .await;
        let mut responses = match result {
            Ok(responses) => responses.into_inner(),
            Err(s) if s.code() == Code::AlreadyExists => return Ok(()),
            Err(s) => return Err(call("content write", digest, s).into()),
        };
        while let Some(response) = responses.next().await {
            match response {
                Ok(_) => {}
                Err(s) if s.code() == Code::AlreadyExists => return Ok(()),
                Err(s) => return Err(call("content write", digest, s).into()),
            }
        }
        if !self.has_blob(digest).await? {
            return Err(ImportError::Read {
                path: archive.to_path_buf(),
                source: std::io::Error::other(format!(
                    "blob {digest} ended early: it was not committed"
                )),
            });
        }
        Ok(())
    }

    /// Labels a stored manifest or index so that what it refers to is kept.
    async fn label_children(&self, digest: &str, document: &Value) -> Result<(), RuntimeError> {
        let labels = archive::gc_labels(document);
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.iter().map(|(k, _)| format!("labels.{k}")).collect();
        ContentClient::new(self.channel.clone())
            .update(self.request(ContentUpdateRequest {
                info: Some(ContentInfo {
                    digest: digest.to_string(),
                    labels: labels.into_iter().collect(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask { paths }),
            }))
            .await
            .map_err(|s| call("content update", digest, s))?;
        Ok(())
    }

    async fn put_image(&self, image: &NamedImage) -> Result<(), RuntimeError> {
        let record = Image {
            name: image.name.clone(),
            target: Some(ContainerdDescriptor {
                media_type: image.target.media_type.clone(),
                digest: image.target.digest.clone(),
                size: image.target.size,
                annotations: HashMap::new(),
            }),
            ..Default::default()
        };
        let mut images = ImagesClient::new(self.channel.clone());
        match images
            .create(self.in_lease(CreateImageRequest {
                image: Some(record.clone()),
                source_date_epoch: None,
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => {
                images
                    .update(self.in_lease(UpdateImageRequest {
                        image: Some(record),
                        update_mask: Some(FieldMask {
                            paths: vec!["target".into()],
                        }),
                        source_date_epoch: None,
                    }))
                    .await
                    .map_err(|s| call("image update", &image.name, s))?;
                Ok(())
            }
            Err(s) => Err(call("image create", &image.name, s)),
        }
    }

    /// Imports the archive at `path`; `progress` hears each step. Returns the image names.
    ///
    /// # Errors
    /// An unreadable or malformed archive, or containerd refusing a write.
    pub async fn import_archive(
        &self,
        path: &Path,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Vec<String>, ImportError> {
        let leased = self.leased().await?;
        let result = leased.import_leased(path, progress).await;
        leased.release().await;
        let names = result?;
        for name in &names {
            progress(&format!("unpacking {name}"));
            self.ensure_image(name).await?;
        }
        Ok(names)
    }

    async fn import_leased(
        &self,
        path: &Path,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Vec<String>, ImportError> {
        let archive_err = |source| ImportError::Archive {
            path: path.to_path_buf(),
            source,
        };
        let read_err = |source| ImportError::Read {
            path: path.to_path_buf(),
            source,
        };
        let members = tokio::task::block_in_place(|| read_members(path))?;
        let names: Vec<String> = members.keys().cloned().collect();
        let (blobs, images) = if let Some(&at) = members.get("index.json") {
            let index = read_member(path, at).map_err(read_err)?;
            archive::oci_layout(&index, &names).map_err(archive_err)?
        } else if let Some(&at) = members.get("manifest.json") {
            let manifest = read_member(path, at).map_err(read_err)?;
            let mut blobs = Vec::new();
            let mut images = Vec::new();
            for image in archive::docker_images(&manifest, &names).map_err(archive_err)? {
                let describe =
                    |member: &str, media_type: &str| -> Result<Descriptor, ImportError> {
                        let at = members[member];
                        Ok(Descriptor {
                            media_type: media_type.to_string(),
                            digest: tokio::task::block_in_place(|| member_digest(path, at))
                                .map_err(read_err)?,
                            size: i64::try_from(at.1).unwrap_or(i64::MAX),
                        })
                    };
                let config = describe(&image.config, "application/vnd.oci.image.config.v1+json")?;
                blobs.push((
                    config.digest.clone(),
                    BlobSource::Member(image.config.clone()),
                ));
                let mut layers = Vec::new();
                for layer in &image.layers {
                    let head = read_member(path, (members[layer].0, members[layer].1.min(2)))
                        .map_err(read_err)?;
                    let media_type = if archive::is_gzip(&head) {
                        "application/vnd.oci.image.layer.v1.tar+gzip"
                    } else {
                        "application/vnd.oci.image.layer.v1.tar"
                    };
                    let descriptor = describe(layer, media_type)?;
                    blobs.push((descriptor.digest.clone(), BlobSource::Member(layer.clone())));
                    layers.push(descriptor);
                }
                let manifest = archive::oci_manifest(&config, &layers);
                let mut hasher = Sha256::new();
                hasher.update(&manifest);
                let target = Descriptor {
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    digest: hex_digest(hasher),
                    size: i64::try_from(manifest.len()).unwrap_or(i64::MAX),
                };
                blobs.push((target.digest.clone(), BlobSource::Bytes(manifest)));
                for name in image.names {
                    images.push(NamedImage {
                        name,
                        target: target.clone(),
                    });
                }
            }
            (blobs, images)
        } else {
            return Err(archive_err(ArchiveError::UnknownFormat));
        };
        for (i, (digest, source)) in blobs.iter().enumerate() {
            progress(&format!("writing blob {}/{} {digest}", i + 1, blobs.len()));
            self.write_blob(path, digest, source, &members).await?;
        }
        // Manifests and indexes (JSON documents that refer to others) get their GC labels.
        for (digest, source) in &blobs {
            let bytes = match source {
                BlobSource::Bytes(bytes) => bytes.clone(),
                BlobSource::Member(name) if members[name].1 < (4 << 20) => {
                    read_member(path, members[name]).map_err(read_err)?
                }
                BlobSource::Member(_) => continue,
            };
            if let Ok(document) = serde_json::from_slice::<Value>(&bytes)
                && (document.get("layers").is_some() || document.get("manifests").is_some())
            {
                self.label_children(digest, &document).await?;
            }
        }
        for image in &images {
            progress(&format!("naming {}", image.name));
            self.put_image(image).await?;
        }
        Ok(images.into_iter().map(|i| i.name).collect())
    }
}

impl Containerd {
    /// Pulls `image` from its registry into the content store and names it (unpacking is
    /// left to [`Runtime::ensure_image`]).
    ///
    /// # Errors
    /// [`RuntimeError::Pull`] saying what failed.
    pub async fn pull_image(
        &self,
        image: &str,
        credentials: Option<(String, String)>,
    ) -> Result<(), RuntimeError> {
        let name = normalize_reference(image);
        let failed = |reason: String| RuntimeError::Pull {
            image: name.clone(),
            reason,
        };
        let pull = |e: PullError| failed(e.to_string());
        let reference =
            RegistryRef::parse(&name).ok_or_else(|| failed("not a registry reference".into()))?;
        let mut session =
            Session::new(reference.clone(), &self.plain_http, credentials).map_err(pull)?;
        let (media_type, digest, body) =
            session.manifest(&reference.reference).await.map_err(pull)?;
        let target = Descriptor {
            media_type,
            digest: digest.clone(),
            size: i64::try_from(body.len()).unwrap_or(i64::MAX),
        };
        let mut documents = vec![(digest, body.to_vec())];
        let mut manifest: Value =
            serde_json::from_slice(&body).map_err(|e| failed(e.to_string()))?;
        if manifest.get("manifests").is_some() {
            let chosen = pick_manifest(&manifest)
                .ok_or_else(|| failed("the index lists no manifest".into()))?;
            let (_, digest, body) = session.manifest(&chosen).await.map_err(pull)?;
            manifest = serde_json::from_slice(&body).map_err(|e| failed(e.to_string()))?;
            documents.push((digest, body.to_vec()));
        }
        let mut blobs = Vec::new();
        let children = manifest
            .pointer("/config/digest")
            .into_iter()
            .chain(
                manifest["layers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|l| &l["digest"]),
            )
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect::<Vec<_>>();
        for digest in children {
            if !self.has_blob(&digest).await? {
                let bytes = session.blob(&digest).await.map_err(pull)?;
                blobs.push((digest, bytes.to_vec()));
            }
        }
        let leased = self.leased().await?;
        let stored = async {
            let none = Members::new();
            for (digest, bytes) in blobs.into_iter().chain(documents.iter().cloned().rev()) {
                leased
                    .write_blob(Path::new(""), &digest, &BlobSource::Bytes(bytes), &none)
                    .await
                    .map_err(|e| failed(crate::error_chain(&e)))?;
            }
            for (digest, bytes) in &documents {
                let document: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
                leased.label_children(digest, &document).await?;
            }
            leased
                .put_image(&NamedImage {
                    name: name.clone(),
                    target,
                })
                .await
        }
        .await;
        leased.release().await;
        stored?;
        info!(image = %name, "pulled");
        Ok(())
    }
}

/// An archive file's identity, to import each version once.
fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Imports every `.tar` archive in `dir` (made if missing), at start and whenever one
/// appears or changes (once its size stays the same for one poll), until `shutdown`.
pub async fn watch_images_dir(
    runtime: Containerd,
    dir: PathBuf,
    shutdown: impl Future<Output = ()> + Send,
) {
    if let Err(error) = std::fs::create_dir_all(&dir) {
        warn!(dir = %dir.display(), %error, "cannot make the images directory");
    }
    tokio::pin!(shutdown);
    let mut imported: HashMap<PathBuf, (u64, SystemTime)> = HashMap::new();
    let mut seen: HashMap<PathBuf, (u64, SystemTime)> = HashMap::new();
    loop {
        let archives: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "tar"))
            .collect();
        for path in archives {
            let Some(now) = stamp(&path) else { continue };
            let settled = seen.insert(path.clone(), now) == Some(now);
            if !settled || imported.get(&path) == Some(&now) {
                continue;
            }
            let quiet = |_: &str| {};
            match runtime.import_archive(&path, &quiet).await {
                Ok(names) => info!(archive = %path.display(), images = ?names, "imported"),
                Err(error) => warn!(archive = %path.display(), error = %error, "import failed"),
            }
            imported.insert(path, now);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = &mut shutdown => return,
        }
    }
}
