//! End-to-end test of eviction under memory pressure: a node whose cgroup subtree has a
//! memory limit (so it has that much memory), a real agent with a hard threshold, a
//! Guaranteed pod and a BestEffort pod that grows its memory until the node runs low; the
//! BestEffort pod is evicted, the Guaranteed one keeps running.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use serde_json::{Value, json};
use skiff_agent::pods::qos::{QosClass, pod_cgroup};
use skiff_api::client::{Client, ListParams};
use skiff_tests::{
    containerd::CgroupTree,
    pod_node::{IMAGE, PodNode},
    require_root,
    wait::eventually,
};

/// The node's memory: its cgroup subtree's limit.
const NODE_MEMORY: u64 = 600 << 20;
const MEMORY_PRESSURE_TAINT: &str = "node.kubernetes.io/memory-pressure";

fn pod(name: &str, node: &str, container: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [container], "terminationGracePeriodSeconds": 2},
    })
}

fn condition(node: &Value, kind: &str) -> String {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .map(|c| c["status"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn has_taint(node: &Value, key: &str) -> bool {
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["key"] == key && t["effect"] == "NoSchedule")
}

async fn get(
    client: &Client,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Result<Value, String> {
    client
        .get(resource, namespace, name)
        .await
        .map_err(|e| e.to_string())
}

/// The value, or a panic with the error and the agent's log.
fn or_log<T>(result: anyhow::Result<T>, node: &PodNode) -> T {
    result.unwrap_or_else(|error| panic!("{error:#}\nagent log:\n{}", node.log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_memory_pressure_evicts_the_best_effort_hog_and_spares_the_guaranteed_pod() {
    require_root();
    let mut node = PodNode::new(41);
    node.cgroup.limit_memory(NODE_MEMORY).unwrap();
    node.agent_args = [
        "--eviction-hard",
        "memory.available<250Mi",
        "--eviction-monitoring-interval",
        "500ms",
        "--eviction-pressure-transition-period",
        "5s",
    ]
    .map(String::from)
    .to_vec();
    let (_control, client) = node.start_with_control().await;
    let name = node.name.clone();

    // The node reports its subtree's memory as its capacity.
    let registered = eventually(
        "the node to report its capacity",
        Duration::from_secs(30),
        || async {
            let node = get(&client, "nodes", "", &name).await?;
            if node["status"]["capacity"]["memory"].is_null() {
                return Err("no status.capacity.memory yet".to_string());
            }
            Ok(node)
        },
    )
    .await;
    let registered = or_log(registered, &node);
    assert_eq!(registered["status"]["capacity"]["memory"], "614400Ki");
    assert_eq!(registered["status"]["allocatable"]["memory"], "512000Ki");
    assert_eq!(condition(&registered, "MemoryPressure"), "False");

    let steady = pod(
        "steady",
        &name,
        json!({
            "name": "steady", "image": IMAGE, "command": ["sleep", "3600"],
            "resources": {"limits": {"cpu": "100m", "memory": "32Mi"}},
        }),
    );
    client.create("pods", "default", &steady).await.unwrap();
    let steady = eventually(
        "the Guaranteed pod to run",
        Duration::from_secs(60),
        || async {
            let pod = get(&client, "pods", "default", "steady").await?;
            if pod["status"]["phase"] == "Running" {
                Ok(pod)
            } else {
                Err(pod["status"].to_string())
            }
        },
    )
    .await;
    let steady = or_log(steady, &node);
    assert_eq!(steady["status"]["qosClass"], "Guaranteed");
    let uid = steady["metadata"]["uid"].as_str().unwrap();
    let steady_cgroup = pod_cgroup(&node.cgroup.relative, QosClass::Guaranteed, uid);
    assert_eq!(
        CgroupTree::memory_limit_of(&steady_cgroup),
        Some(32 << 20),
        "the Guaranteed pod's cgroup {steady_cgroup} is limited to its containers' total"
    );

    // 4 MiB more every 0.1 s, each in a shell variable of its own (never copied again).
    let hog = pod(
        "hog",
        &name,
        json!({
            "name": "hog", "image": IMAGE,
            "command": ["sh", "-c", "chunk=$(head -c 4194304 /dev/zero | tr '\\0' x); i=0; \
                while true; do eval \"v$i=\\$chunk\"; i=$((i+1)); sleep 0.1; done"],
        }),
    );
    client.create("pods", "default", &hog).await.unwrap();

    // Watch the node while the hog grows: MemoryPressure and its taint must show.
    let (saw_pressure, saw_taint) = (AtomicBool::new(false), AtomicBool::new(false));
    let look_at_node = |node: &Value| {
        if condition(node, "MemoryPressure") == "True" {
            saw_pressure.store(true, Ordering::Relaxed);
        }
        if has_taint(node, MEMORY_PRESSURE_TAINT) {
            saw_taint.store(true, Ordering::Relaxed);
        }
    };
    let evicted = eventually("the hog to be evicted", Duration::from_secs(90), || {
        let (client, name, look_at_node) = (&client, &name, &look_at_node);
        async move {
            if let Ok(node) = get(client, "nodes", "", name).await {
                look_at_node(&node);
            }
            let pod = get(client, "pods", "default", "hog").await?;
            if pod["status"]["phase"] == "Failed" {
                Ok(pod)
            } else {
                Err(pod["status"].to_string())
            }
        }
    })
    .await;
    let evicted = or_log(evicted, &node);
    assert_eq!(
        evicted["status"]["reason"], "Evicted",
        "{}",
        evicted["status"]
    );
    let message = evicted["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "The node was low on resource: memory. Threshold quantity: 250Mi, available: "
        ) && message.contains("Container hog was using ")
            && message.ends_with(", request is 0, has larger consumption of memory."),
        "{message}"
    );

    let events = client
        .list("events", "default", &ListParams::default())
        .await
        .unwrap();
    let event = events
        .items
        .iter()
        .find(|e| e["reason"] == "Evicted" && e["involvedObject"]["name"] == "hog")
        .unwrap_or_else(|| panic!("no Evicted event for the hog: {:?}", events.items));
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["message"], message);

    // The condition shows, and holds for the transition period after the eviction.
    let pressed = eventually(
        "MemoryPressure=True and its taint",
        Duration::from_secs(10),
        || {
            let (client, name, look_at_node) = (&client, &name, &look_at_node);
            let (saw_pressure, saw_taint) = (&saw_pressure, &saw_taint);
            async move {
                let node = get(client, "nodes", "", name).await?;
                look_at_node(&node);
                let (pressure, taint) = (
                    saw_pressure.load(Ordering::Relaxed),
                    saw_taint.load(Ordering::Relaxed),
                );
                if pressure && taint {
                    Ok(node)
                } else {
                    Err(format!(
                        "pressure seen {pressure}, taint seen {taint}: {}",
                        node["status"]["conditions"]
                    ))
                }
            }
        },
    )
    .await;
    let pressed = or_log(pressed, &node);
    let memory_condition = pressed["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "MemoryPressure")
        .cloned()
        .unwrap();
    if memory_condition["status"] == "True" {
        assert_eq!(memory_condition["reason"], "KubeletHasInsufficientMemory");
    }

    // Pressure ends after the transition period without pressure, and the taint goes.
    let ended = eventually(
        "MemoryPressure=False and no taint",
        Duration::from_secs(40),
        || async {
            let node = get(&client, "nodes", "", &name).await?;
            if condition(&node, "MemoryPressure") == "False"
                && !has_taint(&node, MEMORY_PRESSURE_TAINT)
            {
                Ok(())
            } else {
                Err(format!(
                    "{} {}",
                    node["status"]["conditions"], node["spec"]["taints"]
                ))
            }
        },
    )
    .await;
    or_log(ended, &node);

    // The Guaranteed pod was never touched, and the hog never came back.
    let steady = get(&client, "pods", "default", "steady").await.unwrap();
    assert_eq!(steady["status"]["phase"], "Running", "{}", steady["status"]);
    assert_eq!(steady["status"]["containerStatuses"][0]["restartCount"], 0);
    assert!(steady["status"]["containerStatuses"][0]["state"]["running"].is_object());
    let hog = get(&client, "pods", "default", "hog").await.unwrap();
    assert_eq!(hog["status"]["phase"], "Failed");
    assert!(
        hog["status"]["containerStatuses"][0]["state"]["running"].is_null(),
        "{}",
        hog["status"]
    );
}
