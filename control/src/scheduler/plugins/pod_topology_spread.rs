//! `PodTopologySpread`: spreads matching pods evenly over topology domains. A
//! `DoNotSchedule` constraint rejects a node when placing the pod there would make the
//! domain's count of matching pods exceed the emptiest domain's by more than `maxSkew`
//! (with `minDomains`, fewer eligible domains than required count the minimum as 0);
//! `ScheduleAnyway` constraints score nodes in emptier domains higher.
//!
//! Only nodes that have every constraint's topology key and pass the inclusion policies
//! (`nodeAffinityPolicy`, default Honor: the pod's node selector/affinity; `nodeTaintsPolicy`,
//! default Ignore) count. Pre-filter and pre-score count matching pods per domain once per
//! cycle (a vector by domain id); filter and score then look counts up per node.

use std::sync::Arc;

use skiff_api::k8s_openapi::api::core::v1::TopologySpreadConstraint;
use skiff_api::selector::{LabelSelector, Requirement};

use super::node_affinity::{self, matches_required};
use super::taint_toleration::{find_untolerated, is_do_not_schedule, tolerations};
use crate::scheduler::framework::{
    ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin, PreFilterPlugin,
    PreFilterResult, PreScorePlugin, ScorePlugin, Status, missing_state,
};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::PodInfo;
use crate::scheduler::snapshot::Snapshot;
use crate::scheduler::topology::TopologyIndex;

pub const NAME: &str = "PodTopologySpread";
/// Kubernetes' reason when the skew would be exceeded.
pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
/// Kubernetes' reason for a node without a constraint's topology key.
pub const REASON_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const HOSTNAME: &str = "kubernetes.io/hostname";
const PRE_SCORE_KEY: &str = "PodTopologySpread/score";

#[derive(Debug, Default, Clone, Copy)]
pub struct PodTopologySpread;

/// One constraint, parsed.
#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    /// `None` (no label selector) matches no pod.
    selector: Option<LabelSelector>,
    min_domains: i64,
    honor_node_affinity: bool,
    honor_taints: bool,
}

impl Constraint {
    fn selects(&self, pod: &PodInfo) -> bool {
        self.selector
            .as_ref()
            .is_some_and(|s| s.matches(pod.labels()))
    }

    /// Whether `node` takes part in spreading `pod` (inclusion policies).
    fn includes(&self, pod: &PodInfo, node: &NodeInfo) -> bool {
        (!self.honor_node_affinity || matches_required(&pod.pod, node))
            && (!self.honor_taints
                || find_untolerated(node.taints(), tolerations(pod), is_do_not_schedule).is_none())
    }

    /// Pods on `pods` this constraint counts: same namespace, selected, not terminating.
    fn count(&self, pods: &[Arc<PodInfo>], namespace: &str) -> i64 {
        if self.selector.is_none() {
            return 0;
        }
        pods.iter()
            .filter(|p| !p.is_terminating() && p.namespace() == namespace && self.selects(p))
            .count() as i64
    }
}

fn parse_constraints(pod: &PodInfo, when: &str) -> Result<Vec<Constraint>, Status> {
    let specs: &[TopologySpreadConstraint] = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or(&[]);
    let mut constraints = Vec::new();
    for spec in specs.iter().filter(|c| c.when_unsatisfiable == when) {
        let selector = match spec.label_selector.as_ref().map(LabelSelector::from_meta) {
            None => None,
            Some(Err(e)) => return Err(Status::error(format!("{NAME}: {e}"))),
            Some(Ok(mut selector)) => {
                for key in spec.match_label_keys.iter().flatten() {
                    if let Some(value) = pod.labels().get(key) {
                        selector.requirements.push(Requirement::Equals {
                            key: key.clone(),
                            value: value.clone(),
                        });
                    }
                }
                Some(selector)
            }
        };
        constraints.push(Constraint {
            max_skew: i64::from(spec.max_skew),
            topology_key: spec.topology_key.clone(),
            selector,
            min_domains: i64::from(spec.min_domains.unwrap_or(1)),
            honor_node_affinity: spec.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: spec.node_taints_policy.as_deref() == Some("Honor"),
        });
    }
    Ok(constraints)
}

fn has_all_keys(constraints: &[Constraint], node: &NodeInfo) -> bool {
    let labels = node.labels();
    constraints
        .iter()
        .all(|c| labels.contains_key(&c.topology_key))
}

/// The domain of `node` in `index` (the index of `key`).
fn domain_of(index: Option<&TopologyIndex>, key: &str, node: &NodeInfo) -> Option<usize> {
    index?.id(node.labels().get(key)?)
}

/// Matching pods per domain of one constraint, and which domains have eligible nodes.
#[derive(Debug, Clone)]
struct DomainCounts {
    counts: Vec<i64>,
    eligible: Vec<bool>,
    eligible_domains: i64,
    /// The smallest count over eligible domains.
    min: i64,
}

impl DomainCounts {
    fn new(domains: usize) -> Self {
        Self {
            counts: vec![0; domains],
            eligible: vec![false; domains],
            eligible_domains: 0,
            min: i64::from(i32::MAX),
        }
    }

    fn mark_eligible(&mut self, id: usize) {
        if !self.eligible[id] {
            self.eligible[id] = true;
            self.eligible_domains += 1;
        }
    }

    fn recompute_min(&mut self) {
        self.min = self
            .counts
            .iter()
            .zip(&self.eligible)
            .filter(|(_, e)| **e)
            .map(|(c, _)| *c)
            .min()
            .unwrap_or(i64::from(i32::MAX));
    }
}

#[derive(Debug, Clone)]
struct PreFilterState {
    constraints: Vec<Constraint>,
    domains: Vec<DomainCounts>,
    /// Per constraint, the domains of its topology key.
    indexes: Vec<Option<Arc<TopologyIndex>>>,
    /// Per constraint, whether it selects the pod being scheduled.
    selects_self: Vec<bool>,
}

impl PreFilterState {
    /// The skew placing the pod in domain `id` of constraint `i` would make.
    fn skew(&self, i: usize, id: Option<usize>) -> i64 {
        let (c, d) = (&self.constraints[i], &self.domains[i]);
        let min = if d.eligible_domains < c.min_domains {
            0
        } else {
            d.min
        };
        let matching = id.map_or(0, |id| d.counts[id]);
        matching + i64::from(self.selects_self[i]) - min
    }

    /// The snapshot positions of the only nodes that can pass [`FilterPlugin::filter`] with
    /// these counts (the nodes of the domains within every constraint's skew), or `None`
    /// when that is every one of the `nodes`.
    fn candidates(&self, nodes: usize) -> Option<Vec<usize>> {
        let mut allowed: Option<Vec<bool>> = None;
        for (i, (c, index)) in self.constraints.iter().zip(&self.indexes).enumerate() {
            let Some(index) = index else {
                // No node has the key: the filter rejects every node.
                return Some(Vec::new());
            };
            let mut here = vec![false; nodes];
            for id in (0..index.len()).filter(|&id| self.skew(i, Some(id)) <= c.max_skew) {
                for &position in index.nodes(id) {
                    here[position] = true;
                }
            }
            allowed = Some(match allowed {
                None => here,
                Some(a) => a.iter().zip(&here).map(|(x, y)| *x && *y).collect(),
            });
        }
        let allowed = allowed?;
        let positions: Vec<usize> = (0..nodes).filter(|&p| allowed[p]).collect();
        (positions.len() < nodes).then_some(positions)
    }

    fn update_with_pod(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
        if other.namespace() != pod.namespace() || !has_all_keys(&self.constraints, node) {
            return;
        }
        let constraints = self
            .constraints
            .iter()
            .zip(&mut self.domains)
            .zip(&self.indexes);
        for ((c, d), index) in constraints {
            if !c.selects(other) || !c.includes(pod, node) {
                continue;
            }
            if let Some(id) = domain_of(index.as_deref(), &c.topology_key, node) {
                d.counts[id] += delta;
                d.recompute_min();
            }
        }
    }
}

#[derive(Debug, Clone)]
struct PreScoreState {
    constraints: Vec<Constraint>,
    /// Per constraint, counts by domain id (unused for hostname constraints: counted per
    /// node in score).
    counts: Vec<Vec<i64>>,
    weights: Vec<f64>,
    /// By feasible-node position: nodes lacking a topology key, scored 0.
    ignored: Vec<bool>,
    /// Per constraint, the domains of its topology key.
    indexes: Vec<Option<Arc<TopologyIndex>>>,
}

impl Plugin for PodTopologySpread {
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

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (PreFilterResult, Status) {
        let constraints = match parse_constraints(pod, "DoNotSchedule") {
            Ok(c) if c.is_empty() => return (PreFilterResult::all(), Status::skip()),
            Ok(c) => c,
            Err(status) => return (PreFilterResult::all(), status),
        };
        let topology = snapshot.topology().clone();
        let nodes = snapshot.nodes();
        let namespace = pod.namespace();
        let pod_narrows_nodes = node_affinity::has_required(&pod.pod);
        let mut domains = Vec::with_capacity(constraints.len());
        for c in &constraints {
            let Some(index) = topology.get(&c.topology_key) else {
                domains.push(DomainCounts::new(0));
                continue;
            };
            let mut d = DomainCounts::new(index.len());
            // Every node with the key counts, unless other keys or inclusion policies
            // leave some out; then each node is checked.
            let every_node = constraints.iter().all(|o| o.topology_key == c.topology_key)
                && !(c.honor_node_affinity && pod_narrows_nodes)
                && !c.honor_taints;
            let eligible: Option<Vec<bool>> = if every_node {
                for id in 0..index.len() {
                    d.mark_eligible(id);
                }
                None
            } else {
                let eligible: Vec<bool> = nodes
                    .iter()
                    .map(|n| has_all_keys(&constraints, n) && c.includes(pod, n))
                    .collect();
                for (position, _) in eligible.iter().enumerate().filter(|(_, e)| **e) {
                    if let Some(id) = index.domain_at(position) {
                        d.mark_eligible(id);
                    }
                }
                Some(eligible)
            };
            let candidates = c
                .selector
                .as_ref()
                .and_then(|s| snapshot.pod_index().candidate_nodes(s));
            let mut count_at = |position: usize| {
                if eligible.as_ref().is_some_and(|e| !e[position]) {
                    return;
                }
                if let Some(id) = index.domain_at(position) {
                    d.counts[id] += c.count(nodes[position].pods(), namespace);
                }
            };
            match candidates {
                Some(positions) => positions.into_iter().for_each(&mut count_at),
                None => (0..nodes.len()).for_each(&mut count_at),
            }
            domains.push(d);
        }
        for d in &mut domains {
            d.recompute_min();
        }
        let indexes: Vec<_> = constraints
            .iter()
            .map(|c| topology.get(&c.topology_key).cloned())
            .collect();
        let selects_self = constraints.iter().map(|c| c.selects(pod)).collect();
        let prepared = PreFilterState {
            constraints,
            domains,
            indexes,
            selects_self,
        };
        let result = prepared
            .candidates(nodes.len())
            .map_or_else(PreFilterResult::all, PreFilterResult::candidates);
        state.write(NAME, prepared);
        (result, Status::success())
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>(NAME) {
            s.update_with_pod(pod, added, node, 1);
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
        if let Some(s) = state.read_mut::<PreFilterState>(NAME) {
            s.update_with_pod(pod, removed, node, -1);
        }
        Status::success()
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(NAME) else {
            return missing_state(NAME);
        };
        for (i, (c, index)) in s.constraints.iter().zip(&s.indexes).enumerate() {
            let Some(value) = node.labels().get(&c.topology_key) else {
                return Status::unresolvable(REASON_MISSING_LABEL);
            };
            let id = index.as_ref().and_then(|index| index.id(value));
            if s.skew(i, id) > c.max_skew {
                return Status::unschedulable(REASON);
            }
        }
        Status::success()
    }
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Status {
        let constraints = match parse_constraints(pod, "ScheduleAnyway") {
            Ok(c) if c.is_empty() => return Status::skip(),
            Ok(c) => c,
            Err(status) => return status,
        };
        let topology = snapshot.topology().clone();
        let ignored: Vec<bool> = nodes
            .iter()
            .map(|n| !has_all_keys(&constraints, n))
            .collect();
        let considered = ignored.iter().filter(|i| !**i).count();
        let mut counts = Vec::with_capacity(constraints.len());
        let mut candidates = Vec::with_capacity(constraints.len());
        let mut weights = Vec::with_capacity(constraints.len());
        for c in &constraints {
            let index = topology.get(&c.topology_key).map(|i| &**i);
            let domains = index.map_or(0, TopologyIndex::len);
            let mut candidate = vec![false; domains];
            let size = if c.topology_key == HOSTNAME {
                considered
            } else {
                let mut size = 0;
                for (node, _) in nodes.iter().zip(&ignored).filter(|(_, i)| !**i) {
                    if let Some(id) = domain_of(index, &c.topology_key, node)
                        && !candidate[id]
                    {
                        candidate[id] = true;
                        size += 1;
                    }
                }
                size
            };
            weights.push(((size + 2) as f64).ln());
            counts.push(vec![0; domains]);
            candidates.push(candidate);
        }
        let namespace = pod.namespace();
        let nodes = snapshot.nodes();
        for (i, c) in constraints.iter().enumerate() {
            if c.topology_key == HOSTNAME {
                continue;
            }
            let Some(index) = topology.get(&c.topology_key) else {
                continue;
            };
            let mut count_at = |position: usize| {
                let node = &nodes[position];
                let Some(id) = index.domain_at(position) else {
                    return;
                };
                if candidates[i][id] && has_all_keys(&constraints, node) && c.includes(pod, node) {
                    counts[i][id] += c.count(node.pods(), namespace);
                }
            };
            match c
                .selector
                .as_ref()
                .and_then(|s| snapshot.pod_index().candidate_nodes(s))
            {
                Some(positions) => positions.into_iter().for_each(&mut count_at),
                None => (0..nodes.len()).for_each(&mut count_at),
            }
        }
        let indexes = constraints
            .iter()
            .map(|c| topology.get(&c.topology_key).cloned())
            .collect();
        state.write(
            PRE_SCORE_KEY,
            PreScoreState {
                constraints,
                counts,
                weights,
                ignored,
                indexes,
            },
        );
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    /// Matching pods in the node's domains, weighted by `ln(domains + 2)` (lower is better;
    /// normalise reverses it).
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let s = state
            .read::<PreScoreState>(PRE_SCORE_KEY)
            .ok_or_else(|| missing_state(NAME))?;
        if !has_all_keys(&s.constraints, node) {
            return Ok(0);
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let count = if c.topology_key == HOSTNAME {
                c.count(node.pods(), pod.namespace())
            } else {
                domain_of(s.indexes[i].as_deref(), &c.topology_key, node)
                    .map_or(0, |id| s.counts[i][id])
            };
            score += count as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        Ok(score.round() as i64)
    }

    fn normalize(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return missing_state(NAME);
        };
        let ignored = |i: usize| s.ignored.get(i).copied().unwrap_or(true);
        let considered = scores.iter().filter(|n| !ignored(n.index));
        let min = considered.clone().map(|n| n.score).min().unwrap_or(0);
        let max = considered.map(|n| n.score).max().unwrap_or(0);
        for n in scores.iter_mut() {
            n.score = if ignored(n.index) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - n.score) / max
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

    fn web() -> PodInfo {
        pod(json!({"metadata": {"name": "w", "labels": {"app": "web"}}}))
    }

    fn zone_node(name: &str, zone: &str, webs: usize) -> NodeInfo {
        node_with(
            json!({"metadata": {"name": name, "labels": {ZONE: zone}}}),
            (0..webs)
                .map(|i| pod(json!({"metadata": {"name": format!("{name}-w{i}"), "labels": {"app": "web"}}})))
                .collect(),
        )
    }

    fn spreading(extra: Value) -> PodInfo {
        let mut constraint = json!({
            "maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}
        });
        crate::scheduler::plugins::testing::merge(&mut constraint, extra);
        pod(
            json!({"metadata": {"name": "incoming", "labels": {"app": "web"}},
                   "spec": {"topologySpreadConstraints": [constraint]}}),
        )
    }

    fn filter_all(p: &PodInfo, nodes: &[NodeInfo]) -> Vec<Status> {
        let snapshot = Snapshot::from_nodes(nodes.to_vec());
        let mut state = CycleState::new();
        let (result, status) = PodTopologySpread.pre_filter(&mut state, p, &snapshot);
        assert!(status.is_success(), "{status}");
        let statuses: Vec<Status> = nodes
            .iter()
            .map(|n| PodTopologySpread.filter(&state, p, n))
            .collect();
        // The pre-filter's hint names exactly the nodes the filter passes, by their
        // position in the snapshot (which orders nodes its own way).
        let passing: Vec<usize> = (snapshot.nodes().iter().enumerate())
            .filter(|(_, n)| PodTopologySpread.filter(&state, p, n).is_success())
            .map(|(position, _)| position)
            .collect();
        match result.candidates {
            Some(candidates) => assert_eq!(candidates, passing),
            None => assert_eq!(passing.len(), nodes.len()),
        }
        statuses
    }

    #[test]
    fn the_pod_must_go_where_it_keeps_the_skew_within_max_skew() {
        let nodes = [
            zone_node("a1", "a", 2),
            zone_node("b1", "b", 1),
            zone_node("c1", "c", 1),
        ];
        let statuses = filter_all(&spreading(json!({})), &nodes);
        assert_eq!(statuses[0].code, Code::Unschedulable);
        assert_eq!(statuses[0].reasons, [REASON]);
        assert!(statuses[1].is_success());
        assert!(statuses[2].is_success());
    }

    #[test]
    fn a_node_without_the_topology_key_is_unresolvable() {
        let nodes = [
            zone_node("a1", "a", 0),
            node(json!({"metadata": {"name": "bare"}})),
        ];
        let statuses = filter_all(&spreading(json!({})), &nodes);
        assert!(statuses[0].is_success());
        assert_eq!(statuses[1].code, Code::UnschedulableAndUnresolvable);
        assert_eq!(statuses[1].reasons, [REASON_MISSING_LABEL]);
    }

    #[test]
    fn min_domains_counts_the_global_minimum_as_zero_when_domains_are_missing() {
        let nodes = [zone_node("a1", "a", 1), zone_node("b1", "b", 1)];
        let relaxed = filter_all(&spreading(json!({})), &nodes);
        assert!(relaxed.iter().all(Status::is_success));
        let strict = filter_all(&spreading(json!({"minDomains": 3})), &nodes);
        assert!(strict.iter().all(|s| s.code == Code::Unschedulable));
    }

    #[test]
    fn nodes_the_pods_node_affinity_excludes_do_not_count_as_domains() {
        let nodes = [zone_node("a1", "a", 0), zone_node("b1", "b", 3)];
        let mut p = spreading(json!({}));
        let mut object = (*p.pod).clone();
        object.spec.as_mut().unwrap().node_selector =
            Some([(ZONE.to_string(), "b".to_string())].into());
        p = PodInfo::new(Arc::new(object));
        // Zone a is not eligible, so zone b is the minimum and the pod fits there.
        let statuses = filter_all(&p, &nodes);
        assert!(statuses[1].is_success());
    }

    #[test]
    fn pods_of_other_namespaces_are_not_counted() {
        let other = node_with(
            json!({"metadata": {"name": "a1", "labels": {ZONE: "a"}}}),
            vec![pod(
                json!({"metadata": {"name": "x", "namespace": "other", "labels": {"app": "web"}}}),
            )],
        );
        let statuses = filter_all(
            &spreading(json!({})),
            &[other.clone(), zone_node("b1", "b", 0)],
        );
        assert!(statuses[0].is_success());
    }

    #[test]
    fn removing_a_pod_in_a_dry_run_updates_the_counts() {
        let full = zone_node("a1", "a", 2);
        let nodes = [full.clone(), zone_node("b1", "b", 0)];
        let snapshot = Snapshot::from_nodes(nodes.to_vec());
        let p = spreading(json!({}));
        let mut state = CycleState::new();
        PodTopologySpread.pre_filter(&mut state, &p, &snapshot);
        assert!(!PodTopologySpread.filter(&state, &p, &full).is_success());
        for existing in full.pods() {
            PodTopologySpread.remove_pod(&mut state, &p, existing, &full);
        }
        assert!(PodTopologySpread.filter(&state, &p, &full).is_success());
    }

    #[test]
    fn schedule_anyway_scores_emptier_domains_higher() {
        let nodes = [
            zone_node("a1", "a", 3),
            zone_node("b1", "b", 1),
            zone_node("c1", "c", 0),
        ];
        let snapshot = Snapshot::from_nodes(nodes.to_vec());
        let p = spreading(json!({"whenUnsatisfiable": "ScheduleAnyway"}));
        let mut state = CycleState::new();
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        assert!(
            PodTopologySpread
                .pre_score(&mut state, &p, &refs, &snapshot)
                .is_success()
        );
        let mut scores: Vec<NodeScore> = nodes
            .iter()
            .enumerate()
            .map(|(index, n)| NodeScore {
                index,
                score: PodTopologySpread.score(&state, &p, n).unwrap(),
            })
            .collect();
        PodTopologySpread.normalize(&state, &p, &mut scores);
        let s: Vec<i64> = scores.iter().map(|s| s.score).collect();
        assert!(s[2] > s[1] && s[1] > s[0], "{s:?}");
        assert_eq!(s[2], 100);
        let _ = web();
    }
}
