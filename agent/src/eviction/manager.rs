//! The eviction manager's loop: observe memory.available, keep the node's MemoryPressure
//! condition (with the transition period), and evict the first pod by rank while a
//! threshold is met, one per pass.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use skiff_api::{client::Client, validation::quantity::Quantity};
use tokio::sync::watch;
use tracing::{info, warn};

use super::{
    ranking::{self, ContainerMemoryUsage, PodMemoryUsage},
    threshold::Threshold,
};
use crate::{
    metrics::{
        cgroupfs::{CgroupFiles, CgroupLayout, read_memory_stats},
        targets::targets,
    },
    pods::{PodManager, qos},
};

/// Pods at or above this priority (`system-cluster-critical` and up) are never evicted.
pub const CRITICAL_PRIORITY: i32 = 2_000_000_000;
/// How long one eviction waits for the pod's containers to stop before the next pass.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Whether the node is under pressure: a threshold was met within the transition period.
#[derive(Clone, Copy, Debug)]
pub struct PressureWindow {
    period: Duration,
    last_met: Option<Instant>,
}

impl PressureWindow {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last_met: None,
        }
    }

    /// Records one observation at `now`; true while the node is under pressure.
    pub fn observe(&mut self, met: bool, now: Instant) -> bool {
        if met {
            self.last_met = Some(now);
        }
        met || self
            .last_met
            .is_some_and(|at| now.duration_since(at) < self.period)
    }
}

/// Watches this node's memory and evicts pods when it runs low.
pub struct EvictionManager {
    pub thresholds: Vec<Threshold>,
    pub transition_period: Duration,
    pub interval: Duration,
    /// The node's memory capacity in bytes (as its NodeStatus reports it).
    pub capacity: u64,
    pub files: Arc<dyn CgroupFiles>,
    pub layout: CgroupLayout,
    /// The node's cgroup, relative to the hierarchies' roots.
    pub cgroup_parent: String,
    /// The pods bound to this node.
    pub pods: Box<dyn Fn() -> Vec<Arc<Pod>> + Send + Sync>,
    pub pod_manager: Arc<PodManager>,
    pub client: Client,
    pub node_name: String,
    /// MemoryPressure, for the node's status.
    pub pressure: watch::Sender<bool>,
}

impl std::fmt::Debug for EvictionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvictionManager")
            .field("thresholds", &self.thresholds)
            .field("capacity", &self.capacity)
            .field("cgroup_parent", &self.cgroup_parent)
            .finish_non_exhaustive()
    }
}

/// A pod that may be evicted, with its memory.
struct Candidate {
    usage: PodMemoryUsage,
    pod: Arc<Pod>,
}

impl EvictionManager {
    /// Observes and evicts every interval until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        if self.thresholds.is_empty() {
            info!("no eviction thresholds (--eviction-hard): pods are never evicted");
            shutdown.await;
            return;
        }
        let mut window = PressureWindow::new(self.transition_period);
        let mut evicted = HashSet::new();
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.pass(&mut window, &mut evicted).await,
                () = &mut shutdown => return,
            }
        }
    }

    /// The memory working set of the cgroup at `relative` (0 when it has no memory files).
    fn working_set(&self, relative: &str) -> u64 {
        read_memory_stats(&*self.files, &self.layout, relative).map_or(0, |m| m.working_set)
    }

    /// The node's memory.available in bytes: capacity minus its subtree's working set.
    fn memory_available(&self) -> i64 {
        self.capacity as i64 - self.working_set(&self.cgroup_parent) as i64
    }

    async fn pass(&self, window: &mut PressureWindow, evicted: &mut HashSet<String>) {
        let available = self.memory_available();
        let met = self
            .thresholds
            .iter()
            .find(|t| t.is_met(available, self.capacity))
            .copied();
        let pressure = window.observe(met.is_some(), Instant::now());
        let changed = self.pressure.send_if_modified(|current| {
            let changed = *current != pressure;
            *current = pressure;
            changed
        });
        if changed {
            info!(pressure, available, "MemoryPressure changed");
        }
        let Some(threshold) = met else {
            return;
        };
        let pods = (self.pods)();
        evicted.retain(|uid| pods.iter().any(|p| p.metadata.uid.as_ref() == Some(uid)));
        let mut candidates = self.candidates(&pods, evicted);
        candidates.sort_by(|a, b| ranking::eviction_order(&a.usage, &b.usage));
        let Some(victim) = candidates.into_iter().next() else {
            warn!(available, "memory is low and no pod can be evicted");
            return;
        };
        let quantity = threshold.quantity(self.capacity);
        let message =
            ranking::eviction_message(&quantity, available, &self.container_usage(&victim.pod));
        warn!(pod = %victim.usage.pod, usage = victim.usage.usage, request = victim.usage.request, %message, "evicting a pod: memory is low");
        let uid = victim.pod.metadata.uid.clone().unwrap_or_default();
        evicted.insert(uid);
        if let Err(error) = self
            .pod_manager
            .evict(&victim.pod, message.clone(), STOP_WAIT)
            .await
        {
            warn!(pod = %victim.usage.pod, error = %crate::error_chain(&error), "evicting the pod");
        }
        self.record_event(&victim.pod, &message).await;
    }

    /// The pods that may be evicted, with their memory.
    fn candidates(&self, pods: &[Arc<Pod>], evicted: &HashSet<String>) -> Vec<Candidate> {
        pods.iter()
            .filter(|pod| {
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
                pod.metadata.deletion_timestamp.is_none()
                    && !matches!(phase, Some("Succeeded" | "Failed"))
                    && priority < CRITICAL_PRIORITY
                    && pod
                        .metadata
                        .uid
                        .as_ref()
                        .is_some_and(|uid| !evicted.contains(uid))
            })
            .map(|pod| {
                let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                let cgroup = qos::pod_cgroup(&self.cgroup_parent, qos::qos_class(pod), uid);
                let usage = self.working_set(&cgroup);
                Candidate {
                    usage: PodMemoryUsage {
                        pod: format!(
                            "{}/{}",
                            pod.metadata.namespace.as_deref().unwrap_or_default(),
                            pod.metadata.name.as_deref().unwrap_or_default()
                        ),
                        priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
                        request: qos::pod_memory_request(pod),
                        usage: usage as i64,
                    },
                    pod: Arc::clone(pod),
                }
            })
            .collect()
    }

    /// The working set and memory request of each of the pod's running containers.
    fn container_usage(&self, pod: &Arc<Pod>) -> Vec<ContainerMemoryUsage> {
        let containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        targets(
            std::slice::from_ref(pod),
            &self.cgroup_parent,
            &*self.files,
            &self.layout,
        )
        .into_iter()
        .filter_map(|target| {
            let container = containers.iter().find(|c| c.name == target.container)?;
            let usage = self.working_set(&target.id);
            Some(ContainerMemoryUsage {
                name: target.container,
                usage: usage as i64,
                request: qos::memory_request(container).unwrap_or_else(|| Quantity::from_millis(0)),
            })
        })
        .collect()
    }

    /// Records the `Evicted` Event on the pod, as kubelet does.
    async fn record_event(&self, pod: &Pod, message: &str) {
        let now = jiff::Timestamp::now();
        let stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": format!("{name}.{:x}", now.as_nanosecond()),
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": name,
                "namespace": namespace,
                "uid": pod.metadata.uid,
            },
            "reason": "Evicted",
            "message": message,
            "type": "Warning",
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": "kubelet", "host": self.node_name},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node_name,
        });
        if let Err(error) = self.client.create("events", &namespace, &event).await {
            warn!(pod = %name, error = %crate::error_chain(&error), "recording the Evicted event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_lasts_the_transition_period_after_the_last_threshold_met() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut window = PressureWindow::new(Duration::from_secs(30));
        assert!(!window.observe(false, at(0)));
        assert!(window.observe(true, at(10)));
        assert!(window.observe(false, at(20)));
        assert!(window.observe(false, at(39)));
        assert!(!window.observe(false, at(40)));
        // Met again: pressure again at once.
        assert!(window.observe(true, at(50)));
        let mut none = PressureWindow::new(Duration::ZERO);
        assert!(none.observe(true, at(0)));
        assert!(!none.observe(false, at(0)));
    }
}
