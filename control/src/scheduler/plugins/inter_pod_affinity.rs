//! `InterPodAffinity`: required pod affinity (the node's topology domain must hold a
//! matching pod), required anti-affinity (it must not), the anti-affinity of pods already
//! placed against the incoming pod, and preferred (anti-)affinity as a score.
//!
//! Pre-filter counts, once per cycle, the matching pods per topology domain (walking every
//! pod only when the incoming pod has required terms, and only nodes hosting pods with
//! required anti-affinity otherwise); filter then answers per node with lookups. The counts
//! follow pods added or removed by preemption dry runs through `add_pod`/`remove_pod`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::scheduler::framework::{
    ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin, PreFilterPlugin,
    PreFilterResult, PreScorePlugin, ScorePlugin, Status, missing_state,
};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_index::PodIndex;
use crate::scheduler::pod_info::{AffinityTerm, NamespaceLabels, PodInfo};
use crate::scheduler::snapshot::Snapshot;
use crate::scheduler::topology::TopologyCounts;

pub const NAME: &str = "InterPodAffinity";
/// Kubernetes' reason when no pod matching a required affinity term is in the node's domain.
pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// Kubernetes' reason when a pod matching a required anti-affinity term is in the domain.
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// Kubernetes' reason when a pod in the domain has anti-affinity against the incoming pod.
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

const PRE_SCORE_KEY: &str = "InterPodAffinity/score";

/// The plugin's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterPodAffinityArgs {
    /// The score an existing pod's *required* affinity term adds when the incoming pod
    /// matches it.
    #[serde(default = "default_hard_weight")]
    pub hard_pod_affinity_weight: i32,
    /// Score only by the incoming pod's preferred terms.
    #[serde(default)]
    pub ignore_preferred_terms_of_existing_pods: bool,
}

fn default_hard_weight() -> i32 {
    1
}

impl Default for InterPodAffinityArgs {
    fn default() -> Self {
        Self {
            hard_pod_affinity_weight: default_hard_weight(),
            ignore_preferred_terms_of_existing_pods: false,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct InterPodAffinity {
    pub args: InterPodAffinityArgs,
}

impl InterPodAffinity {
    pub fn new(args: InterPodAffinityArgs) -> Self {
        Self { args }
    }
}

/// Matching pods per domain, for the filter.
#[derive(Debug, Clone)]
struct PreFilterState {
    /// Existing pods whose required anti-affinity matches the incoming pod.
    existing_anti: TopologyCounts,
    /// Existing pods matching all the incoming pod's required affinity terms.
    affinity: TopologyCounts,
    /// Existing pods matching the incoming pod's required anti-affinity terms.
    anti: TopologyCounts,
    namespaces: Arc<NamespaceLabels>,
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo, namespaces: &NamespaceLabels) -> bool {
    terms.iter().all(|t| t.matches(pod, namespaces))
}

impl PreFilterState {
    fn count_existing_anti(
        &mut self,
        incoming: &PodInfo,
        other: &PodInfo,
        node: &NodeInfo,
        delta: i64,
    ) {
        for term in &other.required_anti_affinity {
            if term.matches(incoming, &self.namespaces) {
                self.existing_anti
                    .add(&term.topology_key, node.labels(), delta);
            }
        }
    }

    fn count_incoming(&mut self, incoming: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
        let labels = node.labels();
        if !incoming.required_affinity.is_empty()
            && matches_all(&incoming.required_affinity, other, &self.namespaces)
        {
            for term in &incoming.required_affinity {
                self.affinity.add(&term.topology_key, labels, delta);
            }
        }
        for term in &incoming.required_anti_affinity {
            if term.matches(other, &self.namespaces) {
                self.anti.add(&term.topology_key, labels, delta);
            }
        }
    }

    fn update_with_pod(
        &mut self,
        incoming: &PodInfo,
        other: &PodInfo,
        node: &NodeInfo,
        delta: i64,
    ) {
        self.count_existing_anti(incoming, other, node, delta);
        self.count_incoming(incoming, other, node, delta);
    }
}

/// The nodes that may hold a pod matching all of `all_of` (when any) or any of `any_of`,
/// from the pod index; `None` when some term's selector names no label value.
fn candidate_nodes(
    index: &PodIndex,
    all_of: &[AffinityTerm],
    any_of: &[AffinityTerm],
) -> Option<Vec<usize>> {
    let candidates = |term: &AffinityTerm| match &term.selector {
        // No selector selects nothing.
        None => Some(Vec::new()),
        Some(s) => index.candidate_nodes(s),
    };
    let mut positions = Vec::new();
    if !all_of.is_empty() {
        // A pod matching every term matches the first one with candidates.
        positions.extend(all_of.iter().find_map(candidates)?);
    }
    for term in any_of {
        positions.extend(candidates(term)?);
    }
    positions.sort_unstable();
    positions.dedup();
    Some(positions)
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::AssignedPodAdded,
            ClusterEvent::AssignedPodUpdated,
            ClusterEvent::AssignedPodDeleted,
            ClusterEvent::NodeAdded,
            ClusterEvent::NodeChanged,
            ClusterEvent::NamespaceChanged,
        ]
    }

    fn as_pre_filter(self: Arc<Self>) -> Option<Arc<dyn PreFilterPlugin>> {
        Some(self)
    }

    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        Some(self)
    }

    fn as_pre_score(self: Arc<Self>) -> Option<Arc<dyn PreScorePlugin>> {
        Some(self)
    }

    fn as_score(self: Arc<Self>) -> Option<Arc<dyn ScorePlugin>> {
        Some(self)
    }
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (PreFilterResult, Status) {
        let has_required =
            !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        if !has_required
            && snapshot
                .nodes_with_required_anti_affinity_pods()
                .next()
                .is_none()
        {
            return (PreFilterResult::all(), Status::skip());
        }
        let topology = snapshot.topology().clone();
        let mut counts = PreFilterState {
            existing_anti: TopologyCounts::new(topology.clone()),
            affinity: TopologyCounts::new(topology.clone()),
            anti: TopologyCounts::new(topology),
            namespaces: snapshot.namespace_labels().clone(),
        };
        let nodes = snapshot.nodes();
        let index = snapshot.pod_index();
        for position in index.anti_affinity_candidates(pod.labels()) {
            let node = &nodes[position];
            for existing in node
                .pods()
                .iter()
                .filter(|p| p.has_required_anti_affinity())
            {
                counts.count_existing_anti(pod, existing, node, 1);
            }
        }
        if has_required {
            let mut count_at = |position: usize| {
                let node = &nodes[position];
                for existing in node.pods() {
                    counts.count_incoming(pod, existing, node, 1);
                }
            };
            match candidate_nodes(index, &pod.required_affinity, &pod.required_anti_affinity) {
                Some(positions) => positions.into_iter().for_each(&mut count_at),
                None => (0..nodes.len()).for_each(&mut count_at),
            }
        }
        state.write(NAME, counts);
        (PreFilterResult::all(), Status::success())
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        if let Some(counts) = state.read_mut::<PreFilterState>(NAME) {
            counts.update_with_pod(pod, added, node, 1);
        }
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        if let Some(counts) = state.read_mut::<PreFilterState>(NAME) {
            counts.update_with_pod(pod, removed, node, -1);
        }
        Status::success()
    }
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(counts) = state.read::<PreFilterState>(NAME) else {
            return missing_state(NAME);
        };
        let labels = node.labels();
        if !pod.required_affinity.is_empty() {
            let mut pods_exist = true;
            for term in &pod.required_affinity {
                if !labels.contains_key(&term.topology_key) {
                    return Status::unresolvable(REASON_AFFINITY);
                }
                if counts.affinity.get(&term.topology_key, labels) <= 0 {
                    pods_exist = false;
                }
            }
            // The first pod of a group with affinity to itself may go anywhere its
            // topology keys exist.
            let first_of_its_kind = counts.affinity.is_empty()
                && matches_all(&pod.required_affinity, pod, &counts.namespaces);
            if !pods_exist && !first_of_its_kind {
                return Status::unresolvable(REASON_AFFINITY);
            }
        }
        if !counts.anti.is_empty()
            && pod
                .required_anti_affinity
                .iter()
                .any(|t| counts.anti.get(&t.topology_key, labels) > 0)
        {
            return Status::unschedulable(REASON_ANTI_AFFINITY);
        }
        if counts.existing_anti.any_positive(labels) {
            return Status::unschedulable(REASON_EXISTING_ANTI_AFFINITY);
        }
        Status::success()
    }
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Status {
        let has_preferred =
            !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        if self.args.ignore_preferred_terms_of_existing_pods && !has_preferred {
            return Status::skip();
        }
        if !has_preferred && snapshot.nodes_with_scoring_affinity_pods().next().is_none() {
            return Status::skip();
        }
        let namespaces = snapshot.namespace_labels().clone();
        let mut score = TopologyCounts::new(snapshot.topology().clone());
        let hard_weight = i64::from(self.args.hard_pod_affinity_weight);
        let mut process = |node: &NodeInfo, existing: &PodInfo| {
            let labels = node.labels();
            for t in &pod.preferred_affinity {
                if t.term.matches(existing, &namespaces) {
                    score.add(&t.term.topology_key, labels, i64::from(t.weight));
                }
            }
            for t in &pod.preferred_anti_affinity {
                if t.term.matches(existing, &namespaces) {
                    score.add(&t.term.topology_key, labels, -i64::from(t.weight));
                }
            }
            if self.args.ignore_preferred_terms_of_existing_pods {
                return;
            }
            if hard_weight > 0 {
                for t in &existing.required_affinity {
                    if t.matches(pod, &namespaces) {
                        score.add(&t.topology_key, labels, hard_weight);
                    }
                }
            }
            for t in &existing.preferred_affinity {
                if t.term.matches(pod, &namespaces) {
                    score.add(&t.term.topology_key, labels, i64::from(t.weight));
                }
            }
            for t in &existing.preferred_anti_affinity {
                if t.term.matches(pod, &namespaces) {
                    score.add(&t.term.topology_key, labels, -i64::from(t.weight));
                }
            }
        };
        if has_preferred {
            // Nodes with pods the incoming pod's terms may match, and nodes with pods whose
            // terms may match the incoming pod.
            let preferred: Vec<AffinityTerm> = pod
                .preferred_affinity
                .iter()
                .chain(&pod.preferred_anti_affinity)
                .map(|t| t.term.clone())
                .collect();
            let nodes = snapshot.nodes();
            match candidate_nodes(snapshot.pod_index(), &[], &preferred) {
                Some(mut positions) => {
                    positions.extend(
                        snapshot
                            .nodes_with_scoring_affinity_pods()
                            .filter_map(|n| snapshot.position(n.name())),
                    );
                    positions.sort_unstable();
                    positions.dedup();
                    for position in positions {
                        for existing in nodes[position].pods() {
                            process(&nodes[position], existing);
                        }
                    }
                }
                None => {
                    for node in nodes {
                        for existing in node.pods() {
                            process(node, existing);
                        }
                    }
                }
            }
        } else {
            for node in snapshot.nodes_with_scoring_affinity_pods() {
                for existing in node.pods().iter().filter(|p| p.has_scoring_affinity()) {
                    process(node, existing);
                }
            }
        }
        if score.is_empty() {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, score);
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let score = state
            .read::<TopologyCounts>(PRE_SCORE_KEY)
            .ok_or_else(|| missing_state(NAME))?;
        Ok(score.sum(node.labels()))
    }

    /// Min-max scaling to `0..=100`; all equal scores become 0.
    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        let min = scores.iter().map(|s| s.score).min().unwrap_or(0);
        let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
        let spread = max - min;
        for s in scores.iter_mut() {
            s.score = if spread > 0 {
                (MAX_NODE_SCORE as f64 * ((s.score - min) as f64 / spread as f64)) as i64
            } else {
                0
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::plugins::testing::{node, node_with, pod};
    use serde_json::{Value, json};

    const ZONE: &str = "topology.kubernetes.io/zone";

    fn labelled(name: &str, labels: Value) -> PodInfo {
        pod(json!({"metadata": {"name": name, "labels": labels}}))
    }

    fn with_affinity(kind: &str, rule: &str, app: &str, key: &str) -> PodInfo {
        pod(
            json!({"metadata": {"name": "incoming", "labels": {"app": "incoming"}}, "spec": {"affinity": {kind: {rule: [
                {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}
            ]}}}}),
        )
    }

    fn required(kind: &str, app: &str, key: &str) -> PodInfo {
        with_affinity(
            kind,
            "requiredDuringSchedulingIgnoredDuringExecution",
            app,
            key,
        )
    }

    fn zone_node(name: &str, zone: &str, pods: Vec<PodInfo>) -> NodeInfo {
        node_with(
            json!({"metadata": {"name": name, "labels": {ZONE: zone}}}),
            pods,
        )
    }

    /// Runs pre-filter and filter on every node; the statuses by node.
    fn filter_all(p: &PodInfo, nodes: Vec<NodeInfo>) -> Vec<Status> {
        let snapshot = Snapshot::from_nodes(nodes);
        let plugin = InterPodAffinity::default();
        let mut state = CycleState::new();
        let (_, status) = plugin.pre_filter(&mut state, p, &snapshot);
        assert!(status.is_success() || status.is_skip(), "{status}");
        let mut names: Vec<_> = snapshot.nodes().iter().collect();
        names.sort_by(|a, b| a.name().cmp(b.name()));
        names
            .iter()
            .map(|n| {
                if status.is_skip() {
                    Status::success()
                } else {
                    plugin.filter(&state, p, n)
                }
            })
            .collect()
    }

    #[test]
    fn required_affinity_needs_a_matching_pod_in_the_same_domain() {
        let statuses = filter_all(
            &required("podAffinity", "db", ZONE),
            vec![
                zone_node("a1", "a", vec![labelled("db", json!({"app": "db"}))]),
                zone_node("a2", "a", vec![]),
                zone_node("b1", "b", vec![]),
            ],
        );
        assert!(statuses[0].is_success());
        assert!(statuses[1].is_success(), "same zone as the db pod");
        assert_eq!(statuses[2].code, Code::UnschedulableAndUnresolvable);
        assert_eq!(statuses[2].reasons, [REASON_AFFINITY]);
    }

    #[test]
    fn a_node_without_the_topology_key_fails_required_affinity() {
        let statuses = filter_all(
            &required("podAffinity", "db", ZONE),
            vec![
                zone_node("a1", "a", vec![labelled("db", json!({"app": "db"}))]),
                node(json!({"metadata": {"name": "b1"}})),
            ],
        );
        assert_eq!(statuses[1].reasons, [REASON_AFFINITY]);
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_may_go_anywhere() {
        let p = pod(
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": ZONE}
            ]}}}}),
        );
        let statuses = filter_all(
            &p,
            vec![zone_node("a1", "a", vec![]), zone_node("b1", "b", vec![])],
        );
        assert!(statuses.iter().all(Status::is_success));
    }

    #[test]
    fn required_anti_affinity_keeps_the_pod_out_of_domains_with_matching_pods() {
        let statuses = filter_all(
            &required("podAntiAffinity", "web", "kubernetes.io/hostname"),
            vec![
                zone_node("a1", "a", vec![labelled("w", json!({"app": "web"}))]),
                zone_node("a2", "a", vec![labelled("x", json!({"app": "other"}))]),
            ],
        );
        assert_eq!(statuses[0].code, Code::Unschedulable);
        assert_eq!(statuses[0].reasons, [REASON_ANTI_AFFINITY]);
        assert!(statuses[1].is_success());
    }

    #[test]
    fn an_existing_pods_anti_affinity_repels_the_incoming_pod() {
        let mut guard = required("podAntiAffinity", "incoming", ZONE);
        guard = PodInfo::new(Arc::new({
            let mut p = (*guard.pod).clone();
            p.metadata.name = Some("guard".into());
            p.metadata.labels = None;
            p
        }));
        let statuses = filter_all(
            &labelled("incoming", json!({"app": "incoming"})),
            vec![
                zone_node("a1", "a", vec![guard]),
                zone_node("a2", "a", vec![]),
                zone_node("b1", "b", vec![]),
            ],
        );
        assert_eq!(statuses[0].reasons, [REASON_EXISTING_ANTI_AFFINITY]);
        assert_eq!(
            statuses[1].reasons,
            [REASON_EXISTING_ANTI_AFFINITY],
            "same zone"
        );
        assert!(statuses[2].is_success());
    }

    #[test]
    fn affinity_terms_only_see_pods_in_their_namespaces() {
        let other_ns =
            pod(json!({"metadata": {"name": "db", "namespace": "other", "labels": {"app": "db"}}}));
        let statuses = filter_all(
            &required("podAffinity", "db", ZONE),
            vec![
                zone_node("a1", "a", vec![other_ns.clone()]),
                zone_node("b1", "b", vec![]),
            ],
        );
        // The only db pod is in another namespace: as if none existed, but the incoming pod
        // does not match its own term, so nothing fits.
        assert!(statuses.iter().all(|s| s.reasons == [REASON_AFFINITY]));
        let all_namespaces = pod(
            json!({"metadata": {"name": "incoming"}, "spec": {"affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "namespaceSelector": {}, "topologyKey": ZONE}
            ]}}}}),
        );
        let statuses = filter_all(
            &all_namespaces,
            vec![
                zone_node("a1", "a", vec![other_ns]),
                zone_node("b1", "b", vec![]),
            ],
        );
        assert!(statuses[0].is_success());
        assert!(!statuses[1].is_success());
    }

    #[test]
    fn removing_a_pod_in_a_dry_run_lifts_the_anti_affinity() {
        let web = labelled("w", json!({"app": "web"}));
        let n = zone_node("a1", "a", vec![web.clone()]);
        let snapshot = Snapshot::from_nodes([n.clone()]);
        let p = required("podAntiAffinity", "web", "kubernetes.io/hostname");
        let plugin = InterPodAffinity::default();
        let mut state = CycleState::new();
        plugin.pre_filter(&mut state, &p, &snapshot);
        assert!(!plugin.filter(&state, &p, &n).is_success());
        let mut without = n.clone();
        without.remove_pod(&web.key);
        plugin.remove_pod(&mut state, &p, &web, &without);
        assert!(plugin.filter(&state, &p, &without).is_success());
        plugin.add_pod(&mut state, &p, &web, &n);
        assert!(!plugin.filter(&state, &p, &n).is_success());
    }

    #[test]
    fn preferred_affinity_scores_domains_with_matching_pods_higher() {
        let p = pod(
            json!({"metadata": {"name": "incoming"}, "spec": {"affinity": {
                "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": ZONE}}
                ]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 5, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "noisy"}}, "topologyKey": ZONE}}
                ]}
            }}}),
        );
        let nodes = vec![
            zone_node("a1", "a", vec![labelled("c", json!({"app": "cache"}))]),
            zone_node("b1", "b", vec![]),
            zone_node("c1", "c", vec![labelled("n", json!({"app": "noisy"}))]),
        ];
        let snapshot = Snapshot::from_nodes(nodes.clone());
        let plugin = InterPodAffinity::default();
        let mut state = CycleState::new();
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        assert!(
            plugin
                .pre_score(&mut state, &p, &refs, &snapshot)
                .is_success()
        );
        let mut scores: Vec<NodeScore> = nodes
            .iter()
            .enumerate()
            .map(|(index, n)| NodeScore {
                index,
                score: plugin.score(&state, &p, n).unwrap(),
            })
            .collect();
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [10, 0, -5]
        );
        plugin.normalize(&state, &p, &mut scores);
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [100, 33, 0]
        );
    }

    #[test]
    fn a_pod_without_terms_skips_when_no_pod_has_anti_affinity() {
        let snapshot = Snapshot::from_nodes([zone_node("a1", "a", vec![labelled("x", json!({}))])]);
        let (_, status) = InterPodAffinity::default().pre_filter(
            &mut CycleState::new(),
            &pod(json!({})),
            &snapshot,
        );
        assert!(status.is_skip());
    }
}
