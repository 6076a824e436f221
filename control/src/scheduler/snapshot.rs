//! The cluster state one scheduling cycle works on: an immutable view of every node, taken
//! from the [`Cache`](super::Cache) at the start of the cycle.
//!
//! The snapshot is updated incrementally: it shares each [`NodeInfo`] with the cache through
//! an `Arc`; the cache copies a node on its first change after a snapshot (copy-on-write),
//! and [`Cache::update_snapshot`](super::Cache::update_snapshot) swaps in only the nodes
//! whose generation is newer than the snapshot's. Nodes are listed zone by zone in
//! round-robin (as kube-scheduler's node tree does) so that a sample of the list spans
//! zones. Beside the list it keeps indexes the plugins use instead of scanning every node:
//! nodes with pods that carry affinity terms, nodes by topology label value, and how many
//! nodes hold each image.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::node_info::NodeInfo;
use super::pod_index::PodIndex;
use super::pod_info::{NamespaceLabels, PodInfo};
use super::topology::{Topology, TopologyIndex};

/// The zone label (`topology.kubernetes.io/zone`).
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The region label (`topology.kubernetes.io/region`).
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

/// An immutable view of the cluster for one scheduling cycle.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    nodes: Vec<Arc<NodeInfo>>,
    index: HashMap<String, usize>,
    with_affinity: Vec<usize>,
    with_scoring_affinity: Vec<usize>,
    with_required_anti_affinity: Vec<usize>,
    topology: Arc<Topology>,
    pods: PodIndex,
    pub(crate) images: Arc<HashMap<String, usize>>,
    pub(crate) namespaces: Arc<NamespaceLabels>,
    /// The cache generation this snapshot reflects.
    pub(crate) generation: u64,
    /// The cache's node-set generation (nodes added, removed or relabelled) reflected here.
    pub(crate) node_set_generation: u64,
}

impl Snapshot {
    /// A snapshot of these nodes (for tests and tools; the scheduler fills its snapshot from
    /// the cache).
    pub fn from_nodes(nodes: impl IntoIterator<Item = NodeInfo>) -> Self {
        let mut snapshot = Self::default();
        snapshot.rebuild(nodes.into_iter().map(Arc::new).collect());
        let mut images: HashMap<String, usize> = HashMap::new();
        for node in &snapshot.nodes {
            for image in node.data().iter().flat_map(|d| d.images.keys()) {
                *images.entry(image.clone()).or_default() += 1;
            }
        }
        snapshot.images = Arc::new(images);
        snapshot
    }

    /// Every node, zone-interleaved.
    pub fn nodes(&self) -> &[Arc<NodeInfo>] {
        &self.nodes
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// The position of node `name` in [`Snapshot::nodes`].
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Nodes with at least one pod that has an inter-pod affinity or anti-affinity term.
    pub fn nodes_with_affinity_pods(&self) -> impl Iterator<Item = &NodeInfo> {
        self.with_affinity.iter().map(|&i| &*self.nodes[i])
    }

    /// Nodes with at least one pod that has required affinity or a preferred term.
    pub fn nodes_with_scoring_affinity_pods(&self) -> impl Iterator<Item = &NodeInfo> {
        self.with_scoring_affinity.iter().map(|&i| &*self.nodes[i])
    }

    /// Pods by label (and anti-affinity terms by the labels they select), by node position.
    pub fn pod_index(&self) -> &PodIndex {
        &self.pods
    }

    /// Nodes with at least one pod that has a required anti-affinity term.
    pub fn nodes_with_required_anti_affinity_pods(&self) -> impl Iterator<Item = &NodeInfo> {
        self.with_required_anti_affinity
            .iter()
            .map(|&i| &*self.nodes[i])
    }

    /// The domains of topology label `key` (its values and the nodes having each).
    pub fn domains(&self, key: &str) -> Option<&TopologyIndex> {
        self.topology.get(key).map(|i| &**i)
    }

    /// Every topology key's domains, shared for counting per domain.
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// How many nodes hold `image` (normalised name).
    pub fn image_node_count(&self, image: &str) -> usize {
        self.images.get(image).copied().unwrap_or(0)
    }

    /// Namespace labels, for affinity terms' namespace selectors.
    pub fn namespace_labels(&self) -> &Arc<NamespaceLabels> {
        &self.namespaces
    }

    /// Replaces every list and index with `nodes`, ordered zone by zone.
    pub(crate) fn rebuild(&mut self, mut nodes: Vec<Arc<NodeInfo>>) {
        nodes.sort_by(|a, b| a.name().cmp(b.name()));
        let mut zones: BTreeMap<(String, String), Vec<Arc<NodeInfo>>> = BTreeMap::new();
        for node in nodes {
            let labels = node.labels();
            let zone = (
                labels.get(REGION_LABEL).cloned().unwrap_or_default(),
                labels.get(ZONE_LABEL).cloned().unwrap_or_default(),
            );
            zones.entry(zone).or_default().push(node);
        }
        let total = zones.values().map(Vec::len).sum();
        let mut iters: Vec<_> = zones.into_values().map(Vec::into_iter).collect();
        let mut ordered = Vec::with_capacity(total);
        while ordered.len() < total {
            for zone in &mut iters {
                if let Some(node) = zone.next() {
                    ordered.push(node);
                }
            }
        }
        self.nodes = ordered;
        self.index = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name().to_string(), i))
            .collect();
        self.with_affinity.clear();
        self.with_scoring_affinity.clear();
        self.with_required_anti_affinity.clear();
        self.pods = PodIndex::default();
        let mut topology: HashMap<String, TopologyIndex> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.has_pods_with_affinity() {
                self.with_affinity.push(i);
            }
            if node.has_pods_with_scoring_affinity() {
                self.with_scoring_affinity.push(i);
            }
            for pod in node.pods() {
                self.pods.add_pod(i, pod, 1);
            }
            if node.has_pods_with_required_anti_affinity() {
                self.with_required_anti_affinity.push(i);
            }
            for (key, value) in node.labels() {
                topology.entry(key.clone()).or_default().insert(value, i);
            }
        }
        self.topology = Arc::new(
            topology
                .into_iter()
                .map(|(k, v)| (k, Arc::new(v)))
                .collect(),
        );
    }

    /// Swaps in a new version of a node already listed (same name and labels). Returns
    /// false when the node is not in the snapshot.
    pub(crate) fn replace(&mut self, node: Arc<NodeInfo>) -> bool {
        let Some(&i) = self.index.get(node.name()) else {
            return false;
        };
        let old = self.nodes[i].clone();
        update_membership(
            &mut self.with_affinity,
            i,
            old.has_pods_with_affinity(),
            node.has_pods_with_affinity(),
        );
        update_membership(
            &mut self.with_scoring_affinity,
            i,
            old.has_pods_with_scoring_affinity(),
            node.has_pods_with_scoring_affinity(),
        );
        update_membership(
            &mut self.with_required_anti_affinity,
            i,
            old.has_pods_with_required_anti_affinity(),
            node.has_pods_with_required_anti_affinity(),
        );
        diff_pods(old.pods(), node.pods(), |pod, delta| {
            self.pods.add_pod(i, pod, delta);
        });
        self.nodes[i] = node;
        true
    }
}

/// Calls `f(pod, -1)` for pods only in `old` and `f(pod, 1)` for pods only in `new`
/// (compared by identity: a changed pod is a new `Arc`).
fn diff_pods(old: &[Arc<PodInfo>], new: &[Arc<PodInfo>], mut f: impl FnMut(&PodInfo, i32)) {
    if old.len() + new.len() <= 32 {
        for p in old
            .iter()
            .filter(|p| !new.iter().any(|q| Arc::ptr_eq(p, q)))
        {
            f(p, -1);
        }
        for p in new
            .iter()
            .filter(|p| !old.iter().any(|q| Arc::ptr_eq(p, q)))
        {
            f(p, 1);
        }
        return;
    }
    let before: HashSet<*const PodInfo> = old.iter().map(Arc::as_ptr).collect();
    let after: HashSet<*const PodInfo> = new.iter().map(Arc::as_ptr).collect();
    for p in old.iter().filter(|p| !after.contains(&Arc::as_ptr(p))) {
        f(p, -1);
    }
    for p in new.iter().filter(|p| !before.contains(&Arc::as_ptr(p))) {
        f(p, 1);
    }
}

/// Keeps the sorted position list `list` containing `i` exactly when `now` is true.
fn update_membership(list: &mut Vec<usize>, i: usize, before: bool, now: bool) {
    if before == now {
        return;
    }
    match list.binary_search(&i) {
        Ok(at) if !now => {
            list.remove(at);
        }
        Err(at) if now => list.insert(at, i),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, zone: &str) -> NodeInfo {
        NodeInfo::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "labels": {ZONE_LABEL: zone, "kubernetes.io/hostname": name}}}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn nodes_are_listed_round_robin_across_zones() {
        let snapshot = Snapshot::from_nodes([
            node("a1", "a"),
            node("a2", "a"),
            node("a3", "a"),
            node("b1", "b"),
            node("c1", "c"),
            node("c2", "c"),
        ]);
        let names: Vec<_> = snapshot.nodes().iter().map(|n| n.name()).collect();
        assert_eq!(names, ["a1", "b1", "c1", "a2", "c2", "a3"]);
        assert_eq!(snapshot.position("c2"), Some(4));
    }

    #[test]
    fn topology_index_maps_label_values_to_nodes() {
        let snapshot = Snapshot::from_nodes([node("a1", "a"), node("a2", "a"), node("b1", "b")]);
        let zones = snapshot.domains(ZONE_LABEL).unwrap();
        assert_eq!(zones.len(), 2);
        assert_eq!(zones.nodes(zones.id("a").unwrap()).len(), 2);
        assert_eq!(snapshot.domains("kubernetes.io/hostname").unwrap().len(), 3);
        assert!(snapshot.domains("missing").is_none());
    }
}
