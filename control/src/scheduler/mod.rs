//! The scheduler: places pending pods on nodes, as kube-scheduler does, as pure logic (no
//! I/O). The API wiring feeds it watch events, pops pods, runs a cycle per pod and carries
//! out the decision (bind, evict, report).
//!
//! # Flow of one pod
//!
//! ```text
//! watch events ──> Scheduler::pod_added / node_added / ... ──> Cache (nodes, bound and
//!                                                  │            assumed pods)
//!                                                  └─────────> SchedulingQueue (pending pods)
//! queue.pop() ──> schedule_one(pod):
//!   snapshot   Cache::update_snapshot: swap in only the nodes changed since the last cycle
//!   pre-filter per pod, once: checks, precomputation into CycleState (affinity and spread
//!              counts per topology domain), optional narrowing of the nodes
//!   filter     per node, over a rotating sample: stop after finding
//!              percentageOfNodesToScore feasible nodes (adaptive: 50% - nodes/125, min 5%,
//!              at least 100 nodes); the first plugin to reject a node decides its reason
//!   post-filter when nothing fits: preemption looks for lower-priority victims
//!   pre-score / score / normalise / weights  over the feasible nodes; highest total wins,
//!              ties at random
//!   reserve, permit, assume  the pod counts against the node in the cache at once
//! ──> ScheduleResult::Bind { pod, node }      caller binds (async), then confirm() / forget()
//!     ScheduleResult::Preempt { node, victims, .. }   caller evicts, sets nominatedNodeName
//!     ScheduleResult::Unschedulable { diagnosis }     caller reports diagnosis.message():
//!         "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu},
//!          3 Insufficient cpu. preemption: ..."
//! ```
//!
//! A pod that fails goes back to the queue (unschedulable until a cluster event its
//! rejecting plugins registered, or backoff); a failed bind (`forget`) releases the
//! assumed room and retries the pod.
//!
//! # Where things live
//!
//! - [`framework`]: the extension-point traits, `Status`, `CycleState`; [`registry`]:
//!   plugins by name; [`config`]: the `KubeSchedulerConfiguration`-shaped file; [`profile`]:
//!   a built profile and the code that runs each extension point.
//! - `cache`, `snapshot`, [`topology`], [`pod_index`]: the cluster state, its per-cycle view
//!   and the indexes that keep per-pod work proportional to what matches (nodes per
//!   topology domain, pods per label).
//! - [`queue`]: active / backoff / unschedulable, and the nominator.
//! - `cycle`: [`Scheduler`] itself; [`plugins`]: one file per constraint.
//!
//! # The seam for the API wiring
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::{Arc, Mutex};
//! use skiff_control::scheduler::{ScheduleResult, Scheduler, SchedulerConfig};
//!
//! let config = SchedulerConfig::from_yaml("")?; // the file's text
//! let scheduler = Arc::new(Mutex::new(Scheduler::new(&config)?));
//! let queue = scheduler.lock().unwrap().queue().clone();
//! // Informer handlers call scheduler.lock().unwrap().node_added(node), pod_updated(&old, new), ...
//! while let Some(pod) = queue.pop().await {
//!     let result = scheduler.lock().unwrap().schedule_one(pod);
//!     match result {
//!         ScheduleResult::Bind { pod, node } => {
//!             // POST pods/<name>/binding in a task, then:
//!             // scheduler.lock().unwrap().confirm(&pod)  or  .forget(&pod)
//!         }
//!         ScheduleResult::Unschedulable { pod, diagnosis } => {
//!             // PodScheduled=False, FailedScheduling event with diagnosis.message()
//!         }
//!         ScheduleResult::Preempt { pod, node, victims, .. } => { /* evict, nominate */ }
//!         ScheduleResult::Error { .. } | ScheduleResult::Skipped { .. } => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod cache;
pub mod config;
mod cycle;
pub mod diagnosis;
pub mod framework;
mod node_info;
pub mod plugins;
pub mod pod_index;
mod pod_info;
pub mod profile;
pub mod queue;
pub mod registry;
pub mod runner;
mod snapshot;
pub mod topology;

#[cfg(test)]
mod tests;

pub use cache::{Cache, CacheError, SnapshotUpdate};
pub use config::{ConfigError, SchedulerConfig};
pub use cycle::{ScheduleResult, Scheduler, SkipReason, is_assigned, is_terminal, scheduler_name};
pub use diagnosis::Diagnosis;
pub use framework::{Code, CycleState, Status};
pub use node_info::{NodeData, NodeInfo};
pub use pod_info::{AffinityTerm, HostPort, PodInfo, Resource, pod_key};
pub use profile::Profile;
pub use queue::{QueuedPodInfo, SchedulingQueue};
pub use registry::Registry;
pub use snapshot::Snapshot;
