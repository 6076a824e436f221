//! `NodeResourcesBalancedAllocation`: prefers nodes whose cpu and memory would be used in
//! equal proportion with the pod on them (score `(1 - standard deviation of the used
//! fractions) * 100`). Pods that request nothing are not scored by it (as Kubernetes 1.32+).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::node_resources_fit::{ResourceSpec, default_resources, resource_amount};
use crate::scheduler::framework::{
    CycleState, MAX_NODE_SCORE, Plugin, PreScorePlugin, ScorePlugin, Status,
};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::PodInfo;
use crate::scheduler::snapshot::Snapshot;

pub const NAME: &str = "NodeResourcesBalancedAllocation";

/// The most resources the score considers.
const MAX_RESOURCES: usize = 8;

/// The plugin's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalancedAllocationArgs {
    #[serde(default = "default_resources")]
    pub resources: Vec<ResourceSpec>,
}

impl Default for BalancedAllocationArgs {
    fn default() -> Self {
        Self {
            resources: default_resources(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct BalancedAllocation {
    pub args: BalancedAllocationArgs,
}

impl BalancedAllocation {
    pub fn new(args: BalancedAllocationArgs) -> Self {
        Self { args }
    }
}

/// `(1 - std) * 100` over the used fractions (capped at 1) of the resources the node has.
pub fn balanced_score(fractions: &[f64]) -> i64 {
    let std = match fractions.len() {
        0 | 1 => 0.0,
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            let sum: f64 = fractions.iter().map(|f| (f - mean) * (f - mean)).sum();
            (sum / n as f64).sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }

    fn as_pre_score(self: Arc<Self>) -> Option<Arc<dyn PreScorePlugin>> {
        Some(self)
    }

    fn as_score(self: Arc<Self>) -> Option<Arc<dyn ScorePlugin>> {
        Some(self)
    }
}

impl PreScorePlugin for BalancedAllocation {
    fn pre_score(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snapshot: &Snapshot,
    ) -> Status {
        let requests_any = self.args.resources.iter().any(|r| match r.name.as_str() {
            "cpu" => pod.requests.milli_cpu > 0,
            "memory" => pod.requests.memory > 0,
            "ephemeral-storage" => pod.requests.ephemeral_storage > 0,
            name => pod.requests.scalar(name) > 0,
        });
        if requests_any {
            Status::success()
        } else {
            Status::skip()
        }
    }
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let mut fractions = [0.0; MAX_RESOURCES];
        let mut len = 0;
        for spec in self.args.resources.iter().take(MAX_RESOURCES) {
            let amount = resource_amount(node, pod, spec, false);
            if amount.allocatable == 0 {
                continue;
            }
            fractions[len] = (amount.requested as f64 / amount.allocatable as f64).min(1.0);
            len += 1;
        }
        Ok(balanced_score(&fractions[..len]))
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

    #[test]
    fn equal_fractions_score_full_and_skewed_ones_less() {
        assert_eq!(balanced_score(&[0.5, 0.5]), 100);
        assert_eq!(balanced_score(&[1.0, 0.0]), 50);
        assert_eq!(balanced_score(&[0.2]), 100);
    }

    #[test]
    fn the_node_left_balanced_by_the_pod_scores_higher() {
        // n1 is cpu-heavy already; a memory-heavy pod balances it.
        let n1 = node_with(json!({}), vec![requesting("2", "0")]);
        let n2 = node_with(json!({}), vec![requesting("0", "4Gi")]);
        let p = requesting("0", "4Gi");
        let plugin = BalancedAllocation::default();
        let state = CycleState::new();
        assert_eq!(plugin.score(&state, &p, &n1).unwrap(), 100);
        assert_eq!(plugin.score(&state, &p, &n2).unwrap(), 50);
    }

    #[test]
    fn best_effort_pods_skip_balanced_scoring() {
        let plugin = BalancedAllocation::default();
        let status = plugin.pre_score(
            &mut CycleState::new(),
            &pod(json!({})),
            &[&node(json!({}))],
            &Snapshot::default(),
        );
        assert!(status.is_skip());
    }
}
