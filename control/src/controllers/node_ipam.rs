//! Node IPAM: every node without a pod CIDR gets the next free subnet of the cluster CIDR
//! (`--cluster-cidr`, `--node-cidr-mask-size`) in `spec.podCIDR` and `spec.podCIDRs`.
//! CIDRs nodes already carry (their agents may set their own) count as used; the Node
//! objects are the only record, read back at start.

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    net::Ipv4Addr,
    sync::{Arc, Mutex},
};

use serde_json::json;
use skiff_api::{
    client::ClientError,
    k8s_openapi::api::core::v1::Node,
    runtime::{Action, Change, Controller, ObjectKey, Store, WorkQueue, Writer},
};
use tracing::{info, warn};

use super::{
    Context, Stop,
    cluster_api::{ClusterApi, LiveApi, is_not_found},
    feed::{feed, informer},
};
use crate::{apiserver::allocation::Cidr, events::EventType};

/// Why a node could not be given a pod CIDR.
#[derive(Debug, thiserror::Error)]
pub enum NodeIpamError {
    #[error(
        "no free /{mask} left in the cluster CIDR {cluster} for node {node}; widen --cluster-cidr \
         or delete nodes that are gone"
    )]
    Exhausted {
        node: String,
        cluster: String,
        mask: u8,
    },
    #[error("writing spec.podCIDR of node {node}")]
    Write {
        node: String,
        #[source]
        source: ClientError,
    },
}

/// Why the cluster CIDR settings cannot work.
#[derive(Debug, thiserror::Error)]
#[error(
    "--node-cidr-mask-size {mask} must be between the cluster CIDR's prefix /{prefix} and /30, \
     and at most 16 bits longer than it"
)]
pub struct SettingsError {
    mask: u8,
    prefix: u8,
}

/// The cluster CIDR cut into per-node subnets of one size, and which are taken.
#[derive(Debug)]
pub struct CidrSet {
    cluster: Cidr,
    mask: u8,
    state: Mutex<Taken>,
}

#[derive(Debug, Default)]
struct Taken {
    used: BTreeSet<u32>,
    by_node: HashMap<String, u32>,
}

/// One node subnet, `a.b.c.d/len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub len: u8,
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

fn parse_subnet(text: &str) -> Option<Subnet> {
    let (network, len) = text.split_once('/')?;
    Some(Subnet {
        network: network.parse().ok()?,
        len: len.parse().ok().filter(|l| *l <= 32)?,
    })
}

impl CidrSet {
    /// Subnets of `/mask` in `cluster`.
    ///
    /// # Errors
    /// When `mask` is shorter than the cluster's prefix, longer than /30, or makes more
    /// than 65536 subnets.
    pub fn new(cluster: Cidr, mask: u8) -> Result<Self, SettingsError> {
        if mask < cluster.prefix_len || mask > 30 || mask - cluster.prefix_len > 16 {
            return Err(SettingsError {
                mask,
                prefix: cluster.prefix_len,
            });
        }
        Ok(Self {
            cluster,
            mask,
            state: Mutex::default(),
        })
    }

    fn count(&self) -> u32 {
        1 << (self.mask - self.cluster.prefix_len)
    }

    fn base(&self) -> u32 {
        let prefix = u32::from(self.cluster.prefix_len);
        let netmask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        u32::from(self.cluster.network) & netmask
    }

    fn subnet(&self, index: u32) -> Subnet {
        Subnet {
            network: Ipv4Addr::from(self.base() + (index << (32 - u32::from(self.mask)))),
            len: self.mask,
        }
    }

    /// The indexes of the subnets `subnet` overlaps (none if outside the cluster CIDR).
    fn indexes_of(&self, subnet: Subnet) -> std::ops::Range<u32> {
        let size = 1u64 << (32 - u32::from(self.mask));
        let start =
            u64::from(u32::from(subnet.network)) & !((1u64 << (32 - u32::from(subnet.len))) - 1);
        let end = start + (1u64 << (32 - u32::from(subnet.len)));
        let base = u64::from(self.base());
        let limit = base + u64::from(self.count()) * size;
        let (start, end) = (start.max(base), end.min(limit));
        if start >= end {
            return 0..0;
        }
        (((start - base) / size) as u32)..((end - base).div_ceil(size) as u32)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Taken> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks what `node` already carries as used by it.
    pub fn occupy(&self, node: &str, cidr: &str) {
        let Some(subnet) = parse_subnet(cidr) else {
            return;
        };
        let range = self.indexes_of(subnet);
        let mut taken = self.lock();
        if let Some(first) = range.clone().next() {
            taken.by_node.insert(node.to_string(), first);
        }
        taken.used.extend(range);
    }

    /// The subnet for `node`: the one it was given before, else the first free one.
    pub fn allocate(&self, node: &str) -> Option<Subnet> {
        let mut taken = self.lock();
        if let Some(index) = taken.by_node.get(node) {
            return Some(self.subnet(*index));
        }
        let index = (0..self.count()).find(|i| !taken.used.contains(i))?;
        taken.used.insert(index);
        taken.by_node.insert(node.to_string(), index);
        Some(self.subnet(index))
    }

    /// Frees what `node` held (it is gone).
    pub fn release(&self, node: &str) {
        let mut taken = self.lock();
        if let Some(index) = taken.by_node.remove(node) {
            taken.used.remove(&index);
        }
    }

    /// Learns every node's CIDRs (at start, before any allocation).
    pub fn rebuild<'a>(&self, nodes: impl IntoIterator<Item = &'a Node>) {
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            for cidr in node_cidrs(node) {
                self.occupy(&name, &cidr);
            }
        }
    }
}

fn node_cidrs(node: &Node) -> Vec<String> {
    let spec = node.spec.as_ref();
    let mut cidrs: Vec<String> = spec
        .and_then(|s| s.pod_cidr.clone())
        .filter(|c| !c.is_empty())
        .into_iter()
        .collect();
    for cidr in spec.and_then(|s| s.pod_cidrs.clone()).into_iter().flatten() {
        if !cidrs.contains(&cidr) {
            cidrs.push(cidr);
        }
    }
    cidrs
}

/// Reconciles one node (by name) at a time.
#[derive(Debug)]
pub struct Reconciler<A> {
    api: A,
    nodes: Store<Node>,
    cidrs: Arc<CidrSet>,
}

impl<A: ClusterApi> Reconciler<A> {
    pub fn new(api: A, nodes: Store<Node>, cidrs: Arc<CidrSet>) -> Self {
        Self { api, nodes, cidrs }
    }

    /// Gives the node a pod CIDR if it has none; frees it when the node is gone.
    ///
    /// # Errors
    /// When the cluster CIDR is full (with a Warning event) or the write fails.
    pub async fn reconcile(&self, name: &str) -> Result<Action, NodeIpamError> {
        let Some(node) = self.nodes.get(&ObjectKey::cluster(name)) else {
            self.cidrs.release(name);
            return Ok(Action::Done);
        };
        let carried = node_cidrs(&node);
        if !carried.is_empty() {
            for cidr in &carried {
                self.cidrs.occupy(name, cidr);
            }
            return Ok(Action::Done);
        }
        let reference = json!({"apiVersion": "v1", "kind": "Node",
                               "metadata": {"name": name, "uid": node.metadata.uid}});
        let Some(subnet) = self.cidrs.allocate(name) else {
            let error = NodeIpamError::Exhausted {
                node: name.into(),
                cluster: format!(
                    "{}/{}",
                    self.cidrs.cluster.network, self.cidrs.cluster.prefix_len
                ),
                mask: self.cidrs.mask,
            };
            self.api
                .event(
                    &reference,
                    EventType::Warning,
                    "CIDRNotAvailable",
                    &error.to_string(),
                )
                .await;
            return Err(error);
        };
        let cidr = subnet.to_string();
        let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        match self.api.patch("nodes", "", name, patch, "").await {
            Ok(_) => {}
            Err(error) if is_not_found(&error) => {
                self.cidrs.release(name);
                return Ok(Action::Done);
            }
            Err(source) => {
                // Kept for this node: the next attempt asks for the same subnet.
                warn!(node = name, cidr, "writing the pod CIDR failed");
                return Err(NodeIpamError::Write {
                    node: name.into(),
                    source,
                });
            }
        }
        info!(node = name, cidr, "allocated a pod CIDR");
        self.api
            .event(
                &reference,
                EventType::Normal,
                "CIDRAssignment",
                &format!("Node {name} was given pod CIDR {cidr}"),
            )
            .await;
        Ok(Action::Done)
    }
}

/// Runs the controller until `stop` fires.
pub async fn run(context: Context, stop: Stop) {
    let Some((cluster, mask)) = context.options.cluster_cidr else {
        info!("node CIDR allocation is off");
        return;
    };
    let cidrs = match CidrSet::new(cluster, mask) {
        Ok(cidrs) => Arc::new(cidrs),
        Err(error) => {
            tracing::error!(%error, "node CIDR allocation is off");
            return;
        }
    };
    let nodes = informer(&context, "nodes", Writer::<Node>::new());
    let queue: WorkQueue<ObjectKey> = context.queue("nodeipam");
    feed(nodes.subscribe(), queue.clone(), {
        let store = nodes.store();
        move |change: &Change<Node>| match change.object() {
            Some(node) => vec![ObjectKey::of(&**node)],
            None => store.keys(),
        }
    });
    let store = nodes.store();
    tokio::select! {
        () = store.wait_until_ready() => {}
        () = stop.clone().wait() => return,
    }
    // Before any allocation: what nodes carry is taken.
    cidrs.rebuild(store.list().iter().map(|n| &**n));
    let api = LiveApi::new(
        context.client.clone(),
        "node-ipam-controller",
        &context.identity,
    );
    let reconciler = Arc::new(Reconciler::new(api, store, cidrs));
    Controller::new(queue)
        .graceful_shutdown_on(stop.wait())
        .run(1, move |key: ObjectKey| {
            let reconciler = Arc::clone(&reconciler);
            async move { reconciler.reconcile(&key.name).await }
        })
        .await;
    drop(nodes);
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;
    use serde_json::Value;
    use skiff_api::runtime::Event;

    use super::*;
    use crate::controllers::cluster_api::fake::{Call, FakeApi};

    fn cluster(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn node(name: &str, cidr: Option<&str>) -> Value {
        let mut node = json!({"apiVersion": "v1", "kind": "Node",
                              "metadata": {"name": name, "uid": format!("u-{name}"), "resourceVersion": "2"}});
        if let Some(cidr) = cidr {
            node["spec"] = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
        }
        node
    }

    fn nodes(objects: Vec<Value>) -> Store<Node> {
        let mut writer = Writer::new();
        writer.apply(Event::Restarted {
            objects,
            resource_version: "1".into(),
        });
        writer.reader()
    }

    fn assigned(api: &FakeApi) -> Vec<(String, Value)> {
        api.writes()
            .into_iter()
            .filter_map(|c| match c {
                Call::Patch { name, patch, .. } => Some((name, patch["spec"].clone())),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_without_a_cidr_gets_the_next_free_one_and_agent_set_ones_count_as_used() {
        let api = FakeApi::new();
        let cidrs = Arc::new(CidrSet::new(cluster("10.244.0.0/16"), 24).unwrap());
        let store = nodes(vec![node("own", Some("10.244.0.0/24")), node("new", None)]);
        cidrs.rebuild(store.list().iter().map(|n| &**n));
        let r = Reconciler::new(api.clone(), store, cidrs);
        r.reconcile("own").await.unwrap();
        r.reconcile("new").await.unwrap();
        assert_eq!(
            assigned(&api),
            [(
                "new".to_string(),
                json!({"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]})
            )]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cluster_cidr_is_reported_and_a_deleted_node_frees_its_cidr() {
        let api = FakeApi::new();
        let cidrs = Arc::new(CidrSet::new(cluster("10.244.0.0/23"), 24).unwrap());
        let r = Reconciler::new(
            api.clone(),
            nodes(vec![node("a", None), node("b", None), node("c", None)]),
            Arc::clone(&cidrs),
        );
        r.reconcile("a").await.unwrap();
        r.reconcile("b").await.unwrap();
        let error = r.reconcile("c").await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("no free /24 left in the cluster CIDR 10.244.0.0/23"),
            "{error}"
        );
        assert!(
            api.event_reasons()
                .contains(&"CIDRNotAvailable".to_string())
        );
        let r = Reconciler::new(
            api.clone(),
            nodes(vec![node("b", None), node("c", None)]),
            cidrs,
        );
        r.reconcile("a").await.unwrap();
        r.reconcile("c").await.unwrap();
        assert_eq!(assigned(&api).last().unwrap().1["podCIDR"], "10.244.0.0/24");
    }

    #[test]
    fn a_node_asking_again_before_the_cache_catches_up_gets_the_same_cidr() {
        let cidrs = CidrSet::new(cluster("10.244.0.0/16"), 24).unwrap();
        assert_eq!(cidrs.allocate("a"), cidrs.allocate("a"));
        assert_ne!(cidrs.allocate("a"), cidrs.allocate("b"));
    }

    #[test]
    fn mask_sizes_that_cannot_cut_the_cluster_cidr_are_refused() {
        assert!(CidrSet::new(cluster("10.244.0.0/16"), 15).is_err());
        assert!(CidrSet::new(cluster("10.0.0.0/8"), 28).is_err());
        assert!(CidrSet::new(cluster("10.244.0.0/16"), 31).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Nodes allocating at once, a restart that reads the CIDRs back from the nodes, and
        /// more nodes (some bringing their own CIDR): every subnet has one node, inside the
        /// cluster CIDR.
        #[test]
        fn no_two_nodes_ever_share_a_pod_cidr_across_concurrency_and_restarts(
            before in 1usize..40, after in 0usize..40, own in proptest::collection::vec(0u32..64, 0..5),
        ) {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
            runtime.block_on(async {
                let first = Arc::new(CidrSet::new(cluster("10.244.0.0/18"), 24).unwrap());
                for (i, index) in own.iter().enumerate() {
                    first.occupy(&format!("own{i}"), &format!("10.244.{index}.0/24"));
                }
                let tasks: Vec<_> = (0..before).map(|i| {
                    let cidrs = Arc::clone(&first);
                    tokio::spawn(async move { (format!("n{i}"), cidrs.allocate(&format!("n{i}"))) })
                }).collect();
                let mut stored: Vec<Node> = own.iter().enumerate()
                    .map(|(i, index)| serde_json::from_value(node(&format!("own{i}"), Some(&format!("10.244.{index}.0/24")))).unwrap())
                    .collect();
                for task in tasks {
                    let (name, subnet) = task.await.unwrap();
                    if let Some(subnet) = subnet {
                        stored.push(serde_json::from_value(node(&name, Some(&subnet.to_string()))).unwrap());
                    }
                }
                let second = Arc::new(CidrSet::new(cluster("10.244.0.0/18"), 24).unwrap());
                second.rebuild(stored.iter());
                let tasks: Vec<_> = (0..after).map(|i| {
                    let cidrs = Arc::clone(&second);
                    tokio::spawn(async move { cidrs.allocate(&format!("m{i}")) })
                }).collect();
                let mut seen: HashSet<String> = HashSet::new();
                let distinct_own: HashSet<&u32> = own.iter().collect();
                for node in &stored {
                    let cidr = node_cidrs(node)[0].clone();
                    if !node.metadata.name.as_deref().unwrap_or("").starts_with("own") {
                        prop_assert!(seen.insert(cidr), "handed out twice before the restart");
                    }
                }
                for index in &distinct_own {
                    prop_assert!(seen.insert(format!("10.244.{index}.0/24")), "an agent's own CIDR was handed out");
                }
                for task in tasks {
                    if let Some(subnet) = task.await.unwrap() {
                        prop_assert!(subnet.network.octets()[..2] == [10, 244] && subnet.network.octets()[2] < 64);
                        prop_assert!(seen.insert(subnet.to_string()), "{} handed out twice after the restart", subnet);
                    }
                }
                Ok(())
            })?;
        }
    }
}
