//! Pods by label, kept with the snapshot, so that counting the pods a selector matches (for
//! topology spread and inter-pod affinity) visits only the nodes holding a pod with one of
//! the selector's required labels rather than every pod in the cluster.
//!
//! Two indexes, both label key -> value -> node position -> count: the labels of the pods on
//! each node, and the labels the pods' required anti-affinity terms select on (one
//! `key=value`/`key in (...)` requirement per term; terms without one are listed apart).
//! Candidates from an index are a superset: callers still match each pod in full.

use std::collections::{BTreeMap, HashMap};

use skiff_api::selector::{LabelSelector, Requirement};

use super::pod_info::PodInfo;
use super::topology::FastMap;

/// label key -> value -> node position -> count.
#[derive(Debug, Clone, Default)]
struct LabelIndex {
    map: FastMap<String, FastMap<String, HashMap<usize, u32>>>,
}

impl LabelIndex {
    fn add(&mut self, key: &str, value: &str, position: usize, delta: i32) {
        if delta > 0 {
            let values = match self.map.get_mut(key) {
                Some(v) => v,
                None => self.map.entry(key.to_string()).or_default(),
            };
            let nodes = match values.get_mut(value) {
                Some(n) => n,
                None => values.entry(value.to_string()).or_default(),
            };
            *nodes.entry(position).or_default() += delta.unsigned_abs();
            return;
        }
        let Some(values) = self.map.get_mut(key) else {
            return;
        };
        let Some(nodes) = values.get_mut(value) else {
            return;
        };
        if let Some(count) = nodes.get_mut(&position) {
            *count = count.saturating_sub(delta.unsigned_abs());
            if *count == 0 {
                nodes.remove(&position);
            }
        }
        if nodes.is_empty() {
            values.remove(value);
            if values.is_empty() {
                self.map.remove(key);
            }
        }
    }

    fn nodes(&self, key: &str, value: &str) -> Option<&HashMap<usize, u32>> {
        self.map.get(key)?.get(value)
    }

    /// The number of nodes holding `key` with any of `values`.
    fn spread(&self, key: &str, values: &[String]) -> usize {
        values
            .iter()
            .filter_map(|v| self.nodes(key, v))
            .map(HashMap::len)
            .sum()
    }
}

/// The first requirement of a selector that names label values, as (key, values).
fn indexable(selector: &LabelSelector) -> impl Iterator<Item = (&str, &[String])> {
    selector.requirements.iter().filter_map(|r| match r {
        Requirement::Equals { key, value } => Some((key.as_str(), std::slice::from_ref(value))),
        Requirement::In { key, values } => Some((key.as_str(), values.as_slice())),
        _ => None,
    })
}

/// Pods and their anti-affinity terms by label, by node position.
#[derive(Debug, Clone, Default)]
pub struct PodIndex {
    labels: LabelIndex,
    anti_terms: LabelIndex,
    anti_unindexed: HashMap<usize, u32>,
}

impl PodIndex {
    /// Counts (`delta` 1) or uncounts (-1) `pod` on the node at `position`.
    pub(crate) fn add_pod(&mut self, position: usize, pod: &PodInfo, delta: i32) {
        for (key, value) in pod.labels() {
            self.labels.add(key, value, position, delta);
        }
        for term in &pod.required_anti_affinity {
            let first = term.selector.as_ref().and_then(|s| indexable(s).next());
            match first {
                Some((key, values)) => {
                    for value in values {
                        self.anti_terms.add(key, value, position, delta);
                    }
                }
                None => {
                    let count = self.anti_unindexed.entry(position).or_default();
                    *count = count.saturating_add_signed(delta);
                    if *count == 0 {
                        self.anti_unindexed.remove(&position);
                    }
                }
            }
        }
    }

    /// Node positions (sorted, distinct) that may hold a pod `selector` matches, or `None`
    /// when the selector names no label value (any node may).
    pub fn candidate_nodes(&self, selector: &LabelSelector) -> Option<Vec<usize>> {
        let (key, values) = indexable(selector).min_by_key(|(k, v)| self.labels.spread(k, v))?;
        let mut positions: Vec<usize> = values
            .iter()
            .filter_map(|v| self.labels.nodes(key, v))
            .flat_map(|nodes| nodes.keys().copied())
            .collect();
        positions.sort_unstable();
        positions.dedup();
        Some(positions)
    }

    /// Node positions (sorted, distinct) holding a pod with a required anti-affinity term
    /// that may select a pod with `labels`.
    pub fn anti_affinity_candidates(&self, labels: &BTreeMap<String, String>) -> Vec<usize> {
        let mut positions: Vec<usize> = self.anti_unindexed.keys().copied().collect();
        for (key, value) in labels {
            if let Some(nodes) = self.anti_terms.nodes(key, value) {
                positions.extend(nodes.keys().copied());
            }
        }
        positions.sort_unstable();
        positions.dedup();
        positions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testing::pod;
    use serde_json::json;

    #[test]
    fn candidates_are_the_nodes_holding_the_rarest_required_label() {
        let mut index = PodIndex::default();
        let web =
            pod(json!({"metadata": {"name": "a", "labels": {"app": "web", "tier": "front"}}}));
        let db = pod(json!({"metadata": {"name": "b", "labels": {"app": "db", "tier": "front"}}}));
        index.add_pod(0, &web, 1);
        index.add_pod(1, &db, 1);
        index.add_pod(2, &web, 1);
        let selector = LabelSelector::parse("tier=front,app=db").unwrap();
        assert_eq!(index.candidate_nodes(&selector), Some(vec![1]));
        let selector = LabelSelector::parse("app in (web, db)").unwrap();
        assert_eq!(index.candidate_nodes(&selector), Some(vec![0, 1, 2]));
        assert_eq!(
            index.candidate_nodes(&LabelSelector::parse("app").unwrap()),
            None
        );
        index.add_pod(2, &web, -1);
        let selector = LabelSelector::parse("app=web").unwrap();
        assert_eq!(index.candidate_nodes(&selector), Some(vec![0]));
    }

    #[test]
    fn anti_affinity_terms_are_found_by_the_labels_they_select() {
        let mut index = PodIndex::default();
        let guard = pod(
            json!({"metadata": {"name": "g"}, "spec": {"affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}
            ]}}}}),
        );
        index.add_pod(3, &guard, 1);
        let web = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let db = BTreeMap::from([("app".to_string(), "db".to_string())]);
        assert_eq!(index.anti_affinity_candidates(&web), vec![3]);
        assert!(index.anti_affinity_candidates(&db).is_empty());
        index.add_pod(3, &guard, -1);
        assert!(index.anti_affinity_candidates(&web).is_empty());
    }
}
