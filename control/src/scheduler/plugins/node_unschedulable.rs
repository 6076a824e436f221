//! `NodeUnschedulable`: cordoned nodes (`spec.unschedulable`) take no new pods, except pods
//! that tolerate the `node.kubernetes.io/unschedulable:NoSchedule` taint (DaemonSet pods).

use std::sync::Arc;

use skiff_api::k8s_openapi::api::core::v1::Taint;

use super::taint_toleration::{tolerates, tolerations};
use crate::scheduler::framework::{ClusterEvent, CycleState, FilterPlugin, Plugin, Status};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::PodInfo;

pub const NAME: &str = "NodeUnschedulable";
/// Kubernetes' reason for a cordoned node.
pub const REASON: &str = "node(s) were unschedulable";
/// The taint a pod must tolerate to land on a cordoned node.
pub const UNSCHEDULABLE_TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

#[derive(Debug, Default, Clone, Copy)]
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdded, ClusterEvent::NodeChanged]
    }

    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        Some(self)
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !node.data().is_some_and(|d| d.unschedulable()) {
            return Status::success();
        }
        let taint = Taint {
            key: UNSCHEDULABLE_TAINT_KEY.to_string(),
            effect: "NoSchedule".to_string(),
            value: None,
            time_added: None,
        };
        if tolerations(pod).iter().any(|t| tolerates(t, &taint)) {
            Status::success()
        } else {
            Status::unresolvable(REASON)
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
    fn a_cordoned_node_rejects_pods_that_do_not_tolerate_it() {
        let cordoned = node(json!({"spec": {"unschedulable": true}}));
        let status = NodeUnschedulable.filter(&CycleState::new(), &pod(json!({})), &cordoned);
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons, [REASON]);
        let daemon = pod(json!({"spec": {"tolerations": [
            {"key": UNSCHEDULABLE_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
        ]}}));
        assert!(
            NodeUnschedulable
                .filter(&CycleState::new(), &daemon, &cordoned)
                .is_success()
        );
        assert!(
            NodeUnschedulable
                .filter(&CycleState::new(), &pod(json!({})), &node(json!({})))
                .is_success()
        );
    }
}
