//! Whole scheduling cycles on small clusters: each constraint sends the pod where it must,
//! or the cycle reports kube-scheduler's aggregated message.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::fixtures::{Cluster, ZONE, node, pod, requesting};
use crate::scheduler::framework::{CycleState, FilterPlugin, Plugin, ReservePlugin, Status};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::PodInfo;
use crate::scheduler::queue::QueuedPodInfo;
use crate::scheduler::{Registry, ScheduleResult, Scheduler, SchedulerConfig, SkipReason};

#[test]
fn a_pod_lands_on_the_only_node_with_room() {
    let mut c = Cluster::new(vec![
        node("small", "1", "1Gi", json!({})),
        node("big", "8", "16Gi", json!({})),
    ]);
    assert_eq!(c.place(requesting("p", "2", "1Gi", json!({}))), "big");
}

#[test]
fn the_message_counts_each_reason_over_nodes_as_kube_scheduler_does() {
    let gpu =
        json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}});
    let mut c = Cluster::new(vec![
        node("n1", "4", "8Gi", json!({})),
        node("n2", "4", "8Gi", json!({})),
        node("n3", "4", "8Gi", json!({})),
        node("g1", "4", "8Gi", gpu.clone()),
        node("g2", "4", "8Gi", gpu),
    ]);
    for n in ["n1", "n2", "n3"] {
        c.running(requesting(&format!("busy-{n}"), "3", "1Gi", json!({})), n);
    }
    let diagnosis = c.unschedulable(requesting("p", "2", "1Gi", json!({})));
    assert_eq!(
        diagnosis.message(),
        "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, \
         3 Insufficient cpu. preemption: 0/5 nodes are available: \
         2 Preemption is not helpful for scheduling, 3 No preemption victims found for incoming pod."
    );
    assert_eq!(diagnosis.reasons.count("Insufficient cpu"), 3);
    let plugins: HashSet<_> = diagnosis.unschedulable_plugins.iter().copied().collect();
    assert_eq!(
        plugins,
        HashSet::from(["NodeResourcesFit", "TaintToleration"])
    );
}

#[test]
fn a_node_selector_sends_the_pod_to_a_matching_node() {
    let mut c = Cluster::new(vec![
        node(
            "hdd",
            "4",
            "8Gi",
            json!({"metadata": {"labels": {"disk": "hdd"}}}),
        ),
        node(
            "ssd",
            "4",
            "8Gi",
            json!({"metadata": {"labels": {"disk": "ssd"}}}),
        ),
    ]);
    assert_eq!(
        c.place(pod("p", json!({"spec": {"nodeSelector": {"disk": "ssd"}}}))),
        "ssd"
    );
    let diagnosis = c.unschedulable(pod(
        "q",
        json!({"spec": {"nodeSelector": {"disk": "nvme"}}}),
    ));
    assert_eq!(
        diagnosis.message(),
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
}

#[test]
fn a_tainted_node_takes_only_tolerating_pods() {
    let taint =
        json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}});
    let mut c = Cluster::new(vec![node("gpu", "4", "8Gi", taint)]);
    let diagnosis = c.unschedulable(pod("plain", json!({})));
    assert!(
        diagnosis.message().starts_with(
            "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}."
        )
    );
    let tolerant = pod(
        "tolerant",
        json!({"spec": {"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
        ]}}),
    );
    assert_eq!(c.place(tolerant), "gpu");
}

#[test]
fn prefer_no_schedule_taints_steer_pods_away_when_there_is_a_choice() {
    let soft = json!({"spec": {"taints": [{"key": "spot", "effect": "PreferNoSchedule"}]}});
    let mut c = Cluster::new(vec![
        node("spot", "4", "8Gi", soft),
        node("stable", "4", "8Gi", json!({})),
    ]);
    assert_eq!(c.place(pod("p", json!({}))), "stable");
}

#[test]
fn a_cordoned_node_is_skipped() {
    let mut c = Cluster::new(vec![
        node(
            "cordoned",
            "64",
            "64Gi",
            json!({"spec": {"unschedulable": true}}),
        ),
        node("open", "2", "2Gi", json!({})),
    ]);
    assert_eq!(c.place(requesting("p", "1", "1Gi", json!({}))), "open");
    let diagnosis = c.unschedulable(requesting("q", "2", "1Gi", json!({})));
    assert!(
        diagnosis.message().starts_with(
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) were unschedulable."
        )
    );
}

#[test]
fn host_ports_keep_two_pods_off_one_node() {
    let with_port = |name: &str| {
        pod(
            name,
            json!({"spec": {"containers": [{"name": "app", "image": "app:1",
            "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}),
        )
    };
    let mut c = Cluster::new(vec![
        node("a", "4", "8Gi", json!({})),
        node("b", "4", "8Gi", json!({})),
    ]);
    let first = c.place(with_port("p1"));
    let second = c.place(with_port("p2"));
    assert_ne!(first, second);
    let diagnosis = c.unschedulable(with_port("p3"));
    assert!(diagnosis.message().starts_with(
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
    ));
}

#[test]
fn required_anti_affinity_puts_replicas_on_distinct_hosts() {
    let replica = |name: &str| {
        pod(
            name,
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
            ]}}}}),
        )
    };
    let mut c = Cluster::new(
        (1..=3)
            .map(|i| node(&format!("n{i}"), "4", "8Gi", json!({})))
            .collect(),
    );
    let hosts: HashSet<String> = (0..3)
        .map(|i| c.place(replica(&format!("web-{i}"))))
        .collect();
    assert_eq!(hosts.len(), 3);
    let diagnosis = c.unschedulable(replica("web-3"));
    assert!(
        diagnosis.message().starts_with(
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
        ),
        "{}",
        diagnosis.message()
    );
}

#[test]
fn a_plain_pod_is_kept_away_from_a_pod_whose_anti_affinity_rejects_it() {
    let mut c = Cluster::new(vec![
        node("a", "4", "8Gi", json!({})),
        node("b", "4", "8Gi", json!({})),
    ]);
    c.running(
        pod("loner", json!({"spec": {"affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "noisy"}}, "topologyKey": "kubernetes.io/hostname"}
            ]}}}})),
        "a",
    );
    for i in 0..3 {
        assert_eq!(
            c.place(pod(
                &format!("noisy-{i}"),
                json!({"metadata": {"labels": {"app": "noisy"}}})
            )),
            "b"
        );
    }
}

#[test]
fn required_affinity_follows_the_target_pods_zone() {
    let zoned = |name: &str, zone: &str| {
        node(
            name,
            "4",
            "8Gi",
            json!({"metadata": {"labels": {ZONE: zone}}}),
        )
    };
    let mut c = Cluster::new(vec![
        zoned("a1", "a"),
        zoned("a2", "a"),
        zoned("b1", "b"),
        zoned("b2", "b"),
    ]);
    c.running(
        pod("db", json!({"metadata": {"labels": {"app": "db"}}})),
        "b2",
    );
    let client = |name: &str| {
        pod(
            name,
            json!({"spec": {"affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": ZONE}
            ]}}}}),
        )
    };
    for i in 0..4 {
        let node = c.place(client(&format!("client-{i}")));
        assert!(node.starts_with('b'), "client landed on {node}");
    }
}

#[test]
fn topology_spread_balances_replicas_over_zones() {
    let zoned = |name: &str, zone: &str| {
        node(
            name,
            "16",
            "32Gi",
            json!({"metadata": {"labels": {ZONE: zone}}}),
        )
    };
    let mut c = Cluster::new(vec![
        zoned("a1", "a"),
        zoned("a2", "a"),
        zoned("a3", "a"),
        zoned("b1", "b"),
    ]);
    let replica = |name: &str| {
        pod(
            name,
            json!({"metadata": {"labels": {"app": "api"}}, "spec": {"topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "api"}}
            }]}}),
        )
    };
    let mut per_zone = [0usize, 0];
    for i in 0..6 {
        let node = c.place(replica(&format!("api-{i}")));
        per_zone[usize::from(node.starts_with('b'))] += 1;
        assert!(per_zone[0].abs_diff(per_zone[1]) <= 1, "{per_zone:?}");
    }
    assert_eq!(per_zone, [3, 3]);
}

#[test]
fn least_allocated_scoring_spreads_pods_over_equal_nodes() {
    let mut c = Cluster::new(
        (1..=4)
            .map(|i| node(&format!("n{i}"), "4", "8Gi", json!({})))
            .collect(),
    );
    let nodes: HashSet<String> = (0..4)
        .map(|i| c.place(requesting(&format!("p{i}"), "1", "1Gi", json!({}))))
        .collect();
    assert_eq!(nodes.len(), 4);
}

#[test]
fn image_locality_prefers_the_node_that_has_the_image() {
    let image =
        json!({"status": {"images": [{"names": ["registry/big:1"], "sizeBytes": 900_000_000}]}});
    let mut c = Cluster::new(vec![
        node("cold", "4", "8Gi", json!({})),
        node("warm", "4", "8Gi", image),
    ]);
    let p = pod(
        "p",
        json!({"spec": {"containers": [{"name": "app", "image": "registry/big:1"}]}}),
    );
    assert_eq!(c.place(p), "warm");
}

#[test]
fn preferred_node_affinity_wins_when_nothing_else_differs() {
    let mut c = Cluster::new(vec![
        node(
            "a",
            "4",
            "8Gi",
            json!({"metadata": {"labels": {"tier": "gold"}}}),
        ),
        node("b", "4", "8Gi", json!({})),
    ]);
    let p = pod(
        "p",
        json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "preference": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]}}
        ]}}}}),
    );
    assert_eq!(c.place(p), "a");
}

#[test]
fn nodes_excluded_by_a_pre_filter_are_reported_with_the_plugin() {
    let mut c = Cluster::new(vec![
        node("n1", "4", "8Gi", json!({})),
        node("n2", "1", "8Gi", json!({})),
        node("n3", "4", "8Gi", json!({})),
    ]);
    let p = requesting(
        "p",
        "2",
        "1Gi",
        json!({"spec": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}
        ]}}}}}),
    );
    let diagnosis = c.unschedulable(p);
    assert!(
        diagnosis.message().starts_with(
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]."
        ),
        "{}",
        diagnosis.message()
    );
}

#[test]
fn assumed_pods_count_before_their_bind_is_confirmed() {
    let mut c = Cluster::new(vec![node("n", "4", "8Gi", json!({}))]);
    for i in 0..4 {
        match c.schedule(requesting(&format!("p{i}"), "1", "1Gi", json!({}))) {
            ScheduleResult::Bind { node, .. } => assert_eq!(node, "n"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        c.scheduler.cache().node("n").unwrap().requested().milli_cpu,
        4000
    );
    let diagnosis = c.unschedulable(requesting("p4", "1", "1Gi", json!({})));
    assert!(
        diagnosis
            .message()
            .starts_with("0/1 nodes are available: 1 Insufficient cpu.")
    );
}

#[test]
fn a_failed_bind_releases_the_room_and_retries_the_pod() {
    let mut c = Cluster::new(vec![node("n", "1", "8Gi", json!({}))]);
    let ScheduleResult::Bind { pod: placed, .. } =
        c.schedule(requesting("p", "1", "1Gi", json!({})))
    else {
        panic!("expected a bind");
    };
    assert!(c.scheduler.cache().is_assumed("uid-p"));
    assert!(c.scheduler.forget(&placed));
    assert!(
        !c.scheduler.forget(&placed),
        "a second forget finds nothing"
    );
    assert_eq!(
        c.scheduler.cache().node("n").unwrap().requested().milli_cpu,
        0
    );
    assert!(c.scheduler.queue().contains("uid-p"));
    assert_eq!(c.place(requesting("q", "1", "1Gi", json!({}))), "n");
}

#[test]
fn a_confirmed_bind_becomes_a_bound_pod_when_the_watch_reports_it() {
    let mut c = Cluster::new(vec![node("n", "4", "8Gi", json!({}))]);
    c.place(requesting("p", "1", "1Gi", json!({})));
    assert!(!c.scheduler.cache().is_assumed("uid-p"));
    assert_eq!(c.scheduler.cache().pod_node("uid-p"), Some("n"));
    // A finished pod frees its room.
    let mut done = super::fixtures::bound(requesting("p", "1", "1Gi", json!({})), "n");
    done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
    let running = super::fixtures::bound(requesting("p", "1", "1Gi", json!({})), "n");
    c.scheduler.pod_updated(&running, done);
    assert_eq!(c.scheduler.cache().pod_count(), 0);
}

#[test]
fn an_unschedulable_pod_is_retried_when_a_node_joins() {
    let mut c = Cluster::new(vec![node("small", "1", "1Gi", json!({}))]);
    c.scheduler
        .pod_added(requesting("p", "2", "1Gi", json!({})));
    let queued = c.scheduler.queue().try_pop().expect("the pod is active");
    let result = c.scheduler.schedule_one(queued);
    assert!(
        matches!(result, ScheduleResult::Unschedulable { .. }),
        "{result:?}"
    );
    assert_eq!(c.scheduler.queue().lengths(), (0, 0, 1));
    c.scheduler.node_added(node("big", "4", "8Gi", json!({})));
    let (active, backoff, unschedulable) = c.scheduler.queue().lengths();
    assert_eq!((active + backoff, unschedulable), (1, 0));
}

#[test]
fn pods_for_other_schedulers_and_deleted_pods_are_skipped() {
    let mut c = Cluster::new(vec![node("n", "4", "8Gi", json!({}))]);
    let other = pod("other", json!({"spec": {"schedulerName": "someone-else"}}));
    assert!(!c.scheduler.responsible_for(&other));
    match c.schedule(other) {
        ScheduleResult::Skipped { reason, .. } => assert_eq!(reason, SkipReason::OtherScheduler),
        r => panic!("{r:?}"),
    }
    let deleting = pod(
        "gone",
        json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
    );
    match c.schedule(deleting) {
        ScheduleResult::Skipped { reason, .. } => assert_eq!(reason, SkipReason::Deleted),
        r => panic!("{r:?}"),
    }
    let ScheduleResult::Bind { .. } = c.schedule(pod("p", json!({}))) else {
        panic!()
    };
    match c.schedule(pod("p", json!({}))) {
        ScheduleResult::Skipped { reason, .. } => assert_eq!(reason, SkipReason::AlreadyAssumed),
        r => panic!("{r:?}"),
    }
}

#[test]
fn an_empty_cluster_reports_no_nodes() {
    let mut c = Cluster::new(vec![]);
    assert_eq!(
        c.unschedulable(pod("p", json!({}))).message(),
        "no nodes available to schedule pods"
    );
}

#[test]
fn a_second_profile_schedules_its_own_pods_with_its_own_scoring() {
    let yaml = "profiles:\n- schedulerName: default-scheduler\n- schedulerName: packer\n  pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {type: MostAllocated}}\n  plugins:\n    score:\n      disabled: [{name: NodeResourcesBalancedAllocation}]\n";
    let mut c = Cluster::with_config(
        yaml,
        vec![
            node("a", "4", "8Gi", json!({})),
            node("b", "4", "8Gi", json!({})),
        ],
    );
    c.running(requesting("existing", "2", "2Gi", json!({})), "a");
    let packed = requesting(
        "packed",
        "1",
        "1Gi",
        json!({"spec": {"schedulerName": "packer"}}),
    );
    assert_eq!(c.place(packed), "a");
    assert_eq!(c.place(requesting("spread", "1", "1Gi", json!({}))), "b");
}

/// A filter that counts its calls.
#[derive(Debug, Default)]
struct CountingFilter(AtomicUsize);

impl Plugin for CountingFilter {
    fn name(&self) -> &'static str {
        "CountingFilter"
    }
    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        Some(self)
    }
}

impl FilterPlugin for CountingFilter {
    fn filter(&self, _: &CycleState, _: &PodInfo, _: &NodeInfo) -> Status {
        self.0.fetch_add(1, Ordering::Relaxed);
        Status::success()
    }
}

#[test]
fn filtering_stops_after_the_adaptive_share_of_nodes_and_rotates_its_start() {
    let counter = Arc::new(CountingFilter::default());
    let mut registry = Registry::in_tree();
    let shared = counter.clone();
    registry.register("CountingFilter", move |_| Ok(shared.clone()));
    let config = SchedulerConfig::from_yaml(
        "profiles:\n- plugins:\n    filter:\n      enabled: [{name: CountingFilter}]\n",
    )
    .unwrap();
    let mut scheduler = Scheduler::with_registry(&config, &registry).unwrap();
    for i in 0..1000 {
        scheduler.node_added(node(&format!("n{i:04}"), "4", "8Gi", json!({})));
    }
    let result = scheduler.schedule_one(QueuedPodInfo::new(pod("p", json!({}))));
    assert!(matches!(result, ScheduleResult::Bind { .. }));
    // 1000 nodes: 50% - 1000/125 = 42%.
    assert_eq!(counter.0.load(Ordering::Relaxed), 420);
    assert_eq!(scheduler.next_start_node_index_for_tests(), 420);
}

/// A reserve plugin that refuses and records its unreserve calls.
#[derive(Debug, Default)]
struct RefusingReserve(AtomicUsize);

impl Plugin for RefusingReserve {
    fn name(&self) -> &'static str {
        "RefusingReserve"
    }
    fn as_reserve(self: Arc<Self>) -> Option<Arc<dyn ReservePlugin>> {
        Some(self)
    }
}

impl ReservePlugin for RefusingReserve {
    fn reserve(&self, _: &mut CycleState, _: &PodInfo, _: &str) -> Status {
        Status::error("volume not ready")
    }
    fn unreserve(&self, _: &mut CycleState, _: &PodInfo, _: &str) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_failing_reserve_unreserves_and_leaves_nothing_assumed() {
    let plugin = Arc::new(RefusingReserve::default());
    let mut registry = Registry::in_tree();
    let shared = plugin.clone();
    registry.register("RefusingReserve", move |_| Ok(shared.clone()));
    let config = SchedulerConfig::from_yaml(
        "profiles:\n- plugins:\n    reserve:\n      enabled: [{name: RefusingReserve}]\n",
    )
    .unwrap();
    let mut scheduler = Scheduler::with_registry(&config, &registry).unwrap();
    scheduler.node_added(node("n", "4", "8Gi", json!({})));
    let result = scheduler.schedule_one(QueuedPodInfo::new(pod("p", json!({}))));
    let ScheduleResult::Error { message, .. } = result else {
        panic!("expected an error, got {result:?}");
    };
    assert!(message.contains("volume not ready"), "{message}");
    assert_eq!(plugin.0.load(Ordering::Relaxed), 1);
    assert_eq!(scheduler.cache().pod_count(), 0);
    assert_eq!(scheduler.queue().lengths(), (0, 1, 0));
}

#[test]
fn a_resync_after_lost_events_queues_missed_pods_and_forgets_vanished_ones() {
    use super::fixtures::bound;
    let mut c = Cluster::new(vec![node("old", "4", "8Gi", json!({}))]);
    c.running(requesting("gone", "1", "1Gi", json!({})), "old");
    c.scheduler
        .pod_added(requesting("queued-gone", "1", "1Gi", json!({})));
    // The watch lost: node `new` added, node `old` deleted, pod `missed` created, pod
    // `elsewhere` bound by another scheduler, `gone` and `queued-gone` deleted.
    let nodes = vec![Arc::new(node("new", "4", "8Gi", json!({})))];
    c.scheduler.resync_nodes(&nodes);
    let pods = vec![
        Arc::new(requesting("missed", "1", "1Gi", json!({}))),
        Arc::new(bound(requesting("elsewhere", "1", "1Gi", json!({})), "new")),
    ];
    c.scheduler.resync_pods(&pods);

    assert!(c.scheduler.cache().node("new").is_some());
    assert!(c.scheduler.cache().node("old").is_none());
    assert_eq!(c.scheduler.cache().pod_node("uid-elsewhere"), Some("new"));
    assert_eq!(c.scheduler.cache().pod_node("uid-gone"), None);
    let queued = c
        .scheduler
        .queue()
        .try_pop()
        .expect("the missed pod is queued");
    assert_eq!(queued.key(), "uid-missed");
    assert!(
        c.scheduler.queue().try_pop().is_none(),
        "the deleted pending pod left the queue"
    );
    // A pod whose bind is in flight is not queued again by a resync that still sees it
    // pending.
    let result = c.scheduler.schedule_one(queued);
    assert!(matches!(result, ScheduleResult::Bind { .. }), "{result:?}");
    c.scheduler.resync_pods(&pods);
    assert!(c.scheduler.queue().try_pop().is_none());
}
