//! The metrics benchmark: one node (a real agent, private containerd, runc) running 100
//! `sleep` containers; the figures are the agent's CPU time and wall-clock time per
//! housekeeping pass (from its own counters), the latency and size of a `/metrics` scrape,
//! and the per-packet cost of the cgroup_skb counter program through BPF_PROG_TEST_RUN.
//! cAdvisor is not available on these machines, so no peer is measured.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use aya::programs::{TestRun, TestRunOptions};
use serde_json::{Value, json};
use skiff_agent::dataplane::{Dataplane, LoadOptions};
use skiff_api::client::ListParams;
use skiff_tests::{
    control::{Backend, ControlPlane},
    metrics::scrape,
    netns::{Netns, veth_between},
    packets::{self, Ipv4},
    pod_node::{IMAGE, PodNode},
};

use crate::report::{Report, SKIFF, median};

const PODS: usize = 100;
const CASE: &str = "100 containers on one node";
const SCRAPES: usize = 30;
/// `offsetof(struct __sk_buff, ifindex)`.
const SKB_IFINDEX_OFFSET: usize = 40;

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

/// The value of an unlabelled sample.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape_async(address: SocketAddr) -> Result<String> {
    tokio::task::spawn_blocking(move || scrape(address)).await?
}

pub async fn run(report: &mut Report) -> Result<()> {
    cgroup_skb_cost(report)?;

    let mut node = tokio::task::spawn_blocking(|| PodNode::new(201)).await?;
    let address = SocketAddr::from((node.link.node_ip, 10255));
    node.agent_args = vec![
        "--metrics-listen".into(),
        address.to_string(),
        "--housekeeping-interval".into(),
        "1s".into(),
    ];
    let host_ip = node.link.host_ip;
    let control = tokio::task::spawn_blocking(move || {
        ControlPlane::start_listening(Backend::Embedded, &[host_ip])
    })
    .await??;
    let client = control.admin_client()?;
    node.start_agent(&control);

    for i in 0..PODS {
        client
            .create("pods", "default", &pod(&format!("m-{i:03}"), &node.name))
            .await?;
    }
    let until = Instant::now() + Duration::from_secs(600);
    loop {
        let list = client
            .list("pods", "default", &ListParams::default())
            .await?;
        let up = list.items.iter().filter(|p| running(p)).count();
        if up == PODS {
            break;
        }
        if Instant::now() > until {
            bail!(
                "only {up} of {PODS} pods ran within 600 s; agent log tail:\n{}",
                node.log()
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Wait until a pass has seen every container, then measure over ~20 passes.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let text = scrape_async(address).await?;
        let containers = text
            .lines()
            .filter(|l| l.starts_with("container_memory_working_set_bytes{"))
            .filter(|l| l.contains("container=\"main\""))
            .count();
        if containers == PODS {
            break;
        }
        if Instant::now() > until {
            bail!("the agent reports {containers} of {PODS} containers");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let counters = |text: &str| -> Result<(f64, f64, f64)> {
        Ok((
            value(text, "skiff_agent_housekeeping_cpu_seconds_total").context("cpu counter")?,
            value(text, "skiff_agent_housekeeping_duration_seconds_sum").context("duration sum")?,
            value(text, "skiff_agent_housekeeping_duration_seconds_count").context("pass count")?,
        ))
    };
    let before = counters(&scrape_async(address).await?)?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let after = counters(&scrape_async(address).await?)?;
    let passes = after.2 - before.2;
    if passes < 1.0 {
        bail!("no housekeeping pass in 20 s");
    }
    let cpu_ms = (after.0 - before.0) / passes * 1000.0;
    let wall_ms = (after.1 - before.1) / passes * 1000.0;

    let mut latencies = Vec::with_capacity(SCRAPES);
    let mut size = 0;
    for _ in 0..SCRAPES {
        let started = Instant::now();
        let text = scrape_async(address).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        size = text.len();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies[latencies.len() - 1];

    report.add(CASE, SKIFF, "housekeeping CPU/pass", cpu_ms, "ms");
    report.add(CASE, SKIFF, "housekeeping wall/pass", wall_ms, "ms");
    report.add(CASE, SKIFF, "scrape p50", median(latencies), "ms");
    report.add(CASE, SKIFF, "scrape max", p99, "ms");
    report.add(CASE, SKIFF, "scrape size", size as f64 / 1024.0, "KiB");
    drop(control);
    Ok(())
}

/// Runs the egress counter a million times on a UDP packet crossing a veth (the counting
/// path) and on loopback (the early return), in a bench network namespace.
fn cgroup_skb_cost(report: &mut Report) -> Result<()> {
    let ns = Netns::new("skbm")?;
    let peer = Netns::new("skbp")?;
    let (ifname, _) = veth_between(&ns, "10.80.0.1/24", &peer, "10.80.0.2/24")?;
    let ifindex: u32 = ns
        .exec(&["cat", &format!("/sys/class/net/{ifname}/ifindex")])?
        .trim()
        .parse()?;
    let mut dataplane = Dataplane::load(&LoadOptions::default())?;
    let ip = Ipv4::new(
        "10.80.0.1".parse()?,
        "10.80.0.2".parse()?,
        packets::IPPROTO_UDP,
    );
    let frame = packets::ethernet(
        packets::ETH_P_IP,
        &ip.packet(&packets::udp(&ip, 40000, 53, &[0; 18])),
    );
    let mut ctx = [0u8; SKB_IFINDEX_OFFSET + 4];
    ctx[SKB_IFINDEX_OFFSET..].copy_from_slice(&ifindex.to_ne_bytes());
    let case = "cgroup_skb egress, 64-byte frame";
    for (metric, ctx_in) in [
        ("counted (veth) ns/pkt", Some(&ctx[..])),
        ("loopback (skipped) ns/pkt", None),
    ] {
        let runs: Result<Vec<f64>> = (0..5)
            .map(|_| {
                let program = dataplane.cgroup_skb_program("cgroup_skb_egress")?;
                let result = ns.run(|| {
                    program.test_run(TestRunOptions {
                        data_in: Some(&frame),
                        ctx_in,
                        repeat: 1_000_000,
                        ..TestRunOptions::new()
                    })
                })??;
                if result.return_value != 1 {
                    bail!("the program returned {}", result.return_value);
                }
                // The kernel reports the mean time of one run.
                Ok(result.duration.as_nanos() as f64)
            })
            .collect();
        report.add(case, SKIFF, metric, median(runs?), "ns");
    }
    Ok(())
}
