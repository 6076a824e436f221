//! End-to-end tests of `skiff-agent` as a process in a node network namespace, against a
//! real `skiff-control`: registration with a bootstrap token, the Node's status, the Lease
//! heartbeat, and adopting its Node after a restart.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use skiff_api::client::Client;
use skiff_tests::{
    cgroup::TestCgroup,
    control::{Backend, ControlPlane},
    netns::{HostLink, Netns},
    pins::PinDir,
    process::{ChildGuard, spawn_guarded, workspace_binary},
    require_root,
};

const DEADLINE: Duration = Duration::from_secs(30);

struct Node {
    netns: Netns,
    link: HostLink,
    state: tempfile::TempDir,
    name: String,
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
        .args(["--node-name", &node.name, "--uplink", &node.link.node_if])
        .args([
            "--node-ip",
            &node.link.node_ip.to_string(),
            "--pod-cidr",
            "10.244.7.0/24",
        ])
        .arg("--state-dir")
        .arg(node.state.path())
        .args(["--server", &control.url_at(node.link.host_ip)])
        .arg("--ca-file")
        .arg(control.data_dir().join("pki/ca.crt"))
        .arg("--bootstrap-token-file")
        .arg(control.data_dir().join("auth/bootstrap.token"))
        .args(["--lease-renew-seconds", "1"])
        .arg("--cgroup-root")
        .arg(node.cgroup.path())
        .arg("--bpffs")
        .arg(node.pins.path())
        .args([
            "--maglev-table-size",
            "251",
            "--dataplane-maglev-tables",
            "16",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    spawn_guarded(command).expect("spawn skiff-agent")
}

async fn wait_for_object(
    client: &Client,
    resource: &str,
    namespace: &str,
    name: &str,
    what: &str,
    accept: impl Fn(&Value) -> bool,
    log: impl Fn() -> String,
) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Ok(object) = client.get(resource, namespace, name).await
            && accept(&object)
        {
            return object;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; agent log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_agent_registers_its_node_and_keeps_its_lease_fresh() {
    require_root();
    let netns = Netns::new("skag").unwrap();
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
        name: "agent-node-1".into(),
        cgroup: TestCgroup::new("skiffcg").unwrap(),
        pins: PinDir::new("skiffbpf").unwrap(),
    };
    let client = control.admin_client().unwrap();
    let log = || std::fs::read_to_string(node.state.path().join("agent.log")).unwrap_or_default();

    let mut agent = start_agent(&control, &node);
    let registered = wait_for_object(
        &client,
        "nodes",
        "",
        &node.name,
        "the node to register as Ready",
        |n| {
            n.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        },
        log,
    )
    .await;
    assert_eq!(
        registered["status"]["addresses"][0]["address"],
        node.link.node_ip.to_string()
    );
    assert_eq!(registered["spec"]["podCIDR"], "10.244.7.0/24");
    assert!(
        registered["status"]["capacity"]["cpu"]
            .as_str()
            .is_some_and(|c| c.parse::<u32>().unwrap() >= 1)
    );
    assert!(
        registered["status"]["nodeInfo"]["kernelVersion"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );
    // The agent speaks with its own node credential, kept for later starts.
    let token = std::fs::read_to_string(node.state.path().join("node.token")).unwrap();
    assert!(token.starts_with(&format!("node.{}.", node.name)));

    // The lease is renewed: its renewTime moves.
    let first = wait_for_object(
        &client,
        "leases",
        "kube-node-lease",
        &node.name,
        "the node's lease",
        |_| true,
        log,
    )
    .await;
    let first_renew = first["spec"]["renewTime"].as_str().unwrap().to_string();
    assert_eq!(first["spec"]["holderIdentity"], node.name);
    wait_for_object(
        &client,
        "leases",
        "kube-node-lease",
        &node.name,
        "the lease to be renewed",
        |l| {
            l["spec"]["renewTime"]
                .as_str()
                .is_some_and(|t| t != first_renew)
        },
        log,
    )
    .await;

    // Restarted, the agent adopts its Node (same uid) and goes on renewing.
    agent.kill();
    let uid = registered["metadata"]["uid"].clone();
    let before = client
        .get("leases", "kube-node-lease", &node.name)
        .await
        .unwrap()["spec"]["renewTime"]
        .clone();
    let _agent = start_agent(&control, &node);
    wait_for_object(
        &client,
        "leases",
        "kube-node-lease",
        &node.name,
        "the restarted agent to renew",
        |l| l["spec"]["renewTime"] != before,
        log,
    )
    .await;
    let node_now = client.get("nodes", "", &node.name).await.unwrap();
    assert_eq!(node_now["metadata"]["uid"], uid);
    assert!(log().contains("adopting it"), "{}", log());
}
