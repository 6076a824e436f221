//! Building clusters and pods for whole-scheduler tests, and driving the scheduler as the
//! API wiring would (events in, results out).

use std::sync::Arc;

use serde_json::{Value, json};
use skiff_api::k8s_openapi::api::core::v1::{Node, Pod};

use crate::scheduler::plugins::testing::merge;
use crate::scheduler::queue::QueuedPodInfo;
use crate::scheduler::{Diagnosis, ScheduleResult, Scheduler, SchedulerConfig};

pub(crate) const ZONE: &str = "topology.kubernetes.io/zone";

/// A node with `cpu` and `memory` allocatable, room for 110 pods, a hostname label, and
/// `patch` merged in.
pub(crate) fn node(name: &str, cpu: &str, memory: &str, patch: Value) -> Node {
    let mut base = json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}
    });
    merge(&mut base, patch);
    serde_json::from_value(base).expect("a valid node")
}

/// A pending pod in `default` with one container and `patch` merged in.
pub(crate) fn pod(name: &str, patch: Value) -> Pod {
    let mut base = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
    });
    merge(&mut base, patch);
    serde_json::from_value(base).expect("a valid pod")
}

/// A pending pod requesting `cpu` and `memory`.
pub(crate) fn requesting(name: &str, cpu: &str, memory: &str, patch: Value) -> Pod {
    let mut p = pod(
        name,
        json!({"spec": {"containers": [{"name": "app", "image": "app:1",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}),
    );
    let mut value = serde_json::to_value(&p).expect("pods serialise");
    merge(&mut value, patch);
    p = serde_json::from_value(value).expect("a valid pod");
    p
}

/// `pod` bound to `node`.
pub(crate) fn bound(mut pod: Pod, node: &str) -> Pod {
    pod.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
    pod
}

/// A scheduler fed with nodes, driven one pod at a time.
pub(crate) struct Cluster {
    pub scheduler: Scheduler,
}

impl Cluster {
    pub fn new(nodes: Vec<Node>) -> Self {
        Self::with_config("", nodes)
    }

    pub fn with_config(yaml: &str, nodes: Vec<Node>) -> Self {
        let config = SchedulerConfig::from_yaml(yaml).expect("a valid configuration");
        let mut scheduler = Scheduler::new(&config)
            .expect("a valid scheduler")
            .with_seed(42);
        for n in nodes {
            scheduler.node_added(n);
        }
        Self { scheduler }
    }

    /// Adds a pod already running on `node` (as the watch would report it).
    pub fn running(&mut self, pod: Pod, node: &str) {
        self.scheduler.pod_added(bound(pod, node));
    }

    /// One scheduling cycle for `pod`.
    pub fn schedule(&mut self, pod: Pod) -> ScheduleResult {
        self.scheduler.schedule_one(QueuedPodInfo::new(pod))
    }

    /// Schedules `pod`, expects a bind, confirms it and delivers the bound pod as the watch
    /// would. Returns the node.
    pub fn place(&mut self, pod: Pod) -> String {
        match self.schedule(pod.clone()) {
            ScheduleResult::Bind { pod: placed, node } => {
                self.scheduler.confirm(&placed);
                self.scheduler.pod_updated(&pod, (*placed).clone());
                node
            }
            other => panic!("expected a bind for {:?}, got {other:?}", pod.metadata.name),
        }
    }

    /// Schedules `pod`, expecting no node to fit; returns the diagnosis.
    pub fn unschedulable(&mut self, pod: Pod) -> Diagnosis {
        match self.schedule(pod) {
            ScheduleResult::Unschedulable { diagnosis, .. } => diagnosis,
            other => panic!("expected unschedulable, got {other:?}"),
        }
    }
}

/// The names of the pods in a list.
pub(crate) fn names(pods: &[Arc<Pod>]) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    names.sort();
    names
}
