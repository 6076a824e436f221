//! `TaintToleration`: a node's `NoSchedule` and `NoExecute` taints keep out pods that do not
//! tolerate them; untolerated `PreferNoSchedule` taints lower a node's score.

use std::sync::Arc;

use skiff_api::k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::scheduler::framework::{
    ClusterEvent, CycleState, FilterPlugin, NodeScore, Plugin, ScorePlugin, Status,
    default_normalize_score,
};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::PodInfo;

pub const NAME: &str = "TaintToleration";

#[derive(Debug, Default, Clone, Copy)]
pub struct TaintToleration;

/// Kubernetes' `ToleratesTaint`: the effect matches (or the toleration names none), the key
/// matches (or the toleration names none), and `Exists`, or `Equal` with the same value.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = toleration.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match toleration.operator.as_deref() {
        None | Some("") | Some("Equal") => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        Some("Exists") => true,
        Some(_) => false,
    }
}

/// The pod's tolerations.
pub fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

/// True for the taint effects that keep pods off a node.
pub fn is_do_not_schedule(taint: &Taint) -> bool {
    taint.effect == "NoSchedule" || taint.effect == "NoExecute"
}

/// The first taint passing `filter` that no toleration tolerates.
pub fn find_untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| filter(t))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdded, ClusterEvent::NodeChanged]
    }

    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        Some(self)
    }

    fn as_score(self: Arc<Self>) -> Option<Arc<dyn ScorePlugin>> {
        Some(self)
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let taints = node.taints();
        if taints.is_empty() {
            return Status::success();
        }
        match find_untolerated(taints, tolerations(pod), is_do_not_schedule) {
            None => Status::success(),
            Some(taint) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            )),
        }
    }
}

impl ScorePlugin for TaintToleration {
    /// The number of `PreferNoSchedule` taints not tolerated (lower is better; normalise
    /// reverses it).
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let taints = node.taints();
        if taints.is_empty() {
            return Ok(0);
        }
        let preferred = |t: &&Toleration| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        };
        let count = taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|t| {
                !tolerations(pod)
                    .iter()
                    .filter(preferred)
                    .any(|tol| tolerates(tol, t))
            })
            .count();
        Ok(count as i64)
    }

    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        default_normalize_score(scores, true);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::plugins::testing::{node, pod};
    use serde_json::json;

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(value: serde_json::Value) -> Toleration {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn tolerations_match_by_key_operator_value_and_effect() {
        let gpu = taint("dedicated", Some("gpu"), "NoSchedule");
        assert!(tolerates(
            &toleration(json!({"key": "dedicated", "value": "gpu"})),
            &gpu
        ));
        assert!(tolerates(
            &toleration(json!({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"})),
            &gpu
        ));
        assert!(tolerates(&toleration(json!({"operator": "Exists"})), &gpu));
        assert!(!tolerates(
            &toleration(json!({"key": "dedicated", "value": "cpu"})),
            &gpu
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"})),
            &gpu
        ));
    }

    #[test]
    fn an_untolerated_no_schedule_taint_rejects_with_its_key_and_value() {
        let n = node(json!({"spec": {"taints": [
            {"key": "soft", "effect": "PreferNoSchedule"},
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
        ]}}));
        let status = TaintToleration.filter(&CycleState::new(), &pod(json!({})), &n);
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(
            status.reasons,
            ["node(s) had untolerated taint {dedicated: gpu}"]
        );
        let tolerant =
            pod(json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}}));
        assert!(
            TaintToleration
                .filter(&CycleState::new(), &tolerant, &n)
                .is_success()
        );
    }

    #[test]
    fn a_taint_without_value_shows_an_empty_value() {
        let n = node(json!({"spec": {"taints": [{"key": "maintenance", "effect": "NoExecute"}]}}));
        let status = TaintToleration.filter(&CycleState::new(), &pod(json!({})), &n);
        assert_eq!(
            status.reasons,
            ["node(s) had untolerated taint {maintenance: }"]
        );
    }

    #[test]
    fn nodes_with_fewer_untolerated_prefer_no_schedule_taints_score_higher() {
        let clean = node(json!({}));
        let one = node(json!({"spec": {"taints": [{"key": "a", "effect": "PreferNoSchedule"}]}}));
        let two = node(json!({"spec": {"taints": [
            {"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"}
        ]}}));
        let p = pod(json!({}));
        let state = CycleState::new();
        let mut scores: Vec<NodeScore> = [&clean, &one, &two]
            .iter()
            .enumerate()
            .map(|(index, n)| NodeScore {
                index,
                score: TaintToleration.score(&state, &p, n).unwrap(),
            })
            .collect();
        TaintToleration.normalize(&state, &p, &mut scores);
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [100, 50, 0]
        );
    }
}
