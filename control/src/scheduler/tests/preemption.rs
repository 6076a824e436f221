//! Preemption through whole cycles: which node and which victims are chosen, and what
//! happens to the room they leave.

use serde_json::json;

use super::fixtures::{Cluster, names, node, pod, requesting};
use crate::scheduler::ScheduleResult;

fn prio(priority: i32) -> serde_json::Value {
    json!({"spec": {"priority": priority}})
}

fn preempt(
    c: &mut Cluster,
    pod: skiff_api::k8s_openapi::api::core::v1::Pod,
) -> (String, Vec<String>) {
    match c.schedule(pod) {
        ScheduleResult::Preempt {
            node,
            victims,
            diagnosis,
            ..
        } => {
            assert!(
                diagnosis.message().starts_with("0/"),
                "{}",
                diagnosis.message()
            );
            (node, names(&victims))
        }
        other => panic!("expected preemption, got {other:?}"),
    }
}

#[test]
fn preemption_reprieves_the_most_important_pods_that_can_stay() {
    let mut c = Cluster::new(vec![node("n", "4", "8Gi", json!({}))]);
    c.running(requesting("p1", "1", "1Gi", prio(1)), "n");
    c.running(requesting("p2", "1", "1Gi", prio(2)), "n");
    c.running(requesting("p3", "2", "1Gi", prio(3)), "n");
    let (node, victims) = preempt(&mut c, requesting("urgent", "2", "1Gi", prio(10)));
    assert_eq!(node, "n");
    // p3 (most important) is put back first and fits; then p2 and p1 no longer do.
    assert_eq!(victims, ["p1", "p2"]);
}

#[test]
fn the_node_whose_victims_matter_least_is_chosen() {
    let mut c = Cluster::new(vec![
        node("important", "4", "8Gi", json!({})),
        node("two-cheap", "4", "8Gi", json!({})),
        node("one-cheap", "4", "8Gi", json!({})),
    ]);
    c.running(requesting("mid", "4", "1Gi", prio(5)), "important");
    c.running(requesting("low-a", "2", "1Gi", prio(1)), "two-cheap");
    c.running(requesting("low-b", "2", "1Gi", prio(1)), "two-cheap");
    c.running(requesting("low-c", "4", "1Gi", prio(1)), "one-cheap");
    let (node, victims) = preempt(&mut c, requesting("urgent", "3", "1Gi", prio(10)));
    assert_eq!(node, "one-cheap");
    assert_eq!(victims, ["low-c"]);
}

#[test]
fn a_lower_highest_victim_priority_beats_fewer_victims() {
    let mut c = Cluster::new(vec![
        node("important", "4", "8Gi", json!({})),
        node("two-cheap", "4", "8Gi", json!({})),
    ]);
    c.running(requesting("mid", "4", "1Gi", prio(5)), "important");
    c.running(requesting("low-a", "2", "1Gi", prio(1)), "two-cheap");
    c.running(requesting("low-b", "2", "1Gi", prio(1)), "two-cheap");
    let (node, victims) = preempt(&mut c, requesting("urgent", "3", "1Gi", prio(10)));
    assert_eq!(node, "two-cheap");
    assert_eq!(victims, ["low-a", "low-b"]);
}

#[test]
fn pods_of_equal_priority_are_never_victims() {
    let mut c = Cluster::new(vec![node("n", "4", "8Gi", json!({}))]);
    c.running(requesting("peer", "4", "1Gi", prio(10)), "n");
    let diagnosis = c.unschedulable(requesting("urgent", "1", "1Gi", prio(10)));
    assert_eq!(
        diagnosis.message(),
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: \
         1 No preemption victims found for incoming pod."
    );
}

#[test]
fn a_pod_with_preemption_policy_never_does_not_preempt() {
    let mut c = Cluster::new(vec![node("n", "4", "8Gi", json!({}))]);
    c.running(requesting("low", "4", "1Gi", prio(0)), "n");
    let polite = requesting(
        "polite",
        "1",
        "1Gi",
        json!({"spec": {"priority": 10, "preemptionPolicy": "Never"}}),
    );
    let diagnosis = c.unschedulable(polite);
    assert_eq!(
        diagnosis.message(),
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    );
}

#[test]
fn preemption_does_not_consider_nodes_it_cannot_help() {
    let taint =
        json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}});
    let mut c = Cluster::new(vec![
        node("gpu", "4", "8Gi", taint),
        node("n", "4", "8Gi", json!({})),
    ]);
    c.running(requesting("low-gpu", "4", "1Gi", prio(0)), "gpu");
    c.running(requesting("low-n", "4", "1Gi", prio(0)), "n");
    let (node, victims) = preempt(&mut c, requesting("urgent", "2", "1Gi", prio(10)));
    assert_eq!((node.as_str(), victims), ("n", vec!["low-n".to_string()]));
}

#[test]
fn preemption_can_remove_a_pod_that_blocks_through_anti_affinity() {
    let mut c = Cluster::new(vec![node("n", "4", "8Gi", json!({}))]);
    c.running(
        pod(
            "batch",
            json!({"metadata": {"labels": {"app": "batch"}}, "spec": {"priority": 0}}),
        ),
        "n",
    );
    let picky = pod(
        "picky",
        json!({"spec": {"priority": 100, "affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "batch"}}, "topologyKey": "kubernetes.io/hostname"}
        ]}}}}),
    );
    let (node, victims) = preempt(&mut c, picky);
    assert_eq!((node.as_str(), victims), ("n", vec!["batch".to_string()]));
}

#[test]
fn the_room_freed_for_a_nominated_pod_is_kept_from_lower_priority_pods() {
    let mut c = Cluster::new(vec![node("n", "4", "8Gi", json!({}))]);
    let victim = requesting("victim", "4", "1Gi", prio(0));
    c.running(victim.clone(), "n");
    let urgent = requesting("urgent", "3", "1Gi", prio(10));
    let (node, _) = preempt(&mut c, urgent.clone());
    assert_eq!(node, "n");
    assert_eq!(c.scheduler.queue().nominated_pods()["n"].len(), 1);

    // The victim is evicted; a lower-priority pod must not take the room.
    c.scheduler
        .pod_deleted(&super::fixtures::bound(victim, "n"));
    let diagnosis = c.unschedulable(requesting("sneaky", "2", "1Gi", prio(5)));
    assert!(
        diagnosis
            .message()
            .starts_with("0/1 nodes are available: 1 Insufficient cpu.")
    );
    // The nominated pod itself gets its node.
    let mut nominated = urgent;
    nominated.status = Some(serde_json::from_value(json!({"nominatedNodeName": "n"})).unwrap());
    assert_eq!(c.place(nominated), "n");
    assert!(c.scheduler.queue().nominated_pods().is_empty());
}
