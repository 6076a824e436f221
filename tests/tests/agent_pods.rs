//! End-to-end tests of the agent's pod lifecycle: real containerd (a private one per test),
//! real runc containers from a busybox image the test builds, pod network namespaces and
//! veths made by the agent inside a node network namespace, against a real skiff-control.

use std::time::Duration;

use serde_json::{Value, json};
use skiff_api::client::{Client, DeleteParams};
use skiff_tests::{
    control::{Backend, ControlPlane},
    netns::{HostLink, veth_between},
    pod_node::{IMAGE, PodNode},
    require_root,
};

const DEADLINE: Duration = Duration::from_secs(60);

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
    node: &PodNode,
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

async fn wait_log(node: &PodNode, pod: &Value, container: &str, needle: &str) -> String {
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
    let mut node = PodNode::new(1);
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
            "args": ["echo cwd=$(pwd); env; ip addr show eth0; echo oops >&2; echo ready; exec sleep 3600"],
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
    // Logs are CRI lines: `<RFC3339Nano> <stream> F <text>`, from both streams.
    for line in log.lines() {
        let mut fields = line.splitn(4, ' ');
        let (time, stream, tag) = (fields.next(), fields.next(), fields.next());
        assert!(
            time.is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok())
                && matches!(stream, Some("stdout" | "stderr"))
                && tag == Some("F"),
            "not a CRI log line: {line}"
        );
    }
    assert!(
        log.lines().any(|l| l.ends_with(" stderr F oops")),
        "stderr is missing from the log:\n{log}"
    );
    // Status is written only when it changes: a steady pod's object stays as it is.
    let settled = wait_pod(&client, "envpod", "the status to settle", &node, |p| {
        container_status(p)["ready"] == true
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = client.get("pods", "default", "envpod").await.unwrap();
    assert_eq!(
        later["metadata"]["resourceVersion"], settled["metadata"]["resourceVersion"],
        "the agent rewrote an unchanged status: {} then {}",
        settled["status"], later["status"]
    );
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
    let mut node = PodNode::new(2);
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

fn container_status(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_a_crashing_container_goes_to_crash_loop_back_off_with_growing_delays() {
    require_root();
    let mut node = PodNode::new(3);
    let control = start_control(&[&node.link]).await;
    let client = control.admin_client().unwrap();
    node.start_agent(&control);

    let manifest = pod(
        "crasher",
        &node.name,
        json!([{"name": "main", "image": IMAGE, "command": ["sh", "-c", "echo crashing; exit 3"]}]),
        json!({}),
    );
    client.create("pods", "default", &manifest).await.unwrap();
    let started = tokio::time::Instant::now();
    let backing_off = wait_pod(&client, "crasher", "CrashLoopBackOff", &node, |p| {
        container_status(p)["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    })
    .await;
    let status = container_status(&backing_off);
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(status["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(status["ready"], false);

    let first = wait_pod(&client, "crasher", "the first restart", &node, |p| {
        container_status(p)["restartCount"].as_u64() >= Some(1)
    })
    .await;
    let first_at = started.elapsed();
    assert_eq!(container_status(&first)["restartCount"], 1);
    let second = wait_pod(&client, "crasher", "the second restart", &node, |p| {
        container_status(p)["restartCount"].as_u64() >= Some(2)
    })
    .await;
    let second_at = started.elapsed();
    assert_eq!(container_status(&second)["restartCount"], 2);
    // Back-off: 10 s before the first restart, 20 s before the second.
    assert!(
        first_at >= Duration::from_secs(9),
        "first restart after {first_at:?}, before its 10 s back-off"
    );
    let gap = second_at - first_at;
    assert!(
        gap >= Duration::from_secs(18) && gap > first_at,
        "the second back-off ({gap:?}) did not grow past the first ({first_at:?})"
    );
    let waiting = wait_pod(&client, "crasher", "the next back-off", &node, |p| {
        container_status(p)["state"]["waiting"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("40s"))
    })
    .await;
    assert_eq!(waiting["status"]["phase"], "Running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_a_memory_hog_is_oom_killed_under_its_limit() {
    require_root();
    let mut node = PodNode::new(4);
    let control = start_control(&[&node.link]).await;
    let client = control.admin_client().unwrap();
    node.start_agent(&control);

    let manifest = pod(
        "hog",
        &node.name,
        json!([{
            "name": "hog", "image": IMAGE,
            "resources": {"limits": {"memory": "32Mi"}},
            "command": ["sh", "-c", "echo start; x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"],
        }]),
        json!({"restartPolicy": "Never"}),
    );
    client.create("pods", "default", &manifest).await.unwrap();
    let done = wait_pod(&client, "hog", "the hog to be killed", &node, |p| {
        container_status(p)["state"]["terminated"].is_object()
    })
    .await;
    let terminated = &container_status(&done)["state"]["terminated"];
    assert_eq!(terminated["reason"], "OOMKilled", "{terminated}");
    assert_eq!(terminated["exitCode"], 137);
    assert_eq!(done["status"]["phase"], "Failed");
    assert_eq!(done["status"]["qosClass"], "Burstable");
    assert!(!node.pod_log(&done, "hog", 0).contains("survived"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_delete_terminates_gracefully_then_the_pod_object_is_gone() {
    require_root();
    let mut node = PodNode::new(5);
    let control = start_control(&[&node.link]).await;
    let client = control.admin_client().unwrap();
    node.start_agent(&control);

    let manifest = pod(
        "graceful",
        &node.name,
        json!([
            {"name": "polite", "image": IMAGE, "command": ["sh", "-c",
                "trap 'echo got TERM; sleep 1; echo bye; exit 0' TERM; echo ready; while true; do sleep 0.2; done"],
             "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo pre-stop > /proc/1/fd/1"]}}}},
            {"name": "stubborn", "image": IMAGE, "command": ["sh", "-c",
                "trap 'echo ignoring TERM' TERM; echo ready; while true; do sleep 0.2; done"]},
        ]),
        json!({"terminationGracePeriodSeconds": 3}),
    );
    client.create("pods", "default", &manifest).await.unwrap();
    let running = wait_pod(&client, "graceful", "both containers to run", &node, |p| {
        p["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|s| s.len() == 2 && s.iter().all(|c| c["state"]["running"].is_object()))
    })
    .await;
    wait_log(&node, &running, "polite", "ready").await;
    wait_log(&node, &running, "stubborn", "ready").await;

    let deleting = tokio::time::Instant::now();
    client
        .delete("pods", "default", "graceful", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = deleting + DEADLINE;
    while client.get("pods", "default", "graceful").await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pod was never deleted; agent log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = deleting.elapsed();
    let polite = node.pod_log(&running, "polite", 0);
    assert!(
        polite.contains("got TERM") && polite.contains("bye"),
        "the polite container saw no SIGTERM:\n{polite}"
    );
    let (hook, term) = (polite.find("pre-stop"), polite.find("got TERM"));
    assert!(
        hook.is_some() && hook < term,
        "the preStop hook did not run before SIGTERM:\n{polite}"
    );
    let stubborn = node.pod_log(&running, "stubborn", 0);
    assert!(stubborn.contains("ignoring TERM"), "{stubborn}");
    // The stubborn one held the pod until the grace period ran out and SIGKILL came.
    assert!(
        took >= Duration::from_secs(3),
        "deleted after {took:?}, before the 3 s grace period"
    );
    assert!(took < Duration::from_secs(20), "deletion took {took:?}");
    // Nothing is left in containerd for the pod.
    let left = node
        .containerd
        .ctr(&node.namespace, &["containers", "ls", "-q"])
        .unwrap();
    assert!(left.trim().is_empty(), "containers left: {left}");
}

fn task_pids(node: &PodNode) -> Vec<(String, String)> {
    node.containerd
        .ctr(&node.namespace, &["tasks", "ls"])
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_a_restarted_agent_adopts_running_containers_without_restarting_them() {
    require_root();
    let mut node = PodNode::new(6);
    let control = start_control(&[&node.link]).await;
    let client = control.admin_client().unwrap();
    node.start_agent(&control);

    let manifest = pod(
        "steady",
        &node.name,
        json!([{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]),
        json!({}),
    );
    client.create("pods", "default", &manifest).await.unwrap();
    let before = wait_pod(&client, "steady", "the pod to run", &node, running).await;
    let pids_before = task_pids(&node);
    assert_eq!(pids_before.len(), 1, "{pids_before:?}");

    node.agent.as_mut().unwrap().kill(); // SIGKILL
    node.start_agent(&control);
    // The new agent is at work: a second pod runs.
    let second = pod(
        "after-restart",
        &node.name,
        json!([{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]),
        json!({}),
    );
    client.create("pods", "default", &second).await.unwrap();
    let second = wait_pod(
        &client,
        "after-restart",
        "a pod after the restart",
        &node,
        running,
    )
    .await;
    assert_ne!(second["status"]["podIP"], before["status"]["podIP"]);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let after = client.get("pods", "default", "steady").await.unwrap();
    assert_eq!(after["status"]["phase"], "Running");
    assert_eq!(container_status(&after)["restartCount"], 0);
    assert_eq!(
        container_status(&after)["containerID"],
        container_status(&before)["containerID"]
    );
    assert_eq!(
        container_status(&after)["state"]["running"]["startedAt"],
        container_status(&before)["state"]["running"]["startedAt"]
    );
    assert_eq!(after["status"]["podIP"], before["status"]["podIP"]);
    let pids_after = task_pids(&node);
    let (id, pid) = &pids_before[0];
    assert!(
        pids_after.iter().any(|(i, p)| i == id && p == pid),
        "task {id} pid {pid} is gone after the agent restart: {pids_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_a_missing_image_or_command_shows_in_status_and_other_pods_still_run() {
    require_root();
    let mut node = PodNode::new(7);
    let control = start_control(&[&node.link]).await;
    let client = control.admin_client().unwrap();
    node.start_agent(&control);

    let no_image = pod(
        "no-image",
        &node.name,
        json!([{"name": "main", "image": "skiff.test/missing:1"}]),
        json!({}),
    );
    let no_command = pod(
        "no-command",
        &node.name,
        json!([{"name": "main", "image": IMAGE, "command": ["/no/such/binary"]}]),
        json!({}),
    );
    let fine = pod(
        "fine",
        &node.name,
        json!([{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]),
        json!({}),
    );
    for manifest in [&no_image, &no_command, &fine] {
        client.create("pods", "default", manifest).await.unwrap();
    }
    let missing = wait_pod(&client, "no-image", "ErrImagePull", &node, |p| {
        container_status(p)["state"]["waiting"]["reason"]
            .as_str()
            .is_some_and(|r| r == "ErrImagePull" || r == "ImagePullBackOff")
    })
    .await;
    let message = container_status(&missing)["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("skiff.test/missing:1"), "{message}");
    let bad = wait_pod(&client, "no-command", "a container error", &node, |p| {
        container_status(p)["state"]["waiting"]["reason"]
            .as_str()
            .is_some_and(|r| r.ends_with("ContainerError"))
    })
    .await;
    let message = container_status(&bad)["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("/no/such/binary"), "{message}");
    wait_pod(&client, "fine", "the healthy pod to run", &node, running).await;
    assert!(
        node.agent.as_mut().unwrap().exited().is_none(),
        "the agent died"
    );
}

fn condition(pod: &Value, kind: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_readiness_drives_ready_and_a_failing_liveness_probe_restarts_the_container() {
    require_root();
    let mut node = PodNode::new(8);
    let control = start_control(&[&node.link]).await;
    let client = control.admin_client().unwrap();
    node.start_agent(&control);

    let probed = pod(
        "probed",
        &node.name,
        json!([{
            "name": "web", "image": IMAGE,
            "ports": [{"name": "http", "containerPort": 8080}],
            "command": ["sh", "-c",
                "touch /tmp/alive; httpd -p 8080 -h /www; sleep 8; rm /tmp/alive; exec sleep 3600"],
            "readinessProbe": {"httpGet": {"path": "/index.html", "port": "http"}, "periodSeconds": 1},
            "livenessProbe": {"exec": {"command": ["test", "-f", "/tmp/alive"]},
                              "periodSeconds": 1, "failureThreshold": 2},
        }]),
        json!({}),
    );
    let never_ready = pod(
        "unready",
        &node.name,
        json!([{
            "name": "main", "image": IMAGE, "command": ["sleep", "3600"],
            "readinessProbe": {"tcpSocket": {"port": 9999}, "periodSeconds": 1},
        }]),
        json!({}),
    );
    client.create("pods", "default", &probed).await.unwrap();
    client
        .create("pods", "default", &never_ready)
        .await
        .unwrap();

    let ready = wait_pod(&client, "probed", "readiness to pass", &node, |p| {
        condition(p, "Ready") == "True"
    })
    .await;
    assert_eq!(container_status(&ready)["ready"], true);
    assert_eq!(container_status(&ready)["restartCount"], 0);

    let restarted = wait_pod(&client, "probed", "the liveness restart", &node, |p| {
        container_status(p)["restartCount"].as_u64() >= Some(1)
    })
    .await;
    let last = &container_status(&restarted)["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{last}");
    assert!(
        node.log().contains("probe failed"),
        "the agent did not report the liveness failure:\n{}",
        node.log()
    );

    let unready = client.get("pods", "default", "unready").await.unwrap();
    assert_eq!(unready["status"]["phase"], "Running");
    assert_eq!(container_status(&unready)["ready"], false);
    assert_eq!(condition(&unready, "Ready"), "False");
    assert_eq!(condition(&unready, "ContainersReady"), "False");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_volumes_bring_empty_dirs_host_paths_config_maps_and_secrets_into_containers() {
    require_root();
    let mut node = PodNode::new(9);
    let control = start_control(&[&node.link]).await;
    let client = control.admin_client().unwrap();
    node.start_agent(&control);

    let host_dir = node.state.path().join("hostdata");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("marker"), "from-host\n").unwrap();
    client
        .create(
            "configmaps",
            "default",
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "app-config"}, "data": {"greeting": "hello"}}),
        )
        .await
        .unwrap();
    client
        .create(
            "secrets",
            "default",
            // "s3cret", base64-encoded.
            &json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "app-secret"}, "data": {"token": "czNjcmV0"}}),
        )
        .await
        .unwrap();
    let manifest = pod(
        "volumes",
        &node.name,
        json!([
            {"name": "writer", "image": IMAGE,
             "command": ["sh", "-c", "echo shared-data > /scratch/note; exec sleep 3600"],
             "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]},
            {"name": "reader", "image": IMAGE,
             "command": ["sh", "-c",
                "cat /host/marker; cat /etc/secret/token; echo; \
                 until [ -f /scratch/note ]; do sleep 0.2; done; cat /scratch/note; \
                 echo readonly-$(touch /etc/config/x 2>/dev/null && echo no || echo yes); \
                 while true; do echo greeting=$(cat /etc/config/greeting); sleep 0.5; done"],
             "volumeMounts": [
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "host", "mountPath": "/host"},
                {"name": "config", "mountPath": "/etc/config"},
                {"name": "secret", "mountPath": "/etc/secret"},
             ]},
        ]),
        json!({"volumes": [
            {"name": "scratch", "emptyDir": {}},
            {"name": "host", "hostPath": {"path": host_dir, "type": "Directory"}},
            {"name": "config", "configMap": {"name": "app-config"}},
            {"name": "secret", "secret": {"secretName": "app-secret"}},
        ]}),
    );
    client.create("pods", "default", &manifest).await.unwrap();
    let running_pod = wait_pod(&client, "volumes", "the pod to run", &node, |p| {
        p["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|s| s.len() == 2 && s.iter().all(|c| c["state"]["running"].is_object()))
    })
    .await;
    let log = wait_log(&node, &running_pod, "reader", "greeting=hello").await;
    for expected in ["from-host", "s3cret", "shared-data", "readonly-yes"] {
        assert!(log.contains(expected), "{expected} missing from:\n{log}");
    }

    // The configMap changes; the file in the running container follows.
    let mut config = client
        .get("configmaps", "default", "app-config")
        .await
        .unwrap();
    config["data"]["greeting"] = json!("bonjour");
    client
        .update("configmaps", "default", &config)
        .await
        .unwrap();
    wait_log(&node, &running_pod, "reader", "greeting=bonjour").await;

    // A pod whose configMap does not exist says so and does not start.
    let missing = pod(
        "missing-config",
        &node.name,
        json!([{"name": "main", "image": IMAGE, "command": ["sleep", "3600"],
                "volumeMounts": [{"name": "config", "mountPath": "/etc/config"}]}]),
        json!({"volumes": [{"name": "config", "configMap": {"name": "nowhere"}}]}),
    );
    client.create("pods", "default", &missing).await.unwrap();
    let waiting = wait_pod(&client, "missing-config", "a config error", &node, |p| {
        container_status(p)["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    })
    .await;
    let message = container_status(&waiting)["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("\"nowhere\" not found"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_pods_on_two_nodes_reach_each_other_through_direct_routes() {
    require_root();
    let mut a = PodNode::new(10);
    let mut b = PodNode::new(11);
    // The nodes' own network: a direct link, its addresses being the nodes' InternalIPs.
    let subnet = std::process::id() % 64 * 4;
    let (a_ip, b_ip) = (
        std::net::Ipv4Addr::new(10, 246, 0, subnet as u8 + 1),
        std::net::Ipv4Addr::new(10, 246, 0, subnet as u8 + 2),
    );
    veth_between(
        &a.netns,
        &format!("{a_ip}/30"),
        &b.netns,
        &format!("{b_ip}/30"),
    )
    .unwrap();
    a.node_ip = Some(a_ip);
    b.node_ip = Some(b_ip);
    let control = start_control(&[&a.link, &b.link]).await;
    let client = control.admin_client().unwrap();
    a.start_agent(&control);
    b.start_agent(&control);

    let server = pod(
        "far-server",
        &a.name,
        json!([{"name": "httpd", "image": IMAGE,
                "command": ["httpd", "-f", "-p", "8080", "-h", "/www"]}]),
        json!({}),
    );
    client.create("pods", "default", &server).await.unwrap();
    let server = wait_pod(&client, "far-server", "the server on node a", &a, running).await;
    let server_ip = server["status"]["podIP"].as_str().unwrap().to_string();
    assert!(server_ip.starts_with("10.245.10."), "{server_ip}");

    let probe = pod(
        "far-client",
        &b.name,
        json!([{"name": "nc", "image": IMAGE,
                "env": [{"name": "PEER", "value": server_ip}],
                "command": ["sh", "-c",
                    "for i in $(seq 1 60); do printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $PEER 8080 | grep pong && echo fetched && break; sleep 0.5; done; exec sleep 3600"]}]),
        json!({}),
    );
    client.create("pods", "default", &probe).await.unwrap();
    let probe = wait_pod(&client, "far-client", "the client on node b", &b, running).await;
    assert!(
        probe["status"]["podIP"]
            .as_str()
            .unwrap()
            .starts_with("10.245.11.")
    );
    let log = wait_log(&b, &probe, "nc", "fetched").await;
    assert!(
        log.contains("pong"),
        "no answer across nodes from {server_ip}:\n{log}"
    );
    // The route node b made to node a's pods carries the agent's protocol number.
    let routes = b
        .netns
        .exec(&["ip", "route", "show", "proto", "92"])
        .unwrap();
    assert!(
        routes.contains(&format!("10.245.10.0/24 via {a_ip}")),
        "node b's routes: {routes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_a_force_deleted_pod_loses_its_containers_and_its_address() {
    require_root();
    let mut node = PodNode::new(12);
    let control = start_control(&[&node.link]).await;
    let client = control.admin_client().unwrap();
    node.start_agent(&control);

    let manifest = pod(
        "forced",
        &node.name,
        json!([{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]),
        json!({}),
    );
    client.create("pods", "default", &manifest).await.unwrap();
    let pod = wait_pod(&client, "forced", "the pod to run", &node, running).await;
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    let ipam = node.state.path().join("ipam").join(&ip);
    assert!(ipam.exists(), "no IPAM record for {ip}");

    // Gone from the API at once (grace 0): the agent cleans up what it finds orphaned.
    let force = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    client
        .delete("pods", "default", "forced", &force)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let containers = node
            .containerd
            .ctr(&node.namespace, &["containers", "ls", "-q"])
            .unwrap();
        if containers.trim().is_empty() && !ipam.exists() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "containers {containers:?} or the address {ip} outlived the pod; agent log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ping = node.netns.exec(&["ping", "-c", "1", "-W", "1", &ip]);
    assert!(ping.is_err(), "{ip} still answers after the pod is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_the_agent_rides_out_a_containerd_restart() {
    require_root();
    let mut node = PodNode::new(13);
    let control = start_control(&[&node.link]).await;
    let client = control.admin_client().unwrap();
    node.start_agent(&control);

    let first = pod(
        "before",
        &node.name,
        json!([{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]),
        json!({}),
    );
    client.create("pods", "default", &first).await.unwrap();
    let before = wait_pod(&client, "before", "the first pod to run", &node, running).await;
    let pids_before = task_pids(&node);

    node.containerd.restart().unwrap();
    let second = pod(
        "after",
        &node.name,
        json!([{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]),
        json!({}),
    );
    client.create("pods", "default", &second).await.unwrap();
    wait_pod(
        &client,
        "after",
        "a pod after containerd restarted",
        &node,
        running,
    )
    .await;

    let now = client.get("pods", "default", "before").await.unwrap();
    assert_eq!(container_status(&now)["restartCount"], 0);
    assert_eq!(
        container_status(&now)["containerID"],
        container_status(&before)["containerID"]
    );
    let pids_after = task_pids(&node);
    assert!(
        pids_before.iter().all(|t| pids_after.contains(t)),
        "the first pod's task changed: {pids_before:?} -> {pids_after:?}"
    );
    assert!(
        node.agent.as_mut().unwrap().exited().is_none(),
        "the agent died"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_init_containers_run_to_completion_in_order_before_the_containers() {
    require_root();
    let mut node = PodNode::new(14);
    let control = start_control(&[&node.link]).await;
    let client = control.admin_client().unwrap();
    node.start_agent(&control);

    let manifest = pod(
        "initialised",
        &node.name,
        json!([{"name": "main", "image": IMAGE,
                "command": ["sh", "-c", "cat /work/steps; echo main-ran; exec sleep 3600"],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}]}]),
        json!({
            "initContainers": [
                {"name": "first", "image": IMAGE,
                 "command": ["sh", "-c", "sleep 1; echo first >> /work/steps"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                {"name": "second", "image": IMAGE,
                 "command": ["sh", "-c", "echo second >> /work/steps"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
            ],
            "volumes": [{"name": "work", "emptyDir": {}}],
        }),
    );
    client.create("pods", "default", &manifest).await.unwrap();
    let pending = wait_pod(
        &client,
        "initialised",
        "the first init container",
        &node,
        |p| p["status"]["initContainerStatuses"][0]["state"]["running"].is_object(),
    )
    .await;
    assert_eq!(pending["status"]["phase"], "Pending");
    assert_eq!(condition(&pending, "Initialized"), "False");
    assert!(
        pending["status"]["containerStatuses"][0]["state"]["running"].is_null(),
        "the container started before the init containers finished"
    );

    let running_pod = wait_pod(&client, "initialised", "the pod to run", &node, running).await;
    assert_eq!(condition(&running_pod, "Initialized"), "True");
    for init in running_pod["status"]["initContainerStatuses"]
        .as_array()
        .unwrap()
    {
        assert_eq!(init["state"]["terminated"]["reason"], "Completed", "{init}");
        assert_eq!(init["state"]["terminated"]["exitCode"], 0);
    }
    let log = wait_log(&node, &running_pod, "main", "main-ran").await;
    let (first, second) = (log.find(" first"), log.find(" second"));
    assert!(
        first.is_some() && first < second,
        "init containers did not run in order:\n{log}"
    );
}
