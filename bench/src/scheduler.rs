//! The scheduler benchmark: hollow nodes (Node objects with no agent, like kubemark's) and
//! pending pods created through the real API server and store; the figure is pods bound
//! per second, from the first pod created to the last one bound, as a watch on pods sees it.
//!
//! kube-scheduler cannot be built or downloaded on these machines, so its figure is not
//! measured here; the table prints the floor its own CI enforces (scheduler_perf,
//! 5000 nodes / 10,000 pods: 680 pods/s) as a published reference, labelled as such.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use skiff_api::{
    client::Client,
    runtime::{Config as WatchConfig, Event as WatchEvent, Watcher},
};
use skiff_tests::control::{Backend, ControlPlane};

use crate::report::{Report, SKIFF};

const NODES: usize = 5000;
const PODS: usize = 10_000;
const ZONES: usize = 10;
const CONCURRENCY: usize = 64;
/// kube-scheduler's scheduler_perf threshold for 5000 nodes / 10,000 pods.
const KUBE_SCHEDULER_CI_FLOOR: f64 = 680.0;

#[derive(Clone, Copy, Debug)]
enum Workload {
    Default,
    HalfAntiAffinity,
    TopologySpread,
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::Default => "default plugins",
            Workload::HalfAntiAffinity => "required anti-affinity on half the pods",
            Workload::TopologySpread => "zone topology spread",
        }
    }

    fn pod(self, i: usize) -> Value {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p-{i:05}"), "labels": {"app": format!("app-{}", i % 100)}},
            "spec": {"containers": [{"name": "c", "image": "skiff.local/demo:1.0",
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
        });
        match self {
            Workload::Default => {}
            Workload::HalfAntiAffinity if i.is_multiple_of(2) => {
                pod["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"app": format!("app-{}", i % 100)}},
                    "topologyKey": "kubernetes.io/hostname"
                }]}});
            }
            Workload::HalfAntiAffinity => {}
            Workload::TopologySpread => {
                pod["spec"]["topologySpreadConstraints"] = json!([{
                    "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app": format!("app-{}", i % 100)}}
                }]);
            }
        }
        pod
    }
}

/// Hollow node `i`: 4 CPUs, 32 GiB, 110 pods, in one of [`ZONES`] zones.
pub(crate) fn node(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("hollow-{i:04}"), "labels": {
            "kubernetes.io/hostname": format!("hollow-{i:04}"),
            "topology.kubernetes.io/zone": format!("zone-{}", i % ZONES)
        }},
        "status": {
            "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    })
}

pub async fn run(report: &mut Report) -> Result<()> {
    for workload in [
        Workload::Default,
        Workload::HalfAntiAffinity,
        Workload::TopologySpread,
    ] {
        let control = tokio::task::spawn_blocking(|| ControlPlane::start(Backend::Embedded))
            .await?
            .context("starting skiff-control")?;
        let client = control.admin_client()?;
        let rate = measure(&client, workload)
            .await
            .with_context(|| workload.label().to_string())?;
        let case = format!("{NODES} nodes / {PODS} pods, {}", workload.label());
        report.add(&case, SKIFF, "pods_per_s", rate, "1/s");
        report.add(
            &case,
            "kube-scheduler CI floor (published, not run)",
            "pods_per_s",
            KUBE_SCHEDULER_CI_FLOOR,
            "1/s",
        );
        drop(control);
    }
    Ok(())
}

/// Creates `objects` through the API, [`CONCURRENCY`] at a time.
pub(crate) async fn create_all(
    client: &Client,
    resource: &str,
    namespace: &str,
    objects: Vec<Value>,
) -> Result<()> {
    let failures: Vec<String> = stream::iter(objects)
        .map(|object| {
            let client = client.clone();
            let resource = resource.to_string();
            let namespace = namespace.to_string();
            async move {
                client
                    .create(&resource, &namespace, &object)
                    .await
                    .err()
                    .map(|e| e.to_string())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|r| async move { r })
        .collect()
        .await;
    if let Some(first) = failures.first() {
        bail!("{} creates failed, the first: {first}", failures.len());
    }
    Ok(())
}

async fn measure(client: &Client, workload: Workload) -> Result<f64> {
    create_all(client, "nodes", "", (0..NODES).map(node).collect()).await?;
    // A resilient watcher (it resumes or relists on any break) counts the bound pods.
    let mut watcher = Watcher::new(client.clone(), "pods", "default", WatchConfig::default());
    let started = Instant::now();
    let creating = {
        let client = client.clone();
        tokio::spawn(async move {
            create_all(
                &client,
                "pods",
                "default",
                (0..PODS).map(|i| workload.pod(i)).collect(),
            )
            .await
        })
    };
    let mut bound = std::collections::HashSet::new();
    let deadline = Duration::from_secs(600);
    let name_if_bound = |pod: &Value| -> Option<String> {
        pod["spec"]["nodeName"]
            .as_str()
            .and(pod["metadata"]["name"].as_str())
            .map(str::to_string)
    };
    while bound.len() < PODS {
        let left = deadline.saturating_sub(started.elapsed());
        let Ok(event) = tokio::time::timeout(left, watcher.next()).await else {
            bail!(
                "only {} of {PODS} pods were bound within {deadline:?}",
                bound.len()
            );
        };
        match event {
            WatchEvent::Applied(pod) => bound.extend(name_if_bound(&pod)),
            WatchEvent::Restarted { objects, .. } => {
                bound.extend(objects.iter().filter_map(name_if_bound))
            }
            WatchEvent::Deleted(_) => {}
        }
    }
    let elapsed = started.elapsed();
    creating.await??;
    Ok(PODS as f64 / elapsed.as_secs_f64())
}
