//! The container runtime seam: what the pod worker asks of containerd (images, containers,
//! tasks), as a small trait that unit tests can replace, and its containerd implementation.
//!
//! A container here is one attempt of one pod container: created from an OCI runtime spec
//! ([`spec`]), started as a task, and after its exit kept (task deleted, exit recorded in its
//! labels) until the next attempt replaces it, so a restarted agent still knows `lastState`.

pub mod archive;
pub mod containerd;
pub mod image;
pub mod import;
pub mod registry;
pub mod spec;

use std::collections::BTreeMap;

use async_trait::async_trait;

/// Labels the agent puts on every container it creates (containerd labels).
pub mod labels {
    /// The pod's UID.
    pub const POD_UID: &str = "io.skiff.pod.uid";
    /// `namespace/name` of the pod.
    pub const POD: &str = "io.skiff.pod";
    /// The container's name in the pod spec.
    pub const CONTAINER: &str = "io.skiff.container.name";
    /// Which attempt this is (the restart count when it was created).
    pub const ATTEMPT: &str = "io.skiff.container.attempt";
    /// `init` for init containers, `app` otherwise.
    pub const KIND: &str = "io.skiff.container.kind";
    /// When the task started (RFC 3339), written after start.
    pub const STARTED_AT: &str = "io.skiff.started-at";
    /// Exit code once the task exited.
    pub const EXIT_CODE: &str = "io.skiff.exit-code";
    /// When the task exited (RFC 3339).
    pub const FINISHED_AT: &str = "io.skiff.finished-at";
    /// Why it exited: Completed, Error, OOMKilled.
    pub const REASON: &str = "io.skiff.reason";
}

/// What the image says about how to run it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// The manifest's digest the image resolved to.
    pub digest: String,
    /// The chain ID of the top layer (the snapshot the container's rootfs is prepared from).
    pub chain_id: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
}

/// A container to create: its id, labels, image and the OCI runtime spec (JSON).
#[derive(Clone, Debug)]
pub struct ContainerCreate {
    pub id: String,
    pub image: String,
    pub chain_id: String,
    pub labels: BTreeMap<String, String>,
    pub spec: serde_json::Value,
    /// Where the task's stdout and stderr go (appended).
    pub log_path: std::path::PathBuf,
}

/// A container the runtime knows, with its labels and its task's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRecord {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub task: TaskState,
}

/// The state of a container's task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Created but not started, or no task at all.
    NotRunning,
    /// Running as `pid`.
    Running { pid: u32 },
    /// Exited with `exit_code`; `exited_at` in seconds since the epoch.
    Exited { exit_code: u32, exited_at: i64 },
}

/// Errors from the container runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// containerd could not be reached.
    #[error("connecting to containerd at {socket}")]
    Connect {
        socket: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// containerd answered a call with an error.
    #[error("containerd {call} for {what}: {status}")]
    Call {
        call: &'static str,
        what: String,
        status: Box<tonic::Status>,
    },
    /// The image is not in this node's containerd namespace.
    #[error("image {image} is not present on this node; import it (ctr -n <ns> import) first")]
    ImageNotFound { image: String },
    /// The image could not be pulled from its registry.
    #[error("pulling image {image}: {reason}")]
    Pull { image: String, reason: String },
    /// The image's manifest or config could not be understood.
    #[error("image {image}: {reason}")]
    BadImage { image: String, reason: String },
    /// The container or task does not exist.
    #[error("container {id} not found")]
    NotFound { id: String },
}

impl RuntimeError {
    /// Whether the error says the thing is missing.
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::NotFound { .. } | Self::ImageNotFound { .. } => true,
            Self::Call { status, .. } => status.code() == tonic::Code::NotFound,
            _ => false,
        }
    }
}

/// What the pod worker needs from a container runtime.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Resolves an image present on the node and makes sure its layers are unpacked into the
    /// snapshotter.
    async fn ensure_image(&self, image: &str) -> Result<ImageConfig, RuntimeError>;
    /// Pulls `image` from its registry into the node's content store (not unpacked: that
    /// is [`Runtime::ensure_image`]), with a registry user and password if given.
    async fn pull(
        &self,
        image: &str,
        credentials: Option<(String, String)>,
    ) -> Result<(), RuntimeError> {
        let _ = credentials;
        Err(RuntimeError::Pull {
            image: image.to_string(),
            reason: "this runtime cannot pull images".into(),
        })
    }
    /// Creates the container (snapshot, container record and task) without starting it.
    async fn create(&self, container: &ContainerCreate) -> Result<(), RuntimeError>;
    /// Starts the created task; returns its pid.
    async fn start(&self, id: &str) -> Result<u32, RuntimeError>;
    /// All containers this agent made (in its namespace), with their task state.
    async fn list(&self) -> Result<Vec<ContainerRecord>, RuntimeError>;
    /// Sends `signal` to the task's process.
    async fn kill(&self, id: &str, signal: u32) -> Result<(), RuntimeError>;
    /// Records the exit (labels merged into the container's labels) and deletes the task.
    async fn finish(&self, id: &str, labels: BTreeMap<String, String>) -> Result<(), RuntimeError>;
    /// Runs `args` inside the running container (with `env`) and returns its exit code.
    async fn exec(&self, id: &str, args: &[String], env: &[String]) -> Result<u32, RuntimeError>;
    /// Deletes the task (killing it first), the container and its snapshot.
    async fn remove(&self, id: &str) -> Result<(), RuntimeError>;
}
