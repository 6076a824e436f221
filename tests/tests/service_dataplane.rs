//! End-to-end test of the service data plane driven by the API: a real `skiff-control`, a
//! `skiff-agent` in a node namespace with its own cgroup and bpffs directory, a Service and
//! its EndpointSlices created through the API, and a client process in the node's cgroup
//! reaching the ClusterIP. Restarting the agent keeps forwarding; the agent's /metrics
//! counts the flows per backend and per service.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use skiff_api::client::DeleteParams;
use skiff_tests::{
    backends::{NameServers, probe},
    cgroup::TestCgroup,
    control::{Backend, ControlPlane},
    metrics::scrape,
    netns::{HostLink, Netns},
    pins::PinDir,
    process::{ChildGuard, spawn_guarded, workspace_binary},
    require_root,
    wait::wait_for,
};

const NODE: &str = "dp-node-1";
const PODS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 244, 9, 10), Ipv4Addr::new(10, 244, 9, 11)];

struct Node {
    netns: Netns,
    link: HostLink,
    state: tempfile::TempDir,
    cgroup: TestCgroup,
    pins: PinDir,
}

fn start_agent(control: &ControlPlane, node: &Node) -> ChildGuard {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.state.path().join("agent.log"))
        .unwrap();
    // Only the network namespace is entered: the agent sees the host's bpffs and cgroup2.
    let mut command = Command::new(workspace_binary("skiff-agent"));
    let _netns = node.netns.enter_on_spawn(&mut command).unwrap();
    command
        .args(["--node-name", NODE, "--uplink", &node.link.node_if])
        .args(["--node-ip", &node.link.node_ip.to_string()])
        .arg("--state-dir")
        .arg(node.state.path())
        .args(["--server", &control.url_at(node.link.host_ip)])
        .arg("--ca-file")
        .arg(control.data_dir().join("pki/ca.crt"))
        .arg("--bootstrap-token-file")
        .arg(control.data_dir().join("auth/bootstrap.token"))
        .arg("--cgroup-root")
        .arg(node.cgroup.path())
        .arg("--bpffs")
        .arg(node.pins.path())
        .args([
            "--maglev-table-size",
            "251",
            "--dataplane-maglev-tables",
            "16",
            "--housekeeping-interval",
            "1s",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    spawn_guarded(command).expect("spawn skiff-agent")
}

fn slice(name: &str, pods: &[Ipv4Addr]) -> Value {
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}, "nodeName": NODE}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    })
}

/// Which backend answered each of `count` connections to `target`, or the errors.
fn replies(node: &Node, target: &str, count: usize) -> Result<HashMap<String, usize>, String> {
    let lines = probe(
        &node.cgroup,
        &node.netns,
        env!("CARGO_BIN_EXE_sock_probe"),
        "tcp",
        target,
        count,
    )
    .map_err(|e| format!("{e:#}"))?;
    let mut tally = HashMap::new();
    for line in &lines {
        let parts: Vec<&str> = line.split(' ').collect();
        if parts[0] != "ok" {
            return Err(lines.join("; "));
        }
        if parts[1] != target {
            return Err(format!("getpeername showed {} not {target}", parts[1]));
        }
        *tally.entry(parts[2].to_string()).or_default() += 1;
    }
    Ok(tally)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_agent_syncs_a_cluster_ip_from_the_api_and_a_restart_keeps_forwarding() {
    require_root();
    let netns = Netns::new("skdp").unwrap();
    let link = HostLink::new(&netns).unwrap();
    let host_ip = link.host_ip;
    let control = tokio::task::spawn_blocking(move || {
        ControlPlane::start_listening(Backend::Embedded, &[host_ip])
    })
    .await
    .unwrap()
    .unwrap();
    let node = Node {
        netns,
        link,
        state: tempfile::tempdir().unwrap(),
        cgroup: TestCgroup::new("skiffcg").unwrap(),
        pins: PinDir::new("skiffbpf").unwrap(),
    };
    for pod in PODS {
        node.netns
            .exec(&["ip", "addr", "add", &format!("{pod}/32"), "dev", "lo"])
            .unwrap();
    }
    let _servers = NameServers::start(&node.netns, &PODS, 8080, 8081).unwrap();
    let log = || std::fs::read_to_string(node.state.path().join("agent.log")).unwrap_or_default();

    let client = control.admin_client().unwrap();
    let service = client
        .create(
            "services",
            "default",
            &json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            }),
        )
        .await
        .unwrap();
    let cluster_ip = service["spec"]["clusterIP"].as_str().unwrap().to_string();
    let target = format!("{cluster_ip}:80");
    client
        .create("endpointslices", "default", &slice("web-a", &PODS))
        .await
        .unwrap();

    let mut agent = start_agent(&control, &node);
    let spread = tokio::task::block_in_place(|| {
        wait_for(
            "connections to the ClusterIP to reach both pods",
            Duration::from_secs(30),
            Duration::from_millis(300),
            || match replies(&node, &target, 30) {
                Ok(tally) if tally.len() == 2 => Ok(tally),
                Ok(tally) => Err(format!("{tally:?}")),
                Err(e) => Err(e),
            },
        )
    })
    .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", log()));
    eprintln!("spread over pods: {spread:?}");
    let pinned = node.pins.pinned().unwrap();
    for name in ["BACKENDS", "MAGLEV", "SERVICES", "links"] {
        assert!(
            pinned.iter().any(|p| p == name),
            "{name} pinned: {pinned:?}"
        );
    }

    // With the agent gone, its pinned links and maps go on forwarding.
    agent.kill();
    let while_down = tokio::task::block_in_place(|| replies(&node, &target, 10))
        .unwrap_or_else(|e| panic!("no forwarding while the agent is down: {e}"));
    assert_eq!(while_down.values().sum::<usize>(), 10);

    // The endpoints change while it is down; the restarted agent adopts and reconciles.
    client
        .delete(
            "endpointslices",
            "default",
            "web-a",
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    client
        .create("endpointslices", "default", &slice("web-b", &PODS[1..]))
        .await
        .unwrap();
    let _agent = start_agent(&control, &node);
    tokio::task::block_in_place(|| {
        wait_for(
            "the restarted agent to send every connection to the remaining pod",
            Duration::from_secs(30),
            Duration::from_millis(300),
            || match replies(&node, &target, 10) {
                Ok(tally) if tally.keys().all(|k| k == "10.244.9.11") => Ok(()),
                Ok(tally) => Err(format!("{tally:?}")),
                Err(e) => Err(e),
            },
        )
    })
    .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", log()));
    let links: std::collections::BTreeSet<String> =
        std::fs::read_dir(node.pins.path().join("links"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
    let expected = [
        "cgroup_skb_egress",
        "cgroup_skb_ingress",
        "sock_connect4",
        "sock_getpeername4",
        "sock_recvmsg4",
        "sock_release",
        "sock_sendmsg4",
        "tc_uplink_egress",
        // The node's uplink is a veth: the agent runs the ingress program at TC there.
        "tc_uplink_ingress",
    ];
    assert_eq!(
        links,
        expected.map(String::from).into_iter().collect(),
        "one pinned link per hook, the old agent's replaced"
    );

    // The agent's /metrics counts flows per backend and per service address: exactly the
    // connections made, and only for backends the maps still hold.
    let metrics = SocketAddr::from((node.link.node_ip, 10255));
    let backend = "10.244.9.11:8080/tcp";
    let service = format!("{cluster_ip}:80/tcp");
    let flows = |text: &str, family: &str, label: &str, value: &str| {
        series(text, family, label, value)
            .ok_or_else(|| format!("no {family}{{{label}={value:?}}}"))
    };
    let read = |text: &str| -> Result<(f64, f64), String> {
        Ok((
            flows(
                text,
                "skiff_dataplane_backend_flows_total",
                "backend",
                backend,
            )?,
            flows(
                text,
                "skiff_dataplane_service_flows_total",
                "service",
                &service,
            )?,
        ))
    };
    // The figures of a housekeeping pass after every connection so far: the removed
    // backend gone, and the same in two passes in a row.
    let mut last = None;
    let before = tokio::task::block_in_place(|| {
        wait_for(
            "settled flow counters in /metrics, without the removed backend",
            Duration::from_secs(15),
            Duration::from_millis(1200),
            || {
                let text = scrape(metrics).map_err(|e| format!("{e:#}"))?;
                if text.contains("backend=\"10.244.9.10:8080/tcp\"") {
                    return Err("the removed backend is still reported".into());
                }
                let now = read(&text)?;
                if last.replace(now) != Some(now) {
                    return Err(format!("{now:?} still moving"));
                }
                Ok(now)
            },
        )
    })
    .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", log()));
    assert!(before.0 >= 10.0 && before.1 >= before.0, "{before:?}");
    let made = tokio::task::block_in_place(|| replies(&node, &target, 5)).unwrap();
    assert_eq!(made.get("10.244.9.11"), Some(&5));
    tokio::task::block_in_place(|| {
        wait_for(
            "both counters to grow by the 5 connections",
            Duration::from_secs(15),
            Duration::from_millis(300),
            || {
                let now = read(&scrape(metrics).map_err(|e| format!("{e:#}"))?)?;
                (now == (before.0 + 5.0, before.1 + 5.0))
                    .then_some(())
                    .ok_or(format!("{now:?} after {before:?}"))
            },
        )
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// The value of `family{label="value"}` in a Prometheus text exposition.
fn series(text: &str, family: &str, label: &str, value: &str) -> Option<f64> {
    let prefix = format!("{family}{{{label}=\"{value}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
}
