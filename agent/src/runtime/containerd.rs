//! [`Runtime`] over containerd's gRPC API (containerd-client), in one containerd namespace:
//! images resolved from the content store and unpacked through the Diff service, containers
//! with an overlayfs snapshot, tasks run by the runc v2 shim with stdout/stderr appended to a
//! file by the shim (so logging survives agent restarts).

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use async_trait::async_trait;
use containerd_client::{
    services::v1::{
        ApplyRequest, CloseIoRequest, Container, CreateContainerRequest,
        CreateRequest as LeaseCreateRequest, CreateTaskRequest, DeleteContainerRequest,
        DeleteProcessRequest, DeleteRequest as LeaseDeleteRequest, DeleteTaskRequest,
        ExecProcessRequest, GetContainerRequest, GetImageRequest, Info as ContentInfo, KillRequest,
        ListContainersRequest, ListTasksRequest, ReadContentRequest, ResizePtyRequest,
        StartRequest, UpdateContainerRequest, UpdateRequest as ContentUpdateRequest, WaitRequest,
        container::Runtime as ContainerRuntime,
        containers_client::ContainersClient,
        content_client::ContentClient,
        diff_client::DiffClient,
        images_client::ImagesClient,
        leases_client::LeasesClient,
        snapshots::{
            CommitSnapshotRequest, MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
            StatSnapshotRequest, snapshots_client::SnapshotsClient,
        },
        tasks_client::TasksClient,
    },
    types::{Descriptor, Mount, v1::Status},
};
use futures::StreamExt;
use prost_types::{Any, FieldMask};
use serde_json::Value;
use tonic::{Code, Request, transport::Channel};

use super::{
    ContainerCreate, ContainerRecord, ImageConfig, Runtime, RuntimeError, TaskState, image, labels,
};

const SNAPSHOTTER: &str = "overlayfs";
const RUNC_V2: &str = "io.containerd.runc.v2";
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// A containerd connection scoped to one containerd namespace.
#[derive(Clone, Debug)]
pub struct Containerd {
    pub(super) channel: Channel,
    namespace: String,
    /// The lease requests are made under (keeps what they create from containerd's GC).
    pub(super) lease: Option<String>,
    /// The log driver binary the shim runs for each task, and its rotation size; without
    /// one, the shim appends raw output to the file itself.
    logger: Option<(std::path::PathBuf, u64)>,
    /// Held while layers are unpacked: two workers never unpack the same layer at once.
    unpacking: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Registries (`host:port`) pulled from over plain HTTP.
    pub(super) plain_http: Vec<String>,
}

impl Containerd {
    /// Connects to containerd's socket.
    ///
    /// # Errors
    /// [`RuntimeError::Connect`] when nothing answers on `socket`.
    pub async fn connect(socket: &Path, namespace: &str) -> Result<Self, RuntimeError> {
        let channel =
            containerd_client::connect(socket)
                .await
                .map_err(|source| RuntimeError::Connect {
                    socket: socket.display().to_string(),
                    source,
                })?;
        Ok(Self {
            channel,
            namespace: namespace.to_string(),
            lease: None,
            logger: None,
            unpacking: std::sync::Arc::default(),
            plain_http: Vec::new(),
        })
    }

    /// Has tasks log through `binary` (`skiff-logger`), rotating at `max_size` bytes.
    #[must_use]
    pub fn with_logger(mut self, binary: &Path, max_size: u64) -> Self {
        self.logger = Some((binary.to_path_buf(), max_size));
        self
    }

    /// Pulls from `registries` (`host:port`) over plain HTTP.
    #[must_use]
    pub fn with_plain_http_registries(mut self, registries: &[String]) -> Self {
        self.plain_http = registries.to_vec();
        self
    }

    fn log_uri(&self, path: &Path) -> String {
        match &self.logger {
            Some((binary, max_size)) => format!(
                "binary://{}?--path={}&--max-size={max_size}",
                binary.display(),
                percent_encode(&path.display().to_string())
            ),
            None => format!("file://{}", path.display()),
        }
    }

    /// A copy of this connection whose requests hold a new lease, so snapshots and content
    /// made before anything references them are not garbage-collected; the lease expires
    /// by itself if [`Containerd::release`] is never called.
    pub(super) async fn leased(&self) -> Result<Self, RuntimeError> {
        let id = format!("skiff-{}", uuid::Uuid::new_v4().simple());
        let expire = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(10);
        LeasesClient::new(self.channel.clone())
            .create(self.request(LeaseCreateRequest {
                id: id.clone(),
                labels: HashMap::from([(
                    "containerd.io/gc.expire".into(),
                    expire.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                )]),
            }))
            .await
            .map_err(|s| call("lease create", &id, s))?;
        Ok(Self {
            lease: Some(id),
            ..self.clone()
        })
    }

    /// Ends the lease this copy holds.
    pub(super) async fn release(self) {
        if let Some(id) = &self.lease {
            let _ = LeasesClient::new(self.channel.clone())
                .delete(self.request(LeaseDeleteRequest {
                    id: id.clone(),
                    sync: false,
                }))
                .await;
        }
    }

    pub(super) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Ok(value) = self.namespace.parse() {
            request.metadata_mut().insert("containerd-namespace", value);
        }
        request
    }

    async fn read_blob(&self, digest: &str, image: &str) -> Result<Vec<u8>, RuntimeError> {
        let mut stream = ContentClient::new(self.channel.clone())
            .read(self.request(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            }))
            .await
            .map_err(|s| call("content read", digest, s))?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|s| call("content read", image, s))?;
            bytes.extend_from_slice(&chunk.data);
        }
        Ok(bytes)
    }

    async fn read_json(&self, digest: &str, image: &str) -> Result<Value, RuntimeError> {
        let bytes = self.read_blob(digest, image).await?;
        serde_json::from_slice(&bytes).map_err(|e| RuntimeError::BadImage {
            image: image.to_string(),
            reason: format!("blob {digest} is not JSON: {e}"),
        })
    }

    async fn snapshot_exists(&self, key: &str) -> Result<bool, RuntimeError> {
        match SnapshotsClient::new(self.channel.clone())
            .stat(self.request(StatSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.to_string(),
            }))
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(s) => Err(call("snapshot stat", key, s)),
        }
    }

    /// Unpacks one layer on top of `parent` into the snapshot named `chain_id`.
    async fn unpack_layer(
        &self,
        layer: &Value,
        parent: &str,
        chain_id: &str,
    ) -> Result<(), RuntimeError> {
        let key = format!("extract-{}-{chain_id}", uuid::Uuid::new_v4().simple());
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let mounts = snapshots
            .prepare(self.request(PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.clone(),
                parent: parent.to_string(),
                labels: gc_root(),
            }))
            .await
            .map_err(|s| call("snapshot prepare", &key, s))?
            .into_inner()
            .mounts;
        let descriptor = Descriptor {
            media_type: layer["mediaType"].as_str().unwrap_or_default().to_string(),
            digest: layer["digest"].as_str().unwrap_or_default().to_string(),
            size: layer["size"].as_i64().unwrap_or_default(),
            annotations: HashMap::new(),
        };
        let applied = DiffClient::new(self.channel.clone())
            .apply(self.request(ApplyRequest {
                diff: Some(descriptor),
                mounts,
                payloads: HashMap::new(),
                sync_fs: false,
            }))
            .await;
        if let Err(s) = applied {
            let _ = snapshots
                .remove(self.request(RemoveSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: key.clone(),
                }))
                .await;
            return Err(call("diff apply", chain_id, s));
        }
        match snapshots
            .commit(self.request(CommitSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                name: chain_id.to_string(),
                key: key.clone(),
                labels: gc_root(),
            }))
            .await
        {
            Ok(_) => Ok(()),
            // Another worker unpacked the same layer first.
            Err(s) if s.code() == Code::AlreadyExists => {
                let _ = snapshots
                    .remove(self.request(RemoveSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        key,
                    }))
                    .await;
                Ok(())
            }
            Err(s) => Err(call("snapshot commit", chain_id, s)),
        }
    }

    async fn prepare_rootfs(&self, id: &str, parent: &str) -> Result<Vec<Mount>, RuntimeError> {
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        match snapshots
            .prepare(self.request(PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: id.to_string(),
                parent: parent.to_string(),
                labels: gc_root(),
            }))
            .await
        {
            Ok(response) => Ok(response.into_inner().mounts),
            Err(s) if s.code() == Code::AlreadyExists => Ok(snapshots
                .mounts(self.request(MountsRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: id.to_string(),
                }))
                .await
                .map_err(|s| call("snapshot mounts", id, s))?
                .into_inner()
                .mounts),
            Err(s) => Err(call("snapshot prepare", id, s)),
        }
    }

    async fn delete_task(&self, id: &str) -> Result<(), RuntimeError> {
        match TasksClient::new(self.channel.clone())
            .delete(self.request(DeleteTaskRequest {
                container_id: id.to_string(),
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(call("task delete", id, s)),
        }
    }
}

/// Labels that make a snapshot a root for containerd's garbage collector: unpacked layers
/// and container snapshots are removed by the agent itself (leases alone did not keep
/// them from being collected mid-unpack on containerd 1.6).
fn gc_root() -> HashMap<String, String> {
    HashMap::from([(
        "containerd.io/gc.root".to_string(),
        jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
    )])
}

/// Escapes what a URL query value cannot hold as is.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) fn call(call: &'static str, what: &str, status: tonic::Status) -> RuntimeError {
    if status.code() == Code::NotFound && call.starts_with("container") {
        return RuntimeError::NotFound { id: what.into() };
    }
    RuntimeError::Call {
        call,
        what: what.to_string(),
        status: Box::new(status),
    }
}

#[async_trait]
impl Runtime for Containerd {
    async fn ensure_image(&self, reference: &str) -> Result<ImageConfig, RuntimeError> {
        let leased = self.leased().await?;
        let result = leased.resolve_and_unpack(reference).await;
        leased.release().await;
        result
    }

    async fn pull(
        &self,
        image: &str,
        credentials: Option<(String, String)>,
    ) -> Result<(), RuntimeError> {
        self.pull_image(image, credentials).await
    }

    async fn create(&self, container: &ContainerCreate) -> Result<(), RuntimeError> {
        let leased = self.leased().await?;
        let result = leased.create_leased(container).await;
        leased.release().await;
        result
    }

    async fn start(&self, id: &str) -> Result<u32, RuntimeError> {
        self.start_task(id).await
    }
    async fn list(&self) -> Result<Vec<ContainerRecord>, RuntimeError> {
        let containers = ContainersClient::new(self.channel.clone())
            .list(self.request(ListContainersRequest {
                filters: vec![format!("labels.\"{}\"", labels::POD_UID)],
            }))
            .await
            .map_err(|s| call("containers list", &self.namespace, s))?
            .into_inner()
            .containers;
        let tasks = TasksClient::new(self.channel.clone())
            .list(self.request(ListTasksRequest {
                filter: String::new(),
            }))
            .await
            .map_err(|s| call("tasks list", &self.namespace, s))?
            .into_inner()
            .tasks;
        let tasks: HashMap<_, _> = tasks
            .into_iter()
            // containerd 1.6 names a task's container in `id` (the exec id is empty).
            .map(|t| {
                let id = if t.container_id.is_empty() {
                    t.id.clone()
                } else {
                    t.container_id.clone()
                };
                (id, t)
            })
            .collect();
        Ok(containers
            .into_iter()
            .map(|c| {
                let task = match tasks.get(&c.id) {
                    Some(t) if t.status == Status::Running as i32 => {
                        TaskState::Running { pid: t.pid }
                    }
                    Some(t) if t.status == Status::Stopped as i32 => TaskState::Exited {
                        exit_code: t.exit_status,
                        exited_at: t.exited_at.as_ref().map_or(0, |t| t.seconds),
                    },
                    _ => TaskState::NotRunning,
                };
                ContainerRecord {
                    id: c.id,
                    labels: c.labels.into_iter().collect(),
                    task,
                }
            })
            .collect())
    }

    async fn kill(&self, id: &str, signal: u32) -> Result<(), RuntimeError> {
        TasksClient::new(self.channel.clone())
            .kill(self.request(KillRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
                signal,
                all: false,
            }))
            .await
            .map_err(|s| call("task kill", id, s))?;
        Ok(())
    }

    async fn finish(&self, id: &str, labels: BTreeMap<String, String>) -> Result<(), RuntimeError> {
        self.update_labels(id, labels).await?;
        self.delete_task(id).await
    }

    async fn exec(&self, id: &str, args: &[String], env: &[String]) -> Result<u32, RuntimeError> {
        let exec_id = format!("exec-{}", uuid::Uuid::new_v4().simple());
        let process = serde_json::json!({
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": env,
            "cwd": "/",
        });
        let mut tasks = TasksClient::new(self.channel.clone());
        tasks
            .exec(self.request(ExecProcessRequest {
                container_id: id.to_string(),
                exec_id: exec_id.clone(),
                spec: Some(Any {
                    type_url: PROCESS_TYPE_URL.into(),
                    value: serde_json::to_vec(&process).unwrap_or_default(),
                }),
                ..Default::default()
            }))
            .await
            .map_err(|s| call("task exec", id, s))?;
        let result = async {
            tasks
                .start(self.request(StartRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.clone(),
                }))
                .await
                .map_err(|s| call("exec start", id, s))?;
            let waited = tasks
                .wait(self.request(WaitRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.clone(),
                }))
                .await
                .map_err(|s| call("exec wait", id, s))?;
            Ok(waited.into_inner().exit_status)
        }
        .await;
        let _ = tasks
            .delete_process(self.request(DeleteProcessRequest {
                container_id: id.to_string(),
                exec_id,
            }))
            .await;
        result
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let mut tasks = TasksClient::new(self.channel.clone());
        let _ = tasks
            .kill(self.request(KillRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
                signal: libc::SIGKILL as u32,
                all: true,
            }))
            .await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match self.delete_task(id).await {
                Ok(()) => break,
                Err(error) if tokio::time::Instant::now() > deadline => return Err(error),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        match ContainersClient::new(self.channel.clone())
            .delete(self.request(DeleteContainerRequest { id: id.to_string() }))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(call("container delete", id, s)),
        }
        match SnapshotsClient::new(self.channel.clone())
            .remove(self.request(RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: id.to_string(),
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(call("snapshot remove", id, s)),
        }
    }
}

impl Containerd {
    async fn resolve_and_unpack(&self, reference: &str) -> Result<ImageConfig, RuntimeError> {
        let name = image::normalize_reference(reference);
        let found = ImagesClient::new(self.channel.clone())
            .get(self.request(GetImageRequest { name: name.clone() }))
            .await;
        let target = match found {
            Ok(response) => response
                .into_inner()
                .image
                .and_then(|i| i.target)
                .ok_or_else(|| RuntimeError::BadImage {
                    image: name.clone(),
                    reason: "no target descriptor".into(),
                })?,
            Err(s) if s.code() == Code::NotFound => {
                return Err(RuntimeError::ImageNotFound { image: name });
            }
            Err(s) => return Err(call("image get", &name, s)),
        };
        let mut manifest_digest = target.digest.clone();
        let mut manifest = self.read_json(&manifest_digest, &name).await?;
        if image::INDEX_MEDIA_TYPES.contains(&target.media_type.as_str())
            || manifest.get("manifests").is_some()
        {
            manifest_digest =
                image::pick_manifest(&manifest).ok_or_else(|| RuntimeError::BadImage {
                    image: name.clone(),
                    reason: "the index lists no manifest".into(),
                })?;
            manifest = self.read_json(&manifest_digest, &name).await?;
        }
        let config_digest = manifest
            .pointer("/config/digest")
            .and_then(Value::as_str)
            .ok_or_else(|| RuntimeError::BadImage {
                image: name.clone(),
                reason: "the manifest has no config".into(),
            })?
            .to_string();
        let config = self.read_json(&config_digest, &name).await?;
        let diff_ids = image::strings(config.pointer("/rootfs/diff_ids"));
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        if layers.len() != diff_ids.len() || layers.is_empty() {
            return Err(RuntimeError::BadImage {
                image: name,
                reason: format!("{} layers but {} diff IDs", layers.len(), diff_ids.len()),
            });
        }
        let chain = image::chain_ids(&diff_ids);
        // Unpack from the top down to the first layer already present, then back up.
        let _unpacking = self.unpacking.lock().await;
        let mut present = chain.len();
        while present > 0 && !self.snapshot_exists(&chain[present - 1]).await? {
            present -= 1;
        }
        for i in present..chain.len() {
            let parent = if i == 0 { "" } else { chain[i - 1].as_str() };
            self.unpack_layer(&layers[i], parent, &chain[i]).await?;
        }
        if present < chain.len() {
            // As containerd's own unpacker does: the image's config refers to the unpacked
            // chain, so the snapshots live as long as the image.
            let label = format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}");
            let top = chain.last().cloned().unwrap_or_default();
            ContentClient::new(self.channel.clone())
                .update(self.request(ContentUpdateRequest {
                    info: Some(ContentInfo {
                        digest: config_digest.clone(),
                        labels: HashMap::from([(label.clone(), top)]),
                        ..Default::default()
                    }),
                    update_mask: Some(FieldMask {
                        paths: vec![format!("labels.{label}")],
                    }),
                }))
                .await
                .map_err(|s| call("content update", &config_digest, s))?;
        }
        Ok(ImageConfig {
            digest: manifest_digest,
            chain_id: chain.last().cloned().unwrap_or_default(),
            entrypoint: image::strings(config.pointer("/config/Entrypoint")),
            cmd: image::strings(config.pointer("/config/Cmd")),
            env: image::strings(config.pointer("/config/Env")),
            working_dir: config
                .pointer("/config/WorkingDir")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
    }

    async fn create_leased(&self, container: &ContainerCreate) -> Result<(), RuntimeError> {
        let id = container.id.as_str();
        let mounts = self.prepare_rootfs(id, &container.chain_id).await?;
        let spec = serde_json::to_vec(&container.spec).unwrap_or_default();
        let record = Container {
            id: id.to_string(),
            labels: container
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            image: image::normalize_reference(&container.image),
            runtime: Some(ContainerRuntime {
                name: RUNC_V2.into(),
                options: None,
            }),
            spec: Some(Any {
                type_url: SPEC_TYPE_URL.into(),
                value: spec,
            }),
            snapshotter: SNAPSHOTTER.into(),
            snapshot_key: id.to_string(),
            ..Default::default()
        };
        match ContainersClient::new(self.channel.clone())
            .create(self.request(CreateContainerRequest {
                container: Some(record),
            }))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::AlreadyExists => {}
            Err(s) => return Err(call("container create", id, s)),
        }
        if let Some(parent) = container.log_path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let log = self.log_uri(&container.log_path);
        TasksClient::new(self.channel.clone())
            .create(self.request(CreateTaskRequest {
                container_id: id.to_string(),
                rootfs: mounts,
                stdout: log.clone(),
                stderr: log,
                ..Default::default()
            }))
            .await
            .map_err(|s| call("task create", id, s))?;
        Ok(())
    }

    async fn start_task(&self, id: &str) -> Result<u32, RuntimeError> {
        let pid = TasksClient::new(self.channel.clone())
            .start(self.request(StartRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await
            .map_err(|s| call("task start", id, s))?
            .into_inner()
            .pid;
        let started = jiff::Timestamp::now().to_string();
        self.update_labels(id, BTreeMap::from([(labels::STARTED_AT.into(), started)]))
            .await?;
        Ok(pid)
    }

    async fn update_labels(
        &self,
        id: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<(), RuntimeError> {
        let mut containers = ContainersClient::new(self.channel.clone());
        let mut container = containers
            .get(self.request(GetContainerRequest { id: id.to_string() }))
            .await
            .map_err(|s| call("container get", id, s))?
            .into_inner()
            .container
            .ok_or_else(|| RuntimeError::NotFound { id: id.into() })?;
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        container.labels.extend(labels);
        containers
            .update(self.request(UpdateContainerRequest {
                container: Some(container),
                update_mask: Some(FieldMask { paths }),
            }))
            .await
            .map_err(|s| call("container update", id, s))?;
        Ok(())
    }
}

/// Where an exec's standard streams go: FIFO paths the shim opens (empty: none).
#[derive(Clone, Debug, Default)]
pub struct ExecIo {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Exec with streams, for the node API: the process spec comes from the container's own
/// spec (user, environment, working directory, capabilities), with another command.
impl Containerd {
    /// The `process` of the container's OCI spec.
    ///
    /// # Errors
    /// When the container is gone or its spec is not JSON.
    pub async fn container_process(&self, id: &str) -> Result<Value, RuntimeError> {
        let container = ContainersClient::new(self.channel.clone())
            .get(self.request(GetContainerRequest { id: id.to_string() }))
            .await
            .map_err(|s| call("container get", id, s))?
            .into_inner()
            .container
            .ok_or_else(|| RuntimeError::NotFound { id: id.into() })?;
        let spec: Value = container
            .spec
            .and_then(|any| serde_json::from_slice(&any.value).ok())
            .unwrap_or(Value::Null);
        Ok(spec.get("process").cloned().unwrap_or_else(
            || serde_json::json!({"user": {"uid": 0, "gid": 0}, "cwd": "/", "env": []}),
        ))
    }

    /// Creates and starts exec process `exec_id` in container `id` running `process`.
    ///
    /// # Errors
    /// When containerd refuses (e.g. the task is not running).
    pub async fn exec_start(
        &self,
        id: &str,
        exec_id: &str,
        process: &Value,
        io: &ExecIo,
    ) -> Result<(), RuntimeError> {
        let mut tasks = TasksClient::new(self.channel.clone());
        tasks
            .exec(self.request(ExecProcessRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                stdin: io.stdin.clone(),
                stdout: io.stdout.clone(),
                stderr: io.stderr.clone(),
                terminal: io.terminal,
                spec: Some(Any {
                    type_url: PROCESS_TYPE_URL.into(),
                    value: serde_json::to_vec(process).unwrap_or_default(),
                }),
            }))
            .await
            .map_err(|s| call("task exec", id, s))?;
        if let Err(s) = tasks
            .start(self.request(StartRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
        {
            self.exec_delete(id, exec_id).await;
            return Err(call("exec start", id, s));
        }
        Ok(())
    }

    /// Waits for exec process `exec_id` to exit; returns its exit status.
    ///
    /// # Errors
    /// When containerd cannot wait for it.
    pub async fn exec_wait(&self, id: &str, exec_id: &str) -> Result<u32, RuntimeError> {
        Ok(TasksClient::new(self.channel.clone())
            .wait(self.request(WaitRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
            .map_err(|s| call("exec wait", id, s))?
            .into_inner()
            .exit_status)
    }

    /// Resizes the terminal of exec process `exec_id`.
    ///
    /// # Errors
    /// When containerd refuses.
    pub async fn exec_resize(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), RuntimeError> {
        TasksClient::new(self.channel.clone())
            .resize_pty(self.request(ResizePtyRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                width,
                height,
            }))
            .await
            .map_err(|s| call("exec resize", id, s))?;
        Ok(())
    }

    /// Closes the stdin of exec process `exec_id` (the shim stops reading its FIFO and the
    /// process sees the end of its input).
    pub async fn exec_close_stdin(&self, id: &str, exec_id: &str) {
        let _ = TasksClient::new(self.channel.clone())
            .close_io(self.request(CloseIoRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                stdin: true,
            }))
            .await;
    }

    /// Deletes exec process `exec_id` (the shim finishes copying its output first).
    pub async fn exec_delete(&self, id: &str, exec_id: &str) {
        let _ = TasksClient::new(self.channel.clone())
            .delete_process(self.request(DeleteProcessRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await;
    }

    /// Kills exec process `exec_id` with `signal`.
    pub async fn exec_kill(&self, id: &str, exec_id: &str, signal: u32) {
        let _ = TasksClient::new(self.channel.clone())
            .kill(self.request(KillRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                signal,
                all: false,
            }))
            .await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_paths_are_escaped_for_the_binary_uri() {
        assert_eq!(super::percent_encode("/a b/c&d.log"), "/a%20b/c%26d.log");
    }
}
