//! The pod start-up benchmark: 30 pods created at once on one node (a real agent, a
//! private containerd, runc, the busybox image already imported); the figures are each
//! pod's latency from create to Running (p50, p99) and the agent's resident memory with 0
//! and with 30 pods. kubelet is not available on these machines, so no peer is measured.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use skiff_api::client::{Client, DeleteParams, ListParams};
use skiff_tests::{
    control::{Backend, ControlPlane},
    pod_node::{IMAGE, PodNode},
};

use crate::report::{Report, SKIFF};

const PODS: usize = 30;
const CASE: &str = "30 pods on one node, local image";

fn pod(name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]},
    })
}

fn running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

fn rss_kib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .context("no VmRSS in the agent's status")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn wait_running(client: &Client, name: &str, deadline: Duration) -> Result<()> {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if client
            .get("pods", "default", name)
            .await
            .is_ok_and(|p| running(&p))
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("pod {name} did not run within {deadline:?}")
}

pub async fn run(report: &mut Report) -> Result<()> {
    let mut node = tokio::task::spawn_blocking(|| PodNode::new(200)).await?;
    let host_ip = node.link.host_ip;
    let control = tokio::task::spawn_blocking(move || {
        ControlPlane::start_listening(Backend::Embedded, &[host_ip])
    })
    .await??;
    let client = control.admin_client()?;
    node.start_agent(&control);
    let agent_pid = node.agent.as_ref().map(|a| a.0.id()).context("agent")?;

    // Warm up: the first pod unpacks the image; it is gone before the measured run.
    client
        .create("pods", "default", &pod("warm-up", &node.name))
        .await?;
    wait_running(&client, "warm-up", Duration::from_secs(60))
        .await
        .with_context(|| format!("agent log:\n{}", node.log()))?;
    let force = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    client.delete("pods", "default", "warm-up", &force).await?;
    let until = Instant::now() + Duration::from_secs(30);
    while !node
        .containerd
        .ctr(&node.namespace, &["containers", "ls", "-q"])?
        .trim()
        .is_empty()
    {
        if Instant::now() > until {
            bail!("the warm-up pod's container was never removed");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = rss_kib(agent_pid)?;

    let names: Vec<String> = (0..PODS).map(|i| format!("p-{i:02}")).collect();
    let mut created = Vec::with_capacity(PODS);
    let start = Instant::now();
    for name in &names {
        client
            .create("pods", "default", &pod(name, &node.name))
            .await?;
        created.push(start.elapsed());
    }
    let mut started: Vec<Option<Duration>> = vec![None; PODS];
    let until = Instant::now() + Duration::from_secs(180);
    while started.iter().any(Option::is_none) {
        if Instant::now() > until {
            bail!(
                "only {} of {PODS} pods ran within 180 s; agent log:\n{}",
                started.iter().flatten().count(),
                node.log()
            );
        }
        let list = client
            .list("pods", "default", &ListParams::default())
            .await?;
        let now = start.elapsed();
        for item in &list.items {
            let name = item["metadata"]["name"].as_str().unwrap_or_default();
            if let Some(i) = names.iter().position(|n| n == name)
                && started[i].is_none()
                && running(item)
            {
                started[i] = Some(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut latencies: Vec<f64> = started
        .iter()
        .zip(&created)
        .map(|(s, c)| (s.unwrap_or_default().saturating_sub(*c)).as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let all_running = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_busy = rss_kib(agent_pid)?;

    report.add(
        CASE,
        SKIFF,
        "create→Running p50",
        percentile(&latencies, 50.0),
        "ms",
    );
    report.add(
        CASE,
        SKIFF,
        "create→Running p99",
        percentile(&latencies, 99.0),
        "ms",
    );
    report.add(CASE, SKIFF, "all 30 Running", all_running, "s");
    report.add(CASE, SKIFF, "agent RSS, 0 pods", rss_idle / 1024.0, "MiB");
    report.add(CASE, SKIFF, "agent RSS, 30 pods", rss_busy / 1024.0, "MiB");
    Ok(())
}
