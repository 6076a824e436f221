//! The [`Scheduler`]: one scheduling cycle per pod over the cache's snapshot, and the event
//! handlers that keep the cache and queue current. See the module documentation of
//! [`crate::scheduler`] for the flow and the contract with the caller.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use skiff_api::k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use tokio::time::Instant;

use super::cache::Cache;
use super::config::{
    ConfigError, DEFAULT_SCHEDULER_NAME, SchedulerConfig, num_feasible_nodes_to_find,
};
use super::diagnosis::Diagnosis;
use super::framework::{ClusterEvent, Code, CycleState, NodeStatuses, Status};
use super::node_info::NodeInfo;
use super::pod_info::{PodInfo, pod_key};
use super::profile::{CycleHandle, Profile};
use super::queue::{NominatedPods, QueuedPodInfo, SchedulingQueue};
use super::registry::Registry;
use super::snapshot::Snapshot;

/// What a scheduling cycle decided. Every variant but `Bind` has already put the pod back
/// in the queue (or dropped it, for `Skipped`).
#[derive(Debug, Clone)]
pub enum ScheduleResult {
    /// The pod is assumed on `node`: bind it (`pods/<name>/binding`), then call
    /// [`Scheduler::confirm`] on success or [`Scheduler::forget`] on failure.
    Bind { pod: Arc<Pod>, node: String },
    /// No node fits now, but evicting `victims` (lower-priority pods on `node`) would make
    /// room: evict them gracefully, set the pod's `status.nominatedNodeName` to `node`, and
    /// clear it on the `clear_nomination` pods. The pod waits in the queue until the victims
    /// are gone. Report `diagnosis` like `Unschedulable`.
    Preempt {
        pod: Arc<Pod>,
        node: String,
        victims: Vec<Arc<Pod>>,
        clear_nomination: Vec<Arc<Pod>>,
        diagnosis: Diagnosis,
    },
    /// No node fits: set the pod's `PodScheduled` condition to `False` (reason
    /// `Unschedulable`) and record a `FailedScheduling` event, both with
    /// `diagnosis.message()`.
    Unschedulable { pod: Arc<Pod>, diagnosis: Diagnosis },
    /// The cycle failed for another reason (a plugin error, an invalid pod); the pod is
    /// retried after its back-off.
    Error { pod: Arc<Pod>, message: String },
    /// Nothing was done.
    Skipped { pod: Arc<Pod>, reason: SkipReason },
}

/// Why a popped pod was not scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The pod is being deleted.
    Deleted,
    /// The pod is already assumed or bound.
    AlreadyAssumed,
    /// No profile of this scheduler has the pod's `spec.schedulerName`.
    OtherScheduler,
}

/// A pod assumed and waiting for the caller's bind.
#[derive(Debug)]
struct InFlight {
    queued: QueuedPodInfo,
    assumed: Arc<PodInfo>,
    node: String,
    profile: usize,
    state: CycleState,
}

enum CycleFailure {
    Error(Status),
    Fit(Box<FitFailure>),
}

/// No node fits: why, per node, and the state for the post-filter.
struct FitFailure {
    diagnosis: Diagnosis,
    statuses: NodeStatuses,
    state: CycleState,
}

impl CycleFailure {
    fn fit(diagnosis: Diagnosis, statuses: NodeStatuses, state: CycleState) -> Self {
        Self::Fit(Box::new(FitFailure {
            diagnosis,
            statuses,
            state,
        }))
    }
}

/// A xorshift generator for breaking score ties (kube-scheduler picks among the best at
/// random).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Whether a pod is bound (has `spec.nodeName`).
pub fn is_assigned(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

/// Whether a pod finished (`Succeeded` or `Failed`): it holds no resources.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The pod's `spec.schedulerName`, `default-scheduler` when unset.
pub fn scheduler_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_SCHEDULER_NAME)
}

/// True when a node update can change scheduling decisions (labels, taints, cordon,
/// allocatable); heartbeats and condition updates cannot.
fn node_changed_for_scheduling(old: &Node, new: &Node) -> bool {
    let spec = |n: &Node| n.spec.as_ref().map(|s| (s.taints.clone(), s.unschedulable));
    let allocatable = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
    old.metadata.labels != new.metadata.labels
        || spec(old) != spec(new)
        || allocatable(old) != allocatable(new)
}

/// Picks the highest total; ties broken uniformly at random (reservoir sampling).
fn select_host(totals: &[i64], rng: &mut Rng) -> usize {
    let mut best = i64::MIN;
    let mut chosen = 0;
    let mut ties = 0u64;
    for (i, &score) in totals.iter().enumerate() {
        if score > best {
            best = score;
            chosen = i;
            ties = 1;
        } else if score == best {
            ties += 1;
            if rng.next().is_multiple_of(ties) {
                chosen = i;
            }
        }
    }
    chosen
}

/// The scheduler: profiles, cache, snapshot and queue. Pure logic: the caller feeds it
/// watch events, pops pods from [`Scheduler::queue`], runs [`Scheduler::schedule_one`] and
/// performs what the result asks (bind, evict, report).
#[derive(Debug)]
pub struct Scheduler {
    profiles: Vec<Profile>,
    cache: Cache,
    snapshot: Snapshot,
    queue: Arc<SchedulingQueue>,
    percentage_of_nodes_to_score: Option<u32>,
    next_start_node_index: usize,
    rng: Rng,
    in_flight: HashMap<String, InFlight>,
}

impl Scheduler {
    /// A scheduler with the in-tree plugins.
    ///
    /// # Errors
    /// When the configuration names unknown plugins or is otherwise unusable.
    pub fn new(config: &SchedulerConfig) -> Result<Self, ConfigError> {
        Self::with_registry(config, &Registry::in_tree())
    }

    /// A scheduler with the default configuration.
    ///
    /// # Panics
    /// Never: the default configuration names only in-tree plugins (a test builds it).
    pub fn with_defaults() -> Self {
        match Self::new(&SchedulerConfig::default()) {
            Ok(s) => s,
            // The default configuration names only in-tree plugins.
            Err(e) => unreachable!("default scheduler configuration is invalid: {e}"),
        }
    }

    /// A scheduler whose plugins come from `registry`.
    ///
    /// # Errors
    /// When the configuration names unknown plugins or is otherwise unusable.
    pub fn with_registry(
        config: &SchedulerConfig,
        registry: &Registry,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let profiles = config
            .profiles
            .iter()
            .map(|p| Profile::build(p, registry))
            .collect::<Result<Vec<_>, _>>()?;
        let first = profiles.first().ok_or(ConfigError::NoProfiles)?;
        for p in &profiles[1..] {
            if p.queue_sort.name() != first.queue_sort.name() {
                return Err(ConfigError::DifferentQueueSort {
                    profile: p.scheduler_name.clone(),
                    plugin: p.queue_sort.name().to_string(),
                });
            }
        }
        let mut events: HashMap<&'static str, &'static [ClusterEvent]> = HashMap::new();
        for p in &profiles {
            events.extend(p.events.iter().map(|(k, v)| (*k, *v)));
        }
        let queue = SchedulingQueue::new(first.queue_sort.clone(), config.queue_config(), events);
        let cache = Cache::new().with_assumed_pod_ttl(
            config
                .assumed_pod_ttl_seconds
                .map(std::time::Duration::from_secs),
        );
        Ok(Self {
            profiles,
            cache,
            snapshot: Snapshot::default(),
            queue: Arc::new(queue),
            percentage_of_nodes_to_score: config.percentage_of_nodes_to_score,
            next_start_node_index: 0,
            rng: Rng(0x9E37_79B9_7F4A_7C15),
            in_flight: HashMap::new(),
        })
    }

    /// Seeds the tie-breaking generator (for reproducible runs).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = Rng(seed.max(1));
        self
    }

    /// The queue, shared: pop from it (it is safe to use while the scheduler is borrowed
    /// elsewhere).
    pub fn queue(&self) -> &Arc<SchedulingQueue> {
        &self.queue
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The snapshot of the last cycle.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The profile for `scheduler_name`.
    pub fn profile(&self, scheduler_name: &str) -> Option<&Profile> {
        self.profiles
            .iter()
            .find(|p| p.scheduler_name == scheduler_name)
    }

    #[cfg(test)]
    pub(crate) fn next_start_node_index_for_tests(&self) -> usize {
        self.next_start_node_index
    }

    fn profile_index(&self, pod: &Pod) -> Option<usize> {
        let name = scheduler_name(pod);
        self.profiles.iter().position(|p| p.scheduler_name == name)
    }

    /// True when one of this scheduler's profiles handles `pod`.
    pub fn responsible_for(&self, pod: &Pod) -> bool {
        self.profile_index(pod).is_some()
    }

    // ---- Events from the watch ----

    pub fn node_added(&mut self, node: Node) {
        self.cache.add_node(node);
        self.queue
            .move_all_to_active_or_backoff(ClusterEvent::NodeAdded);
    }

    pub fn node_updated(&mut self, old: &Node, new: Node) {
        let changed = node_changed_for_scheduling(old, &new);
        self.cache.update_node(new);
        if changed {
            self.queue
                .move_all_to_active_or_backoff(ClusterEvent::NodeChanged);
        }
    }

    pub fn node_deleted(&mut self, node: &Node) {
        if let Some(name) = node.metadata.name.as_deref() {
            self.cache.remove_node(name);
        }
    }

    /// A pod appeared: bound pods go to the cache (confirming an assumed one), pending pods
    /// of this scheduler to the queue; finished pods are ignored.
    pub fn pod_added(&mut self, pod: Pod) {
        if is_terminal(&pod) {
            return;
        }
        if is_assigned(&pod) {
            self.queue.delete(&pod);
            self.cache.add_pod(pod);
            self.queue
                .move_all_to_active_or_backoff(ClusterEvent::AssignedPodAdded);
        } else if self.responsible_for(&pod) {
            self.queue.add(pod);
        }
    }

    /// A pod changed: it may have been bound, finished, or changed while pending.
    pub fn pod_updated(&mut self, old: &Pod, new: Pod) {
        if is_terminal(&new) {
            self.pod_deleted(&new);
            return;
        }
        match (is_assigned(old), is_assigned(&new)) {
            (true, true) => {
                self.cache.update_pod(new);
                self.queue
                    .move_all_to_active_or_backoff(ClusterEvent::AssignedPodUpdated);
            }
            (false, true) => self.pod_added(new),
            (_, false) => {
                if self.responsible_for(&new) {
                    self.queue.update(new);
                }
            }
        }
    }

    /// A pod was deleted (or finished): its room on the node is free again.
    pub fn pod_deleted(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        self.queue.delete_key(&key);
        // A pod deleted while its bind is in flight is not retried whatever the bind does.
        self.in_flight.remove(&key);
        if self.cache.pod(&key).is_some() {
            self.cache.remove_pod_by_key(&key);
            self.queue
                .move_all_to_active_or_backoff(ClusterEvent::AssignedPodDeleted);
        }
    }

    /// Brings the node cache back in line with `nodes`, every node there is, after the
    /// watch lost events (a subscriber that fell behind resyncs from the informer's store).
    pub fn resync_nodes(&mut self, nodes: &[Arc<Node>]) {
        let live: HashSet<&str> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        for name in self.cache.node_names() {
            if !live.contains(name.as_str()) {
                self.cache.remove_node(&name);
            }
        }
        for node in nodes {
            self.cache.update_node((**node).clone());
        }
        self.queue
            .move_all_to_active_or_backoff(ClusterEvent::NodeAdded);
    }

    /// Brings the pod cache and the queue back in line with `pods`, every pod there is,
    /// after the watch lost events: bound pods go to the cache (confirming assumed ones),
    /// pending ones to the queue unless their bind is in flight, and pods that are gone
    /// leave both.
    pub fn resync_pods(&mut self, pods: &[Arc<Pod>]) {
        let mut live = HashSet::with_capacity(pods.len());
        for pod in pods {
            let key = pod_key(pod);
            if is_terminal(pod) {
                self.forget_pod_key(&key);
                continue;
            }
            live.insert(key.clone());
            if is_assigned(pod) {
                self.queue.delete_key(&key);
                self.cache.add_pod((**pod).clone());
            } else if self.responsible_for(pod) && !self.in_flight.contains_key(&key) {
                self.queue.add((**pod).clone());
            }
        }
        for key in self.cache.pod_keys() {
            if !live.contains(&key) {
                self.forget_pod_key(&key);
            }
        }
        for key in self.queue.keys() {
            if !live.contains(&key) {
                self.queue.delete_key(&key);
            }
        }
        self.queue
            .move_all_to_active_or_backoff(ClusterEvent::AssignedPodDeleted);
    }

    fn forget_pod_key(&mut self, key: &str) {
        self.queue.delete_key(key);
        self.in_flight.remove(key);
        self.cache.remove_pod_by_key(key);
    }

    /// A namespace was added or relabelled (affinity namespace selectors).
    pub fn namespace_updated(&mut self, namespace: &Namespace) {
        self.cache.update_namespace(namespace);
        self.queue
            .move_all_to_active_or_backoff(ClusterEvent::NamespaceChanged);
    }

    pub fn namespace_deleted(&mut self, name: &str) {
        self.cache.remove_namespace(name);
    }

    // ---- The caller's bind ----

    /// The bind of an assumed pod succeeded.
    pub fn confirm(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        if self.in_flight.remove(&key).is_some() {
            self.cache.finish_binding(&key, Instant::now());
        }
    }

    /// The bind of an assumed pod failed: release its room and retry it after a back-off.
    /// Returns false when the pod was not waiting for a bind.
    pub fn forget(&mut self, pod: &Pod) -> bool {
        let key = pod_key(pod);
        let Some(mut flight) = self.in_flight.remove(&key) else {
            return false;
        };
        if let Some(profile) = self.profiles.get(flight.profile) {
            profile.run_unreserve(&mut flight.state, &flight.assumed, &flight.node);
        }
        // Already gone when the pod was deleted meanwhile.
        let _ = self.cache.forget_pod(&key);
        self.requeue(flight.queued, Vec::new());
        self.queue
            .move_all_to_active_or_backoff(ClusterEvent::AssignedPodDeleted);
        true
    }

    /// Drops assumed pods whose bind finished long ago (with a TTL configured) but that never
    /// arrived bound; call it periodically.
    pub fn cleanup_assumed_pods(&mut self) {
        if !self
            .cache
            .cleanup_expired_assumed_pods(Instant::now())
            .is_empty()
        {
            self.queue
                .move_all_to_active_or_backoff(ClusterEvent::AssignedPodDeleted);
        }
    }

    // ---- The cycle ----

    /// Runs one scheduling cycle for a pod popped from the queue.
    pub fn schedule_one(&mut self, queued: QueuedPodInfo) -> ScheduleResult {
        let pod = queued.pod.clone();
        let object = pod.pod.clone();
        if pod.is_terminating() {
            return ScheduleResult::Skipped {
                pod: object,
                reason: SkipReason::Deleted,
            };
        }
        if self.cache.pod(&pod.key).is_some() || self.in_flight.contains_key(&pod.key) {
            return ScheduleResult::Skipped {
                pod: object,
                reason: SkipReason::AlreadyAssumed,
            };
        }
        let Some(profile_index) = self.profile_index(&object) else {
            return ScheduleResult::Skipped {
                pod: object,
                reason: SkipReason::OtherScheduler,
            };
        };
        if !pod.parse_errors.is_empty() {
            let message = format!(
                "pod {}/{} cannot be scheduled: {}",
                pod.namespace(),
                pod.name(),
                pod.parse_errors.join("; ")
            );
            self.requeue(queued, Vec::new());
            return ScheduleResult::Error {
                pod: object,
                message,
            };
        }
        self.cache.update_snapshot(&mut self.snapshot);
        let nominated = self.queue.nominated_pods();
        let percentage = self.profiles[profile_index]
            .percentage_of_nodes_to_score
            .or(self.percentage_of_nodes_to_score);
        let outcome = find_node(
            &self.profiles[profile_index],
            &self.snapshot,
            &nominated,
            &pod,
            percentage,
            &mut self.next_start_node_index,
            &mut self.rng,
        );
        match outcome {
            Ok((position, state)) => self.assume(queued, profile_index, position, state),
            Err(CycleFailure::Error(status)) => {
                self.requeue(queued, Vec::new());
                ScheduleResult::Error {
                    pod: object,
                    message: status.to_string(),
                }
            }
            Err(CycleFailure::Fit(failure)) => {
                let FitFailure {
                    diagnosis,
                    statuses,
                    state,
                } = *failure;
                self.fit_failed(
                    queued,
                    profile_index,
                    diagnosis,
                    &statuses,
                    &state,
                    &nominated,
                )
            }
        }
    }

    fn assume(
        &mut self,
        queued: QueuedPodInfo,
        profile_index: usize,
        position: usize,
        mut state: CycleState,
    ) -> ScheduleResult {
        let node = self.snapshot.nodes()[position].name().to_string();
        let pod = queued.pod.clone();
        let mut object = (*pod.pod).clone();
        object.spec.get_or_insert_with(Default::default).node_name = Some(node.clone());
        let assumed = Arc::new(pod.with_pod(Arc::new(object)));
        let profile = &self.profiles[profile_index];
        let status = profile.run_reserve(&mut state, &assumed, &node);
        if !status.is_success() {
            let plugins = if status.is_rejected() {
                vec![status.plugin]
            } else {
                Vec::new()
            };
            self.requeue(queued, plugins);
            return ScheduleResult::Error {
                pod: pod.pod.clone(),
                message: format!("reserving node {node}: {status}"),
            };
        }
        let status = profile.run_permit(&mut state, &assumed, &node);
        if !status.is_success() {
            profile.run_unreserve(&mut state, &assumed, &node);
            let plugins = if status.is_rejected() {
                vec![status.plugin]
            } else {
                Vec::new()
            };
            self.requeue(queued, plugins);
            return ScheduleResult::Error {
                pod: pod.pod.clone(),
                message: format!("permit on node {node}: {status}"),
            };
        }
        if let Err(e) = self.cache.assume_pod(assumed.clone()) {
            profile.run_unreserve(&mut state, &assumed, &node);
            self.requeue(queued, Vec::new());
            return ScheduleResult::Error {
                pod: pod.pod.clone(),
                message: e.to_string(),
            };
        }
        self.queue.delete_nominated_pod(&pod.key);
        self.in_flight.insert(
            pod.key.clone(),
            InFlight {
                queued,
                assumed: assumed.clone(),
                node: node.clone(),
                profile: profile_index,
                state,
            },
        );
        ScheduleResult::Bind {
            pod: assumed.pod.clone(),
            node,
        }
    }

    fn fit_failed(
        &mut self,
        queued: QueuedPodInfo,
        profile_index: usize,
        mut diagnosis: Diagnosis,
        statuses: &NodeStatuses,
        state: &CycleState,
        nominated: &NominatedPods,
    ) -> ScheduleResult {
        let profile = &self.profiles[profile_index];
        let pod = queued.pod.clone();
        let mut result = None;
        if diagnosis.num_all_nodes > 0 && !profile.post_filter.is_empty() {
            let handle = CycleHandle {
                profile,
                snapshot: &self.snapshot,
                nominated,
            };
            let (r, status) = profile.run_post_filter(state, &pod, statuses, &handle);
            let message = status.message();
            if !status.is_success() && !message.is_empty() {
                diagnosis.post_filter_message = Some(message);
            }
            if status.is_success() {
                result = r;
            }
        }
        let plugins = diagnosis.unschedulable_plugins.clone();
        match result {
            Some(r) => {
                self.queue.add_nominated_pod(pod.clone(), &r.nominated_node);
                self.requeue(queued, plugins);
                ScheduleResult::Preempt {
                    pod: pod.pod.clone(),
                    node: r.nominated_node,
                    victims: r.victims.iter().map(|v| v.pod.clone()).collect(),
                    clear_nomination: r.clear_nomination.iter().map(|p| p.pod.clone()).collect(),
                    diagnosis,
                }
            }
            None => {
                self.requeue(queued, plugins);
                ScheduleResult::Unschedulable {
                    pod: pod.pod.clone(),
                    diagnosis,
                }
            }
        }
    }

    fn requeue(&self, mut queued: QueuedPodInfo, plugins: Vec<&'static str>) {
        queued.unschedulable_plugins = plugins;
        self.queue.add_unschedulable_if_not_present(queued);
    }
}

/// Pre-filter, filter (over a rotating sample of nodes) and score: the position of the
/// chosen node and the cycle state, or why none fits.
fn find_node(
    profile: &Profile,
    snapshot: &Snapshot,
    nominated: &NominatedPods,
    pod: &PodInfo,
    percentage: Option<u32>,
    next_start: &mut usize,
    rng: &mut Rng,
) -> Result<(usize, CycleState), CycleFailure> {
    let all = snapshot.len();
    let mut state = CycleState::new();
    let mut diagnosis = Diagnosis {
        num_all_nodes: all,
        ..Diagnosis::default()
    };
    if all == 0 {
        return Err(CycleFailure::fit(diagnosis, NodeStatuses::default(), state));
    }
    let handle = CycleHandle {
        profile,
        snapshot,
        nominated,
    };
    let pre = profile.run_pre_filter(&mut state, pod, snapshot);
    if !pre.status.is_success() {
        if !pre.status.is_rejected() {
            return Err(CycleFailure::Error(pre.status));
        }
        diagnosis.pre_filter_message = Some(pre.status.message());
        diagnosis.add_plugin(pre.status.plugin);
        let mut statuses = NodeStatuses::default();
        if pre.status.code == Code::Unschedulable {
            for i in 0..all {
                statuses.push(i, pre.status.clone());
            }
        }
        return Err(CycleFailure::fit(diagnosis, statuses, state));
    }
    let filters = profile.active_filters(&state);

    // A pod nominated by an earlier preemption tries its node first.
    let nominated_node = pod
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty());
    if let Some(name) = nominated_node
        && let Some(position) = snapshot.position(name)
        && pre
            .result
            .node_names
            .as_ref()
            .is_none_or(|n| n.contains(name))
        && handle
            .filter_with_nominated(&filters, &state, pod, &snapshot.nodes()[position])
            .is_success()
    {
        return Ok((position, state));
    }

    let narrowed: Option<Vec<usize>> = pre.result.node_names.as_ref().map(|names| {
        let mut positions: Vec<usize> = names.iter().filter_map(|n| snapshot.position(n)).collect();
        positions.sort_unstable();
        positions
    });
    let total = narrowed.as_ref().map_or(all, Vec::len);
    let to_find = if filters.is_empty() {
        total
    } else {
        num_feasible_nodes_to_find(percentage, total)
    };
    let start = if total == 0 { 0 } else { *next_start % total };
    let scan = |positions: Option<&[usize]>,
                diagnosis: &mut Diagnosis,
                statuses: &mut NodeStatuses|
     -> Result<(Vec<usize>, usize), CycleFailure> {
        let count = positions.map_or(total, <[usize]>::len);
        let start = if count == 0 { 0 } else { start % count };
        let mut feasible: Vec<usize> = Vec::new();
        let mut processed = 0;
        for k in 0..count {
            if feasible.len() >= to_find {
                break;
            }
            let offset = (start + k) % count;
            let position = match positions {
                Some(p) => p[offset],
                None => narrowed.as_ref().map_or(offset, |v| v[offset]),
            };
            processed += 1;
            let status =
                handle.filter_with_nominated(&filters, &state, pod, &snapshot.nodes()[position]);
            match status.code {
                Code::Success => feasible.push(position),
                Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                    diagnosis.add_plugin(status.plugin);
                    for reason in &status.reasons {
                        diagnosis.reasons.add(reason, 1);
                    }
                    statuses.push(position, status);
                }
                Code::Error | Code::Skip => return Err(CycleFailure::Error(status)),
            }
        }
        Ok((feasible, processed))
    };
    // The pre-filters' hint first: the nodes that can pass every hinting plugin's filter.
    // Only when none of them fits does every node get filtered, for the full reasons.
    let hinted: Option<Vec<usize>> = pre.result.candidates.as_ref().map(|c| match &narrowed {
        Some(n) => c
            .iter()
            .copied()
            .filter(|p| n.binary_search(p).is_ok())
            .collect(),
        None => c.clone(),
    });
    let mut statuses = NodeStatuses::default();
    let mut feasible = Vec::new();
    let mut processed = 0;
    if let Some(hinted) = &hinted {
        let mut scratch = Diagnosis::default();
        (feasible, processed) = scan(Some(hinted), &mut scratch, &mut NodeStatuses::default())?;
    }
    if feasible.is_empty() {
        (feasible, processed) = scan(None, &mut diagnosis, &mut statuses)?;
    }
    if total > 0 {
        *next_start = (start + processed) % total;
    }
    if feasible.is_empty() {
        let excluded = all - total;
        if excluded > 0 {
            diagnosis.reasons.add(
                &format!(
                    "node(s) didn't satisfy plugin(s) [{}]",
                    pre.narrowed_by.join(" ")
                ),
                excluded,
            );
            for plugin in &pre.narrowed_by {
                diagnosis.add_plugin(plugin);
            }
        }
        return Err(CycleFailure::fit(diagnosis, statuses, state));
    }
    if feasible.len() == 1 {
        return Ok((feasible[0], state));
    }
    let nodes: Vec<&NodeInfo> = feasible.iter().map(|&i| &*snapshot.nodes()[i]).collect();
    let status = profile.run_pre_score(&mut state, pod, &nodes, snapshot);
    if !status.is_success() {
        return Err(CycleFailure::Error(status));
    }
    let totals = profile
        .run_score(&state, pod, &nodes)
        .map_err(CycleFailure::Error)?;
    Ok((feasible[select_host(&totals, rng)], state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheduler_can_be_shared_between_tasks() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Scheduler>();
        shareable::<SchedulingQueue>();
        assert_eq!(Scheduler::with_defaults().profiles.len(), 1);
    }

    #[test]
    fn ties_are_broken_among_the_best_scores_only() {
        let mut rng = Rng(7);
        let mut seen = [false; 4];
        for _ in 0..200 {
            seen[select_host(&[5, 9, 9, 1], &mut rng)] = true;
        }
        assert_eq!(seen, [false, true, true, false]);
    }
}
