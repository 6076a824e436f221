//! Topology domains: for every node label key, its values (the domains: zones, hosts, ...)
//! numbered densely, with the nodes in each. Built with the snapshot when nodes change.
//!
//! Spread and affinity plugins count matching pods per domain once per cycle into a
//! [`TopologyCounts`]: a vector indexed by domain id per topology key, shared index behind
//! an `Arc`, so a cycle allocates one vector per key rather than one string per domain.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// FNV-1a: a fast hash for the short label keys and values looked up per node in filters
/// (the keys come from node and pod labels, set by cluster users, not by remote attackers).
#[derive(Debug, Default, Clone, Copy)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

/// A hash map with [`Fnv`] hashing.
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// The domains of one topology key.
#[derive(Debug, Clone, Default)]
pub struct TopologyIndex {
    ids: FastMap<String, usize>,
    values: Vec<String>,
    nodes: Vec<Vec<usize>>,
    /// Node position -> domain id (`NONE` for nodes without the label).
    by_position: Vec<u32>,
}

const NONE: u32 = u32::MAX;

impl TopologyIndex {
    /// The id of the domain with label value `value`.
    pub fn id(&self, value: &str) -> Option<usize> {
        self.ids.get(value).copied()
    }

    /// The number of domains.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The label value of domain `id`.
    pub fn value(&self, id: usize) -> &str {
        &self.values[id]
    }

    /// Positions in the snapshot's node list of the nodes in domain `id`.
    pub fn nodes(&self, id: usize) -> &[usize] {
        &self.nodes[id]
    }

    /// The domain of the node at snapshot position `position`.
    pub fn domain_at(&self, position: usize) -> Option<usize> {
        match self.by_position.get(position) {
            Some(&id) if id != NONE => Some(id as usize),
            _ => None,
        }
    }

    /// Adds node `position` to the domain `value`.
    pub(crate) fn insert(&mut self, value: &str, position: usize) {
        let id = match self.ids.get(value) {
            Some(&id) => id,
            None => {
                let id = self.values.len();
                self.ids.insert(value.to_string(), id);
                self.values.push(value.to_string());
                self.nodes.push(Vec::new());
                id
            }
        };
        self.nodes[id].push(position);
        if self.by_position.len() <= position {
            self.by_position.resize(position + 1, NONE);
        }
        self.by_position[position] = u32::try_from(id).unwrap_or(NONE);
    }
}

/// Every topology key of the cluster's node labels and its domains.
pub type Topology = FastMap<String, Arc<TopologyIndex>>;

/// The counts of one topology key.
#[derive(Debug, Clone)]
struct Slot {
    key: String,
    index: Arc<TopologyIndex>,
    counts: Vec<i64>,
}

impl Slot {
    fn domain_of(&self, labels: &BTreeMap<String, String>) -> Option<usize> {
        self.index.id(labels.get(&self.key)?)
    }
}

/// Counts per topology domain, for any number of topology keys.
#[derive(Debug, Clone)]
pub struct TopologyCounts {
    topology: Arc<Topology>,
    slots: Vec<Slot>,
    nonzero: usize,
}

impl TopologyCounts {
    pub fn new(topology: Arc<Topology>) -> Self {
        Self {
            topology,
            slots: Vec::new(),
            nonzero: 0,
        }
    }

    /// The index of `key`, if any node has that label.
    pub fn index(&self, key: &str) -> Option<&TopologyIndex> {
        self.topology.get(key).map(|i| &**i)
    }

    /// The domain id of a node with `labels` for `key`.
    pub fn domain_of(&self, key: &str, labels: &BTreeMap<String, String>) -> Option<usize> {
        self.topology.get(key)?.id(labels.get(key)?)
    }

    fn slot(&self, key: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.key == key)
    }

    /// Adds `delta` to the domain `id` of `key`.
    pub fn add_to_domain(&mut self, key: &str, id: usize, delta: i64) {
        let slot = match self.slots.iter().position(|s| s.key == key) {
            Some(i) => i,
            None => {
                let Some(index) = self.topology.get(key) else {
                    return;
                };
                self.slots.push(Slot {
                    key: key.to_string(),
                    counts: vec![0; index.len()],
                    index: index.clone(),
                });
                self.slots.len() - 1
            }
        };
        let Some(count) = self.slots[slot].counts.get_mut(id) else {
            return;
        };
        let before = *count;
        *count += delta;
        match (before == 0, *count == 0) {
            (true, false) => self.nonzero += 1,
            (false, true) => self.nonzero -= 1,
            _ => {}
        }
    }

    /// Adds `delta` to the domain of a node with `labels` for `key`; nodes without the
    /// label are not counted.
    pub fn add(&mut self, key: &str, labels: &BTreeMap<String, String>, delta: i64) {
        if let Some(id) = self.domain_of(key, labels) {
            self.add_to_domain(key, id, delta);
        }
    }

    /// The count of domain `id` of `key`.
    pub fn get_domain(&self, key: &str, id: usize) -> i64 {
        self.slot(key)
            .and_then(|s| s.counts.get(id).copied())
            .unwrap_or(0)
    }

    /// The count of the domain of a node with `labels` for `key` (0 without the label).
    pub fn get(&self, key: &str, labels: &BTreeMap<String, String>) -> i64 {
        self.slot(key)
            .and_then(|s| s.domain_of(labels).map(|id| s.counts[id]))
            .unwrap_or(0)
    }

    /// The sum over every key of the count of the node's domain.
    pub fn sum(&self, labels: &BTreeMap<String, String>) -> i64 {
        self.slots
            .iter()
            .filter_map(|s| s.domain_of(labels).map(|id| s.counts[id]))
            .sum()
    }

    /// True when, for some key, the node's domain has a positive count.
    pub fn any_positive(&self, labels: &BTreeMap<String, String>) -> bool {
        self.nonzero > 0
            && self
                .slots
                .iter()
                .any(|s| s.domain_of(labels).is_some_and(|id| s.counts[id] > 0))
    }

    /// True when every count is zero.
    pub fn is_empty(&self) -> bool {
        self.nonzero == 0
    }

    /// The keys that have counts.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.key.as_str())
    }

    /// The counts of `key`, by domain id.
    pub fn counts(&self, key: &str) -> &[i64] {
        self.slot(key).map_or(&[], |s| s.counts.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(zone: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("zone".to_string(), zone.to_string())])
    }

    #[test]
    fn counts_follow_domains_and_track_emptiness() {
        let mut index = TopologyIndex::default();
        index.insert("a", 0);
        index.insert("b", 1);
        index.insert("a", 2);
        assert_eq!(index.len(), 2);
        assert_eq!(index.nodes(index.id("a").unwrap()), &[0, 2]);
        assert_eq!(index.domain_at(1), index.id("b"));
        assert_eq!(index.domain_at(7), None);
        let mut topology = Topology::default();
        topology.insert("zone".to_string(), Arc::new(index));
        let topology = Arc::new(topology);
        let mut counts = TopologyCounts::new(topology);
        assert!(counts.is_empty());
        counts.add("zone", &labels("a"), 2);
        counts.add("zone", &labels("missing"), 5);
        counts.add("other", &labels("a"), 5);
        assert_eq!(counts.get("zone", &labels("a")), 2);
        assert_eq!(counts.get("zone", &labels("b")), 0);
        assert!(!counts.is_empty());
        counts.add("zone", &labels("a"), -2);
        assert!(counts.is_empty());
    }
}
