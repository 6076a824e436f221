//! CPU and memory use over the last housekeeping window, for the node API's `Summary` (the
//! kubelet's /stats/summary role behind metrics.k8s.io): each pass's cumulative CPU time and
//! working set of the node's cgroup and of every container are kept for the last two passes,
//! and a summary turns their difference into rates. Nothing is read from cgroupfs here.

use std::{
    collections::BTreeMap,
    sync::{Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use skiff_api::proto::{ContainerUsage, PodUsage, SummaryResponse, Usage};

use super::{cgroupfs::CgroupStats, collector::Snapshot};

/// Cumulative CPU time and the memory working set of one cgroup at one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Point {
    pub cpu_seconds: f64,
    pub working_set: u64,
}

impl Point {
    /// The point of a cgroup read in a pass; `None` when its CPU or memory was not readable.
    fn of(stats: &CgroupStats) -> Option<Self> {
        Some(Self {
            cpu_seconds: stats.cpu.as_ref()?.usage_seconds,
            working_set: stats.memory.as_ref()?.working_set,
        })
    }
}

/// A container's cgroup (its containerd id: a restart is a new cgroup) and its point.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerPoint {
    pub cgroup: String,
    pub point: Point,
}

/// What one pass saw, and when.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageSample {
    pub at: SystemTime,
    pub node: Option<Point>,
    /// By (namespace, pod, container).
    pub containers: BTreeMap<(String, String, String), ContainerPoint>,
}

impl UsageSample {
    /// The usage part of a housekeeping pass taken at `at`.
    pub fn of(snapshot: &Snapshot, at: SystemTime) -> Self {
        let containers = snapshot
            .samples
            .iter()
            .filter(|s| !s.target.container.is_empty())
            .filter_map(|s| {
                let key = (
                    s.target.namespace.clone(),
                    s.target.pod.clone(),
                    s.target.container.clone(),
                );
                let point = ContainerPoint {
                    cgroup: s.target.id.clone(),
                    point: Point::of(&s.stats)?,
                };
                Some((key, point))
            })
            .collect();
        Self {
            at,
            node: snapshot.node.as_ref().and_then(Point::of),
            containers,
        }
    }
}

/// Why there is no summary.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    /// Fewer than two passes have run, or the node's cgroup was unreadable in one of them.
    #[error(
        "metrics not available yet: {passes} of the 2 housekeeping passes a rate needs have read the node's cgroup"
    )]
    NotYet { passes: usize },
}

/// The last two passes (older first).
#[derive(Debug, Default)]
pub struct UsageHistory {
    last_two: Mutex<Vec<UsageSample>>,
}

impl UsageHistory {
    /// Keeps the pass taken at `at`, dropping the older of the two kept.
    pub fn record(&self, snapshot: &Snapshot, at: SystemTime) {
        let sample = UsageSample::of(snapshot, at);
        let mut last_two = self.last_two.lock().unwrap_or_else(PoisonError::into_inner);
        if sample.node.is_none() {
            // A pass that could not read the node starts over: no rate spans it.
            last_two.clear();
            return;
        }
        last_two.push(sample);
        if last_two.len() > 2 {
            last_two.remove(0);
        }
    }

    /// The usage over the window between the last two passes.
    ///
    /// # Errors
    /// [`SummaryError::NotYet`] before there are two passes.
    pub fn summary(&self) -> Result<SummaryResponse, SummaryError> {
        let last_two = self.last_two.lock().unwrap_or_else(PoisonError::into_inner);
        match last_two.as_slice() {
            [older, newer] => summarize(older, newer).ok_or(SummaryError::NotYet { passes: 1 }),
            other => Err(SummaryError::NotYet {
                passes: other.len(),
            }),
        }
    }
}

/// CPU time used per second of `window`, in nanocores (a counter that went back, as a
/// recreated cgroup's does, counts as no use).
pub fn nano_cores(before: f64, after: f64, window: Duration) -> u64 {
    let seconds = window.as_secs_f64();
    if seconds <= 0.0 {
        return 0;
    }
    let rate = (after - before).max(0.0) / seconds * 1e9;
    // Saturating float-to-int conversion; the rate is finite and non-negative here.
    rate.round() as u64
}

fn usage(before: Point, after: Point, window: Duration) -> Usage {
    Usage {
        cpu_nano_cores: nano_cores(before.cpu_seconds, after.cpu_seconds, window),
        memory_working_set_bytes: after.working_set,
    }
}

/// The rates between two passes: the node's, and those of the containers sampled in both
/// (in the same cgroup), grouped by pod. `None` when the clock did not move forward.
pub fn summarize(older: &UsageSample, newer: &UsageSample) -> Option<SummaryResponse> {
    let window = newer.at.duration_since(older.at).ok()?;
    if window.is_zero() {
        return None;
    }
    let node = usage(older.node?, newer.node?, window);
    let mut pods: BTreeMap<(&str, &str), Vec<ContainerUsage>> = BTreeMap::new();
    for ((namespace, pod, container), after) in &newer.containers {
        let key = (namespace.clone(), pod.clone(), container.clone());
        let Some(before) = older.containers.get(&key) else {
            continue;
        };
        if before.cgroup != after.cgroup {
            continue;
        }
        pods.entry((namespace.as_str(), pod.as_str()))
            .or_default()
            .push(ContainerUsage {
                name: container.clone(),
                usage: Some(usage(before.point, after.point, window)),
            });
    }
    let since_epoch = newer.at.duration_since(UNIX_EPOCH).unwrap_or_default();
    Some(SummaryResponse {
        timestamp_unix_nanos: i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX),
        window_nanos: i64::try_from(window.as_nanos()).unwrap_or(i64::MAX),
        node: Some(node),
        pods: pods
            .into_iter()
            .map(|((namespace, name), containers)| PodUsage {
                namespace: namespace.to_string(),
                name: name.to_string(),
                containers,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{
        cgroupfs::{CpuStats, MemoryStats},
        collector::Sample,
        targets::Target,
    };

    fn stats(cpu_seconds: f64, working_set: u64) -> CgroupStats {
        CgroupStats {
            cpu: Some(CpuStats {
                usage_seconds: cpu_seconds,
                ..CpuStats::default()
            }),
            memory: Some(MemoryStats {
                working_set,
                ..MemoryStats::default()
            }),
            ..CgroupStats::default()
        }
    }

    fn sample(pod: &str, container: &str, cgroup: &str, cpu: f64, memory: u64) -> Sample {
        Sample {
            target: Target {
                namespace: "default".into(),
                pod: pod.into(),
                container: container.into(),
                image: "busybox".into(),
                id: cgroup.into(),
                name: cgroup.into(),
            },
            stats: stats(cpu, memory),
            devices: Default::default(),
            network: None,
        }
    }

    fn snapshot(node_cpu: f64, samples: Vec<Sample>) -> Snapshot {
        Snapshot {
            samples,
            node: Some(stats(node_cpu, 100 << 20)),
            ..Snapshot::default()
        }
    }

    #[test]
    fn rates_are_cpu_time_over_the_window_between_the_last_two_passes() {
        assert_eq!(nano_cores(1.0, 1.5, Duration::from_secs(2)), 250_000_000);
        assert_eq!(nano_cores(1.0, 1.0, Duration::from_secs(2)), 0);
        assert_eq!(nano_cores(5.0, 1.0, Duration::from_secs(2)), 0, "reset");
        assert_eq!(nano_cores(0.0, 1.0, Duration::ZERO), 0);

        let history = UsageHistory::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(history.summary(), Err(SummaryError::NotYet { passes: 0 }));
        history.record(
            &snapshot(10.0, vec![sample("busy", "spin", "/p/a", 1.0, 4096)]),
            t0,
        );
        assert_eq!(history.summary(), Err(SummaryError::NotYet { passes: 1 }));
        history.record(
            &snapshot(
                12.0,
                vec![
                    sample("busy", "spin", "/p/a", 2.0, 8192),
                    sample("busy", "pod-level", "", 0.0, 0),
                ],
            ),
            t0 + Duration::from_secs(2),
        );
        history.record(
            &snapshot(
                13.0,
                vec![
                    sample("busy", "spin", "/p/a", 2.5, 8192),
                    // Restarted: a new cgroup has no rate until its second pass.
                    sample("busy", "pod-level", "/p/b", 9.0, 1),
                    sample("new", "app", "/p/c", 0.1, 1),
                ],
            ),
            t0 + Duration::from_secs(3),
        );
        let summary = history.summary().unwrap();
        assert_eq!(summary.window_nanos, 1_000_000_000);
        assert_eq!(summary.timestamp_unix_nanos, 1_003_000_000_000);
        assert_eq!(
            summary.node,
            Some(Usage {
                cpu_nano_cores: 1_000_000_000,
                memory_working_set_bytes: 100 << 20
            })
        );
        assert_eq!(
            summary.pods,
            vec![PodUsage {
                namespace: "default".into(),
                name: "busy".into(),
                containers: vec![ContainerUsage {
                    name: "spin".into(),
                    usage: Some(Usage {
                        cpu_nano_cores: 500_000_000,
                        memory_working_set_bytes: 8192
                    }),
                }],
            }]
        );
    }

    #[test]
    fn a_pass_without_the_node_cgroup_restarts_the_window() {
        let history = UsageHistory::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        history.record(&snapshot(1.0, vec![]), t0);
        history.record(&Snapshot::default(), t0 + Duration::from_secs(1));
        history.record(&snapshot(2.0, vec![]), t0 + Duration::from_secs(2));
        assert_eq!(history.summary(), Err(SummaryError::NotYet { passes: 1 }));
    }
}
