//! End-to-end tests of the agent's pod lifecycle: real containerd (a private one per test),
//! real runc containers from a busybox image the test builds, pod network namespaces and
//! veths made by the agent inside a node network namespace, against a real skiff-control.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use skiff_api::client::Client;

use skiff_tests::{
    containerd::{CgroupTree, Containerd},
    control::{Backend, ControlPlane},
    netns::{HostLink, Netns},
    oci,
    process::{ChildGuard, spawn_guarded, workspace_binary},
    require_root, unique_name,
};

const IMAGE: &str = "skiff.test/busybox:1";
const DEADLINE: Duration = Duration::from_secs(60);

/// One node: a network namespace linked to the host, a private containerd, a cgroup
/// subtree and a state directory; the agent runs in the namespace.
struct Node {
    // Field order is drop order: the agent stops before containerd goes.
    agent: Option<ChildGuard>,
    containerd: Containerd,
    cgroup: CgroupTree,
    link: HostLink,
    netns: Netns,
    state: tempfile::TempDir,
    name: String,
    namespace: String,
    pod_cidr: String,
}

impl Node {
    fn new(index: u8) -> Node {
        let netns = Netns::new("skpod").unwrap();
        let link = HostLink::new(&netns).unwrap();
        let containerd = Containerd::start().unwrap();
        let namespace = unique_name("skns");
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("busybox.tar");
        let mut entries = oci::busybox_entries(Path::new("/bin/busybox")).unwrap();
        entries.push(oci::Entry::Dir { path: "www".into() });
        entries.push(oci::Entry::Contents {
            path: "www/index.html".into(),
            bytes: b"pong\n".to_vec(),
            mode: 0o644,
        });
        oci::write_archive(
            &oci::ImageSpec {
                name: IMAGE.into(),
                entries,
                entrypoint: vec![],
                cmd: vec!["sh".into()],
                env: vec!["PATH=/bin".into()],
                exposed_ports: vec![],
            },
            &archive,
        )
        .unwrap();
        containerd.import(&namespace, &archive).unwrap();
        Node {
            agent: None,
            containerd,
            cgroup: CgroupTree::new().unwrap(),
            link,
            netns,
            state: tempfile::Builder::new()
                .prefix("skstate")
                .tempdir_in("/tmp")
                .unwrap(),
            name: unique_name("node"),
            namespace,
            pod_cidr: format!("10.245.{index}.0/24"),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("agent.log")).unwrap_or_default()
    }

    /// Starts the agent in the node's network namespace, sharing the host's mount namespace
    /// (as containerd must see the pod namespaces it bind-mounts).
    fn start_agent(&mut self, control: &ControlPlane) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state.path().join("agent.log"))
            .unwrap();
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/var/run/netns/{}", self.netns.name()))
            .arg("--")
            .arg(workspace_binary("skiff-agent"))
            .args(["--node-name", &self.name, "--uplink", &self.link.node_if])
            .args(["--node-ip", &self.link.node_ip.to_string()])
            .args(["--pod-cidr", &self.pod_cidr])
            .arg("--state-dir")
            .arg(self.state.path())
            .arg("--cgroup-root")
            .arg(self.cgroup.unified_path())
            .arg("--containerd-socket")
            .arg(self.containerd.socket())
            .args(["--containerd-namespace", &self.namespace])
            .args(["--server", &control.url_at(self.link.host_ip)])
            .arg("--ca-file")
            .arg(control.data_dir().join("pki/ca.crt"))
            .arg("--bootstrap-token-file")
            .arg(control.data_dir().join("auth/bootstrap.token"))
            .args(["--lease-renew-seconds", "2"])
            .env("RUST_LOG", "info,skiff_agent=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.agent = Some(spawn_guarded(command).expect("spawn skiff-agent"));
    }

    fn pod_log(&self, pod: &Value, container: &str, attempt: u32) -> String {
        let dir = format!(
            "{}_{}_{}",
            pod["metadata"]["namespace"].as_str().unwrap(),
            pod["metadata"]["name"].as_str().unwrap(),
            pod["metadata"]["uid"].as_str().unwrap()
        );
        let path: PathBuf = self
            .state
            .path()
            .join("logs")
            .join(dir)
            .join(container)
            .join(format!("{attempt}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The agent first (so it does not recreate anything), then every pod namespace
        // mount it left in the state directory.
        self.agent.take();
        let prefix = self.state.path().to_string_lossy().into_owned();
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        for mount in mounts {
            if let Ok(c) = std::ffi::CString::new(mount) {
                // SAFETY: a NUL-terminated path; a failed unmount is harmless here.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

async fn start_control(nodes: &[&HostLink]) -> ControlPlane {
    let ips: Vec<_> = nodes.iter().map(|l| l.host_ip).collect();
    tokio::task::spawn_blocking(move || ControlPlane::start_listening(Backend::Embedded, &ips))
        .await
        .unwrap()
        .unwrap()
}

fn pod(name: &str, node: &str, containers: Value, extra: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": containers, "terminationGracePeriodSeconds": 5},
    });
    if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    pod
}

async fn wait_pod(
    client: &Client,
    name: &str,
    what: &str,
    node: &Node,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut last = Value::Null;
    loop {
        if let Ok(object) = client.get("pods", "default", name).await {
            if accept(&object) {
                return object;
            }
            last = object;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; pod status: {}\nagent log:\n{}\ncontainerd log tail:\n{}",
            serde_json::to_string_pretty(&last["status"]).unwrap_or_default(),
            node.log(),
            node.containerd
                .log()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n"),
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

async fn wait_log(node: &Node, pod: &Value, container: &str, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let log = node.pod_log(pod, container, 0);
        if log.contains(needle) {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "container {container} never printed {needle:?}; its log:\n{log}\nagent log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_a_pod_runs_a_real_container_with_a_pod_ip_and_field_ref_env() {
    require_root();
    let mut node = Node::new(1);
    let control = start_control(&[&node.link]).await;
    let client = control.admin_client().unwrap();
    node.start_agent(&control);

    let env = json!([
        {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MY_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "PLAIN", "value": "hello"},
    ]);
    let manifest = pod(
        "envpod",
        &node.name,
        json!([{
            "name": "main", "image": IMAGE, "env": env, "workingDir": "/www",
            "command": ["sh", "-c"],
            "args": ["echo cwd=$(pwd); env; ip addr show eth0; echo ready; exec sleep 3600"],
        }]),
        json!({}),
    );
    client.create("pods", "default", &manifest).await.unwrap();
    let pod = wait_pod(&client, "envpod", "the pod to run", &node, running).await;
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    assert!(
        ip.starts_with("10.245.1."),
        "pod IP {ip} is from the node's CIDR"
    );
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
    let ready = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    assert!(ready, "{}", pod["status"]);

    let log = wait_log(&node, &pod, "main", "ready").await;
    for expected in [
        "MY_NAME=envpod".to_string(),
        "MY_NAMESPACE=default".to_string(),
        format!("MY_IP={ip}"),
        format!("MY_NODE={}", node.name),
        "PLAIN=hello".to_string(),
        "cwd=/www".to_string(),
        format!("inet {ip}/32"),
    ] {
        assert!(log.contains(&expected), "{expected} missing from:\n{log}");
    }
    // The node reaches the pod through the routed veth.
    let ping = node.netns.exec(&["ping", "-c", "1", "-W", "2", &ip]);
    assert!(
        ping.is_ok(),
        "the node cannot ping its pod at {ip}: {ping:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_two_pods_on_one_node_reach_each_other_by_pod_ip() {
    require_root();
    let mut node = Node::new(2);
    let control = start_control(&[&node.link]).await;
    let client = control.admin_client().unwrap();
    node.start_agent(&control);

    let server = pod(
        "server",
        &node.name,
        json!([{"name": "httpd", "image": IMAGE,
                "command": ["httpd", "-f", "-p", "8080", "-h", "/www"]}]),
        json!({}),
    );
    client.create("pods", "default", &server).await.unwrap();
    let server = wait_pod(&client, "server", "the server to run", &node, running).await;
    let server_ip = server["status"]["podIP"].as_str().unwrap().to_string();

    let probe = pod(
        "client",
        &node.name,
        json!([{"name": "wget", "image": IMAGE,
                "env": [{"name": "PEER", "value": server_ip}],
                "command": ["sh", "-c",
                    "for i in $(seq 1 40); do printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $PEER 8080 | grep pong && echo fetched && break; sleep 0.5; done; exec sleep 3600"]}]),
        json!({}),
    );
    client.create("pods", "default", &probe).await.unwrap();
    let probe = wait_pod(&client, "client", "the client to run", &node, running).await;
    assert_ne!(probe["status"]["podIP"], server["status"]["podIP"]);
    let log = wait_log(&node, &probe, "wget", "fetched").await;
    assert!(
        log.contains("pong"),
        "the client pod got no answer from {server_ip}:\n{log}"
    );
}
