//! The scheduler's cache: every node and the pods bound or assumed to it, updated
//! incrementally from watch events, and the source of each cycle's [`Snapshot`].
//!
//! A pod the scheduler has placed but whose bind has not been seen yet is *assumed*: it
//! counts against its node at once, so the next cycle does not hand out the same room. The
//! caller confirms it with [`Cache::finish_binding`]; when the bound pod arrives from the
//! watch ([`Cache::add_pod`]) the assumption becomes fact. [`Cache::forget_pod`] drops it
//! when the bind fails. With a time-to-live set, a bound-but-never-seen pod expires in
//! [`Cache::cleanup_expired_assumed_pods`].
//!
//! Nodes are shared with the snapshot copy-on-write (`Arc::make_mut`): the first change to
//! a node after a snapshot copies that node alone, and every change stamps the node with a
//! new generation so [`Cache::update_snapshot`] visits only what changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use skiff_api::k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use tokio::time::Instant;

use super::node_info::{NodeData, NodeInfo};
use super::pod_info::{NamespaceLabels, PodInfo, pod_key};
use super::snapshot::Snapshot;

/// A cache operation that does not fit the cache's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    #[error("pod {key} is already in the cache; it cannot be assumed again")]
    AlreadyPresent { key: String },
    #[error("pod {key} has no spec.nodeName; only a pod placed on a node can be assumed")]
    NotPlaced { key: String },
    #[error("pod {key} is not assumed")]
    NotAssumed { key: String },
}

#[derive(Debug, Clone)]
struct PodState {
    pod: Arc<PodInfo>,
    node: String,
    assumed: bool,
    binding_finished: bool,
    deadline: Option<Instant>,
}

/// What [`Cache::update_snapshot`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapshotUpdate {
    /// Nodes whose new version was swapped into the snapshot.
    pub nodes_updated: usize,
    /// True when the node list and indexes were rebuilt (nodes added, removed or relabelled).
    pub rebuilt: bool,
}

/// Nodes and the pods on them, as the scheduler last heard.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: HashMap<String, Arc<NodeInfo>>,
    /// Generation -> node name, one entry per node, for visiting changed nodes in order.
    recency: BTreeMap<u64, String>,
    generation: u64,
    /// Bumped when nodes are added, removed or relabelled: the snapshot rebuilds its lists.
    node_set_generation: u64,
    pods: HashMap<String, PodState>,
    images: Arc<HashMap<String, usize>>,
    namespaces: Arc<NamespaceLabels>,
    assumed_ttl: Option<Duration>,
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Assumed pods whose bind finished expire this long after it unless the watch
    /// confirms them (`None`, the default, keeps them until confirmed or forgotten).
    pub fn with_assumed_pod_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.assumed_ttl = ttl;
        self
    }

    /// Nodes known with their `Node` object.
    pub fn node_count(&self) -> usize {
        self.nodes.values().filter(|n| n.data().is_some()).count()
    }

    /// Pods bound or assumed.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The names of the nodes known with their `Node` object.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.data().is_some())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The keys of the pods bound or assumed.
    pub fn pod_keys(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }

    /// The node called `name`, as the cache has it now.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name).map(|n| &**n)
    }

    /// True when the pod with `key` is assumed (placed, not yet confirmed by the watch).
    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|s| s.assumed)
    }

    /// The node the pod with `key` is bound or assumed to.
    pub fn pod_node(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|s| s.node.as_str())
    }

    /// Adds a node, or replaces it when known (the `Node` object wins over what was there).
    pub fn add_node(&mut self, node: Node) {
        self.update_node(node);
    }

    /// Replaces the `Node` object of a node (adding it when new).
    pub fn update_node(&mut self, node: Node) {
        let data = Arc::new(NodeData::new(node));
        let name = data.name.clone();
        let old = self.nodes.get(&name).and_then(|n| n.data_arc().cloned());
        let relabelled = old.as_ref().is_none_or(|o| o.labels() != data.labels());
        if let Some(old) = &old {
            self.count_images(old, -1);
        }
        self.count_images(&data, 1);
        let entry = self
            .nodes
            .entry(name.clone())
            .or_insert_with(|| Arc::new(NodeInfo::without_node(&name)));
        Arc::make_mut(entry).set_data(Some(data));
        if relabelled {
            self.node_set_generation += 1;
        }
        self.touch(&name);
    }

    /// Removes a node. Pods still bound to it keep it in the cache (without its `Node`,
    /// hidden from snapshots) until they are removed.
    pub fn remove_node(&mut self, name: &str) {
        let Some(entry) = self.nodes.get(name) else {
            return;
        };
        let old = entry.data_arc().cloned();
        let (empty, generation) = (entry.pods().is_empty(), entry.generation);
        if let Some(old) = old {
            self.count_images(&old, -1);
            self.node_set_generation += 1;
        }
        if empty {
            self.nodes.remove(name);
            self.recency.remove(&generation);
        } else if let Some(entry) = self.nodes.get_mut(name) {
            Arc::make_mut(entry).set_data(None);
            self.touch(name);
        }
    }

    /// Adds a pod bound to a node (from the watch). An assumed pod is confirmed (and moved
    /// when it was bound elsewhere); a known pod is updated. Pods without `spec.nodeName`
    /// are ignored: they belong in the scheduling queue.
    pub fn add_pod(&mut self, pod: Pod) {
        let info = Arc::new(PodInfo::new(Arc::new(pod)));
        let Some(node) = info.node_name().map(str::to_string) else {
            return;
        };
        if let Some(state) = self.pods.get(&info.key).cloned() {
            self.remove_from_node(&state.node, &info.key);
        }
        self.add_to_node(&node, info.clone());
        self.pods.insert(
            info.key.clone(),
            PodState {
                pod: info,
                node,
                assumed: false,
                binding_finished: false,
                deadline: None,
            },
        );
    }

    /// Replaces a bound pod with its new version.
    pub fn update_pod(&mut self, pod: Pod) {
        self.add_pod(pod);
    }

    /// Removes a pod (deleted, or finished: terminal pods hold no resources).
    pub fn remove_pod(&mut self, pod: &Pod) {
        self.remove_pod_by_key(&pod_key(pod));
    }

    /// Removes the pod with `key`.
    pub fn remove_pod_by_key(&mut self, key: &str) {
        if let Some(state) = self.pods.remove(key) {
            self.remove_from_node(&state.node, key);
        }
    }

    /// Counts a pod the scheduler placed (with `spec.nodeName` set) against its node before
    /// the bind is seen.
    ///
    /// # Errors
    /// When the pod is already in the cache or has no node.
    pub fn assume_pod(&mut self, pod: Arc<PodInfo>) -> Result<(), CacheError> {
        let Some(node) = pod.node_name().map(str::to_string) else {
            return Err(CacheError::NotPlaced {
                key: pod.key.clone(),
            });
        };
        if self.pods.contains_key(&pod.key) {
            return Err(CacheError::AlreadyPresent {
                key: pod.key.clone(),
            });
        }
        self.add_to_node(&node, pod.clone());
        self.pods.insert(
            pod.key.clone(),
            PodState {
                pod,
                node,
                assumed: true,
                binding_finished: false,
                deadline: None,
            },
        );
        Ok(())
    }

    /// Records that the bind of an assumed pod succeeded; with a TTL, starts its expiry.
    /// A pod that is not assumed (already confirmed by the watch) is left alone.
    pub fn finish_binding(&mut self, key: &str, now: Instant) {
        let ttl = self.assumed_ttl;
        if let Some(state) = self.pods.get_mut(key).filter(|s| s.assumed) {
            state.binding_finished = true;
            state.deadline = ttl.map(|t| now + t);
        }
    }

    /// Drops an assumed pod (its bind failed).
    ///
    /// # Errors
    /// When the pod is not assumed (unknown, or already confirmed by the watch).
    pub fn forget_pod(&mut self, key: &str) -> Result<(), CacheError> {
        match self.pods.get(key) {
            Some(state) if state.assumed => {
                self.remove_pod_by_key(key);
                Ok(())
            }
            _ => Err(CacheError::NotAssumed {
                key: key.to_string(),
            }),
        }
    }

    /// Drops assumed pods whose bind finished more than the TTL ago and that the watch never
    /// confirmed. Returns their keys.
    pub fn cleanup_expired_assumed_pods(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, s)| {
                s.assumed && s.binding_finished && s.deadline.is_some_and(|d| d <= now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            self.remove_pod_by_key(key);
        }
        expired
    }

    /// The pod with `key` as the cache holds it.
    pub fn pod(&self, key: &str) -> Option<&Arc<PodInfo>> {
        self.pods.get(key).map(|s| &s.pod)
    }

    /// Adds or replaces a namespace's labels (for affinity namespace selectors).
    pub fn update_namespace(&mut self, namespace: &Namespace) {
        let Some(name) = namespace.metadata.name.clone() else {
            return;
        };
        let labels = namespace.metadata.labels.clone().unwrap_or_default();
        Arc::make_mut(&mut self.namespaces).insert(name, labels);
    }

    pub fn remove_namespace(&mut self, name: &str) {
        Arc::make_mut(&mut self.namespaces).remove(name);
    }

    /// Brings `snapshot` up to date: swaps in the nodes changed since it was taken, or
    /// rebuilds its lists when nodes were added, removed or relabelled.
    pub fn update_snapshot(&self, snapshot: &mut Snapshot) -> SnapshotUpdate {
        let mut update = SnapshotUpdate::default();
        if !Arc::ptr_eq(&snapshot.images, &self.images) {
            snapshot.images = self.images.clone();
        }
        if !Arc::ptr_eq(&snapshot.namespaces, &self.namespaces) {
            snapshot.namespaces = self.namespaces.clone();
        }
        let mut rebuild = snapshot.node_set_generation != self.node_set_generation;
        if !rebuild {
            for (_, name) in self.recency.range(snapshot.generation + 1..) {
                let Some(node) = self.nodes.get(name) else {
                    continue;
                };
                if node.data().is_none() {
                    continue;
                }
                if !snapshot.replace(node.clone()) {
                    rebuild = true;
                    break;
                }
                update.nodes_updated += 1;
            }
        }
        if rebuild {
            update.nodes_updated = self
                .recency
                .range(snapshot.generation + 1..)
                .filter(|(_, name)| self.nodes.get(*name).is_some_and(|n| n.data().is_some()))
                .count();
            snapshot.rebuild(
                self.nodes
                    .values()
                    .filter(|n| n.data().is_some())
                    .cloned()
                    .collect(),
            );
            snapshot.node_set_generation = self.node_set_generation;
            update.rebuilt = true;
        }
        snapshot.generation = self.generation;
        update
    }

    fn add_to_node(&mut self, node: &str, pod: Arc<PodInfo>) {
        let entry = self
            .nodes
            .entry(node.to_string())
            .or_insert_with(|| Arc::new(NodeInfo::without_node(node)));
        Arc::make_mut(entry).add_pod(pod);
        self.touch(node);
    }

    fn remove_from_node(&mut self, node: &str, key: &str) {
        let Some(entry) = self.nodes.get_mut(node) else {
            return;
        };
        Arc::make_mut(entry).remove_pod(key);
        if entry.data().is_none() && entry.pods().is_empty() {
            let generation = entry.generation;
            self.nodes.remove(node);
            self.recency.remove(&generation);
        } else {
            self.touch(node);
        }
    }

    /// Stamps node `name` with a new generation.
    fn touch(&mut self, name: &str) {
        let Some(entry) = self.nodes.get_mut(name) else {
            return;
        };
        self.generation += 1;
        let node = Arc::make_mut(entry);
        self.recency.remove(&node.generation);
        node.generation = self.generation;
        self.recency.insert(self.generation, name.to_string());
    }

    fn count_images(&mut self, data: &NodeData, delta: isize) {
        if data.images.is_empty() {
            return;
        }
        let images = Arc::make_mut(&mut self.images);
        for image in data.images.keys() {
            let count = images.entry(image.clone()).or_default();
            *count = count.saturating_add_signed(delta);
            if *count == 0 {
                images.remove(image);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "images": [{"names": ["nginx:1.25"], "sizeBytes": 100}]}
        }))
        .unwrap()
    }

    fn pod(name: &str, node: Option<&str>, cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}
        }))
        .unwrap()
    }

    fn placed(name: &str, node: &str, cpu: &str) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(pod(name, Some(node), cpu))))
    }

    fn requested_cpu(cache: &Cache, node: &str) -> i64 {
        cache.node(node).unwrap().requested().milli_cpu
    }

    #[test]
    fn an_assumed_pod_counts_until_forgotten() {
        let mut cache = Cache::new();
        cache.add_node(node("n1"));
        cache.assume_pod(placed("p", "n1", "1")).unwrap();
        assert!(cache.is_assumed("uid-p"));
        assert_eq!(requested_cpu(&cache, "n1"), 1000);
        assert_eq!(
            cache.assume_pod(placed("p", "n1", "1")),
            Err(CacheError::AlreadyPresent {
                key: "uid-p".into()
            })
        );
        cache.forget_pod("uid-p").unwrap();
        assert_eq!(requested_cpu(&cache, "n1"), 0);
        assert_eq!(cache.pod_count(), 0);
    }

    #[test]
    fn an_assumed_pod_arriving_bound_from_the_watch_is_confirmed() {
        let mut cache = Cache::new();
        cache.add_node(node("n1"));
        cache.assume_pod(placed("p", "n1", "1")).unwrap();
        cache.finish_binding("uid-p", Instant::now());
        cache.add_pod(pod("p", Some("n1"), "1"));
        assert!(!cache.is_assumed("uid-p"));
        assert_eq!(requested_cpu(&cache, "n1"), 1000);
        assert!(cache.forget_pod("uid-p").is_err());
        assert_eq!(requested_cpu(&cache, "n1"), 1000);
    }

    #[test]
    fn a_pod_bound_elsewhere_than_assumed_moves_to_its_real_node() {
        let mut cache = Cache::new();
        cache.add_node(node("n1"));
        cache.add_node(node("n2"));
        cache.assume_pod(placed("p", "n1", "1")).unwrap();
        cache.add_pod(pod("p", Some("n2"), "1"));
        assert_eq!(requested_cpu(&cache, "n1"), 0);
        assert_eq!(requested_cpu(&cache, "n2"), 1000);
    }

    #[test]
    fn assumed_pods_expire_after_the_ttl_once_bound() {
        let mut cache = Cache::new().with_assumed_pod_ttl(Some(Duration::from_secs(30)));
        cache.add_node(node("n1"));
        cache.assume_pod(placed("p", "n1", "1")).unwrap();
        let now = Instant::now();
        assert!(
            cache
                .cleanup_expired_assumed_pods(now + Duration::from_secs(60))
                .is_empty()
        );
        cache.finish_binding("uid-p", now);
        assert!(
            cache
                .cleanup_expired_assumed_pods(now + Duration::from_secs(10))
                .is_empty()
        );
        assert_eq!(
            cache.cleanup_expired_assumed_pods(now + Duration::from_secs(31)),
            vec!["uid-p".to_string()]
        );
        assert_eq!(requested_cpu(&cache, "n1"), 0);
    }

    #[test]
    fn pods_of_an_unknown_node_wait_for_it_and_stay_out_of_snapshots() {
        let mut cache = Cache::new();
        cache.add_pod(pod("p", Some("late"), "500m"));
        let mut snapshot = Snapshot::default();
        cache.update_snapshot(&mut snapshot);
        assert!(snapshot.is_empty());
        cache.add_node(node("late"));
        cache.update_snapshot(&mut snapshot);
        assert_eq!(snapshot.get("late").unwrap().requested().milli_cpu, 500);
        cache.remove_node("late");
        cache.update_snapshot(&mut snapshot);
        assert!(snapshot.is_empty());
        assert_eq!(cache.node("late").unwrap().pods().len(), 1);
        cache.remove_pod(&pod("p", Some("late"), "500m"));
        assert!(cache.node("late").is_none());
    }

    #[test]
    fn incremental_snapshot_copies_only_the_changed_nodes() {
        let mut cache = Cache::new();
        for i in 0..100 {
            cache.add_node(node(&format!("n{i}")));
        }
        let mut snapshot = Snapshot::default();
        let first = cache.update_snapshot(&mut snapshot);
        assert!(first.rebuilt);
        assert_eq!(snapshot.len(), 100);
        let before: Vec<Arc<NodeInfo>> = snapshot.nodes().to_vec();

        cache.assume_pod(placed("p", "n7", "1")).unwrap();
        let second = cache.update_snapshot(&mut snapshot);
        assert_eq!(
            second,
            SnapshotUpdate {
                nodes_updated: 1,
                rebuilt: false
            }
        );
        let changed: Vec<&str> = snapshot
            .nodes()
            .iter()
            .zip(&before)
            .filter(|(now, then)| !Arc::ptr_eq(now, then))
            .map(|(now, _)| now.name())
            .collect();
        assert_eq!(changed, ["n7"]);
        // The old snapshot's copy of n7 was not touched: the cache copied on write.
        let old_n7 = before.iter().find(|n| n.name() == "n7").unwrap();
        assert_eq!(old_n7.requested().milli_cpu, 0);
        assert_eq!(snapshot.get("n7").unwrap().requested().milli_cpu, 1000);

        let third = cache.update_snapshot(&mut snapshot);
        assert_eq!(third.nodes_updated, 0);
    }

    #[test]
    fn image_counts_follow_nodes() {
        let mut cache = Cache::new();
        cache.add_node(node("n1"));
        cache.add_node(node("n2"));
        let mut snapshot = Snapshot::default();
        cache.update_snapshot(&mut snapshot);
        assert_eq!(snapshot.image_node_count("nginx:1.25"), 2);
        cache.remove_node("n1");
        cache.update_snapshot(&mut snapshot);
        assert_eq!(snapshot.image_node_count("nginx:1.25"), 1);
    }
}
