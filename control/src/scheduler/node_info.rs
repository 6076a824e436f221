//! One node as the scheduler sees it: the `Node` object with its allocatable resources,
//! taints and images read once, plus the pods on it (bound and assumed) and their sums:
//! requested resources, used host ports, how many pods carry affinity terms.
//!
//! The node-derived part is shared (`Arc`), so cloning a `NodeInfo` for the snapshot or
//! for a preemption dry run copies only the pod list and the sums.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use skiff_api::k8s_openapi::api::core::v1::{Node, Taint};

use super::pod_info::{HostPort, NO_LABELS, PodInfo, Resource};

/// What the scheduler reads from a `Node` object, parsed once per node version.
#[derive(Debug)]
pub struct NodeData {
    pub node: Node,
    pub name: String,
    /// `status.allocatable` (or `status.capacity` when allocatable is absent).
    pub allocatable: Resource,
    /// Image name (normalised with a `:latest` tag when untagged) to size in bytes.
    pub images: HashMap<String, i64>,
    /// What could not be parsed from the node's resources.
    pub parse_errors: Vec<String>,
}

impl NodeData {
    pub fn new(node: Node) -> Self {
        let mut parse_errors = Vec::new();
        let status = node.status.as_ref();
        let list = status
            .and_then(|s| s.allocatable.as_ref())
            .or_else(|| status.and_then(|s| s.capacity.as_ref()));
        let allocatable = list
            .map(|l| Resource::from_list(l, &mut parse_errors))
            .unwrap_or_default();
        let mut images = HashMap::new();
        for image in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in image.names.iter().flatten() {
                images.insert(normalized_image_name(name), image.size_bytes.unwrap_or(0));
            }
        }
        Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            node,
            allocatable,
            images,
            parse_errors,
        }
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.node.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    pub fn taints(&self) -> &[Taint] {
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or(&[])
    }

    /// `spec.unschedulable` (the node is cordoned).
    pub fn unschedulable(&self) -> bool {
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
    }
}

/// `nginx` -> `nginx:latest`; names with a tag or digest are kept.
pub fn normalized_image_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// A node and the pods on it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    name: String,
    node: Option<Arc<NodeData>>,
    pods: Vec<Arc<PodInfo>>,
    requested: Resource,
    non_zero_milli_cpu: i64,
    non_zero_memory: i64,
    used_ports: Vec<HostPort>,
    pods_with_affinity: usize,
    pods_with_scoring_affinity: usize,
    pods_with_required_anti_affinity: usize,
    /// Set by the cache on every change; the snapshot copies nodes newer than itself.
    pub(crate) generation: u64,
}

impl NodeInfo {
    /// A node with no pods.
    pub fn new(node: Node) -> Self {
        let data = NodeData::new(node);
        Self {
            name: data.name.clone(),
            node: Some(Arc::new(data)),
            ..Self::default()
        }
    }

    /// A node the cache knows only from pods bound to it (the `Node` has not arrived or was
    /// deleted while pods remain). The snapshot leaves such nodes out.
    pub(crate) fn without_node(name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..Self::default()
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's parsed data; `None` while the cache knows the node only from its pods.
    pub fn data(&self) -> Option<&NodeData> {
        self.node.as_deref()
    }

    pub(crate) fn data_arc(&self) -> Option<&Arc<NodeData>> {
        self.node.as_ref()
    }

    pub(crate) fn set_data(&mut self, data: Option<Arc<NodeData>>) {
        self.node = data;
    }

    /// The `Node` object.
    pub fn node(&self) -> Option<&Node> {
        self.node.as_deref().map(|d| &d.node)
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.node.as_deref().map_or(&NO_LABELS, NodeData::labels)
    }

    pub fn taints(&self) -> &[Taint] {
        self.node.as_deref().map_or(&[], NodeData::taints)
    }

    pub fn allocatable(&self) -> &Resource {
        static NONE: std::sync::LazyLock<Resource> = std::sync::LazyLock::new(Resource::default);
        self.node.as_deref().map_or(&NONE, |d| &d.allocatable)
    }

    /// The sum of the requests of the pods on the node.
    pub fn requested(&self) -> &Resource {
        &self.requested
    }

    /// cpu (millicores) and memory (bytes) requested, counting containers without requests
    /// at the scoring defaults.
    pub fn non_zero_requested(&self) -> (i64, i64) {
        (self.non_zero_milli_cpu, self.non_zero_memory)
    }

    pub fn pods(&self) -> &[Arc<PodInfo>] {
        &self.pods
    }

    pub fn used_ports(&self) -> &[HostPort] {
        &self.used_ports
    }

    /// True when a pod on the node has an inter-pod affinity or anti-affinity term.
    pub fn has_pods_with_affinity(&self) -> bool {
        self.pods_with_affinity > 0
    }

    /// True when a pod on the node has required affinity or preferred (anti-)affinity.
    pub fn has_pods_with_scoring_affinity(&self) -> bool {
        self.pods_with_scoring_affinity > 0
    }

    /// True when a pod on the node has a required anti-affinity term.
    pub fn has_pods_with_required_anti_affinity(&self) -> bool {
        self.pods_with_required_anti_affinity > 0
    }

    /// Adds a pod and its requests and ports.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_milli_cpu += pod.non_zero_milli_cpu;
        self.non_zero_memory += pod.non_zero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if pod.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if pod.has_scoring_affinity() {
            self.pods_with_scoring_affinity += 1;
        }
        if pod.has_required_anti_affinity() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.push(pod);
    }

    /// Removes the pod with `key`; returns it, or `None` when it is not on the node.
    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let index = self.pods.iter().position(|p| p.key == key)?;
        let pod = self.pods.swap_remove(index);
        self.requested.sub(&pod.requests);
        self.non_zero_milli_cpu -= pod.non_zero_milli_cpu;
        self.non_zero_memory -= pod.non_zero_memory;
        for port in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(i);
            }
        }
        if pod.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if pod.has_scoring_affinity() {
            self.pods_with_scoring_affinity -= 1;
        }
        if pod.has_required_anti_affinity() {
            self.pods_with_required_anti_affinity -= 1;
        }
        Some(pod)
    }

    /// The size of `image` (normalised) when the node has it.
    pub fn image_size(&self, image: &str) -> Option<i64> {
        self.node.as_deref()?.images.get(image).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn adding_and_removing_a_pod_restores_the_sums() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
        }))
        .unwrap();
        let mut info = NodeInfo::new(node);
        assert_eq!(info.allocatable().milli_cpu, 4000);
        assert_eq!(info.allocatable().pods, 110);
        let pod = Arc::new(PodInfo::new(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [
                {"name": "a", "resources": {"requests": {"cpu": "1"}}, "ports": [{"containerPort": 1, "hostPort": 80}]}
            ]}}))
            .unwrap(),
        )));
        info.add_pod(pod.clone());
        assert_eq!(info.requested().milli_cpu, 1000);
        assert_eq!(info.used_ports().len(), 1);
        assert!(info.remove_pod(&pod.key).is_some());
        assert_eq!(info.requested(), &Resource::default());
        assert!(info.used_ports().is_empty());
        assert!(info.remove_pod(&pod.key).is_none());
    }

    #[test]
    fn untagged_image_names_get_the_latest_tag() {
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(normalized_image_name("nginx:1.25"), "nginx:1.25");
        assert_eq!(
            normalized_image_name("registry:5000/app"),
            "registry:5000/app:latest"
        );
        assert_eq!(normalized_image_name("app@sha256:abc"), "app@sha256:abc");
    }
}
