//! The pods table: READY, STATUS and RESTARTS computed the way kubectl's `printPod` does,
//! so a pod reads `CrashLoopBackOff`, `Init:0/2`, `Completed` or `Terminating` exactly
//! where kubectl would say so.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};

use super::{RowContext, creation, none_if_empty};
use crate::age;

/// Column titles after NAME.
pub fn headers(wide: bool) -> Vec<&'static str> {
    let mut headers = vec!["READY", "STATUS", "RESTARTS", "AGE"];
    if wide {
        headers.extend(["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]);
    }
    headers
}

/// Cells after NAME.
pub fn row(pod: &Pod, ctx: &RowContext) -> Vec<String> {
    let summary = summarize(pod);
    let mut restarts = summary.restarts.to_string();
    if summary.restarts > 0
        && let Some(last) = summary.last_restart
    {
        let ago = age::human_duration(ctx.now.duration_since(last));
        restarts = format!("{restarts} ({ago} ago)");
    }
    let mut cells = vec![
        format!("{}/{}", summary.ready, summary.total),
        summary.status,
        restarts,
        age::since(creation(&pod.metadata), ctx.now),
    ];
    if ctx.wide {
        let status = pod.status.as_ref();
        let ip = status.and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let nominated = status
            .and_then(|s| s.nominated_node_name.clone())
            .unwrap_or_default();
        cells.extend([
            none_if_empty(ip),
            none_if_empty(node),
            none_if_empty(nominated),
            readiness_gates(pod),
        ]);
    }
    cells
}

/// What kubectl shows about a pod's containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSummary {
    /// Containers that are ready and running.
    pub ready: usize,
    /// Containers in the spec (sidecar init containers included).
    pub total: usize,
    /// The STATUS column.
    pub status: String,
    /// Restarts of the containers counted (init containers while the pod initialises).
    pub restarts: i32,
    /// When the most recent restart happened, if known.
    pub last_restart: Option<Timestamp>,
}

/// READY, STATUS and RESTARTS of a pod, as kubectl's `printPod` computes them.
pub fn summarize(pod: &Pod) -> PodSummary {
    let empty = PodStatus::default();
    let status = pod.status.as_ref().unwrap_or(&empty);
    let spec = pod.spec.as_ref();
    let init_specs = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[]);
    let sidecars = init_specs
        .iter()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .count();
    let total = spec.map_or(0, |s| s.containers.len()) + sidecars;

    let phase = status.phase.clone().unwrap_or_default();
    let mut reason = status
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| phase.clone());
    if let Some(conditions) = &status.conditions
        && conditions.iter().any(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("SchedulingGated")
        })
    {
        reason = "SchedulingGated".to_owned();
    }

    let mut ready = 0;
    let mut restarts = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut note_restart = |container: &ContainerStatus| {
        let finished = container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.finished_at.as_ref())
            .map(|t| t.0);
        if let Some(at) = finished {
            last_restart = Some(last_restart.map_or(at, |prev| prev.max(at)));
        }
    };

    let init_statuses = status.init_container_statuses.as_deref().unwrap_or(&[]);
    let mut initializing = false;
    for (i, container) in init_statuses.iter().enumerate() {
        restarts += container.restart_count;
        if container.restart_count > 0 {
            note_restart(container);
        }
        let state = container.state.as_ref();
        let terminated = state.and_then(|s| s.terminated.as_ref());
        let waiting = state.and_then(|s| s.waiting.as_ref());
        let is_sidecar = init_specs
            .iter()
            .find(|c| c.name == container.name)
            .is_some_and(|c| c.restart_policy.as_deref() == Some("Always"));
        if is_sidecar && container.started == Some(true) {
            if container.ready {
                ready += 1;
            }
            continue;
        }
        if terminated.is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        initializing = true;
        reason = if let Some(t) = terminated {
            match t.reason.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None if t.signal.unwrap_or(0) != 0 => {
                    format!("Init:Signal:{}", t.signal.unwrap_or(0))
                }
                None => format!("Init:ExitCode:{}", t.exit_code),
            }
        } else if let Some(r) = waiting
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            format!("Init:{r}")
        } else {
            format!("Init:{i}/{}", init_specs.len().max(init_statuses.len()))
        };
        break;
    }

    let initialized = status.conditions.as_ref().is_some_and(|c| {
        c.iter()
            .any(|c| c.type_ == "Initialized" && c.status == "True")
    });
    if !initializing || initialized {
        restarts = 0;
        let mut has_running = false;
        for container in status
            .container_statuses
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .rev()
        {
            restarts += container.restart_count;
            if container.restart_count > 0 {
                note_restart(container);
            }
            let state = container.state.as_ref();
            let waiting = state.and_then(|s| s.waiting.as_ref());
            let terminated = state.and_then(|s| s.terminated.as_ref());
            if let Some(r) = waiting
                .and_then(|w| w.reason.as_deref())
                .filter(|r| !r.is_empty())
            {
                reason = r.to_owned();
            } else if let Some(t) = terminated {
                reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                    Some(r) => r.to_owned(),
                    None if t.signal.unwrap_or(0) != 0 => {
                        format!("Signal:{}", t.signal.unwrap_or(0))
                    }
                    None => format!("ExitCode:{}", t.exit_code),
                };
            } else if container.ready && state.is_some_and(|s| s.running.is_some()) {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = status
                .conditions
                .as_ref()
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            reason = if pod_ready { "Running" } else { "NotReady" }.to_owned();
        }
    }

    if pod.metadata.deletion_timestamp.is_some() {
        if status.reason.as_deref() == Some("NodeLost") {
            reason = "Unknown".to_owned();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_owned();
        }
    }

    PodSummary {
        ready,
        total,
        status: reason,
        restarts,
        last_restart,
    }
}

fn readiness_gates(pod: &Pod) -> String {
    let gates = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_deref())
        .unwrap_or(&[]);
    if gates.is_empty() {
        return "<none>".to_owned();
    }
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    let true_gates = gates
        .iter()
        .filter(|g| {
            conditions
                .iter()
                .any(|c| c.type_ == g.condition_type && c.status == "True")
        })
        .count();
    format!("{true_gates}/{}", gates.len())
}
