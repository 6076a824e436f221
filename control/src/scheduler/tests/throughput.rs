//! A quick in-process throughput run with the default profile: pods on nodes through the
//! queue, the cycle and the simulated watch confirmation, printing pods per second. No
//! timing assertions. Sizes come from `SKIFF_SCHED_NODES` and `SKIFF_SCHED_PODS` (small by
//! default so the debug test run stays short; the benchmark size is 5000 and 10000, run
//! with `--release`). `SKIFF_SCHED_MIX=1` gives a quarter of the pods a zone spread
//! constraint and a quarter host anti-affinity.

use std::time::Instant;

use serde_json::json;

use super::fixtures::{ZONE, node, requesting};
use crate::scheduler::{ScheduleResult, Scheduler};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn scheduling_many_pods_on_many_nodes_places_every_pod_and_reports_the_rate() {
    let nodes = env("SKIFF_SCHED_NODES", 300);
    let pods = env("SKIFF_SCHED_PODS", 600);
    let mixed = env("SKIFF_SCHED_MIX", 0) == 1;
    let mut scheduler = Scheduler::with_defaults().with_seed(1);
    for i in 0..nodes {
        scheduler.node_added(node(
            &format!("node-{i:05}"),
            "32",
            "128Gi",
            json!({
                "metadata": {"labels": {ZONE: format!("zone-{}", i % 4)}},
                "status": {"images": [{"names": ["registry/app:1"], "sizeBytes": 300_000_000}]}
            }),
        ));
    }
    let pending: Vec<_> = (0..pods)
        .map(|i| {
            let app = format!("app-{}", i % 50);
            let mut patch = json!({"metadata": {"labels": {"app": app}}});
            if mixed && i % 4 == 1 {
                patch["spec"] = json!({"topologySpreadConstraints": [{
                    "maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app": app}}
                }]});
            }
            if mixed && i % 4 == 2 {
                patch["spec"] = json!({"affinity": {"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"app": app}},
                    "topologyKey": "kubernetes.io/hostname"
                }]}}});
            }
            let cpu = format!("{}m", 100 + (i % 10) * 50);
            let memory = format!("{}Mi", 128 + (i % 8) * 64);
            requesting(&format!("pod-{i:06}"), &cpu, &memory, patch)
        })
        .collect();
    for p in &pending {
        scheduler.pod_added(p.clone());
    }
    let queue = scheduler.queue().clone();
    let start = Instant::now();
    let mut placed = 0;
    while let Some(queued) = queue.try_pop() {
        let original = (*queued.pod.pod).clone();
        match scheduler.schedule_one(queued) {
            ScheduleResult::Bind { pod, .. } => {
                scheduler.confirm(&pod);
                scheduler.pod_updated(&original, (*pod).clone());
                placed += 1;
            }
            other => panic!("pod not placed: {other:?}"),
        }
    }
    let elapsed = start.elapsed();
    println!(
        "scheduled {placed} pods on {nodes} nodes{} in {:.3} s: {:.0} pods/s",
        if mixed { " (mixed constraints)" } else { "" },
        elapsed.as_secs_f64(),
        placed as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(placed, pods);
}
