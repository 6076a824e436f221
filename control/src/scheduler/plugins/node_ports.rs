//! `NodePorts`: a pod's host ports must be free on the node (same protocol and port on the
//! same address, or either bound to every address, conflict).

use std::sync::Arc;

use crate::scheduler::framework::{
    ClusterEvent, CycleState, FilterPlugin, Plugin, PreFilterPlugin, PreFilterResult, Status,
};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::PodInfo;
use crate::scheduler::snapshot::Snapshot;

pub const NAME: &str = "NodePorts";
/// Kubernetes' reason for a host port already taken.
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

#[derive(Debug, Default, Clone, Copy)]
pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::AssignedPodDeleted, ClusterEvent::NodeAdded]
    }

    fn as_pre_filter(self: Arc<Self>) -> Option<Arc<dyn PreFilterPlugin>> {
        Some(self)
    }

    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        Some(self)
    }
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> (PreFilterResult, Status) {
        if pod.host_ports.is_empty() {
            (PreFilterResult::all(), Status::skip())
        } else {
            (PreFilterResult::all(), Status::success())
        }
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let used = node.used_ports();
        if pod
            .host_ports
            .iter()
            .any(|want| used.iter().any(|u| u.conflicts_with(want)))
        {
            Status::unschedulable(REASON)
        } else {
            Status::success()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::plugins::testing::{node_with, pod};
    use serde_json::json;

    fn with_port(port: i32, ip: Option<&str>, protocol: &str) -> PodInfo {
        pod(json!({"spec": {"containers": [{"name": "c", "ports": [
            {"containerPort": 1, "hostPort": port, "hostIP": ip, "protocol": protocol}
        ]}]}}))
    }

    #[test]
    fn a_taken_host_port_rejects_and_other_ports_or_protocols_fit() {
        let n = node_with(json!({}), vec![with_port(80, None, "TCP")]);
        let state = CycleState::new();
        let status = NodePorts.filter(&state, &with_port(80, Some("10.0.0.1"), "TCP"), &n);
        assert_eq!(status.code, Code::Unschedulable);
        assert_eq!(status.reasons, [REASON]);
        assert!(
            NodePorts
                .filter(&state, &with_port(81, None, "TCP"), &n)
                .is_success()
        );
        assert!(
            NodePorts
                .filter(&state, &with_port(80, None, "UDP"), &n)
                .is_success()
        );
    }

    #[test]
    fn ports_on_different_specific_addresses_do_not_conflict() {
        let n = node_with(json!({}), vec![with_port(80, Some("10.0.0.1"), "TCP")]);
        let status = NodePorts.filter(
            &CycleState::new(),
            &with_port(80, Some("10.0.0.2"), "TCP"),
            &n,
        );
        assert!(status.is_success());
    }
}
