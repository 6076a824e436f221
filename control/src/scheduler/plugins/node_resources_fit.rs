//! `NodeResourcesFit`: the pod's requests (cpu, memory, ephemeral-storage, extended
//! resources, and one more pod) must fit in what the node can allocate minus what its pods
//! already request. Scores nodes by a strategy (see [`super::least_allocated`]), over the
//! requests of the pods with unset cpu/memory requests counted at 100m / 200Mi.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::least_allocated::{least_requested_score, most_requested_score, weighted_score};
use crate::scheduler::framework::{
    ClusterEvent, Code, CycleState, FilterPlugin, Plugin, ScorePlugin, Status,
};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::PodInfo;

pub const NAME: &str = "NodeResourcesFit";

/// How `NodeResourcesFit` scores nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ScoringStrategyType {
    /// Prefer the node with the most room left (spreads load).
    #[default]
    LeastAllocated,
    /// Prefer the fullest node (bin packing).
    MostAllocated,
}

/// A resource the score looks at and its weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSpec {
    pub name: String,
    #[serde(default = "one")]
    pub weight: i64,
}

fn one() -> i64 {
    1
}

/// cpu and memory, weight 1 each (Kubernetes' default).
pub fn default_resources() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec {
            name: "cpu".into(),
            weight: 1,
        },
        ResourceSpec {
            name: "memory".into(),
            weight: 1,
        },
    ]
}

/// `scoringStrategy` of the plugin's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoringStrategy {
    #[serde(rename = "type", default)]
    pub kind: ScoringStrategyType,
    #[serde(default = "default_resources")]
    pub resources: Vec<ResourceSpec>,
}

impl Default for ScoringStrategy {
    fn default() -> Self {
        Self {
            kind: ScoringStrategyType::default(),
            resources: default_resources(),
        }
    }
}

/// The plugin's arguments (`pluginConfig` entry `NodeResourcesFit`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeResourcesFitArgs {
    #[serde(default)]
    pub scoring_strategy: ScoringStrategy,
}

/// What a node would have requested of a resource with the pod on it, and its allocatable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceAmount {
    pub requested: i64,
    pub allocatable: i64,
    pub weight: i64,
}

/// The requested (with the pod) and allocatable amount of `resource` on `node`. With
/// `non_zero`, cpu and memory count unset requests at the scoring defaults. An extended
/// resource the pod does not request reads as nothing allocatable (left out of scores).
pub fn resource_amount(
    node: &NodeInfo,
    pod: &PodInfo,
    spec: &ResourceSpec,
    non_zero: bool,
) -> ResourceAmount {
    let allocatable = node.allocatable();
    let requested = node.requested();
    let (non_zero_cpu, non_zero_memory) = node.non_zero_requested();
    let (req, alloc) = match spec.name.as_str() {
        "cpu" if non_zero => (non_zero_cpu + pod.non_zero_milli_cpu, allocatable.milli_cpu),
        "cpu" => (
            requested.milli_cpu + pod.requests.milli_cpu,
            allocatable.milli_cpu,
        ),
        "memory" if non_zero => (non_zero_memory + pod.non_zero_memory, allocatable.memory),
        "memory" => (requested.memory + pod.requests.memory, allocatable.memory),
        "ephemeral-storage" => (
            requested.ephemeral_storage + pod.requests.ephemeral_storage,
            allocatable.ephemeral_storage,
        ),
        name => match pod.requests.scalar(name) {
            0 => (0, 0),
            want => (requested.scalar(name) + want, allocatable.scalar(name)),
        },
    };
    ResourceAmount {
        requested: req,
        allocatable: alloc,
        weight: spec.weight,
    }
}

/// The resources-fit filter and scorer.
#[derive(Debug, Clone, Default)]
pub struct NodeResourcesFit {
    pub args: NodeResourcesFitArgs,
}

impl NodeResourcesFit {
    pub fn new(args: NodeResourcesFitArgs) -> Self {
        Self { args }
    }
}

/// Kubernetes' `fitsRequest`: every resource the pod lacks on the node, and whether any
/// exceeds the node's whole allocatable (then preemption cannot help).
pub fn insufficient_resources(pod: &PodInfo, node: &NodeInfo) -> (Vec<String>, bool) {
    let allocatable = node.allocatable();
    let requested = node.requested();
    let want = &pod.requests;
    let mut reasons = Vec::new();
    let mut unresolvable = false;
    if node.pods().len() as i64 + 1 > allocatable.pods {
        reasons.push("Too many pods".to_string());
    }
    if want.is_zero() {
        return (reasons, false);
    }
    let mut check = |name: &str, want: i64, used: i64, capacity: i64| {
        if want > 0 && want > capacity - used {
            reasons.push(format!("Insufficient {name}"));
            unresolvable |= want > capacity;
        }
    };
    check(
        "cpu",
        want.milli_cpu,
        requested.milli_cpu,
        allocatable.milli_cpu,
    );
    check("memory", want.memory, requested.memory, allocatable.memory);
    check(
        "ephemeral-storage",
        want.ephemeral_storage,
        requested.ephemeral_storage,
        allocatable.ephemeral_storage,
    );
    for (name, amount) in &want.scalar {
        check(
            name,
            *amount,
            requested.scalar(name),
            allocatable.scalar(name),
        );
    }
    (reasons, unresolvable)
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::NodeAdded,
            ClusterEvent::NodeChanged,
            ClusterEvent::AssignedPodDeleted,
            ClusterEvent::AssignedPodUpdated,
        ]
    }

    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        Some(self)
    }

    fn as_score(self: Arc<Self>) -> Option<Arc<dyn ScorePlugin>> {
        Some(self)
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let allocatable = node.allocatable();
        let requested = node.requested();
        let want = &pod.requests;
        // The common case without allocating: everything fits.
        let fits = (node.pods().len() as i64) < allocatable.pods
            && (want.milli_cpu == 0
                || want.milli_cpu <= allocatable.milli_cpu - requested.milli_cpu)
            && (want.memory == 0 || want.memory <= allocatable.memory - requested.memory)
            && (want.ephemeral_storage == 0
                || want.ephemeral_storage
                    <= allocatable.ephemeral_storage - requested.ephemeral_storage)
            && want.scalar.iter().all(|(name, amount)| {
                *amount == 0 || *amount <= allocatable.scalar(name) - requested.scalar(name)
            });
        if fits {
            return Status::success();
        }
        let (reasons, unresolvable) = insufficient_resources(pod, node);
        Status {
            code: if unresolvable {
                Code::UnschedulableAndUnresolvable
            } else {
                Code::Unschedulable
            },
            reasons: reasons.into_iter().map(Into::into).collect(),
            plugin: NAME,
        }
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let strategy = &self.args.scoring_strategy;
        let amounts = strategy
            .resources
            .iter()
            .map(|spec| resource_amount(node, pod, spec, true));
        Ok(match strategy.kind {
            ScoringStrategyType::LeastAllocated => weighted_score(amounts, least_requested_score),
            ScoringStrategyType::MostAllocated => weighted_score(amounts, most_requested_score),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testing::{node, node_with, pod};
    use serde_json::json;

    fn requesting(cpu: &str, memory: &str) -> PodInfo {
        pod(
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}),
        )
    }

    fn filter(p: &PodInfo, n: &NodeInfo) -> Status {
        NodeResourcesFit::default().filter(&CycleState::new(), p, n)
    }

    #[test]
    fn a_pod_that_fits_the_free_room_passes() {
        let n = node_with(json!({}), vec![requesting("3", "4Gi")]);
        assert!(filter(&requesting("1", "4Gi"), &n).is_success());
    }

    #[test]
    fn each_insufficient_resource_is_a_reason() {
        let n = node_with(json!({}), vec![requesting("3", "7Gi")]);
        let status = filter(&requesting("2", "2Gi"), &n);
        assert_eq!(status.code, Code::Unschedulable);
        assert_eq!(status.reasons, ["Insufficient cpu", "Insufficient memory"]);
    }

    #[test]
    fn a_request_larger_than_the_whole_node_is_unresolvable() {
        let status = filter(&requesting("5", "1Gi"), &node(json!({})));
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons, ["Insufficient cpu"]);
    }

    #[test]
    fn the_pod_count_limit_applies_even_to_pods_without_requests() {
        let n = node_with(
            json!({"status": {"allocatable": {"pods": "1"}}}),
            vec![pod(json!({}))],
        );
        let status = filter(&pod(json!({})), &n);
        assert_eq!(status.reasons, ["Too many pods"]);
        assert_eq!(status.code, Code::Unschedulable);
    }

    #[test]
    fn extended_resources_are_checked_by_name() {
        let n = node(json!({"status": {"allocatable": {"example.com/gpu": "1"}}}));
        let p = pod(
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"example.com/gpu": "2"}}}]}}),
        );
        assert_eq!(filter(&p, &n).reasons, ["Insufficient example.com/gpu"]);
    }

    #[test]
    fn init_containers_and_overhead_count_toward_the_fit() {
        let p = pod(json!({"spec": {
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "3500m"}}}],
            "overhead": {"cpu": "600m"}
        }}));
        assert_eq!(filter(&p, &node(json!({}))).reasons, ["Insufficient cpu"]);
    }

    #[test]
    fn least_allocated_prefers_the_emptier_node_and_most_allocated_the_fuller() {
        let empty = node(json!({}));
        let busy = node_with(json!({}), vec![requesting("2", "4Gi")]);
        let p = requesting("1", "1Gi");
        let least = NodeResourcesFit::default();
        let state = CycleState::new();
        assert!(least.score(&state, &p, &empty).unwrap() > least.score(&state, &p, &busy).unwrap());
        let most = NodeResourcesFit::new(NodeResourcesFitArgs {
            scoring_strategy: ScoringStrategy {
                kind: ScoringStrategyType::MostAllocated,
                resources: default_resources(),
            },
        });
        assert!(most.score(&state, &p, &empty).unwrap() < most.score(&state, &p, &busy).unwrap());
        // 1 of 4 cpu and 1 of 8Gi memory used: (75 + 87) / 2.
        assert_eq!(least.score(&state, &p, &empty).unwrap(), 81);
    }
}
