//! `NodeName`: a pod that names its node (`spec.nodeName`) fits only that node.

use std::sync::Arc;

use crate::scheduler::framework::{ClusterEvent, CycleState, FilterPlugin, Plugin, Status};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::PodInfo;

pub const NAME: &str = "NodeName";
/// Kubernetes' reason for a node other than the one named.
pub const REASON: &str = "node(s) didn't match the requested node name";

#[derive(Debug, Default, Clone, Copy)]
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdded]
    }

    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        Some(self)
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.node_name() {
            Some(name) if name != node.name() => Status::unresolvable(REASON),
            _ => Status::success(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::plugins::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn only_the_named_node_fits() {
        let p = pod(json!({"spec": {"nodeName": "n1", "containers": [{"name": "c"}]}}));
        let state = CycleState::new();
        assert!(
            NodeName
                .filter(&state, &p, &node(json!({"metadata": {"name": "n1"}})))
                .is_success()
        );
        let status = NodeName.filter(&state, &p, &node(json!({"metadata": {"name": "n2"}})));
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons, [REASON]);
    }

    #[test]
    fn a_pod_without_a_node_name_fits_any_node() {
        let p = pod(json!({"spec": {"containers": [{"name": "c"}]}}));
        assert!(
            NodeName
                .filter(
                    &CycleState::new(),
                    &p,
                    &node(json!({"metadata": {"name": "n"}}))
                )
                .is_success()
        );
    }
}
