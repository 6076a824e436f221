//! Property tests of the scheduler's invariants over random clusters and pods:
//! every placement passes every filter when re-checked against the cycle's snapshot (and an
//! independent brute-force reading of each constraint), and no node is ever over-committed,
//! whatever the sequence of placements, failed binds and deletions.

use proptest::prelude::*;
use serde_json::{Value, json};
use skiff_api::k8s_openapi::api::core::v1::Pod;

use super::fixtures::{ZONE, bound, node, requesting};
use crate::scheduler::framework::CycleState;
use crate::scheduler::pod_info::PodInfo;
use crate::scheduler::queue::QueuedPodInfo;
use crate::scheduler::{ScheduleResult, Scheduler};

#[derive(Debug, Clone)]
struct NodeSpec {
    cpu: u32,
    memory_gi: u32,
    pods: u32,
    zone: u8,
    tainted: bool,
    cordoned: bool,
}

#[derive(Debug, Clone)]
struct PodSpec {
    cpu_m: u32,
    memory_mi: u32,
    zone_selector: Option<u8>,
    tolerates: bool,
    host_port: Option<u16>,
    anti_affinity: bool,
    spread: bool,
    app: u8,
    priority: i32,
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        1u32..8,
        1u32..16,
        2u32..12,
        0u8..3,
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(cpu, memory_gi, pods, zone, tainted, cordoned)| NodeSpec {
            cpu,
            memory_gi,
            pods,
            zone,
            tainted: tainted && zone == 2,
            cordoned,
        })
}

fn pod_spec() -> impl Strategy<Value = PodSpec> {
    (
        (0u32..3000, 0u32..4096),
        prop::option::weighted(0.2, 0u8..3),
        any::<bool>(),
        prop::option::weighted(0.2, 8000u16..8003),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        0u8..3,
        0i32..3,
    )
        .prop_map(
            |(
                (cpu_m, memory_mi),
                zone_selector,
                tolerates,
                host_port,
                anti_affinity,
                spread,
                app,
                priority,
            )| {
                PodSpec {
                    cpu_m,
                    memory_mi,
                    zone_selector,
                    tolerates,
                    host_port,
                    anti_affinity,
                    spread,
                    app,
                    priority,
                }
            },
        )
}

fn build_node(i: usize, spec: &NodeSpec) -> skiff_api::k8s_openapi::api::core::v1::Node {
    let mut patch = json!({
        "metadata": {"labels": {ZONE: format!("z{}", spec.zone)}},
        "status": {"allocatable": {"pods": spec.pods.to_string()}}
    });
    if spec.tainted {
        patch["spec"] =
            json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]});
    }
    if spec.cordoned {
        patch["spec"]["unschedulable"] = json!(true);
    }
    node(
        &format!("n{i}"),
        &spec.cpu.to_string(),
        &format!("{}Gi", spec.memory_gi),
        patch,
    )
}

fn build_pod(i: usize, spec: &PodSpec) -> Pod {
    let app = format!("app{}", spec.app);
    let mut patch: Value = json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"priority": spec.priority}
    });
    if let Some(zone) = spec.zone_selector {
        patch["spec"]["nodeSelector"] = json!({ZONE: format!("z{zone}")});
    }
    if spec.tolerates {
        patch["spec"]["tolerations"] = json!([{"key": "dedicated", "operator": "Exists"}]);
    }
    if spec.anti_affinity {
        patch["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}
        ]}});
    }
    if spec.spread {
        patch["spec"]["topologySpreadConstraints"] = json!([{
            "maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": app}}
        }]);
    }
    let mut pod = requesting(
        &format!("p{i}"),
        &format!("{}m", spec.cpu_m),
        &format!("{}Mi", spec.memory_mi),
        patch,
    );
    if let Some(port) = spec.host_port {
        pod.spec.as_mut().unwrap().containers[0].ports = Some(vec![
            serde_json::from_value(json!({"containerPort": 80, "hostPort": port})).unwrap(),
        ]);
    }
    pod
}

/// Re-runs the profile's pre-filters and every filter plugin, one by one, for `pod` on
/// `node` against the scheduler's snapshot (the one the cycle used).
fn passes_every_filter(scheduler: &Scheduler, pod: &Pod, node: &str) -> Result<(), String> {
    let profile = scheduler.profile("default-scheduler").unwrap();
    let snapshot = scheduler.snapshot();
    let info = PodInfo::new(std::sync::Arc::new(pod.clone()));
    let mut state = CycleState::new();
    let pre = profile.run_pre_filter(&mut state, &info, snapshot);
    if !pre.status.is_success() {
        return Err(format!("pre-filter: {}", pre.status));
    }
    let node_info = snapshot.get(node).ok_or("node not in snapshot")?;
    for plugin in &profile.filter {
        if state.skips_filter(plugin.name()) {
            continue;
        }
        let status = plugin.filter(&state, &info, node_info);
        if !status.is_success() {
            return Err(format!("{} on {node}: {status}", plugin.name()));
        }
    }
    Ok(())
}

/// An independent, brute-force reading of the constraints the generated pods use, over the
/// snapshot the cycle saw (no plugin, no index): why `node` must not take the pod, if so.
fn oracle_rejects(scheduler: &Scheduler, spec: &PodSpec, app: &str, node: &str) -> Option<String> {
    let snapshot = scheduler.snapshot();
    let info = snapshot.get(node)?;
    let labels = info.labels();
    let zone_of = |n: &crate::scheduler::NodeInfo| n.labels().get(ZONE).cloned();
    let has_app = |p: &PodInfo, app: &str| p.labels().get("app").map(String::as_str) == Some(app);
    let (alloc, used) = (info.allocatable(), info.requested());
    if used.milli_cpu + i64::from(spec.cpu_m) > alloc.milli_cpu
        || used.memory + i64::from(spec.memory_mi) * 1024 * 1024 > alloc.memory
        || info.pods().len() as i64 + 1 > alloc.pods
    {
        return Some("resources".into());
    }
    if info.data()?.unschedulable() {
        return Some("cordoned".into());
    }
    if !info.taints().is_empty() && !spec.tolerates {
        return Some("taint".into());
    }
    if let Some(zone) = spec.zone_selector
        && labels.get(ZONE) != Some(&format!("z{zone}"))
    {
        return Some("node selector".into());
    }
    if let Some(port) = spec.host_port
        && info
            .pods()
            .iter()
            .any(|p| p.host_ports.iter().any(|h| h.port == i32::from(port)))
    {
        return Some("host port".into());
    }
    if spec.anti_affinity && info.pods().iter().any(|p| has_app(p, app)) {
        return Some("anti-affinity".into());
    }
    let repelled = info.pods().iter().any(|p| {
        p.required_anti_affinity.iter().any(|t| {
            t.selector
                .as_ref()
                .is_some_and(|s| s.requirements.iter().any(|r| matches!(r,
                    skiff_api::selector::Requirement::Equals { key, value } if key == "app" && value == app)))
        })
    });
    if repelled {
        return Some("existing anti-affinity".into());
    }
    if spec.spread {
        let eligible = |n: &crate::scheduler::NodeInfo| {
            spec.zone_selector
                .is_none_or(|z| n.labels().get(ZONE) == Some(&format!("z{z}")))
        };
        let mut per_zone: std::collections::BTreeMap<String, i64> = Default::default();
        for n in snapshot.nodes().iter().filter(|n| eligible(n)) {
            let count = n.pods().iter().filter(|p| has_app(p, app)).count() as i64;
            *per_zone.entry(zone_of(n)?).or_default() += count;
        }
        let min = per_zone.values().copied().min().unwrap_or(0);
        let here = per_zone.get(&zone_of(info)?).copied().unwrap_or(0);
        if here + 1 - min > 1 {
            return Some(format!("spread: {here} here, min {min}"));
        }
    }
    None
}

fn check_not_overcommitted(scheduler: &Scheduler, nodes: usize) -> Result<(), TestCaseError> {
    for i in 0..nodes {
        let info = scheduler.cache().node(&format!("n{i}")).unwrap();
        let (alloc, req) = (info.allocatable(), info.requested());
        prop_assert!(
            req.milli_cpu <= alloc.milli_cpu,
            "cpu over-committed on n{i}"
        );
        prop_assert!(req.memory <= alloc.memory, "memory over-committed on n{i}");
        prop_assert!(
            info.pods().len() as i64 <= alloc.pods,
            "too many pods on n{i}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_placed_pod_passes_every_filter_on_its_node(
        nodes in prop::collection::vec(node_spec(), 1..8),
        pods in prop::collection::vec(pod_spec(), 1..30),
    ) {
        let mut scheduler = Scheduler::with_defaults().with_seed(7);
        for (i, n) in nodes.iter().enumerate() {
            scheduler.node_added(build_node(i, n));
        }
        for (i, spec) in pods.iter().enumerate() {
            let pod = build_pod(i, spec);
            if let ScheduleResult::Bind { pod: placed, node } =
                scheduler.schedule_one(QueuedPodInfo::new(pod.clone()))
            {
                if let Err(e) = passes_every_filter(&scheduler, &pod, &node) {
                    prop_assert!(false, "pod p{i} placed on {node} fails: {e}");
                }
                let app = format!("app{}", spec.app);
                if let Some(reason) = oracle_rejects(&scheduler, spec, &app, &node) {
                    prop_assert!(false, "pod p{i} placed on {node} breaks {reason}");
                }
                scheduler.confirm(&placed);
                scheduler.pod_updated(&pod, (*placed).clone());
            }
        }
    }

    #[test]
    fn no_node_is_ever_over_committed(
        nodes in prop::collection::vec(node_spec(), 1..6),
        steps in prop::collection::vec((pod_spec(), 0u8..10), 1..40),
    ) {
        let mut scheduler = Scheduler::with_defaults().with_seed(3);
        for (i, n) in nodes.iter().enumerate() {
            scheduler.node_added(build_node(i, n));
        }
        let mut placed_pods: Vec<Pod> = Vec::new();
        for (i, (spec, action)) in steps.iter().enumerate() {
            let pod = build_pod(i, spec);
            match scheduler.schedule_one(QueuedPodInfo::new(pod.clone())) {
                ScheduleResult::Bind { pod: placed, node } => match action {
                    // The bind fails.
                    0 => { scheduler.forget(&placed); }
                    // Assumed, the watch not yet caught up.
                    1 | 2 => { scheduler.confirm(&placed); placed_pods.push(bound(pod, &node)); }
                    _ => {
                        scheduler.confirm(&placed);
                        scheduler.pod_updated(&pod, (*placed).clone());
                        placed_pods.push(bound(pod, &node));
                    }
                },
                ScheduleResult::Preempt { victims, .. } => {
                    for v in victims {
                        scheduler.pod_deleted(&v);
                    }
                }
                _ => {}
            }
            // Now and then a placed pod goes away.
            if *action == 9 && !placed_pods.is_empty() {
                let gone = placed_pods.remove(i % placed_pods.len());
                scheduler.pod_deleted(&gone);
            }
            check_not_overcommitted(&scheduler, nodes.len())?;
        }
    }
}
