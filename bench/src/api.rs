//! The API benchmark: how fast `skiff-control` takes writes, serves a large List, and
//! delivers watch events to many watchers, on the embedded store and on a real etcd.
//!
//! Each backend gets a fresh control plane process (release build) on loopback; the figures
//! are measured through the real gRPC API with TLS and tokens, as a client sees them.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use skiff_api::client::{Client, ClientConfig, ListParams, WatchParams};
use skiff_tests::control::{Backend, ControlPlane};
use tokio::sync::Mutex;

use crate::report::{Report, SKIFF, median};

/// Pods in the store when List is timed.
const LIST_PODS: usize = 10_000;
/// Concurrent creates in flight.
const CONCURRENCY: usize = 64;
const LIST_ROUNDS: usize = 10;
const WATCHERS: usize = 1000;
const WATCH_EVENTS: usize = 50;
/// Watch streams per HTTP/2 connection (below the server's stream limit).
const WATCHERS_PER_CONNECTION: usize = 100;

fn pod(name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "skiff.local/demo:1.0",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    })
}

pub async fn run(report: &mut Report) -> Result<()> {
    for (backend, label) in [(Backend::Embedded, "embedded"), (Backend::Etcd, "etcd")] {
        let control = tokio::task::spawn_blocking(move || ControlPlane::start(backend))
            .await?
            .with_context(|| format!("starting skiff-control on {label}"))?;
        let config = control.admin_config()?;
        measure(&config, label, report).await?;
        drop(control);
    }
    Ok(())
}

async fn measure(config: &ClientConfig, label: &str, report: &mut Report) -> Result<()> {
    let client = &Client::new(config)?;
    client
        .create(
            "namespaces",
            "",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
        )
        .await?;

    // Creates per second, CONCURRENCY in flight, until LIST_PODS pods exist.
    let started = Instant::now();
    let results: Vec<Result<(), String>> = stream::iter(0..LIST_PODS)
        .map(|i| {
            let client = client.clone();
            async move {
                client
                    .create("pods", "bench", &pod(&format!("pod-{i:05}"), "bench"))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        anyhow::bail!("a create failed: {e}");
    }
    report.add(
        &format!("{label}: create {LIST_PODS} pods, {CONCURRENCY} in flight"),
        SKIFF,
        "creates_per_s",
        LIST_PODS as f64 / elapsed.as_secs_f64(),
        "1/s",
    );

    // List latency with LIST_PODS pods.
    let mut samples = Vec::new();
    for _ in 0..LIST_ROUNDS {
        let started = Instant::now();
        let list = client
            .list("pods", "", &ListParams::default())
            .await
            .context("listing pods")?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            list.items.len() == LIST_PODS,
            "listed {} pods",
            list.items.len()
        );
    }
    report.add(
        &format!("{label}: list {LIST_PODS} pods"),
        SKIFF,
        "p50_ms",
        median(samples.clone()),
        "ms",
    );
    report.add(
        &format!("{label}: list {LIST_PODS} pods"),
        SKIFF,
        "max_ms",
        samples.iter().cloned().fold(0.0, f64::max),
        "ms",
    );

    // Watch delivery latency with WATCHERS concurrent watchers of one namespace.
    client
        .create(
            "namespaces",
            "",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "watched"}}),
        )
        .await?;
    let start_rv = client
        .list("pods", "watched", &ListParams::default())
        .await?
        .resource_version;
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    // Watchers spread over several connections, as many clients would be.
    let connections: Vec<Client> = (0..WATCHERS.div_ceil(WATCHERS_PER_CONNECTION))
        .map(|_| Client::new(config))
        .collect::<Result<_, _>>()?;
    let mut watchers = Vec::new();
    for w in 0..WATCHERS {
        let mut watch = connections[w / WATCHERS_PER_CONNECTION]
            .watch(
                "pods",
                "watched",
                &WatchParams {
                    resource_version: start_rv.clone(),
                    ..WatchParams::default()
                },
            )
            .await
            .with_context(|| format!("starting watcher {w}"))?;
        let sent = Arc::clone(&sent);
        watchers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(WATCH_EVENTS);
            while latencies.len() < WATCH_EVENTS {
                let Ok(Some(Ok(event))) =
                    tokio::time::timeout(Duration::from_secs(60), watch.next()).await
                else {
                    break;
                };
                let received = Instant::now();
                let name = event.object["metadata"]["name"].as_str().unwrap_or("");
                let index: usize = name.trim_start_matches("w-").parse().unwrap_or(0);
                if let Some(at) = sent.lock().await.get(index) {
                    latencies.push(received.duration_since(*at).as_secs_f64() * 1000.0);
                }
            }
            latencies
        }));
    }
    for i in 0..WATCH_EVENTS {
        sent.lock().await.push(Instant::now());
        client
            .create("pods", "watched", &pod(&format!("w-{i}"), "watched"))
            .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies = Vec::new();
    for watcher in watchers {
        latencies.extend(watcher.await?);
    }
    anyhow::ensure!(
        latencies.len() == WATCHERS * WATCH_EVENTS,
        "{} of {} events delivered",
        latencies.len(),
        WATCHERS * WATCH_EVENTS
    );
    latencies.sort_by(f64::total_cmp);
    let case = format!("{label}: watch event to {WATCHERS} watchers");
    report.add(&case, SKIFF, "p50_ms", latencies[latencies.len() / 2], "ms");
    report.add(
        &case,
        SKIFF,
        "p99_ms",
        latencies[latencies.len() * 99 / 100],
        "ms",
    );
    Ok(())
}
