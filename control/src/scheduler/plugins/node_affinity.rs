//! `NodeAffinity`: `spec.nodeSelector` and required node affinity decide which nodes a pod
//! may go to (operators `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`; `matchFields`
//! on `metadata.name`); preferred node affinity adds its weights to the nodes it matches.
//! A required term that names nodes (`metadata.name In [...]`) narrows the nodes tried in
//! pre-filter.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use skiff_api::k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PreferredSchedulingTerm,
};

use crate::scheduler::framework::{
    ClusterEvent, CycleState, FilterPlugin, NodeScore, Plugin, PreFilterPlugin, PreFilterResult,
    PreScorePlugin, ScorePlugin, Status, default_normalize_score,
};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::PodInfo;
use crate::scheduler::snapshot::Snapshot;

pub const NAME: &str = "NodeAffinity";
/// Kubernetes' reason for a node the selector or required affinity excludes.
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";
/// Kubernetes' reason when required terms name disjoint sets of nodes.
pub const REASON_CONFLICT: &str = "pod affinity terms conflict";

#[derive(Debug, Default, Clone, Copy)]
pub struct NodeAffinity;

fn required_affinity(pod: &Pod) -> Option<&NodeSelector> {
    pod.spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
}

fn preferred_affinity(pod: &Pod) -> &[PreferredSchedulingTerm] {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[])
}

fn node_selector(pod: &Pod) -> Option<&BTreeMap<String, String>> {
    pod.spec
        .as_ref()?
        .node_selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// True when the pod has a `nodeSelector` or required node affinity.
pub fn has_required(pod: &Pod) -> bool {
    node_selector(pod).is_some() || required_affinity(pod).is_some()
}

/// True when the node's labels satisfy the pod's `nodeSelector` and required node affinity
/// (also used by topology spread's `nodeAffinityPolicy: Honor`).
pub fn matches_required(pod: &Pod, node: &NodeInfo) -> bool {
    let labels = node.labels();
    if let Some(selector) = node_selector(pod)
        && !selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    match required_affinity(pod) {
        None => true,
        Some(selector) => selector
            .node_selector_terms
            .iter()
            .any(|term| term_matches(term, labels, node.name())),
    }
}

/// A term matches when all its expressions and fields do; an empty term matches nothing.
pub fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name)))
}

fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or(&[]);
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(value), [bound]) = (value, values) else {
                return false;
            };
            match (value.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(v), Ok(b)) if op == "Gt" => v > b,
                (Ok(v), Ok(b)) => v < b,
                _ => false,
            }
        }
        _ => false,
    }
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdded, ClusterEvent::NodeChanged]
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

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> (PreFilterResult, Status) {
        let required = required_affinity(&pod.pod);
        if required.is_none() && node_selector(&pod.pod).is_none() {
            return (PreFilterResult::all(), Status::skip());
        }
        let Some(required) = required else {
            return (PreFilterResult::all(), Status::success());
        };
        // Nodes named by `metadata.name In` fields: per term the intersection, across terms
        // (ORed) the union; any term without such a field allows every node.
        let mut names: HashSet<String> = HashSet::new();
        for term in &required.node_selector_terms {
            let mut term_names: Option<HashSet<String>> = None;
            for field in term.match_fields.iter().flatten() {
                if field.key == "metadata.name" && field.operator == "In" {
                    let set: HashSet<String> = field.values.iter().flatten().cloned().collect();
                    term_names = Some(match term_names {
                        None => set,
                        Some(prev) => prev.intersection(&set).cloned().collect(),
                    });
                }
            }
            match term_names {
                None => return (PreFilterResult::all(), Status::success()),
                Some(n) => names.extend(n),
            }
        }
        if names.is_empty() {
            return (
                PreFilterResult::all(),
                Status::unresolvable(REASON_CONFLICT),
            );
        }
        (PreFilterResult::only(names), Status::success())
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if matches_required(&pod.pod, node) {
            Status::success()
        } else {
            Status::unresolvable(REASON)
        }
    }
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snapshot: &Snapshot,
    ) -> Status {
        if preferred_affinity(&pod.pod).is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
    }
}

impl ScorePlugin for NodeAffinity {
    /// The sum of the weights of the preferred terms the node matches.
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        Ok(preferred_affinity(&pod.pod)
            .iter()
            .filter(|t| t.weight != 0 && term_matches(&t.preference, node.labels(), node.name()))
            .map(|t| i64::from(t.weight))
            .sum())
    }

    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        default_normalize_score(scores, false);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::plugins::testing::{node, pod};
    use serde_json::json;

    fn required(expressions: serde_json::Value) -> PodInfo {
        pod(
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": expressions}]
            }}}}}),
        )
    }

    fn fits(p: &PodInfo, labels: serde_json::Value) -> bool {
        NodeAffinity
            .filter(
                &CycleState::new(),
                p,
                &node(json!({"metadata": {"labels": labels}})),
            )
            .is_success()
    }

    #[test]
    fn node_selector_requires_every_label() {
        let p = pod(json!({"spec": {"nodeSelector": {"disk": "ssd", "zone": "a"}}}));
        assert!(fits(&p, json!({"disk": "ssd", "zone": "a", "extra": "x"})));
        assert!(!fits(&p, json!({"disk": "ssd"})));
        let status = NodeAffinity.filter(&CycleState::new(), &p, &node(json!({})));
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons, [REASON]);
    }

    #[test]
    fn every_operator_of_required_node_affinity_is_honoured() {
        let p = required(json!([{"key": "zone", "operator": "In", "values": ["a", "b"]}]));
        assert!(fits(&p, json!({"zone": "b"})));
        assert!(!fits(&p, json!({"zone": "c"})));
        let p = required(json!([{"key": "zone", "operator": "NotIn", "values": ["a"]}]));
        assert!(fits(&p, json!({"zone": "b"})));
        assert!(fits(&p, json!({})));
        assert!(!fits(&p, json!({"zone": "a"})));
        let p = required(json!([{"key": "gpu", "operator": "Exists"}]));
        assert!(fits(&p, json!({"gpu": ""})));
        assert!(!fits(&p, json!({})));
        let p = required(json!([{"key": "gpu", "operator": "DoesNotExist"}]));
        assert!(!fits(&p, json!({"gpu": ""})));
        let p = required(json!([{"key": "cores", "operator": "Gt", "values": ["8"]}]));
        assert!(fits(&p, json!({"cores": "16"})));
        assert!(!fits(&p, json!({"cores": "8"})));
        assert!(!fits(&p, json!({"cores": "many"})));
        let p = required(json!([{"key": "cores", "operator": "Lt", "values": ["8"]}]));
        assert!(fits(&p, json!({"cores": "4"})));
        assert!(!fits(&p, json!({})));
    }

    #[test]
    fn terms_are_ored_and_expressions_within_a_term_anded() {
        let p = pod(
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]},
                    {"matchExpressions": [{"key": "c", "operator": "Exists"}]}
                ]
            }}}}}),
        );
        assert!(fits(&p, json!({"a": "", "b": ""})));
        assert!(!fits(&p, json!({"a": ""})));
        assert!(fits(&p, json!({"c": ""})));
    }

    #[test]
    fn match_fields_on_the_node_name_narrow_the_nodes_in_pre_filter() {
        let p = pod(
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]
            }}}}}),
        );
        let (result, status) =
            NodeAffinity.pre_filter(&mut CycleState::new(), &p, &Snapshot::default());
        assert!(status.is_success());
        assert_eq!(result, PreFilterResult::only(["n2".to_string()]));
        let n2 = node(json!({"metadata": {"name": "n2"}}));
        assert!(
            NodeAffinity
                .filter(&CycleState::new(), &p, &n2)
                .is_success()
        );
    }

    #[test]
    fn a_pod_without_node_constraints_skips_the_filter() {
        let (_, status) = NodeAffinity.pre_filter(
            &mut CycleState::new(),
            &pod(json!({})),
            &Snapshot::default(),
        );
        assert!(status.is_skip());
    }

    #[test]
    fn preferred_terms_score_by_their_weights() {
        let p = pod(
            json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
                {"weight": 30, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}}
            ]}}}}),
        );
        let state = CycleState::new();
        let nodes = [
            node(json!({"metadata": {"labels": {"zone": "a"}}})),
            node(json!({"metadata": {"labels": {"zone": "a", "ssd": ""}}})),
            node(json!({})),
        ];
        let mut scores: Vec<NodeScore> = nodes
            .iter()
            .enumerate()
            .map(|(index, n)| NodeScore {
                index,
                score: NodeAffinity.score(&state, &p, n).unwrap(),
            })
            .collect();
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [10, 40, 0]
        );
        NodeAffinity.normalize(&state, &p, &mut scores);
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [25, 100, 0]
        );
    }
}
