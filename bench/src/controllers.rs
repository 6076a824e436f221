//! The controllers benchmark, on hollow nodes (Node objects whose Leases the bench renews,
//! like kubemark's hollow kubelets) through the real API server and store:
//! - how long a 1000-replica Deployment takes to have all its pods created, then bound;
//! - how long after a pod turns Ready (the bench writes its status as a kubelet would) its
//!   EndpointSlice shows it ready, p50/p99 over a few hundred pods, timed by watches.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use skiff_api::{
    client::Client,
    runtime::{Config as WatchConfig, Event as WatchEvent, Watcher},
};
use skiff_tests::control::{Backend, ControlPlane};

use crate::{
    report::{Report, SKIFF},
    scheduler::{create_all, node},
};

const NODES: usize = 100;
const REPLICAS: usize = 1000;
/// Pods turned Ready one at a time, each timed to its EndpointSlice.
const READY_SAMPLES: usize = 300;
const CONCURRENCY: usize = 64;
const NAMESPACE: &str = "default";
const APP: &str = "bench-web";
/// A hollow node renews its Lease this often (the kubelet's default is 10 s).
const LEASE_RENEWAL: Duration = Duration::from_secs(10);

pub async fn run(report: &mut Report) -> Result<()> {
    let control = tokio::task::spawn_blocking(|| ControlPlane::start(Backend::Embedded))
        .await?
        .context("starting skiff-control")?;
    let client = control.admin_client()?;

    create_all(&client, "nodes", "", (0..NODES).map(node).collect()).await?;
    let leases = start_hollow_leases(&client).await?;
    let result = measure(&client, report).await;
    leases.abort();
    drop(control);
    result
}

/// Creates a Lease per hollow node in `kube-node-lease` and renews them all, so the node
/// lifecycle controller sees live nodes for as long as the bench runs.
async fn start_hollow_leases(client: &Client) -> Result<tokio::task::JoinHandle<()>> {
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "kube-node-lease"}});
    if let Err(error) = client.create("namespaces", "", &namespace).await
        && client
            .get("namespaces", "", "kube-node-lease")
            .await
            .is_err()
    {
        bail!("creating namespace kube-node-lease: {error}");
    }
    let lease = |i: usize| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": format!("hollow-{i:04}"), "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": format!("hollow-{i:04}"), "leaseDurationSeconds": 40,
                     "renewTime": now()}})
    };
    create_all(
        client,
        "leases",
        "kube-node-lease",
        (0..NODES).map(lease).collect(),
    )
    .await?;
    let client = client.clone();
    Ok(tokio::spawn(async move {
        loop {
            tokio::time::sleep(LEASE_RENEWAL).await;
            let patch = json!({"spec": {"renewTime": now()}});
            stream::iter(0..NODES)
                .for_each_concurrent(CONCURRENCY, |i| {
                    let (client, patch) = (client.clone(), patch.clone());
                    async move {
                        let name = format!("hollow-{i:04}");
                        let _ = client
                            .patch("leases", "kube-node-lease", &name, &patch, "")
                            .await;
                    }
                })
                .await;
        }
    }))
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

async fn measure(client: &Client, report: &mut Report) -> Result<()> {
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": APP, "namespace": NAMESPACE},
        "spec": {"selector": {"app": APP}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
    client.create("services", NAMESPACE, &service).await?;

    let case = format!("{REPLICAS}-replica Deployment, {NODES} hollow nodes");
    let (created, bound) = deploy(client).await?;
    report.add(&case, SKIFF, "all_created_s", created.as_secs_f64(), "s");
    report.add(&case, SKIFF, "all_bound_s", bound.as_secs_f64(), "s");

    let samples = ready_to_endpoint(client).await?;
    let case = format!("pod Ready -> EndpointSlice ready ({READY_SAMPLES} pods, one at a time)");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    report.add(&case, SKIFF, "p50", ms(percentile(&samples, 50.0)), "ms");
    report.add(&case, SKIFF, "p99", ms(percentile(&samples, 99.0)), "ms");
    report.add(&case, SKIFF, "max", ms(percentile(&samples, 100.0)), "ms");
    Ok(())
}

/// Creates the Deployment and returns how long until every replica existed and until every
/// replica was bound, as a watch on its pods sees it.
async fn deploy(client: &Client) -> Result<(Duration, Duration)> {
    let mut watcher = Watcher::new(
        client.clone(),
        "pods",
        NAMESPACE,
        WatchConfig::default().labels(&format!("app={APP}")),
    );
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": APP, "namespace": NAMESPACE},
        "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": APP}},
            "template": {"metadata": {"labels": {"app": APP}},
                "spec": {"containers": [{"name": "web", "image": "skiff.local/demo:1.0",
                    "ports": [{"containerPort": 8080}],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}});
    let started = Instant::now();
    client.create("deployments", NAMESPACE, &deployment).await?;
    let deadline = Duration::from_secs(600);
    let (mut created, mut bound) = (HashSet::new(), HashSet::new());
    let mut all_created = None;
    let observe = |pod: &Value, created: &mut HashSet<String>, bound: &mut HashSet<String>| {
        let Some(name) = pod["metadata"]["name"].as_str() else {
            return;
        };
        created.insert(name.to_string());
        if pod["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
        {
            bound.insert(name.to_string());
        }
    };
    while bound.len() < REPLICAS {
        let left = deadline.saturating_sub(started.elapsed());
        let Ok(event) = tokio::time::timeout(left, watcher.next()).await else {
            bail!(
                "within {deadline:?} only {} of {REPLICAS} pods were created and {} bound",
                created.len(),
                bound.len()
            );
        };
        match event {
            WatchEvent::Applied(pod) => observe(&pod, &mut created, &mut bound),
            WatchEvent::Restarted { objects, .. } => {
                for pod in &objects {
                    observe(pod, &mut created, &mut bound);
                }
            }
            WatchEvent::Deleted(_) => {}
        }
        if all_created.is_none() && created.len() >= REPLICAS {
            all_created = Some(started.elapsed());
        }
    }
    let bound_at = started.elapsed();
    Ok((all_created.unwrap_or(bound_at), bound_at))
}

/// What the Service's EndpointSlices say: pod name -> ready, per slice.
#[derive(Default)]
struct Slices(HashMap<String, HashMap<String, bool>>);

impl Slices {
    fn apply(&mut self, event: WatchEvent) {
        let put = |slices: &mut HashMap<String, HashMap<String, bool>>, slice: &Value| {
            let Some(name) = slice["metadata"]["name"].as_str() else {
                return;
            };
            let endpoints = slice["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    let pod = e["targetRef"]["name"].as_str()?;
                    Some((
                        pod.to_string(),
                        e["conditions"]["ready"].as_bool() == Some(true),
                    ))
                })
                .collect();
            slices.insert(name.to_string(), endpoints);
        };
        match event {
            WatchEvent::Applied(slice) => put(&mut self.0, &slice),
            WatchEvent::Deleted(slice) => {
                if let Some(name) = slice["metadata"]["name"].as_str() {
                    self.0.remove(name);
                }
            }
            WatchEvent::Restarted { objects, .. } => {
                self.0.clear();
                objects.iter().for_each(|slice| put(&mut self.0, slice));
            }
        }
    }

    fn endpoints(&self) -> usize {
        self.0.values().map(HashMap::len).sum()
    }

    fn ready(&self, pod: &str) -> bool {
        self.0.values().any(|s| s.get(pod) == Some(&true))
    }
}

/// Gives every pod an IP and phase Running (not yet Ready), waits for the slices to list
/// them all, then turns [`READY_SAMPLES`] pods Ready one at a time and times each until a
/// slice shows it ready.
async fn ready_to_endpoint(client: &Client) -> Result<Vec<Duration>> {
    let pods = client
        .list("pods", NAMESPACE, &Default::default())
        .await?
        .items;
    let names: Vec<String> = pods
        .iter()
        .filter(|p| p["metadata"]["labels"]["app"] == APP)
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    if names.len() < REPLICAS {
        bail!("only {} of {REPLICAS} pods listed", names.len());
    }
    let status = |i: usize, ready: bool| {
        json!({"status": {"phase": "Running",
            "podIP": format!("10.{}.{}.{}", 200 + i / 65536, (i / 256) % 256, i % 256),
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    };
    let failures: Vec<String> = stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let (client, patch) = (client.clone(), status(i, false));
            async move {
                client
                    .patch("pods", NAMESPACE, name, &patch, "status")
                    .await
                    .err()
                    .map(|e| format!("{name}: {e}"))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|r| async move { r })
        .collect()
        .await;
    if let Some(first) = failures.first() {
        bail!(
            "{} status writes failed, the first: {first}",
            failures.len()
        );
    }

    let mut watcher = Watcher::new(
        client.clone(),
        "endpointslices",
        NAMESPACE,
        WatchConfig::default().labels(&format!("kubernetes.io/service-name={APP}")),
    );
    let mut slices = Slices::default();
    let deadline = Instant::now() + Duration::from_secs(300);
    while slices.endpoints() < names.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(event) = tokio::time::timeout(left, watcher.next()).await else {
            bail!(
                "the slices listed {} of {} running pods within 300 s",
                slices.endpoints(),
                names.len()
            );
        };
        slices.apply(event);
    }

    let mut samples = Vec::with_capacity(READY_SAMPLES);
    let step = names.len() / READY_SAMPLES;
    for i in (0..names.len()).step_by(step.max(1)).take(READY_SAMPLES) {
        let name = &names[i];
        let started = Instant::now();
        client
            .patch("pods", NAMESPACE, name, &status(i, true), "status")
            .await
            .with_context(|| format!("turning {name} Ready"))?;
        let limit = Duration::from_secs(30);
        while !slices.ready(name) {
            let left = limit.saturating_sub(started.elapsed());
            let Ok(event) = tokio::time::timeout(left, watcher.next()).await else {
                bail!("{name} was not ready in its EndpointSlice within {limit:?}");
            };
            slices.apply(event);
        }
        samples.push(started.elapsed());
    }
    Ok(samples)
}

/// The `p`th percentile (nearest rank) of `samples` (which must not be empty).
fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_takes_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&samples, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&samples[..1], 99.0), Duration::from_millis(1));
    }

    #[test]
    fn slices_track_readiness_per_pod_across_slices_and_deletions() {
        let slice = |name: &str, pods: &[(&str, bool)]| {
            json!({"metadata": {"name": name}, "endpoints": pods.iter().map(|(p, r)| json!({
                "addresses": ["10.0.0.1"], "targetRef": {"kind": "Pod", "name": p},
                "conditions": {"ready": r}})).collect::<Vec<_>>()})
        };
        let mut slices = Slices::default();
        slices.apply(WatchEvent::Applied(slice(
            "s1",
            &[("a", false), ("b", true)],
        )));
        slices.apply(WatchEvent::Applied(slice("s2", &[("c", true)])));
        assert_eq!(slices.endpoints(), 3);
        assert!(!slices.ready("a") && slices.ready("b") && slices.ready("c"));
        slices.apply(WatchEvent::Applied(slice("s1", &[("a", true)])));
        assert!(slices.ready("a") && !slices.ready("b"));
        slices.apply(WatchEvent::Deleted(slice("s2", &[])));
        assert!(!slices.ready("c"));
        assert_eq!(slices.endpoints(), 1);
    }
}
