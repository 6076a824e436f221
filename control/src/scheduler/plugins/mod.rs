//! The in-tree plugins, one per constraint, named and weighted as in kube-scheduler's
//! default profile. Each file holds one plugin (or, for `least_allocated`, the scoring
//! strategies of `NodeResourcesFit`) and its unit tests.
//!
//! | plugin | extension points |
//! |---|---|
//! | `PrioritySort` | queue sort |
//! | `NodeUnschedulable` | filter |
//! | `NodeName` | filter |
//! | `TaintToleration` | filter, score |
//! | `NodeAffinity` | pre-filter, filter, pre-score, score |
//! | `NodePorts` | pre-filter, filter |
//! | `NodeResourcesFit` | filter, score (least or most allocated) |
//! | `PodTopologySpread` | pre-filter, filter, pre-score, score |
//! | `InterPodAffinity` | pre-filter, filter, pre-score, score |
//! | `DefaultPreemption` | post-filter |
//! | `NodeResourcesBalancedAllocation` | pre-score, score |
//! | `ImageLocality` | pre-score, score |

pub mod balanced_allocation;
pub mod default_preemption;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod least_allocated;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod priority_sort;
pub mod taint_toleration;

#[cfg(test)]
pub(crate) mod testing;
