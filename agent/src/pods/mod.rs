//! The pod lifecycle on this node (kubelet's role): watch the pods bound here, and for each
//! converge what containerd runs to the pod's spec, one reconcile of a pod at a time.
//!
//! Data flows: pods informer (`spec.nodeName=<node>`) -> work queue -> [`worker`] reconcile
//! (namespaces + veth + address, then init containers in order, then containers, restarts
//! with [`backoff`], graceful termination) -> [`status`] built from containerd's view ->
//! written to the API only when it changed. [`qos`] places each pod's cgroup in its tier
//! and [`pod_cgroup`] gives it its pod-level limits. The eviction manager
//! (`crate::eviction`) stops a pod through [`PodManager::evict`]: its next reconcile kills
//! the containers and reports the pod Failed (reason Evicted) instead of restarting them.

pub mod backoff;
pub mod pod_cgroup;
pub mod probes;
pub mod qos;
pub mod status;
pub mod volumes;
pub mod worker;

pub use worker::{PodManager, PodManagerConfig};
