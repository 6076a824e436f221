//! `DefaultPreemption`: when no node fits, find a node where evicting pods of strictly
//! lower priority makes the pod fit, choosing the fewest and least important victims.
//!
//! As kube-scheduler: only nodes rejected with `Unschedulable` (not `...AndUnresolvable`)
//! are candidates; on each, a dry run removes every lower-priority pod, checks the pod fits,
//! then puts back ("reprieves") as many pods as possible, most important first. Among the
//! candidate nodes (a sample: 10% of them, at least 100), the chosen one has the lowest
//! highest victim priority, then the smallest sum of victim priorities, then the fewest
//! victims, then the latest start time of its most important victims. The caller evicts
//! the victims gracefully and sets the pod's `status.nominatedNodeName`; PodDisruptionBudgets
//! are not considered.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use skiff_api::k8s_openapi::jiff::Timestamp;

use crate::scheduler::diagnosis::{ReasonHistogram, fit_error_message};
use crate::scheduler::framework::{
    Code, CycleState, FrameworkHandle, NodeStatuses, Plugin, PostFilterPlugin, PostFilterResult,
    Status,
};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::PodInfo;

pub const NAME: &str = "DefaultPreemption";
/// The reason for a node with no lower-priority pods.
pub const REASON_NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// The reason for nodes preemption cannot help (rejected as unresolvable).
pub const REASON_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";

/// The plugin's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultPreemptionArgs {
    /// The share of candidate nodes to dry-run, in percent.
    #[serde(default = "ten")]
    pub min_candidate_nodes_percentage: usize,
    /// The least number of candidate nodes to dry-run.
    #[serde(default = "hundred")]
    pub min_candidate_nodes_absolute: usize,
}

fn ten() -> usize {
    10
}

fn hundred() -> usize {
    100
}

impl Default for DefaultPreemptionArgs {
    fn default() -> Self {
        Self {
            min_candidate_nodes_percentage: ten(),
            min_candidate_nodes_absolute: hundred(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DefaultPreemption {
    pub args: DefaultPreemptionArgs,
}

impl DefaultPreemption {
    pub fn new(args: DefaultPreemptionArgs) -> Self {
        Self { args }
    }

    fn num_candidates(&self, nodes: usize) -> usize {
        (nodes * self.args.min_candidate_nodes_percentage / 100)
            .max(self.args.min_candidate_nodes_absolute)
            .min(nodes)
    }
}

/// A node where preemption makes the pod fit, with its victims, most important first.
#[derive(Debug, Clone)]
struct Candidate {
    node: usize,
    victims: Vec<Arc<PodInfo>>,
}

/// When the pod started (or `None`: not started, which counts as latest).
fn start_time(pod: &PodInfo) -> Option<Timestamp> {
    pod.pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
}

/// Kubernetes' `MoreImportantPod`: higher priority, then earlier start.
fn more_important(a: &PodInfo, b: &PodInfo) -> std::cmp::Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| match (start_time(a), start_time(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        })
}

/// kube-scheduler's `SelectVictimsOnNode`: the smallest set of lower-priority pods whose
/// removal lets the pod fit, or the status saying why none does.
fn select_victims(
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    handle: &dyn FrameworkHandle,
) -> Result<Vec<Arc<PodInfo>>, Status> {
    let mut node = node.clone();
    let mut state = state.clone();
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods()
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status::unresolvable(REASON_NO_VICTIMS));
    }
    for victim in &potential {
        node.remove_pod(&victim.key);
        let status = handle.run_pre_filter_remove_pod(&mut state, pod, victim, &node);
        if !status.is_success() {
            return Err(status);
        }
    }
    let status = handle.run_filters_with_nominated_pods(&state, pod, &node);
    if !status.is_success() {
        return Err(status);
    }
    potential.sort_by(|a, b| more_important(a, b));
    let mut victims = Vec::new();
    for candidate in potential {
        node.add_pod(candidate.clone());
        let status = handle.run_pre_filter_add_pod(&mut state, pod, &candidate, &node);
        if !status.is_success() {
            return Err(status);
        }
        if handle
            .run_filters_with_nominated_pods(&state, pod, &node)
            .is_success()
        {
            continue;
        }
        node.remove_pod(&candidate.key);
        let status = handle.run_pre_filter_remove_pod(&mut state, pod, &candidate, &node);
        if !status.is_success() {
            return Err(status);
        }
        victims.push(candidate);
    }
    if victims.is_empty() {
        return Err(Status::error(format!(
            "expected at least one victim pod on node {}",
            node.name()
        )));
    }
    Ok(victims)
}

/// kube-scheduler's `pickOneNodeForPreemption`, without PodDisruptionBudgets.
fn pick_one(candidates: &[Candidate]) -> Option<&Candidate> {
    type Criterion = fn(&Candidate) -> i128;
    let criteria: [Criterion; 4] = [
        // Lowest highest-priority victim.
        |c| -i128::from(c.victims[0].priority),
        // Smallest sum of priorities (shifted to be non-negative).
        |c| {
            -c.victims
                .iter()
                .map(|v| i128::from(v.priority) + i128::from(i32::MAX) + 1)
                .sum::<i128>()
        },
        // Fewest victims.
        |c| -(c.victims.len() as i128),
        // Latest start among the highest-priority victims.
        |c| {
            let top = c.victims[0].priority;
            c.victims
                .iter()
                .filter(|v| v.priority == top)
                .filter_map(|v| start_time(v))
                .min()
                .map_or(i128::MIN, |t| t.as_nanosecond())
        },
    ];
    let mut remaining: Vec<&Candidate> = candidates.iter().collect();
    for criterion in criteria {
        let best = remaining.iter().map(|c| criterion(c)).max()?;
        remaining.retain(|c| criterion(c) == best);
        if remaining.len() == 1 {
            break;
        }
    }
    remaining.first().copied()
}

fn preemption_message(message: impl Into<String>) -> Status {
    Status::unschedulable(format!("preemption: {}", message.into()))
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }

    fn as_post_filter(self: Arc<Self>) -> Option<Arc<dyn PostFilterPlugin>> {
        Some(self)
    }
}

impl PostFilterPlugin for DefaultPreemption {
    fn post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        statuses: &NodeStatuses,
        handle: &dyn FrameworkHandle,
    ) -> (Option<PostFilterResult>, Status) {
        let spec = pod.pod.spec.as_ref();
        if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
            return (
                None,
                preemption_message("not eligible due to preemptionPolicy=Never."),
            );
        }
        let snapshot = handle.snapshot();
        let nominated = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty());
        if let Some(name) = nominated
            && let Some(position) = snapshot.position(name)
            && statuses
                .get(position)
                .is_none_or(|s| s.code != Code::UnschedulableAndUnresolvable)
            && snapshot.nodes()[position]
                .pods()
                .iter()
                .any(|p| p.priority < pod.priority && p.is_terminating())
        {
            return (
                None,
                preemption_message("not eligible due to a terminating pod on the nominated node."),
            );
        }

        let potential: Vec<usize> = statuses
            .iter()
            .filter(|(_, s)| s.code == Code::Unschedulable)
            .map(|(i, _)| i)
            .collect();
        let all = snapshot.len();
        let mut histogram = ReasonHistogram::default();
        if potential.is_empty() {
            histogram.add(REASON_NOT_HELPFUL, all);
            return (None, preemption_message(fit_error_message(all, &histogram)));
        }
        let wanted = self.num_candidates(potential.len());
        let mut hasher = DefaultHasher::new();
        pod.key.hash(&mut hasher);
        let offset = (hasher.finish() % potential.len() as u64) as usize;
        let mut candidates = Vec::new();
        let mut failed = 0;
        for k in 0..potential.len() {
            let position = potential[(offset + k) % potential.len()];
            match select_victims(state, pod, &snapshot.nodes()[position], handle) {
                Ok(victims) => {
                    candidates.push(Candidate {
                        node: position,
                        victims,
                    });
                    if candidates.len() >= wanted {
                        break;
                    }
                }
                Err(status) if status.code == Code::Error => return (None, status),
                Err(status) => {
                    failed += 1;
                    for reason in &status.reasons {
                        histogram.add(reason, 1);
                    }
                }
            }
        }
        let Some(best) = pick_one(&candidates) else {
            histogram.add(REASON_NOT_HELPFUL, all.saturating_sub(failed));
            return (None, preemption_message(fit_error_message(all, &histogram)));
        };
        let node = snapshot.nodes()[best.node].name().to_string();
        let clear_nomination = handle
            .nominated_pods(&node)
            .iter()
            .filter(|p| p.priority < pod.priority)
            .cloned()
            .collect();
        (
            Some(PostFilterResult {
                nominated_node: node,
                victims: best.victims.clone(),
                clear_nomination,
            }),
            Status::success(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::scheduler::plugins::testing::pod;

    fn with_priority(name: &str, priority: i32, start: Option<&str>) -> Arc<PodInfo> {
        Arc::new(pod(json!({
            "metadata": {"name": name},
            "spec": {"priority": priority},
            "status": {"startTime": start}
        })))
    }

    #[test]
    fn more_important_pods_have_higher_priority_or_started_earlier() {
        let a = with_priority("a", 10, Some("2024-01-01T00:00:00Z"));
        let b = with_priority("b", 5, Some("2023-01-01T00:00:00Z"));
        let c = with_priority("c", 5, Some("2024-06-01T00:00:00Z"));
        let d = with_priority("d", 5, None);
        let mut pods = [d.clone(), c.clone(), b.clone(), a.clone()];
        pods.sort_by(|x, y| more_important(x, y));
        let names: Vec<&str> = pods.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
    }

    #[test]
    fn the_candidate_with_the_least_important_victims_is_picked() {
        let low = with_priority("low", 1, None);
        let mid = with_priority("mid", 5, None);
        let candidates = [
            Candidate {
                node: 0,
                victims: vec![mid.clone()],
            },
            Candidate {
                node: 1,
                victims: vec![low.clone(), low.clone()],
            },
            Candidate {
                node: 2,
                victims: vec![low.clone()],
            },
        ];
        assert_eq!(pick_one(&candidates).unwrap().node, 2);
        assert_eq!(pick_one(&candidates[..2]).unwrap().node, 1);
    }

    #[test]
    fn the_candidate_count_is_ten_percent_but_at_least_a_hundred() {
        let plugin = DefaultPreemption::default();
        assert_eq!(plugin.num_candidates(50), 50);
        assert_eq!(plugin.num_candidates(500), 100);
        assert_eq!(plugin.num_candidates(5000), 500);
    }
}
