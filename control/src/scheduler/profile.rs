//! A built scheduling profile: the plugin instances enabled at each extension point, in
//! order, with score weights, and the code that runs an extension point over them
//! (kube-scheduler's `frameworkImpl`). Built from a [`ProfileConfig`] and a [`Registry`].

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use super::config::{ConfigError, PluginRef, PluginSet, ProfileConfig, default_plugins};
use super::framework::{
    ClusterEvent, Code, CycleState, FilterPlugin, FrameworkHandle, MAX_NODE_SCORE, NodeScore,
    NodeStatuses, PermitPlugin, Plugin, PostFilterPlugin, PostFilterResult, PreFilterPlugin,
    PreFilterResult, PreScorePlugin, QueueSortPlugin, ReservePlugin, ScorePlugin, Status,
};
use super::node_info::NodeInfo;
use super::pod_info::PodInfo;
use super::queue::NominatedPods;
use super::registry::Registry;
use super::snapshot::Snapshot;

/// What the pre-filters said together.
#[derive(Debug, Clone)]
pub struct PreFilterOutcome {
    /// The nodes to try (all, or the intersection of the plugins' narrowings).
    pub result: PreFilterResult,
    /// Success, or the first rejection or error.
    pub status: Status,
    /// The plugins that narrowed the nodes.
    pub narrowed_by: Vec<&'static str>,
}

/// The plugins of one profile, per extension point.
#[derive(Debug)]
pub struct Profile {
    pub scheduler_name: String,
    pub percentage_of_nodes_to_score: Option<u32>,
    pub(crate) queue_sort: Arc<dyn QueueSortPlugin>,
    pub(crate) pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    pub(crate) filter: Vec<Arc<dyn FilterPlugin>>,
    pub(crate) post_filter: Vec<Arc<dyn PostFilterPlugin>>,
    pub(crate) pre_score: Vec<Arc<dyn PreScorePlugin>>,
    pub(crate) score: Vec<(Arc<dyn ScorePlugin>, i64)>,
    pub(crate) reserve: Vec<Arc<dyn ReservePlugin>>,
    pub(crate) permit: Vec<Arc<dyn PermitPlugin>>,
    pub(crate) events: HashMap<&'static str, &'static [ClusterEvent]>,
}

/// The plugins of a point without their configuration entries.
fn strip<T: ?Sized>(list: Vec<(Arc<T>, &PluginRef)>) -> Vec<Arc<T>> {
    list.into_iter().map(|(p, _)| p).collect()
}

/// The `multiPoint` plugins after applying the profile's additions and removals.
fn multi_point(set: &PluginSet) -> Vec<PluginRef> {
    let mut plugins: Vec<PluginRef> = default_plugins()
        .into_iter()
        .filter(|p| !set.disables(&p.name))
        .collect();
    for enabled in &set.enabled {
        match plugins.iter_mut().find(|p| p.name == enabled.name) {
            Some(existing) => {
                if enabled.weight.is_some() {
                    existing.weight = enabled.weight;
                }
            }
            None => plugins.push(enabled.clone()),
        }
    }
    plugins
}

/// The plugins enabled at one point: those enabled there explicitly first, then the
/// `multiPoint` ones implementing it, minus those disabled there.
fn point_plugins<'a>(
    set: &'a PluginSet,
    multi: &'a [PluginRef],
    implements: impl Fn(&str) -> bool,
) -> Vec<&'a PluginRef> {
    let mut list: Vec<&PluginRef> = set.enabled.iter().collect();
    for p in multi {
        if !set.disables(&p.name) && implements(&p.name) && !list.iter().any(|q| q.name == p.name) {
            list.push(p);
        }
    }
    list
}

impl Profile {
    /// Builds a profile: instantiates each named plugin once (with its `pluginConfig`
    /// arguments) and assigns it to every extension point it is enabled at.
    ///
    /// # Errors
    /// On an unknown plugin, a plugin enabled at a point it does not implement, invalid
    /// arguments or weights, or no queue sort plugin.
    pub fn build(config: &ProfileConfig, registry: &Registry) -> Result<Self, ConfigError> {
        let profile = config.scheduler_name.clone();
        let multi = multi_point(&config.plugins.multi_point);
        let mut instances: HashMap<String, Arc<dyn Plugin>> = HashMap::new();
        let plugins = &config.plugins;
        let all_sets = [
            &plugins.queue_sort,
            &plugins.pre_filter,
            &plugins.filter,
            &plugins.post_filter,
            &plugins.pre_score,
            &plugins.score,
            &plugins.reserve,
            &plugins.permit,
        ];
        let names = multi
            .iter()
            .chain(all_sets.iter().flat_map(|s| s.enabled.iter()))
            .map(|p| p.name.clone());
        for name in names {
            if let Entry::Vacant(slot) = instances.entry(name) {
                let plugin = registry.build(&profile, slot.key(), config.args(slot.key()))?;
                slot.insert(plugin);
            }
        }
        let get = |name: &str| instances.get(name).cloned();

        macro_rules! point {
            ($set:expr, $as:ident, $point:literal) => {{
                let mut out = Vec::new();
                let list = point_plugins($set, &multi, |n| get(n).and_then(|p| p.$as()).is_some());
                for r in list {
                    let plugin = get(&r.name).and_then(|p| p.$as()).ok_or_else(|| {
                        ConfigError::NotAnExtension {
                            profile: profile.clone(),
                            plugin: r.name.clone(),
                            point: $point,
                        }
                    })?;
                    out.push((plugin, r));
                }
                out
            }};
        }

        let queue_sort = point!(&plugins.queue_sort, as_queue_sort, "queueSort")
            .into_iter()
            .next()
            .map(|(p, _)| p)
            .ok_or_else(|| ConfigError::NoQueueSort {
                profile: profile.clone(),
            })?;
        let mut score = Vec::new();
        for (plugin, r) in point!(&plugins.score, as_score, "score") {
            let weight = r
                .weight
                .or_else(|| {
                    multi
                        .iter()
                        .find(|m| m.name == r.name)
                        .and_then(|m| m.weight)
                })
                .unwrap_or(1);
            if weight <= 0 {
                return Err(ConfigError::InvalidWeight {
                    profile: profile.clone(),
                    plugin: r.name.clone(),
                    weight,
                });
            }
            score.push((plugin, weight));
        }
        Ok(Self {
            pre_filter: strip(point!(&plugins.pre_filter, as_pre_filter, "preFilter")),
            filter: strip(point!(&plugins.filter, as_filter, "filter")),
            post_filter: strip(point!(&plugins.post_filter, as_post_filter, "postFilter")),
            pre_score: strip(point!(&plugins.pre_score, as_pre_score, "preScore")),
            reserve: strip(point!(&plugins.reserve, as_reserve, "reserve")),
            permit: strip(point!(&plugins.permit, as_permit, "permit")),
            score,
            queue_sort,
            events: instances.values().map(|p| (p.name(), p.events())).collect(),
            percentage_of_nodes_to_score: config.percentage_of_nodes_to_score,
            scheduler_name: profile,
        })
    }

    /// The names of the plugins at each extension point, for logs and tests.
    pub fn plugin_names(&self) -> HashMap<&'static str, Vec<&'static str>> {
        fn names<T: ?Sized + Plugin>(list: &[Arc<T>]) -> Vec<&'static str> {
            list.iter().map(|p| p.name()).collect()
        }
        HashMap::from([
            ("queueSort", vec![self.queue_sort.name()]),
            ("preFilter", names(&self.pre_filter)),
            ("filter", names(&self.filter)),
            ("postFilter", names(&self.post_filter)),
            ("preScore", names(&self.pre_score)),
            ("score", self.score.iter().map(|(p, _)| p.name()).collect()),
            ("reserve", names(&self.reserve)),
            ("permit", names(&self.permit)),
        ])
    }

    /// The weight of score plugin `name`.
    pub fn score_weight(&self, name: &str) -> Option<i64> {
        self.score
            .iter()
            .find(|(p, _)| p.name() == name)
            .map(|(_, w)| *w)
    }

    /// Runs every pre-filter. Plugins answering `Skip` are recorded in `state` (their
    /// filter is skipped). Returns the merged node narrowing (and which plugins narrowed),
    /// and the first non-success status (with its plugin), or success.
    pub fn run_pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> PreFilterOutcome {
        let mut result = PreFilterResult::all();
        let mut narrowed_by: Vec<&'static str> = Vec::new();
        let rejected = |status: Status, narrowed_by| PreFilterOutcome {
            result: PreFilterResult::all(),
            status,
            narrowed_by,
        };
        for plugin in &self.pre_filter {
            let (r, status) = plugin.pre_filter(state, pod, snapshot);
            match status.code {
                Code::Skip => {
                    state.skip_filter.push(plugin.name());
                    continue;
                }
                Code::Success => {}
                _ => return rejected(status.with_plugin(plugin.name()), narrowed_by),
            }
            if r.node_names.is_some() {
                narrowed_by.push(plugin.name());
            }
            result = result.merge(r);
            if result.node_names.as_ref().is_some_and(|n| n.is_empty()) {
                let message = if narrowed_by.len() == 1 {
                    format!("node(s) didn't satisfy plugin {}", narrowed_by[0])
                } else {
                    format!(
                        "node(s) didn't satisfy plugin(s) [{}] simultaneously",
                        narrowed_by.join(" ")
                    )
                };
                let status = Status::unresolvable(message).with_plugin(plugin.name());
                return rejected(status, narrowed_by);
            }
        }
        PreFilterOutcome {
            result,
            status: Status::success(),
            narrowed_by,
        }
    }

    /// The filters not skipped this cycle.
    pub(crate) fn active_filters(&self, state: &CycleState) -> Vec<&dyn FilterPlugin> {
        self.filter
            .iter()
            .filter(|p| !state.skips_filter(p.name()))
            .map(|p| &**p)
            .collect()
    }

    /// Runs every pre-filter's `add_pod` extension.
    pub fn run_pre_filter_add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        for plugin in &self.pre_filter {
            if state.skips_filter(plugin.name()) {
                continue;
            }
            let status = plugin.add_pod(state, pod, added, node);
            if !status.is_success() {
                return status.with_plugin(plugin.name());
            }
        }
        Status::success()
    }

    /// Runs every pre-filter's `remove_pod` extension.
    pub fn run_pre_filter_remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        for plugin in &self.pre_filter {
            if state.skips_filter(plugin.name()) {
                continue;
            }
            let status = plugin.remove_pod(state, pod, removed, node);
            if !status.is_success() {
                return status.with_plugin(plugin.name());
            }
        }
        Status::success()
    }

    /// Runs the pre-scores over the feasible nodes; `Skip` skips the plugin's score.
    pub fn run_pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Status {
        for plugin in &self.pre_score {
            let status = plugin.pre_score(state, pod, nodes, snapshot);
            match status.code {
                Code::Skip => state.skip_score.push(plugin.name()),
                Code::Success => {}
                _ => return status.with_plugin(plugin.name()),
            }
        }
        Status::success()
    }

    /// Scores every node with every (non-skipped) score plugin, normalises, checks the
    /// range and sums the weighted scores. Returns the total per node, in `nodes` order.
    ///
    /// # Errors
    /// The first plugin error, or a plugin's score outside `0..=100` after normalising.
    pub fn run_score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
    ) -> Result<Vec<i64>, Status> {
        let mut totals = vec![0i64; nodes.len()];
        let mut scores: Vec<NodeScore> = Vec::with_capacity(nodes.len());
        for (plugin, weight) in &self.score {
            if state.skips_score(plugin.name()) {
                continue;
            }
            scores.clear();
            for (index, node) in nodes.iter().enumerate() {
                let score = plugin
                    .score(state, pod, node)
                    .map_err(|s| s.with_plugin(plugin.name()))?;
                scores.push(NodeScore { index, score });
            }
            let status = plugin.normalize(state, pod, &mut scores);
            if !status.is_success() {
                return Err(status.with_plugin(plugin.name()));
            }
            for s in &scores {
                if !(0..=MAX_NODE_SCORE).contains(&s.score) {
                    return Err(Status::error(format!(
                        "plugin {} returned score {} for node {}, outside 0..={MAX_NODE_SCORE}",
                        plugin.name(),
                        s.score,
                        nodes[s.index].name()
                    ))
                    .with_plugin(plugin.name()));
                }
                totals[s.index] += s.score * weight;
            }
        }
        Ok(totals)
    }

    /// Runs the post-filters until one succeeds. Returns its result (if any) and the
    /// status to report.
    pub fn run_post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        statuses: &NodeStatuses,
        handle: &dyn FrameworkHandle,
    ) -> (Option<PostFilterResult>, Status) {
        let mut last = Status::unschedulable("no post-filter plugin");
        let mut messages = Vec::new();
        for plugin in &self.post_filter {
            let (result, status) = plugin.post_filter(state, pod, statuses, handle);
            if status.is_success() {
                return (result, status.with_plugin(plugin.name()));
            }
            if !status.is_rejected() {
                return (None, status.with_plugin(plugin.name()));
            }
            messages.push(status.message());
            last = status.with_plugin(plugin.name());
        }
        if messages.len() > 1 {
            last.reasons = vec![messages.join(" ").into()];
        }
        (None, last)
    }

    /// Runs every reserve plugin; on a failure, unreserves those that ran (in reverse).
    pub fn run_reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        for (i, plugin) in self.reserve.iter().enumerate() {
            let status = plugin.reserve(state, pod, node);
            if !status.is_success() {
                for done in self.reserve[..=i].iter().rev() {
                    done.unreserve(state, pod, node);
                }
                return status.with_plugin(plugin.name());
            }
        }
        Status::success()
    }

    /// Unreserves every reserve plugin, in reverse order.
    pub fn run_unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) {
        for plugin in self.reserve.iter().rev() {
            plugin.unreserve(state, pod, node);
        }
    }

    /// Runs every permit plugin; the first rejection wins.
    pub fn run_permit(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        for plugin in &self.permit {
            let status = plugin.permit(state, pod, node);
            if !status.is_success() {
                return status.with_plugin(plugin.name());
            }
        }
        Status::success()
    }
}

/// Runs `filters` in order and stops at the first that does not pass.
pub(crate) fn run_filters(
    filters: &[&dyn FilterPlugin],
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
) -> Status {
    for plugin in filters {
        let status = plugin.filter(state, pod, node);
        if !status.is_success() {
            let status = if status.is_skip() {
                Status::error(format!("filter {} returned Skip", plugin.name()))
            } else {
                status
            };
            return status.with_plugin(plugin.name());
        }
    }
    Status::success()
}

/// What one cycle lends its plugins: the profile, the snapshot and the nominated pods.
pub(crate) struct CycleHandle<'a> {
    pub profile: &'a Profile,
    pub snapshot: &'a Snapshot,
    pub nominated: &'a NominatedPods,
}

impl CycleHandle<'_> {
    /// kube-scheduler's `RunFilterPluginsWithNominatedPods`: when pods of equal or higher
    /// priority are nominated to the node, the pod must fit both with them and without
    /// them (their affinity may help, their resources may not).
    pub fn filter_with_nominated(
        &self,
        filters: &[&dyn FilterPlugin],
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        if self.nominated.is_empty() {
            return run_filters(filters, state, pod, node);
        }
        let nominated = self.nominated_pods(node.name());
        let ahead = || {
            nominated
                .iter()
                .filter(|p| p.priority >= pod.priority && p.key != pod.key)
        };
        if ahead().next().is_none() {
            return run_filters(filters, state, pod, node);
        }
        let mut with_nominated = node.clone();
        let mut state_with = state.clone();
        for p in ahead() {
            with_nominated.add_pod(p.clone());
            let status =
                self.profile
                    .run_pre_filter_add_pod(&mut state_with, pod, p, &with_nominated);
            if !status.is_success() {
                return status;
            }
        }
        let status = run_filters(filters, &state_with, pod, &with_nominated);
        if !status.is_success() {
            return status;
        }
        run_filters(filters, state, pod, node)
    }
}

impl FrameworkHandle for CycleHandle<'_> {
    fn snapshot(&self) -> &Snapshot {
        self.snapshot
    }

    fn run_filters_with_nominated_pods(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        let filters = self.profile.active_filters(state);
        self.filter_with_nominated(&filters, state, pod, node)
    }

    fn run_pre_filter_add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        self.profile.run_pre_filter_add_pod(state, pod, added, node)
    }

    fn run_pre_filter_remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        self.profile
            .run_pre_filter_remove_pod(state, pod, removed, node)
    }

    fn nominated_pods(&self, node: &str) -> &[Arc<PodInfo>] {
        self.nominated.get(node).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::config::{PluginRef, Plugins, SchedulerConfig};

    fn build(yaml: &str) -> Result<Profile, ConfigError> {
        let config = SchedulerConfig::from_yaml(yaml)?;
        Profile::build(&config.profiles[0], &Registry::in_tree())
    }

    #[test]
    fn the_default_profile_enables_every_plugin_with_kube_scheduler_weights() {
        let profile = build("").unwrap();
        let names = profile.plugin_names();
        assert_eq!(names["queueSort"], ["PrioritySort"]);
        assert_eq!(
            names["filter"],
            [
                "NodeUnschedulable",
                "NodeName",
                "TaintToleration",
                "NodeAffinity",
                "NodePorts",
                "NodeResourcesFit",
                "PodTopologySpread",
                "InterPodAffinity"
            ]
        );
        assert_eq!(names["postFilter"], ["DefaultPreemption"]);
        let weights: Vec<(&str, i64)> = profile.score.iter().map(|(p, w)| (p.name(), *w)).collect();
        assert_eq!(
            weights,
            [
                ("TaintToleration", 3),
                ("NodeAffinity", 2),
                ("NodeResourcesFit", 1),
                ("PodTopologySpread", 2),
                ("InterPodAffinity", 2),
                ("NodeResourcesBalancedAllocation", 1),
                ("ImageLocality", 1)
            ]
        );
    }

    #[test]
    fn a_profile_can_disable_a_plugin_at_one_point_and_reweigh_another() {
        let profile = build(
            "profiles:\n- plugins:\n    score:\n      disabled: [{name: ImageLocality}]\n      enabled: [{name: NodeResourcesFit, weight: 7}]\n",
        )
        .unwrap();
        assert_eq!(profile.score_weight("ImageLocality"), None);
        assert_eq!(profile.score_weight("NodeResourcesFit"), Some(7));
        assert_eq!(profile.plugin_names()["score"][0], "NodeResourcesFit");
    }

    #[test]
    fn disabling_every_default_leaves_only_what_is_enabled() {
        let profile = build(
            "profiles:\n- plugins:\n    multiPoint:\n      disabled: [{name: '*'}]\n      enabled: [{name: PrioritySort}, {name: NodeResourcesFit}]\n",
        )
        .unwrap();
        let names = profile.plugin_names();
        assert_eq!(names["filter"], ["NodeResourcesFit"]);
        assert!(names["postFilter"].is_empty());
    }

    #[test]
    fn enabling_a_plugin_at_a_point_it_lacks_is_an_error() {
        let err =
            build("profiles:\n- plugins:\n    filter:\n      enabled: [{name: ImageLocality}]\n")
                .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::NotAnExtension {
                point: "filter",
                ..
            }
        ));
    }

    #[test]
    fn a_profile_without_queue_sort_is_refused() {
        let config = ProfileConfig {
            plugins: Plugins {
                multi_point: PluginSet {
                    enabled: vec![PluginRef::new("NodeName")],
                    disabled: vec![PluginRef::new("*")],
                },
                ..Plugins::default()
            },
            ..ProfileConfig::default()
        };
        assert!(matches!(
            Profile::build(&config, &Registry::in_tree()),
            Err(ConfigError::NoQueueSort { .. })
        ));
    }
}
