//! Why a pod fits no node, in kube-scheduler's words: each node's rejection reasons
//! counted per reason, printed as `0/5 nodes are available: 2 Insufficient cpu, 3 node(s)
//! had untolerated taint {dedicated: gpu}.` (the `<count> <reason>` strings sorted as
//! strings, as kube-scheduler does), followed by what preemption said.

use std::collections::BTreeMap;
use std::fmt;

/// Reason -> number of nodes that gave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReasonHistogram {
    counts: BTreeMap<String, usize>,
}

impl ReasonHistogram {
    pub fn add(&mut self, reason: &str, nodes: usize) {
        if nodes == 0 {
            return;
        }
        match self.counts.get_mut(reason) {
            Some(count) => *count += nodes,
            None => {
                self.counts.insert(reason.to_string(), nodes);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The number of nodes that gave `reason`.
    pub fn count(&self, reason: &str) -> usize {
        self.counts.get(reason).copied().unwrap_or(0)
    }

    /// `<count> <reason>` strings, sorted as strings (kube-scheduler's order).
    pub fn sorted(&self) -> Vec<String> {
        let mut entries: Vec<String> = self
            .counts
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        entries.sort();
        entries
    }
}

/// `0/<nodes> nodes are available: <sorted reasons>.`; kube-scheduler's `FitError` text.
pub fn fit_error_message(nodes: usize, histogram: &ReasonHistogram) -> String {
    let mut message = format!("0/{nodes} nodes are available:");
    if !histogram.is_empty() {
        message.push(' ');
        message.push_str(&histogram.sorted().join(", "));
        message.push('.');
    }
    message
}

/// Why a scheduling cycle found no node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// Nodes in the snapshot.
    pub num_all_nodes: usize,
    /// Filter reasons counted over nodes.
    pub reasons: ReasonHistogram,
    /// Set when a pre-filter rejected the pod (then `reasons` is not shown).
    pub pre_filter_message: Option<String>,
    /// What the post-filter (preemption) said.
    pub post_filter_message: Option<String>,
    /// The plugins that rejected the pod: the queue retries it on their events.
    pub unschedulable_plugins: Vec<&'static str>,
}

impl Diagnosis {
    /// The message for the pod's `PodScheduled` condition and `FailedScheduling` event.
    pub fn message(&self) -> String {
        if self.num_all_nodes == 0 {
            return "no nodes available to schedule pods".to_string();
        }
        let mut message = format!("0/{} nodes are available:", self.num_all_nodes);
        match &self.pre_filter_message {
            Some(pre) => {
                message.push(' ');
                message.push_str(pre);
                message.push('.');
            }
            None if !self.reasons.is_empty() => {
                message.push(' ');
                message.push_str(&self.reasons.sorted().join(", "));
                message.push('.');
            }
            None => {}
        }
        if let Some(post) = &self.post_filter_message {
            message.push(' ');
            message.push_str(post);
        }
        message
    }

    pub(crate) fn add_plugin(&mut self, plugin: &'static str) {
        if !plugin.is_empty() && !self.unschedulable_plugins.contains(&plugin) {
            self.unschedulable_plugins.push(plugin);
        }
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_counted_and_sorted_as_kube_scheduler_prints_them() {
        let mut diagnosis = Diagnosis {
            num_all_nodes: 5,
            ..Diagnosis::default()
        };
        diagnosis.reasons.add("Insufficient cpu", 3);
        diagnosis
            .reasons
            .add("node(s) had untolerated taint {dedicated: gpu}", 2);
        assert_eq!(
            diagnosis.message(),
            "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu."
        );
        diagnosis.post_filter_message = Some(
            "preemption: 0/5 nodes are available: 5 No preemption victims found for incoming pod."
                .into(),
        );
        assert!(diagnosis.message().ends_with(
            "3 Insufficient cpu. preemption: 0/5 nodes are available: 5 No preemption victims found for incoming pod."
        ));
    }

    #[test]
    fn a_pre_filter_rejection_replaces_the_per_node_reasons() {
        let diagnosis = Diagnosis {
            num_all_nodes: 3,
            pre_filter_message: Some("pod affinity terms conflict".into()),
            ..Diagnosis::default()
        };
        assert_eq!(
            diagnosis.message(),
            "0/3 nodes are available: pod affinity terms conflict."
        );
    }

    #[test]
    fn an_empty_cluster_says_so() {
        assert_eq!(
            Diagnosis::default().message(),
            "no nodes available to schedule pods"
        );
    }
}
