//! End-to-end tests of the agent's `/metrics` (cAdvisor's names and labels): a node in a
//! network namespace with real containerd and runc containers, the cgroup_skb counters on
//! the node's cgroup subtree, scraped over the node's link by the test, by `promtool`, and
//! by a real Prometheus server on loopback.

use std::{net::SocketAddr, time::Duration};

use serde_json::{Value, json};
use skiff_api::client::Client;
use skiff_tests::{
    control::ControlPlane,
    metrics::{promtool_check, scrape},
    pod_node::{IMAGE, PodNode},
    prometheus::Prometheus,
    require_root,
};

const DEADLINE: Duration = Duration::from_secs(90);
/// Echo requests the talker sends, and their payload: each request and each reply is an
/// IPv4 packet of 20 + 8 + 1000 bytes.
const PINGS: u64 = 5;
const PING_IP_BYTES: u64 = 20 + 8 + 1000;

/// A node whose agent serves `/metrics` on its link address (reachable from the test, as
/// the control plane's API is reached the other way), with a short housekeeping interval.
async fn start_node(index: u8) -> (PodNode, ControlPlane, Client, SocketAddr) {
    require_root();
    let mut node = PodNode::new(index);
    let metrics = SocketAddr::from((node.link.node_ip, 10255));
    node.agent_args = vec![
        "--metrics-listen".into(),
        metrics.to_string(),
        "--housekeeping-interval".into(),
        "500ms".into(),
    ];
    let (control, client) = node.start_with_control().await;
    (node, control, client, metrics)
}

fn pod(name: &str, node: &str, containers: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": containers, "terminationGracePeriodSeconds": 1},
    })
}

/// A pod whose one container pings the node `PINGS` times, then idles.
fn talker(node: &PodNode) -> Value {
    let script = format!(
        "ping -c {PINGS} -s 1000 {} && echo pinged; exec sleep 3600",
        node.link.node_ip
    );
    pod(
        "talker",
        &node.name,
        json!([{"name": "talk", "image": IMAGE, "command": ["sh", "-c", script]}]),
    )
}

/// The value of `metric` for the series whose labels include every `name="value"` given.
fn series(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Scrapes until `check` accepts the exposition, or fails with the last one and the log.
async fn scrape_until(
    node: &PodNode,
    address: SocketAddr,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let text = tokio::task::spawn_blocking(move || scrape(address))
            .await
            .unwrap();
        if let Ok(text) = &text
            && check(text)
        {
            return text.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last scrape: {text:?}\nagent log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn wait_log(node: &PodNode, client: &Client, pod: &str, container: &str, needle: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Ok(object) = client.get("pods", "default", pod).await
            && node.pod_log(&object, container, 0).contains(needle)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "container {container} of {pod} never printed {needle:?}\nagent log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn cpu(text: &str, container: &str) -> Option<f64> {
    series(
        text,
        "container_cpu_usage_seconds_total",
        &[("pod", "work"), ("container", container)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_agent_metrics_count_a_containers_exact_traffic_and_only_busy_cpu() {
    let (node, _control, client, address) = start_node(31).await;
    client
        .create("pods", "default", &talker(&node))
        .await
        .unwrap();
    let work = pod(
        "work",
        &node.name,
        json!([
            {"name": "busy", "image": IMAGE, "command": ["sh", "-c", "while :; do :; done"]},
            {"name": "idle", "image": IMAGE, "command": ["sleep", "3600"]},
        ]),
    );
    client.create("pods", "default", &work).await.unwrap();
    wait_log(&node, &client, "talker", "talk", "pinged").await;

    let expected = (PINGS * PING_IP_BYTES) as f64;
    let talk = [
        ("pod", "talker"),
        ("container", "talk"),
        ("namespace", "default"),
    ];
    let text = scrape_until(&node, address, "the talker's traffic", |text| {
        series(text, "container_network_transmit_bytes_total", &talk) == Some(expected)
            && series(text, "container_network_receive_bytes_total", &talk) == Some(expected)
    })
    .await;
    assert_eq!(
        series(&text, "container_network_transmit_packets_total", &talk),
        Some(PINGS as f64)
    );
    assert_eq!(
        series(&text, "container_network_receive_packets_total", &talk),
        Some(PINGS as f64)
    );
    let talk_image = [("pod", "talker"), ("container", "talk"), ("image", IMAGE)];
    assert!(series(&text, "container_memory_working_set_bytes", &talk_image).is_some());
    // The pod-level series (container="") carries its containers' traffic.
    assert_eq!(
        series(
            &text,
            "container_network_receive_bytes_total",
            &[("pod", "talker"), ("container", "")]
        ),
        Some(expected)
    );

    // CPU: the busy container's counter grows, the idle one's does not.
    let before = scrape_until(&node, address, "both work containers", |text| {
        cpu(text, "busy").is_some() && cpu(text, "idle").is_some()
    })
    .await;
    // The idle container sent nothing.
    assert_eq!(
        series(
            &before,
            "container_network_transmit_bytes_total",
            &[("pod", "work"), ("container", "idle")]
        ),
        Some(0.0)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = scrape(address).unwrap();
    let busy = cpu(&after, "busy").unwrap() - cpu(&before, "busy").unwrap();
    let idle = cpu(&after, "idle").unwrap() - cpu(&before, "idle").unwrap();
    eprintln!("over 3 s: busy used {busy:.3} s of CPU, idle {idle:.4} s");
    assert!(busy > 0.3, "the busy loop used only {busy} s of CPU in 3 s");
    assert!(
        idle < 0.05,
        "the idle container used {idle} s of CPU in 3 s"
    );

    promtool_check(&after).unwrap();
    assert!(series(&after, "machine_cpu_cores", &[]).is_none_or(|n| n >= 1.0));
    assert!(after.contains("skiff_dataplane_map_max_entries{map=\"CONNTRACK\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_a_real_prometheus_scrapes_the_agent_and_control_plane_and_answers_queries() {
    let (node, control, client, address) = start_node(32).await;
    client
        .create("pods", "default", &talker(&node))
        .await
        .unwrap();
    wait_log(&node, &client, "talker", "talk", "pinged").await;
    let prometheus = Prometheus::start(&[
        ("skiff-agent", address),
        ("skiff-control", control.metrics_address()),
    ])
    .expect("prometheus (Debian package prometheus) starts");

    let query = r#"container_network_receive_bytes_total{pod="talker",container="talk"}"#;
    let expected = (PINGS * PING_IP_BYTES) as f64;
    let answer = wait_query(&prometheus, &node, query, |v| v == expected).await;
    let (labels, _) = &answer[0];
    assert_eq!(labels["namespace"], "default");
    assert_eq!(labels["image"], IMAGE);
    assert_eq!(labels["job"], "skiff-agent");

    // The control plane is scraped too (each target on its own schedule).
    wait_query(&prometheus, &node, r#"up{job="skiff-control"}"#, |v| {
        v == 1.0
    })
    .await;
    wait_query(&prometheus, &node, "sum(apiserver_request_total)", |v| {
        v > 0.0
    })
    .await;
}

/// Queries until the first sample's value is accepted; its result vector.
async fn wait_query(
    prometheus: &Prometheus,
    node: &PodNode,
    query: &str,
    accept: impl Fn(f64) -> bool,
) -> Vec<(Value, f64)> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let result = prometheus.query(query);
        if let Ok(samples) = &result
            && samples.first().is_some_and(|(_, v)| accept(*v))
        {
            return samples.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus never gave an accepted answer to {query}; last: {result:?}\n\
             prometheus log:\n{}\nagent log:\n{}",
            prometheus.log(),
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
