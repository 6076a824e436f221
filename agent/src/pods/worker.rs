//! One reconcile of one pod: set up its namespaces and network, run init containers in
//! order and then its containers, restart them by policy with back-off, terminate
//! gracefully on deletion, and report status. Everything it knows about containers it reads
//! back from the runtime (containerd labels), so a restarted agent adopts what runs.

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use skiff_api::{
    client::{Client, DeleteParams},
    runtime::{Action, Config as WatchConfig, Controller, Informer, ObjectKey, Store, WorkQueue},
};
use tokio::time::Instant;
use tracing::{info, warn};

use super::{
    backoff, pod_cgroup, probes, qos,
    status::{self, Attempt, AttemptState, Waiting},
    volumes,
};
use crate::{
    metrics::cgroupfs::{CgroupLayout, HostCgroupFiles},
    network::{Cidr, ipam::Ipam, namespaces, veth},
    runtime::{
        ContainerCreate, ContainerRecord, Runtime, RuntimeError, labels,
        spec::{self, ContainerSpec},
    },
};

/// How often a pod with live containers is looked at again.
const RESYNC: Duration = Duration::from_secs(1);

/// Where pods live on this node.
#[derive(Clone, Debug)]
pub struct PodManagerConfig {
    pub node_name: String,
    pub node_ip: Option<Ipv4Addr>,
    pub state_dir: PathBuf,
    /// The node's cgroup, relative to each hierarchy's root (`/skiff/node-1`).
    pub cgroup_parent: String,
    /// Where the cgroup hierarchies are mounted (`/sys/fs/cgroup`).
    pub cgroup_mount: PathBuf,
    pub pod_cidr: Cidr,
    pub pids_limit: Option<i64>,
    /// Told whenever a pod's veth is made or removed (the data plane's endpoint map follows).
    pub network_changed: Option<Arc<tokio::sync::Notify>>,
}

/// Errors of one reconcile (the pod is tried again after a back-off).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("pod {pod}: runtime")]
    Runtime {
        pod: String,
        #[source]
        source: RuntimeError,
    },
    #[error("pod {pod}: network")]
    Network {
        pod: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("pod {pod}: API")]
    Api {
        pod: String,
        #[source]
        source: skiff_api::client::ClientError,
    },
}

/// Host paths (and forced read-only) by volume name, or why they could not be made.
type VolumePaths = Result<HashMap<String, (PathBuf, bool)>, String>;

/// How often configMap and secret volume files are brought up to date.
const VOLUME_REFRESH: Duration = Duration::from_secs(3);

/// What starting any container of the pod needs.
#[derive(Clone, Copy, Debug)]
struct PodContext<'a> {
    pod_ip: Ipv4Addr,
    pod_cgroup: &'a str,
    volumes: &'a VolumePaths,
}

/// A failure to start a container, shown as its waiting reason until a retry works.
#[derive(Clone, Debug)]
struct StartFailure {
    reason: &'static str,
    message: String,
    count: u32,
    retry_at: Instant,
}

#[derive(Debug, Default)]
struct PodMemory {
    /// Probe states by container id (one attempt) and probe.
    probes: HashMap<(String, probes::Kind), probes::ProbeState>,
    /// When this agent first saw each container id running (probes' initial delay).
    seen_running: HashMap<String, Instant>,
    /// The volumes as last prepared, and when (configMap and secret files are refreshed
    /// every few seconds, not on every reconcile).
    volumes: Option<(Instant, VolumePaths)>,
    termination_started: Option<Instant>,
    killed: bool,
    failures: HashMap<String, StartFailure>,
    /// The pod cgroup exists with its pod-level limits.
    cgroup_ready: bool,
    /// Set by [`PodManager::evict`]: the eviction message; the pod's containers are
    /// killed and it ends Failed with reason Evicted.
    evicted: Option<String>,
}

/// Runs the pods bound to this node.
pub struct PodManager {
    client: Client,
    runtime: Arc<dyn Runtime>,
    ipam: Ipam,
    config: PodManagerConfig,
    memory: Mutex<HashMap<String, PodMemory>>,
    /// Where reconcile durations and failures are reported, once set.
    metrics: std::sync::OnceLock<Arc<crate::metrics::AgentMetrics>>,
    /// The work queue, once [`PodManager::run`] made it (evictions go through it).
    queue: std::sync::OnceLock<WorkQueue<ObjectKey>>,
    /// Where the cgroup hierarchies are (for the pod cgroups' limits).
    layout: CgroupLayout,
}

impl std::fmt::Debug for PodManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodManager")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A containerd id for one attempt of one container (short, unique per pod and attempt).
pub fn container_id(pod_uid: &str, name: &str, attempt: u32) -> String {
    let digest = Sha256::digest(format!("{pod_uid}/{name}").as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let short: String = name.chars().take(24).collect();
    format!("{short}-{hex}-{attempt}")
}

/// The process's argv by Kubernetes' rules: `command` replaces the entrypoint, `args`
/// replace the image's cmd (which is dropped when only `command` is given).
pub fn process_args(container: &Container, entrypoint: &[String], cmd: &[String]) -> Vec<String> {
    let command = container.command.clone().unwrap_or_default();
    let args = container.args.clone().unwrap_or_default();
    match (command.is_empty(), args.is_empty()) {
        (false, _) => command.into_iter().chain(args).collect(),
        (true, false) => entrypoint.iter().cloned().chain(args).collect(),
        (true, true) => entrypoint.iter().chain(cmd).cloned().collect(),
    }
}

/// The value of a `fieldRef` path for this pod.
pub fn field_ref(
    pod: &Pod,
    path: &str,
    pod_ip: Option<Ipv4Addr>,
    node_ip: Option<Ipv4Addr>,
) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" => pod_ip.map(|ip| ip.to_string()),
        "status.hostIP" => node_ip.map(|ip| ip.to_string()),
        _ => {
            let key = path
                .strip_prefix("metadata.labels['")
                .map(|k| (true, k))
                .or_else(|| {
                    path.strip_prefix("metadata.annotations['")
                        .map(|k| (false, k))
                })?;
            let name = key.1.strip_suffix("']")?;
            let map = if key.0 {
                &meta.labels
            } else {
                &meta.annotations
            };
            map.as_ref()?.get(name).cloned()
        }
    }
}

/// The container's environment: the image's, then the container's (later names win).
pub fn environment(
    pod: &Pod,
    container: &Container,
    image_env: &[String],
    pod_ip: Option<Ipv4Addr>,
    node_ip: Option<Ipv4Addr>,
) -> Vec<String> {
    let mut env: Vec<(String, String)> = image_env
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push((
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ));
    }
    let hostname = pod.metadata.name.clone().unwrap_or_default();
    env.push(("HOSTNAME".into(), hostname));
    for EnvVar {
        name,
        value,
        value_from,
    } in container.env.iter().flatten()
    {
        let resolved = match (value, value_from) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(from)) => from
                .field_ref
                .as_ref()
                .and_then(|f| field_ref(pod, &f.field_path, pod_ip, node_ip)),
            (None, None) => Some(String::new()),
        };
        if let Some(value) = resolved {
            env.retain(|(k, _)| k != name);
            env.push((name.clone(), value));
        }
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// What the reconcile decided about one container.
enum Next {
    /// Nothing to do now (running, or done for good).
    Stay,
    /// Start a new attempt now.
    Start(u32),
    /// Wait with this reason until the back-off ends.
    Wait(Waiting, Duration),
}

/// Whether a container whose latest attempt is over should run again, and when.
fn restart_decision(policy: &str, last: &Attempt, now_unix: i64) -> Next {
    let code = last.exit_code().unwrap_or(0);
    let again = match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    };
    if !again {
        return Next::Stay;
    }
    let finished = match &last.state {
        AttemptState::Finished { finished_at, .. } => finished_at
            .parse::<jiff::Timestamp>()
            .map_or(now_unix, |t| t.as_second()),
        AttemptState::Exited { exited_at, .. } => *exited_at,
        _ => now_unix,
    };
    let started = last
        .started_at
        .as_deref()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map_or(finished, |t| t.as_second());
    let ran = Duration::from_secs((finished - started).max(0) as u64);
    let delay = backoff::delay(last.attempt + 1, ran);
    let elapsed = Duration::from_secs((now_unix - finished).max(0) as u64);
    if elapsed >= delay {
        Next::Start(last.attempt + 1)
    } else {
        Next::Wait(
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: format!("back-off {}s restarting failed container", delay.as_secs()),
            },
            delay - elapsed,
        )
    }
}

impl PodManager {
    /// A manager over `runtime`, keeping IPAM state under the state directory.
    ///
    /// # Errors
    /// When the IPAM directory cannot be made.
    pub fn new(
        client: Client,
        runtime: Arc<dyn Runtime>,
        config: PodManagerConfig,
    ) -> Result<Arc<Self>, crate::network::ipam::IpamError> {
        let ipam = Ipam::new(config.pod_cidr, &config.state_dir.join("ipam"))?;
        let layout = CgroupLayout::detect(&HostCgroupFiles, &config.cgroup_mount);
        Ok(Arc::new(Self {
            client,
            runtime,
            ipam,
            config,
            memory: Mutex::new(HashMap::new()),
            metrics: std::sync::OnceLock::new(),
            queue: std::sync::OnceLock::new(),
            layout,
        }))
    }

    /// Reports each reconcile's duration and failures to `metrics` from now on.
    pub fn report_to(&self, metrics: Arc<crate::metrics::AgentMetrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Watches this node's pods and reconciles them until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send + 'static) {
        let informer = Informer::<Pod>::new(
            self.client.clone(),
            "pods",
            "",
            WatchConfig::default().fields(&format!("spec.nodeName={}", self.config.node_name)),
        );
        let queue = WorkQueue::new();
        let _ = self.queue.set(queue.clone());
        let (store, mut changes, feed) = (informer.store(), informer.subscribe(), queue.clone());
        let feeder = tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                match change.object() {
                    Some(pod) => feed.add(ObjectKey::of(&**pod)),
                    None => store.keys().into_iter().for_each(|key| feed.add(key)),
                }
            }
        });
        let store = informer.store();
        let sweeper = tokio::spawn(Arc::clone(&self).sweep_orphans(store.clone(), queue.clone()));
        let manager = Arc::clone(&self);
        Controller::new(queue)
            .graceful_shutdown_on(shutdown)
            .run(8, move |key: ObjectKey| {
                let manager = Arc::clone(&manager);
                let pod = store.get(&key);
                async move {
                    let started = Instant::now();
                    let result = manager.reconcile(&key, pod).await;
                    if let Some(metrics) = manager.metrics.get() {
                        metrics.observe_pod_reconcile(started.elapsed(), result.is_ok());
                    }
                    result
                }
            })
            .await;
        feeder.abort();
        sweeper.abort();
    }

    /// Every few seconds, removes containers of pods this node no longer has.
    async fn sweep_orphans(self: Arc<Self>, store: Store<Pod>, queue: WorkQueue<ObjectKey>) {
        store.wait_until_ready().await;
        loop {
            if let Ok(records) = self.runtime.list().await {
                let known: std::collections::HashSet<String> = store
                    .list()
                    .iter()
                    .filter_map(|p| p.metadata.uid.clone())
                    .collect();
                let mut orphans: BTreeMap<String, String> = BTreeMap::new();
                for record in &records {
                    if let (Some(uid), Some(pod)) = (
                        record.labels.get(labels::POD_UID),
                        record.labels.get(labels::POD),
                    ) && !known.contains(uid)
                    {
                        orphans.insert(uid.clone(), pod.clone());
                    }
                }
                for (uid, pod) in orphans {
                    info!(%pod, %uid, "removing the containers of a pod this node no longer has");
                    if let Err(error) = self.tear_down(&uid, &records).await {
                        warn!(%pod, error = %error, "removing an orphaned pod");
                    }
                    queue.add(ObjectKey::parse(&pod));
                }
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }

    /// The container's image, ready to run: pulled as its imagePullPolicy says (Always,
    /// IfNotPresent, Never; defaulted as Kubernetes does) and unpacked.
    async fn image_for(
        &self,
        pod: &Pod,
        container: &Container,
    ) -> Result<crate::runtime::ImageConfig, (&'static str, String)> {
        let image = container.image.clone().unwrap_or_default();
        let policy = container.image_pull_policy.clone().unwrap_or_else(|| {
            skiff_api::defaults::pod::default_image_pull_policy(&image).to_string()
        });
        if policy == "Always" {
            self.pull(pod, &image).await?;
        }
        match self.runtime.ensure_image(&image).await {
            Ok(config) => Ok(config),
            Err(error) if error.is_not_found() && policy == "Never" => Err((
                "ErrImageNeverPull",
                format!("Container image \"{image}\" is not present with pull policy of Never"),
            )),
            Err(error) if error.is_not_found() && policy == "IfNotPresent" => {
                self.pull(pod, &image).await?;
                self.runtime
                    .ensure_image(&image)
                    .await
                    .map_err(|e| ("ErrImagePull", e.to_string()))
            }
            Err(error) => Err(("ErrImagePull", error.to_string())),
        }
    }

    async fn pull(&self, pod: &Pod, image: &str) -> Result<(), (&'static str, String)> {
        let credentials = self.pull_credentials(pod, image).await;
        info!(pod = %pod_name(pod), image, authenticated = credentials.is_some(), "pulling");
        self.runtime
            .pull(image, credentials)
            .await
            .map_err(|e| ("ErrImagePull", e.to_string()))
    }

    /// The registry user and password for `image` from the pod's imagePullSecrets
    /// (`kubernetes.io/dockerconfigjson`), the first that has any.
    async fn pull_credentials(&self, pod: &Pod, image: &str) -> Option<(String, String)> {
        use crate::runtime::{image::normalize_reference, registry};
        let registry = registry::RegistryRef::parse(&normalize_reference(image))?.registry;
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let secrets = pod
            .spec
            .as_ref()?
            .image_pull_secrets
            .clone()
            .unwrap_or_default();
        for reference in secrets {
            let name = reference.name;
            if name.is_empty() {
                continue;
            }
            let Ok(secret) = self.client.get("secrets", namespace, &name).await else {
                warn!(pod = %pod_name(pod), secret = %name, "image pull secret not found");
                continue;
            };
            if secret["type"] != "kubernetes.io/dockerconfigjson" {
                continue;
            }
            let Some(encoded) = secret.pointer("/data/.dockerconfigjson") else {
                continue;
            };
            let Ok(bytes) = serde_json::from_value::<k8s_openapi::ByteString>(encoded.clone())
            else {
                continue;
            };
            let config: Value = serde_json::from_slice(&bytes.0).unwrap_or(Value::Null);
            if let Some(found) = registry::credentials_for(&config, &registry) {
                return Some(found);
            }
        }
        None
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.config.state_dir.join("pods").join(uid)
    }

    fn log_path(&self, pod: &Pod, uid: &str, name: &str, attempt: u32) -> PathBuf {
        self.config
            .state_dir
            .join("logs")
            .join(format!(
                "{}_{}_{uid}",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default()
            ))
            .join(name)
            .join(format!("{attempt}.log"))
    }

    /// One reconcile of the pod at `key` (`pod` none: it is gone from the API).
    ///
    /// # Errors
    /// When the runtime, the network or the API fails; the pod is retried with back-off.
    pub async fn reconcile(
        &self,
        key: &ObjectKey,
        pod: Option<Arc<Pod>>,
    ) -> Result<Action, WorkerError> {
        let Some(pod) = pod else {
            return Ok(Action::Done);
        };
        let name = pod_name(&pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let runtime_error = |source| WorkerError::Runtime {
            pod: name.clone(),
            source,
        };
        let records: Vec<ContainerRecord> = self
            .runtime
            .list()
            .await
            .map_err(runtime_error)?
            .into_iter()
            .filter(|r| r.labels.get(labels::POD_UID) == Some(&uid))
            .collect();

        if pod.metadata.deletion_timestamp.is_some() {
            return self.terminate(key, &pod, &uid, &records).await;
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or_default();
        if matches!(phase, "Succeeded" | "Failed") {
            return Ok(Action::Done);
        }

        let evicted = self.recall(&uid, |m| m.evicted.is_some()) == Some(true);
        if evicted && self.kill_running(&records).await {
            // Hard eviction: no grace period; the status is written once all have stopped.
            return Ok(Action::RequeueAfter(Duration::from_millis(100)));
        }

        // The sandbox: namespaces, address, veth.
        let pod_ip = self.ensure_network(&pod, &uid).await?;
        let volumes = self.volumes(&pod, &uid).await;

        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let class = qos::qos_class(&pod);
        let pod_cgroup = qos::pod_cgroup(&self.config.cgroup_parent, class, &uid);
        if !evicted {
            self.ensure_pod_cgroup(&pod, &uid, &pod_cgroup);
        }
        let now_unix = jiff::Timestamp::now().as_second();
        let mut by_container = status::attempts_by_container(&records);

        // Record exits the runtime reports (with OOM from the cgroup) before anything else.
        for attempts in by_container.values_mut() {
            for attempt in attempts.iter_mut() {
                if let AttemptState::Exited { code, exited_at } = attempt.state {
                    let oom = oom_killed(
                        &self.config.cgroup_mount,
                        &format!("{pod_cgroup}/{}", attempt.id),
                    );
                    let reason = status::exit_reason(code, oom).to_string();
                    let finished_at = jiff::Timestamp::from_second(exited_at)
                        .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string());
                    self.runtime
                        .finish(
                            &attempt.id,
                            BTreeMap::from([
                                (labels::EXIT_CODE.to_string(), code.to_string()),
                                (labels::REASON.to_string(), reason.clone()),
                                (labels::FINISHED_AT.to_string(), finished_at.clone()),
                            ]),
                        )
                        .await
                        .map_err(runtime_error)?;
                    attempt.state = AttemptState::Finished {
                        code,
                        reason,
                        finished_at,
                    };
                }
            }
        }

        let mut waiting: HashMap<String, Waiting> = HashMap::new();
        let mut requeue = RESYNC;
        let init_containers = spec.init_containers.clone().unwrap_or_default();
        let mut init_done = true;
        let mut init_failed = false;
        for container in init_containers.iter().filter(|_| !evicted) {
            let attempts = by_container.get(&container.name);
            let last = attempts.and_then(|a| a.last());
            let next = match last {
                None => Next::Start(0),
                Some(a) if !a.is_over() => Next::Stay,
                Some(a) if a.exit_code() == Some(0) => continue,
                Some(a) if policy == "Never" => {
                    let _ = a;
                    init_failed = true;
                    Next::Stay
                }
                Some(a) => restart_decision("Always", a, now_unix),
            };
            init_done = false;
            self.act(
                &pod,
                &uid,
                container,
                true,
                next,
                &PodContext {
                    pod_ip,
                    pod_cgroup: &pod_cgroup,
                    volumes: &volumes,
                },
                &mut waiting,
                &mut requeue,
            )
            .await?;
            break;
        }

        if init_done && !evicted {
            for container in &spec.containers {
                let attempts = by_container.get(&container.name);
                let next = match attempts.and_then(|a| a.last()) {
                    None => Next::Start(0),
                    Some(a) if !a.is_over() => Next::Stay,
                    Some(a) => restart_decision(&policy, a, now_unix),
                };
                self.act(
                    &pod,
                    &uid,
                    container,
                    false,
                    next,
                    &PodContext {
                        pod_ip,
                        pod_cgroup: &pod_cgroup,
                        volumes: &volumes,
                    },
                    &mut waiting,
                    &mut requeue,
                )
                .await?;
            }
        }

        // Read back what runs now and report it.
        let records: Vec<ContainerRecord> = self
            .runtime
            .list()
            .await
            .map_err(runtime_error)?
            .into_iter()
            .filter(|r| r.labels.get(labels::POD_UID) == Some(&uid))
            .collect();
        let by_container = status::attempts_by_container(&records);
        if let Some(memory) = self.memory.lock().expect("pod memory").get_mut(&uid) {
            // Forget probe results of attempts that are gone.
            let live: std::collections::HashSet<&str> =
                records.iter().map(|r| r.id.as_str()).collect();
            memory
                .probes
                .retain(|(id, _), _| live.contains(id.as_str()));
            memory
                .seen_running
                .retain(|id, _| live.contains(id.as_str()));
        }
        let ready = if init_done && !evicted {
            self.run_probes(&pod, &uid, &spec.containers, &by_container, pod_ip)
                .await
        } else {
            HashMap::new()
        };
        self.write_status(
            &pod,
            &spec,
            &policy,
            class,
            pod_ip,
            &by_container,
            &waiting,
            &ready,
            init_done,
            init_failed,
        )
        .await?;
        if evicted {
            info!(pod = %name, "evicted: containers stopped, status Failed");
            return Ok(Action::Done);
        }
        Ok(Action::RequeueAfter(requeue))
    }

    /// What this agent remembers of the pod `uid`, read through `read`.
    fn recall<T>(&self, uid: &str, read: impl FnOnce(&PodMemory) -> T) -> Option<T> {
        self.memory.lock().expect("pod memory").get(uid).map(read)
    }

    /// Creates the pod cgroup with its pod-level limits, once per pod (a failure is logged
    /// and tried again on the next reconcile; the containers' own limits still apply).
    fn ensure_pod_cgroup(&self, pod: &Pod, uid: &str, pod_cgroup: &str) {
        if self.recall(uid, |m| m.cgroup_ready) == Some(true) {
            return;
        }
        let resources = qos::pod_resources(pod);
        match pod_cgroup::ensure(&self.layout, pod_cgroup, &resources) {
            Ok(()) => {
                self.memory
                    .lock()
                    .expect("pod memory")
                    .entry(uid.to_string())
                    .or_default()
                    .cgroup_ready = true;
            }
            Err(error) => {
                warn!(pod = %pod_name(pod), error = %crate::error_chain(&error), "setting the pod cgroup's limits")
            }
        }
    }

    /// Sends SIGKILL to every running container of `records`; true when any was running.
    async fn kill_running(&self, records: &[ContainerRecord]) -> bool {
        let mut any = false;
        for record in records {
            if matches!(record.task, crate::runtime::TaskState::Running { .. }) {
                any = true;
                let _ = self.runtime.kill(&record.id, libc::SIGKILL as u32).await;
            }
        }
        any
    }

    /// Evicts the pod (kubelet's hard eviction): its containers are killed without a grace
    /// period and never restarted, and its status becomes phase Failed, reason Evicted,
    /// with `message`. Returns once its containers have stopped, or after `wait`.
    ///
    /// # Errors
    /// When the runtime cannot list the containers.
    pub async fn evict(
        &self,
        pod: &Pod,
        message: String,
        wait: Duration,
    ) -> Result<(), WorkerError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.memory
            .lock()
            .expect("pod memory")
            .entry(uid.clone())
            .or_default()
            .evicted = Some(message);
        if let Some(queue) = self.queue.get() {
            queue.add(ObjectKey::of(pod));
        }
        let deadline = Instant::now() + wait;
        loop {
            let records = self
                .runtime
                .list()
                .await
                .map_err(|source| WorkerError::Runtime {
                    pod: pod_name(pod),
                    source,
                })?;
            let ours: Vec<ContainerRecord> = records
                .into_iter()
                .filter(|r| r.labels.get(labels::POD_UID) == Some(&uid))
                .collect();
            if !self.kill_running(&ours).await || Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn act(
        &self,
        pod: &Pod,
        uid: &str,
        container: &Container,
        init: bool,
        next: Next,
        context: &PodContext<'_>,
        waiting: &mut HashMap<String, Waiting>,
        requeue: &mut Duration,
    ) -> Result<(), WorkerError> {
        let attempt = match next {
            Next::Stay => return Ok(()),
            Next::Wait(w, left) => {
                waiting.insert(container.name.clone(), w);
                *requeue = (*requeue).min(left.max(Duration::from_millis(100)));
                return Ok(());
            }
            Next::Start(attempt) => attempt,
        };
        let failure_key = container.name.clone();
        let pending = self
            .memory
            .lock()
            .expect("pod memory")
            .get(uid)
            .and_then(|m| m.failures.get(&failure_key).cloned());
        if let Some(failure) = &pending
            && Instant::now() < failure.retry_at
        {
            let reason = if failure.reason == "ErrImagePull" {
                "ImagePullBackOff"
            } else {
                failure.reason
            };
            waiting.insert(
                container.name.clone(),
                Waiting {
                    reason: reason.into(),
                    message: failure.message.clone(),
                },
            );
            return Ok(());
        }
        match self
            .start_container(pod, uid, container, init, attempt, context)
            .await
        {
            Ok(()) => {
                if let Some(memory) = self.memory.lock().expect("pod memory").get_mut(uid) {
                    memory.failures.remove(&failure_key);
                }
                Ok(())
            }
            Err((reason, message)) => {
                warn!(pod = %pod_name(pod), container = %container.name, reason, %message, "starting a container failed");
                let count = pending.map_or(1, |f| f.count + 1);
                let delay = backoff::delay(count, Duration::ZERO);
                self.memory
                    .lock()
                    .expect("pod memory")
                    .entry(uid.to_string())
                    .or_default()
                    .failures
                    .insert(
                        failure_key,
                        StartFailure {
                            reason,
                            message: message.clone(),
                            count,
                            retry_at: Instant::now() + delay,
                        },
                    );
                waiting.insert(
                    container.name.clone(),
                    Waiting {
                        reason: reason.into(),
                        message,
                    },
                );
                Ok(())
            }
        }
    }

    /// Creates and starts one attempt; on failure, the waiting reason and message.
    #[allow(clippy::too_many_arguments)]
    async fn start_container(
        &self,
        pod: &Pod,
        uid: &str,
        container: &Container,
        init: bool,
        attempt: u32,
        context: &PodContext<'_>,
    ) -> Result<(), (&'static str, String)> {
        let PodContext {
            pod_ip, pod_cgroup, ..
        } = *context;
        let volumes = context
            .volumes
            .as_ref()
            .map_err(|message| ("CreateContainerConfigError", message.clone()))?;
        let mounts = volumes::container_mounts(container, volumes)
            .map_err(|e| ("CreateContainerConfigError", e.to_string()))?;
        let image_ref = container.image.clone().unwrap_or_default();
        let image = self.image_for(pod, container).await?;
        let id = container_id(uid, &container.name, attempt);
        let dir = self.pod_dir(uid).join("ns");
        let ns = namespaces::PodNamespaces::at(&dir);
        let resources = qos::container_resources(container, self.config.pids_limit);
        let args = process_args(container, &image.entrypoint, &image.cmd);
        if args.is_empty() {
            return Err((
                "CreateContainerError",
                "no command: the image has no entrypoint or cmd and the container sets no command"
                    .into(),
            ));
        }
        let spec = spec::build(&ContainerSpec {
            args,
            env: environment(
                pod,
                container,
                &image.env,
                Some(pod_ip),
                self.config.node_ip,
            ),
            cwd: container
                .working_dir
                .clone()
                .unwrap_or_else(|| image.working_dir.clone()),
            hostname: pod.metadata.name.clone().unwrap_or_default(),
            net_ns: ns.net,
            ipc_ns: ns.ipc,
            uts_ns: ns.uts,
            cgroups_path: format!("{pod_cgroup}/{id}"),
            resources,
            mounts,
        });
        let labels = BTreeMap::from([
            (labels::POD_UID.to_string(), uid.to_string()),
            (labels::POD.to_string(), pod_name(pod)),
            (labels::CONTAINER.to_string(), container.name.clone()),
            (labels::ATTEMPT.to_string(), attempt.to_string()),
            (
                labels::KIND.to_string(),
                if init { "init" } else { "app" }.to_string(),
            ),
        ]);
        let create = ContainerCreate {
            id: id.clone(),
            image: image_ref,
            chain_id: image.chain_id,
            labels,
            spec,
            log_path: self.log_path(pod, uid, &container.name, attempt),
        };
        if let Err(error) = self.runtime.create(&create).await {
            let _ = self.runtime.remove(&id).await;
            return Err(("CreateContainerError", error.to_string()));
        }
        if let Err(error) = self.runtime.start(&id).await {
            let _ = self.runtime.remove(&id).await;
            return Err(("RunContainerError", error.to_string()));
        }
        info!(pod = %pod_name(pod), container = %container.name, attempt, "container started");
        // Keep only this attempt and the one before it (for lastState).
        if attempt >= 2 {
            let _ = self
                .runtime
                .remove(&container_id(uid, &container.name, attempt - 2))
                .await;
        }
        Ok(())
    }

    /// The pod's volumes, prepared again when the last preparation is older than
    /// [`VOLUME_REFRESH`] or failed.
    async fn volumes(&self, pod: &Pod, uid: &str) -> VolumePaths {
        let cached = self
            .memory
            .lock()
            .expect("pod memory")
            .get(uid)
            .and_then(|m| m.volumes.clone());
        if let Some((at, Ok(paths))) = cached
            && at.elapsed() < VOLUME_REFRESH
        {
            return Ok(paths);
        }
        let fresh = volumes::prepare(&self.client, pod, &self.pod_dir(uid))
            .await
            .map_err(|e| e.to_string());
        self.memory
            .lock()
            .expect("pod memory")
            .entry(uid.to_string())
            .or_default()
            .volumes = Some((Instant::now(), fresh.clone()));
        fresh
    }

    fn network_changed(&self) {
        if let Some(changed) = &self.config.network_changed {
            changed.notify_one();
        }
    }

    async fn ensure_network(&self, pod: &Pod, uid: &str) -> Result<Ipv4Addr, WorkerError> {
        let name = pod_name(pod);
        let network_error =
            |source: Box<dyn std::error::Error + Send + Sync>| WorkerError::Network {
                pod: name.clone(),
                source,
            };
        let dir = self.pod_dir(uid);
        let ns = namespaces::create(
            &dir.join("ns"),
            pod.metadata.name.as_deref().unwrap_or("pod"),
        )
        .map_err(|e| network_error(Box::new(e)))?;
        let ip = self
            .ipam
            .allocate(uid)
            .map_err(|e| network_error(Box::new(e)))?;
        let marker = dir.join("network");
        if std::fs::read_to_string(&marker).ok().as_deref() != Some(ip.to_string().as_str()) {
            veth::attach(&ns.net, uid, ip)
                .await
                .map_err(|e| network_error(Box::new(e)))?;
            self.network_changed();
            let _ = std::fs::write(&marker, ip.to_string());
            info!(pod = %name, %ip, "pod network ready");
        }
        Ok(ip)
    }

    /// Deletion: SIGTERM, the grace period, SIGKILL, then everything removed and the pod
    /// object deleted for good.
    async fn terminate(
        &self,
        key: &ObjectKey,
        pod: &Pod,
        uid: &str,
        records: &[ContainerRecord],
    ) -> Result<Action, WorkerError> {
        let name = pod_name(pod);
        let grace = Duration::from_secs(
            pod.metadata
                .deletion_grace_period_seconds
                .unwrap_or(30)
                .max(0) as u64,
        );
        let running: Vec<&ContainerRecord> = records
            .iter()
            .filter(|r| matches!(r.task, crate::runtime::TaskState::Running { .. }))
            .collect();
        if !running.is_empty() {
            let (first, kill) = {
                let mut memory = self.memory.lock().expect("pod memory");
                let entry = memory.entry(uid.to_string()).or_default();
                let first = entry.termination_started.is_none();
                let started = *entry.termination_started.get_or_insert_with(Instant::now);
                let kill = Instant::now() >= started + grace && !entry.killed;
                if kill {
                    entry.killed = true;
                }
                (first, kill)
            };
            if first {
                info!(pod = %name, grace_seconds = grace.as_secs(), "terminating: SIGTERM");
                for record in &running {
                    self.pre_stop(pod, record, grace).await;
                    let _ = self.runtime.kill(&record.id, libc::SIGTERM as u32).await;
                }
            } else if kill {
                info!(pod = %name, "grace period over: SIGKILL");
                for record in &running {
                    let _ = self.runtime.kill(&record.id, libc::SIGKILL as u32).await;
                }
            }
            return Ok(Action::RequeueAfter(Duration::from_millis(200)));
        }
        self.tear_down(uid, records).await?;
        self.memory.lock().expect("pod memory").remove(uid);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            precondition_resource_version: String::new(),
            propagation_policy: String::new(),
        };
        match self
            .client
            .delete("pods", &key.namespace, &key.name, &params)
            .await
        {
            Ok(_) => {}
            Err(e) if e.is(skiff_api::status::Reason::NotFound) => {}
            Err(source) => return Err(WorkerError::Api { pod: name, source }),
        }
        info!(pod = %name, "pod terminated and deleted");
        Ok(Action::Done)
    }

    /// Runs the container's preStop exec hook, if it has one, within the grace period.
    async fn pre_stop(&self, pod: &Pod, record: &ContainerRecord, grace: Duration) {
        let Some(name) = record.labels.get(labels::CONTAINER) else {
            return;
        };
        let hook = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| &c.name == name))
            .and_then(|c| {
                c.lifecycle
                    .as_ref()?
                    .pre_stop
                    .as_ref()?
                    .exec
                    .as_ref()?
                    .command
                    .clone()
            });
        let Some(command) = hook else {
            return;
        };
        let env = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()];
        match tokio::time::timeout(grace, self.runtime.exec(&record.id, &command, &env)).await {
            Ok(Ok(code)) => {
                info!(pod = %pod_name(pod), container = %name, code, "preStop hook ran")
            }
            Ok(Err(error)) => {
                warn!(pod = %pod_name(pod), container = %name, error = %error, "preStop hook failed")
            }
            Err(_) => {
                warn!(pod = %pod_name(pod), container = %name, "preStop hook outlived the grace period")
            }
        }
    }

    /// Removes a pod's containers, network, address, namespaces and cgroups.
    async fn tear_down(&self, uid: &str, records: &[ContainerRecord]) -> Result<(), WorkerError> {
        let pod = uid.to_string();
        for record in records
            .iter()
            .filter(|r| r.labels.get(labels::POD_UID).map(String::as_str) == Some(uid))
        {
            self.runtime
                .remove(&record.id)
                .await
                .map_err(|source| WorkerError::Runtime {
                    pod: pod.clone(),
                    source,
                })?;
        }
        veth::detach(uid).await.map_err(|e| WorkerError::Network {
            pod: pod.clone(),
            source: Box::new(e),
        })?;
        self.network_changed();
        let dir = self.pod_dir(uid);
        namespaces::remove(&namespaces::PodNamespaces::at(&dir.join("ns")));
        let _ = std::fs::remove_dir_all(&dir);
        self.ipam.release(uid).map_err(|e| WorkerError::Network {
            pod,
            source: Box::new(e),
        })?;
        for class in [
            qos::QosClass::Guaranteed,
            qos::QosClass::Burstable,
            qos::QosClass::BestEffort,
        ] {
            remove_cgroup(
                &self.config.cgroup_mount,
                &qos::pod_cgroup(&self.config.cgroup_parent, class, uid),
            );
        }
        Ok(())
    }

    /// Runs the probes that are due for each running container; kills a container whose
    /// startup or liveness probe failed; returns readiness by container name.
    async fn run_probes(
        &self,
        pod: &Pod,
        uid: &str,
        containers: &[Container],
        by_container: &BTreeMap<String, Vec<Attempt>>,
        pod_ip: Ipv4Addr,
    ) -> HashMap<String, bool> {
        let mut ready = HashMap::new();
        let now = Instant::now();
        for container in containers {
            let Some(current) = by_container.get(&container.name).and_then(|a| a.last()) else {
                continue;
            };
            if !matches!(current.state, AttemptState::Running { .. }) {
                continue;
            }
            let id = current.id.clone();
            let started = *self
                .memory
                .lock()
                .expect("pod memory")
                .entry(uid.to_string())
                .or_default()
                .seen_running
                .entry(id.clone())
                .or_insert(now);
            let mut verdicts = HashMap::new();
            for (kind, probe) in [
                (probes::Kind::Startup, &container.startup_probe),
                (probes::Kind::Liveness, &container.liveness_probe),
                (probes::Kind::Readiness, &container.readiness_probe),
            ] {
                let Some(probe) = probe else {
                    continue;
                };
                let timing = probes::Timing::of(probe);
                let mut state = self.probe_state(uid, &id, kind);
                let startup_pending = kind != probes::Kind::Startup
                    && container.startup_probe.is_some()
                    && verdicts.get(&probes::Kind::Startup) != Some(&probes::Verdict::Success);
                if !startup_pending && state.due(&timing, started, now) {
                    let ok = probes::run(probe, container, &id, pod_ip, &self.runtime).await;
                    state.record(&timing, ok, Instant::now());
                    self.memory
                        .lock()
                        .expect("pod memory")
                        .entry(uid.to_string())
                        .or_default()
                        .probes
                        .insert((id.clone(), kind), state);
                }
                verdicts.insert(kind, state.verdict);
            }
            let failed = [probes::Kind::Startup, probes::Kind::Liveness]
                .into_iter()
                .find(|k| verdicts.get(k) == Some(&probes::Verdict::Failure));
            if let Some(kind) = failed {
                info!(pod = %pod_name(pod), container = %container.name, probe = ?kind, "probe failed: killing the container");
                let _ = self.runtime.kill(&id, libc::SIGKILL as u32).await;
            }
            if container.readiness_probe.is_some() {
                ready.insert(
                    container.name.clone(),
                    verdicts.get(&probes::Kind::Readiness) == Some(&probes::Verdict::Success),
                );
            }
        }
        ready
    }

    fn probe_state(&self, uid: &str, id: &str, kind: probes::Kind) -> probes::ProbeState {
        self.memory
            .lock()
            .expect("pod memory")
            .get(uid)
            .and_then(|m| m.probes.get(&(id.to_string(), kind)).copied())
            .unwrap_or_default()
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_status(
        &self,
        pod: &Pod,
        spec: &k8s_openapi::api::core::v1::PodSpec,
        policy: &str,
        class: qos::QosClass,
        pod_ip: Ipv4Addr,
        by_container: &BTreeMap<String, Vec<Attempt>>,
        waiting: &HashMap<String, Waiting>,
        ready: &HashMap<String, bool>,
        init_done: bool,
        init_failed: bool,
    ) -> Result<(), WorkerError> {
        let image_of = |c: &Container| c.image.clone().unwrap_or_default();
        let empty = Vec::new();
        let statuses = |containers: &[Container]| -> Vec<Value> {
            containers
                .iter()
                .map(|c| {
                    status::container_status(
                        &c.name,
                        &image_of(c),
                        by_container.get(&c.name).unwrap_or(&empty),
                        waiting.get(&c.name),
                        ready.get(&c.name).copied(),
                    )
                })
                .collect()
        };
        let init_statuses = statuses(spec.init_containers.as_deref().unwrap_or_default());
        let container_statuses = statuses(&spec.containers);
        let latest: Vec<Option<&Attempt>> = spec
            .containers
            .iter()
            .map(|c| by_container.get(&c.name).and_then(|a| a.last()))
            .collect();
        let phase = status::phase(policy, init_done, init_failed, &latest);
        let ready = init_done
            && !latest.is_empty()
            && latest
                .iter()
                .all(|a| matches!(a.map(|a| &a.state), Some(AttemptState::Running { .. })))
            && ready.values().all(|&r| r);
        let old = pod
            .status
            .as_ref()
            .map(|s| serde_json::to_value(s).unwrap_or_default())
            .unwrap_or_else(|| json!({}));
        let now = jiff::Timestamp::now().to_string();
        let conditions = status::conditions(
            old.get("conditions"),
            &now,
            &[
                ("PodScheduled", true),
                ("Initialized", init_done),
                ("ContainersReady", ready),
                ("Ready", ready),
            ],
        );
        let mut new = json!({
            "phase": phase,
            "conditions": conditions,
            "podIP": pod_ip.to_string(),
            "podIPs": [{"ip": pod_ip.to_string()}],
            "qosClass": class.name(),
            "containerStatuses": container_statuses,
            "startTime": old.get("startTime").cloned().unwrap_or_else(|| json!(now)),
        });
        if let Some(ip) = self.config.node_ip {
            new["hostIP"] = json!(ip.to_string());
            new["hostIPs"] = json!([{"ip": ip.to_string()}]);
        }
        if !init_statuses.is_empty() {
            new["initContainerStatuses"] = json!(init_statuses);
        }
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let evicted = self.recall(uid, |m| m.evicted.clone()).flatten();
        if let Some(message) = evicted {
            new["phase"] = json!("Failed");
            new["reason"] = json!("Evicted");
            new["message"] = json!(message);
            new["conditions"] = status::conditions(
                old.get("conditions"),
                &now,
                &[
                    ("PodScheduled", true),
                    ("Initialized", init_done),
                    ("ContainersReady", false),
                    ("Ready", false),
                    ("DisruptionTarget", true),
                ],
            );
            if let Some(target) = new["conditions"].as_array_mut().and_then(|c| c.last_mut()) {
                target["reason"] = json!("TerminationByKubelet");
                target["message"] = json!(message);
            }
        }
        // Compare as the API would store it (normalised through the typed status).
        let normalised: Value =
            serde_json::from_value::<k8s_openapi::api::core::v1::PodStatus>(new.clone())
                .ok()
                .and_then(|s| serde_json::to_value(s).ok())
                .unwrap_or_else(|| new.clone());
        if strip_nominated(&old) == normalised {
            return Ok(());
        }
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.client
            .patch(
                "pods",
                &namespace,
                &name,
                &json!({"status": normalised}),
                "status",
            )
            .await
            .map_err(|source| WorkerError::Api {
                pod: pod_name(pod),
                source,
            })?;
        Ok(())
    }
}

/// The status fields this agent does not own (the scheduler's) left out of the comparison.
fn strip_nominated(status: &Value) -> Value {
    let mut status = status.clone();
    if let Some(map) = status.as_object_mut() {
        map.remove("nominatedNodeName");
    }
    status
}

/// Whether the kernel OOM-killed a process in this cgroup (cgroup v1 memory controller, or
/// v2 `memory.events`).
fn oom_killed(mount: &Path, cgroup: &str) -> bool {
    let relative = cgroup.trim_start_matches('/');
    let v1 = std::fs::read_to_string(
        mount
            .join("memory")
            .join(relative)
            .join("memory.oom_control"),
    );
    let v2 = std::fs::read_to_string(mount.join(relative).join("memory.events"));
    [v1, v2].into_iter().flatten().any(|text| {
        text.lines().any(|line| {
            line.strip_prefix("oom_kill ")
                .and_then(|n| n.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0)
        })
    })
}

/// Removes a pod's cgroup directory (and any leftovers below it) in every hierarchy.
fn remove_cgroup(mount: &Path, cgroup: &str) {
    let relative = cgroup.trim_start_matches('/');
    let Ok(hierarchies) = std::fs::read_dir(mount) else {
        return;
    };
    for hierarchy in hierarchies.flatten() {
        let dir = hierarchy.path().join(relative);
        if let Ok(children) = std::fs::read_dir(&dir) {
            for child in children.flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{EnvVarSource, ObjectFieldSelector, PodSpec},
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    use super::*;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-0".into()),
                namespace: Some("shop".into()),
                uid: Some("u-1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn from_field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.into(),
                    api_version: None,
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn field_refs_resolve_to_the_pods_own_values() {
        let container = Container {
            name: "c".into(),
            env: Some(vec![
                from_field("POD_NAME", "metadata.name"),
                from_field("POD_NAMESPACE", "metadata.namespace"),
                from_field("POD_IP", "status.podIP"),
                from_field("NODE", "spec.nodeName"),
                EnvVar {
                    name: "PLAIN".into(),
                    value: Some("x".into()),
                    value_from: None,
                },
            ]),
            ..Default::default()
        };
        let env = environment(
            &pod(),
            &container,
            &["PLAIN=image".into(), "PATH=/bin".into()],
            Some(Ipv4Addr::new(10, 244, 0, 5)),
            None,
        );
        for expected in [
            "POD_NAME=web-0",
            "POD_NAMESPACE=shop",
            "POD_IP=10.244.0.5",
            "NODE=node-1",
            "PLAIN=x",
            "PATH=/bin",
        ] {
            assert!(
                env.contains(&expected.to_string()),
                "{expected} missing from {env:?}"
            );
        }
        assert!(!env.contains(&"PLAIN=image".to_string()));
    }

    #[test]
    fn command_and_args_replace_entrypoint_and_cmd_like_kubernetes() {
        let entry = vec!["/entry".to_string()];
        let cmd = vec!["default".to_string()];
        let with = |command: Option<Vec<&str>>, args: Option<Vec<&str>>| Container {
            command: command.map(|c| c.into_iter().map(String::from).collect()),
            args: args.map(|c| c.into_iter().map(String::from).collect()),
            ..Default::default()
        };
        assert_eq!(
            process_args(&with(None, None), &entry, &cmd),
            ["/entry", "default"]
        );
        assert_eq!(
            process_args(&with(None, Some(vec!["a"])), &entry, &cmd),
            ["/entry", "a"]
        );
        assert_eq!(
            process_args(&with(Some(vec!["sh"]), None), &entry, &cmd),
            ["sh"]
        );
        assert_eq!(
            process_args(&with(Some(vec!["sh"]), Some(vec!["-c", "x"])), &entry, &cmd),
            ["sh", "-c", "x"]
        );
    }

    #[test]
    fn a_failed_container_waits_out_its_back_off_before_the_next_attempt() {
        let finished = jiff::Timestamp::from_second(1_000).unwrap().to_string();
        let last = Attempt {
            id: "x".into(),
            attempt: 2,
            state: AttemptState::Finished {
                code: 1,
                reason: "Error".into(),
                finished_at: finished,
            },
            started_at: Some(jiff::Timestamp::from_second(999).unwrap().to_string()),
        };
        // Third restart: 10 s doubled twice.
        match restart_decision("Always", &last, 1_010) {
            Next::Wait(w, left) => {
                assert_eq!(w.reason, "CrashLoopBackOff");
                assert_eq!(left, Duration::from_secs(30));
            }
            _ => panic!("expected a back-off"),
        }
        assert!(matches!(
            restart_decision("Always", &last, 1_040),
            Next::Start(3)
        ));
        assert!(matches!(
            restart_decision("Never", &last, 2_000),
            Next::Stay
        ));
        assert!(matches!(
            restart_decision("OnFailure", &last, 2_000),
            Next::Start(3)
        ));
    }

    #[test]
    fn container_ids_are_short_and_distinct_per_attempt() {
        let a = container_id(
            "3f1c2a4e-0000-4000-8000-000000000001",
            "a-very-long-container-name-indeed",
            0,
        );
        assert!(a.len() <= 76);
        assert_ne!(
            a,
            container_id(
                "3f1c2a4e-0000-4000-8000-000000000001",
                "a-very-long-container-name-indeed",
                1
            )
        );
    }
}
