//! The scheduling framework's extension points, one trait each, modelled on Kubernetes'
//! `pkg/scheduler/framework/interface.go`: queue sort, pre-filter (with add/remove-pod
//! extensions for preemption), filter, post-filter, pre-score, score (with normalise),
//! reserve and permit. Binding is the caller's job.
//!
//! A plugin is one type implementing [`Plugin`] plus the extension traits it takes part in;
//! `Plugin::as_filter` and friends hand the framework a typed handle for each. Plugins are
//! stateless: what one computes for a pod in pre-filter or pre-score lives in the
//! [`CycleState`] of that scheduling cycle. Every call answers with a [`Status`] carrying a
//! [`Code`] and the reasons users see in `0/5 nodes are available: ...`.

use std::any::Any;
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use super::node_info::NodeInfo;
use super::pod_info::PodInfo;
use super::queue::QueuedPodInfo;
use super::snapshot::Snapshot;

/// The highest score a plugin may give a node after normalisation.
pub const MAX_NODE_SCORE: i64 = 100;

/// How an extension point answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The pod may go on (fits this node, or the step succeeded).
    Success,
    /// Something went wrong that is not about the pod fitting; the cycle is abandoned and
    /// the pod retried after a back-off.
    Error,
    /// The pod does not fit, but preemption might make it fit.
    Unschedulable,
    /// The pod does not fit and preempting pods would not change that.
    UnschedulableAndUnresolvable,
    /// Pre-filter / pre-score only: this plugin has nothing to do for this pod; its filter
    /// or score is skipped for the cycle.
    Skip,
}

/// The result of a plugin call: a code, the reasons (shown to users, aggregated per reason
/// across nodes) and the plugin that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<Cow<'static, str>>,
    /// The plugin that returned this status; set by the framework.
    pub plugin: &'static str,
}

impl Status {
    /// Success, allocating nothing.
    pub const fn success() -> Self {
        Self {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    /// A status with one reason.
    pub fn new(code: Code, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            reasons: vec![reason.into()],
            plugin: "",
        }
    }

    pub fn unschedulable(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Code::Unschedulable, reason)
    }

    pub fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Code::UnschedulableAndUnresolvable, reason)
    }

    pub fn error(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Code::Error, message)
    }

    pub const fn skip() -> Self {
        Self {
            code: Code::Skip,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    /// Names the plugin that produced this status.
    pub fn with_plugin(mut self, plugin: &'static str) -> Self {
        self.plugin = plugin;
        self
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    pub fn is_skip(&self) -> bool {
        self.code == Code::Skip
    }

    /// True for `Unschedulable` and `UnschedulableAndUnresolvable`.
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }

    /// The reasons joined by `, `.
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.plugin.is_empty() {
            write!(f, "{:?}: {}", self.code, self.message())
        } else {
            write!(
                f,
                "{:?} from {}: {}",
                self.code,
                self.plugin,
                self.message()
            )
        }
    }
}

/// Data a plugin keeps for the length of one scheduling cycle. Cloned (deeply) when
/// preemption tries removing pods from a node.
pub trait StateData: Any + Send + Sync + fmt::Debug {
    fn clone_data(&self) -> Box<dyn StateData>;
}

impl<T: Any + Clone + Send + Sync + fmt::Debug> StateData for T {
    fn clone_data(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }
}

/// Per-cycle data written by pre-filter / pre-score and read by filter / score, keyed by
/// plugin name, and which plugins skip their filter or score this cycle.
#[derive(Debug, Default)]
pub struct CycleState {
    data: Vec<(&'static str, Box<dyn StateData>)>,
    pub(crate) skip_filter: Vec<&'static str>,
    pub(crate) skip_score: Vec<&'static str>,
}

impl Clone for CycleState {
    fn clone(&self) -> Self {
        Self {
            data: self
                .data
                .iter()
                .map(|(k, v)| (*k, (**v).clone_data()))
                .collect(),
            skip_filter: self.skip_filter.clone(),
            skip_score: self.skip_score.clone(),
        }
    }
}

impl CycleState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value` under `key`, replacing what was there.
    pub fn write<T: StateData>(&mut self, key: &'static str, value: T) {
        let boxed: Box<dyn StateData> = Box::new(value);
        match self.data.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = boxed,
            None => self.data.push((key, boxed)),
        }
    }

    /// The value under `key`, if it is a `T`.
    pub fn read<T: StateData>(&self, key: &str) -> Option<&T> {
        let (_, value) = self.data.iter().find(|(k, _)| *k == key)?;
        let any: &dyn Any = value.as_ref();
        any.downcast_ref::<T>()
    }

    /// The value under `key` for changing, if it is a `T`.
    pub fn read_mut<T: StateData>(&mut self, key: &str) -> Option<&mut T> {
        let (_, value) = self.data.iter_mut().find(|(k, _)| *k == key)?;
        let any: &mut dyn Any = value.as_mut();
        any.downcast_mut::<T>()
    }

    /// True when `plugin`'s pre-filter returned `Skip` this cycle.
    pub fn skips_filter(&self, plugin: &str) -> bool {
        self.skip_filter.contains(&plugin)
    }

    /// True when `plugin`'s pre-score returned `Skip` this cycle.
    pub fn skips_score(&self, plugin: &str) -> bool {
        self.skip_score.contains(&plugin)
    }
}

/// The read error for a plugin whose state is missing: its pre-filter or pre-score did not
/// run, which is a configuration error.
pub fn missing_state(plugin: &'static str) -> Status {
    Status::error(format!(
        "{plugin}: no cycle state; its pre-filter or pre-score extension must be enabled"
    ))
    .with_plugin(plugin)
}

/// A pre-filter's narrowing of the nodes to try; `None` means all nodes.
///
/// `node_names` is kube-scheduler's `PreFilterResult`: nodes left out are rejected by the
/// narrowing plugin and reported as such. `candidates` is only a hint that changes no
/// outcome: the snapshot positions of the only nodes that can pass the plugin's own filter
/// (every other node certainly fails it). The cycle tries the candidates first and, when
/// none of them is feasible, filters every node as if there were no hint, so the reasons
/// reported per node are exactly those without it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreFilterResult {
    pub node_names: Option<HashSet<String>>,
    /// Sorted, without duplicates.
    pub candidates: Option<Vec<usize>>,
}

impl PreFilterResult {
    /// All nodes.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only these nodes.
    pub fn only(names: impl IntoIterator<Item = String>) -> Self {
        Self {
            node_names: Some(names.into_iter().collect()),
            candidates: None,
        }
    }

    /// All nodes, with the hint that only those at `positions` can pass the plugin's filter.
    pub fn candidates(mut positions: Vec<usize>) -> Self {
        positions.sort_unstable();
        positions.dedup();
        Self {
            node_names: None,
            candidates: Some(positions),
        }
    }

    /// The intersection of both narrowings and of both hints.
    pub fn merge(self, other: PreFilterResult) -> Self {
        let node_names = match (self.node_names, other.node_names) {
            (None, n) | (n, None) => n,
            (Some(a), Some(b)) => Some(a.intersection(&b).cloned().collect()),
        };
        let candidates = match (self.candidates, other.candidates) {
            (None, c) | (c, None) => c,
            (Some(a), Some(b)) => Some(intersect_sorted(&a, &b)),
        };
        Self {
            node_names,
            candidates,
        }
    }
}

/// The values in both sorted slices.
fn intersect_sorted(a: &[usize], b: &[usize]) -> Vec<usize> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// The score of one feasible node; `index` is its position in the feasible list handed to
/// pre-score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeScore {
    pub index: usize,
    pub score: i64,
}

/// A change in the cluster that can make unschedulable pods schedulable. Plugins name the
/// events that can undo their rejections; the queue retries a pod only on those.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterEvent {
    NodeAdded,
    /// A node's labels, taints, allocatable resources or schedulability changed.
    NodeChanged,
    AssignedPodAdded,
    AssignedPodUpdated,
    AssignedPodDeleted,
    /// The labels of a namespace changed (namespace selectors of affinity terms).
    NamespaceChanged,
    /// The pod waited in the unschedulable set for the maximum time.
    UnschedulableTimeout,
    /// Someone asked for every pod to be retried.
    ForceActivate,
}

/// What every plugin is: a name, the events that can make pods it rejected schedulable, and
/// its extension points. Implement `as_<point>` returning `Some(self)` for each point the
/// plugin implements.
pub trait Plugin: Send + Sync + fmt::Debug {
    fn name(&self) -> &'static str;

    /// The events after which a pod this plugin rejected is worth retrying.
    fn events(&self) -> &'static [ClusterEvent] {
        &[]
    }

    fn as_queue_sort(self: Arc<Self>) -> Option<Arc<dyn QueueSortPlugin>> {
        None
    }
    fn as_pre_filter(self: Arc<Self>) -> Option<Arc<dyn PreFilterPlugin>> {
        None
    }
    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        None
    }
    fn as_post_filter(self: Arc<Self>) -> Option<Arc<dyn PostFilterPlugin>> {
        None
    }
    fn as_pre_score(self: Arc<Self>) -> Option<Arc<dyn PreScorePlugin>> {
        None
    }
    fn as_score(self: Arc<Self>) -> Option<Arc<dyn ScorePlugin>> {
        None
    }
    fn as_reserve(self: Arc<Self>) -> Option<Arc<dyn ReservePlugin>> {
        None
    }
    fn as_permit(self: Arc<Self>) -> Option<Arc<dyn PermitPlugin>> {
        None
    }
}

/// Orders the active queue: `less(a, b)` is true when `a` should be scheduled first.
pub trait QueueSortPlugin: Plugin {
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool;
}

/// Runs once per cycle before filtering: checks the pod, precomputes what filter needs into
/// the cycle state, and may narrow the nodes to try.
pub trait PreFilterPlugin: Plugin {
    /// `Skip` skips this plugin's filter for the cycle; a rejection fails every node.
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (PreFilterResult, Status);

    /// Updates the pre-filter state as if `added` were on `node` (nominated pods,
    /// preemption dry runs).
    fn add_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _added: &PodInfo,
        _node: &NodeInfo,
    ) -> Status {
        Status::success()
    }

    /// Updates the pre-filter state as if `removed` were gone from `node` (preemption).
    fn remove_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _removed: &PodInfo,
        _node: &NodeInfo,
    ) -> Status {
        Status::success()
    }
}

/// Decides whether the pod fits one node. Called for many nodes per cycle: must be cheap
/// and must not allocate on success.
pub trait FilterPlugin: Plugin {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// What the framework lends a post-filter plugin: the snapshot and the ability to re-run
/// the filters on a changed node.
pub trait FrameworkHandle {
    fn snapshot(&self) -> &Snapshot;

    /// Runs every filter (twice when pods of equal or higher priority are nominated to the
    /// node: with and without them), as a scheduling cycle does.
    fn run_filters_with_nominated_pods(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status;

    /// Runs every pre-filter's `add_pod` extension.
    fn run_pre_filter_add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
    ) -> Status;

    /// Runs every pre-filter's `remove_pod` extension.
    fn run_pre_filter_remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
    ) -> Status;

    /// Pods nominated to `node` (by earlier preemptions).
    fn nominated_pods(&self, node: &str) -> &[Arc<PodInfo>];
}

/// The filter status of every node that rejected the pod, by position in the snapshot's
/// node list. Sparse: a cycle that places the pod allocates nothing per node here.
#[derive(Debug, Clone, Default)]
pub struct NodeStatuses {
    entries: Vec<(usize, Status)>,
}

impl NodeStatuses {
    /// The status of node `index`; `None` when it was not tried or fit.
    pub fn get(&self, index: usize) -> Option<&Status> {
        self.entries
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, s)| s)
    }

    pub(crate) fn push(&mut self, index: usize, status: Status) {
        self.entries.push((index, status));
    }

    /// Every status with its node position.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Status)> {
        self.entries.iter().map(|(i, s)| (*i, s))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A post-filter's answer: the node the pod is nominated to, the pods to evict for it, and
/// lower-priority pods whose nomination to that node must be cleared.
#[derive(Debug, Clone)]
pub struct PostFilterResult {
    pub nominated_node: String,
    pub victims: Vec<Arc<PodInfo>>,
    pub clear_nomination: Vec<Arc<PodInfo>>,
}

/// Runs when no node fits (typically preemption).
pub trait PostFilterPlugin: Plugin {
    fn post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        statuses: &NodeStatuses,
        handle: &dyn FrameworkHandle,
    ) -> (Option<PostFilterResult>, Status);
}

/// Runs once per cycle before scoring, over the feasible nodes.
pub trait PreScorePlugin: Plugin {
    /// `Skip` skips this plugin's score for the cycle.
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Status;
}

/// Ranks one feasible node; `normalize` then maps the raw scores of all feasible nodes to
/// `0..=MAX_NODE_SCORE` before the profile's weight is applied.
pub trait ScorePlugin: Plugin {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status>;

    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [NodeScore]) -> Status {
        Status::success()
    }
}

/// Holds (or releases) what a plugin set aside for the pod on the chosen node before the
/// bind. `unreserve` runs when a later step or the bind fails.
pub trait ReservePlugin: Plugin {
    fn reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status;
    fn unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str);
}

/// The last word before the bind. Only allow (`Success`) or reject; waiting is not
/// supported.
pub trait PermitPlugin: Plugin {
    fn permit(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status;
}

/// Kubernetes' `DefaultNormalizeScore`: scales scores so the largest becomes
/// `MAX_NODE_SCORE`; with `reverse`, the largest becomes 0 and the smallest the most.
pub fn default_normalize_score(scores: &mut [NodeScore], reverse: bool) {
    let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
    if max == 0 {
        if reverse {
            for s in scores.iter_mut() {
                s.score = MAX_NODE_SCORE;
            }
        }
        return;
    }
    for s in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * s.score / max;
        s.score = if reverse {
            MAX_NODE_SCORE - scaled
        } else {
            scaled
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_state_reads_back_what_was_written_and_clones_deeply() {
        let mut state = CycleState::new();
        state.write("A", vec![1, 2, 3]);
        state.write("B", String::from("b"));
        let mut copy = state.clone();
        copy.read_mut::<Vec<i32>>("A").unwrap().push(4);
        assert_eq!(state.read::<Vec<i32>>("A"), Some(&vec![1, 2, 3]));
        assert_eq!(copy.read::<Vec<i32>>("A"), Some(&vec![1, 2, 3, 4]));
        assert_eq!(state.read::<Vec<i32>>("B"), None);
        assert_eq!(state.read::<String>("missing"), None);
    }

    #[test]
    fn pre_filter_results_merge_by_intersection() {
        let a = PreFilterResult::only(["n1".to_string(), "n2".to_string()]);
        let b = PreFilterResult::only(["n2".to_string(), "n3".to_string()]);
        assert_eq!(
            a.clone().merge(b),
            PreFilterResult::only(["n2".to_string()])
        );
        assert_eq!(a.clone().merge(PreFilterResult::all()), a);
    }

    #[test]
    fn default_normalize_scales_to_the_maximum_or_reverses() {
        let mut scores = vec![
            NodeScore { index: 0, score: 2 },
            NodeScore { index: 1, score: 4 },
            NodeScore { index: 2, score: 0 },
        ];
        default_normalize_score(&mut scores, false);
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [50, 100, 0]
        );
        default_normalize_score(&mut scores, true);
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [50, 0, 100]
        );
        let mut zeros = vec![NodeScore { index: 0, score: 0 }];
        default_normalize_score(&mut zeros, true);
        assert_eq!(zeros[0].score, 100);
    }
}
