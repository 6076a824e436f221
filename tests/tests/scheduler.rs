//! End-to-end tests of the scheduler inside `skiff-control`: pods on hollow nodes (Node
//! objects with no agent, like kubemark's) land where their constraints say, stay Pending
//! with kube-scheduler's reason when nothing fits, and preempt lower-priority pods.

use std::time::Duration;

use serde_json::{Value, json};
use skiff_api::client::{Client, DeleteParams, ListParams};
use skiff_tests::control::{Backend, ControlPlane};

const DEADLINE: Duration = Duration::from_secs(30);

fn node(name: &str, cpu: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {
            "allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
            "capacity": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    })
}

fn pod(name: &str, cpu: &str, extra: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "skiff.local/demo:1.0",
            "resources": {"requests": {"cpu": cpu}}}]}
    });
    if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    pod
}

async fn start() -> (ControlPlane, Client) {
    let control = tokio::task::spawn_blocking(|| ControlPlane::start(Backend::Embedded))
        .await
        .unwrap()
        .unwrap();
    let client = control.admin_client().unwrap();
    (control, client)
}

async fn wait_pod(
    client: &Client,
    name: &str,
    what: &str,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let pod = client
            .get("pods", "default", name)
            .await
            .unwrap_or(Value::Null);
        if accept(&pod) {
            return pod;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last: {pod}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn node_name(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_land_on_the_nodes_their_constraints_allow() {
    let (_control, client) = start().await;
    client
        .create("nodes", "", &node("small", "1", json!({"disk": "hdd"})))
        .await
        .unwrap();
    client
        .create("nodes", "", &node("ssd", "4", json!({"disk": "ssd"})))
        .await
        .unwrap();

    client
        .create(
            "pods",
            "default",
            &pod(
                "wants-ssd",
                "100m",
                json!({"nodeSelector": {"disk": "ssd"}}),
            ),
        )
        .await
        .unwrap();
    client
        .create("pods", "default", &pod("big", "3", json!({})))
        .await
        .unwrap();
    let wants_ssd = wait_pod(&client, "wants-ssd", "wants-ssd to be bound", |p| {
        node_name(p).is_some()
    })
    .await;
    assert_eq!(node_name(&wants_ssd), Some("ssd"));
    let big = wait_pod(&client, "big", "big to be bound", |p| {
        node_name(p).is_some()
    })
    .await;
    assert_eq!(node_name(&big), Some("ssd"), "only ssd has 3 CPUs free");

    // Nothing has 8 CPUs: Pending, with the reason per node, as kube-scheduler words it.
    client
        .create("pods", "default", &pod("huge", "8", json!({})))
        .await
        .unwrap();
    let huge = wait_pod(&client, "huge", "huge to be reported unschedulable", |p| {
        p["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "PodScheduled" && c["status"] == "False")
        })
    })
    .await;
    assert!(node_name(&huge).is_none());
    let condition = huge["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap();
    assert_eq!(condition["reason"], "Unschedulable");
    let message = condition["message"].as_str().unwrap();
    assert!(
        message.starts_with("0/2 nodes are available: 2 Insufficient cpu."),
        "{message}"
    );
    let params = ListParams {
        field_selector: "involvedObject.name=huge".into(),
        ..Default::default()
    };
    // Events are recorded after the condition is written (the recorder batches them).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = client.list("events", "default", &params).await.unwrap();
        if events
            .items
            .iter()
            .any(|e| e["reason"] == "FailedScheduling")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no FailedScheduling event for huge within 10 s: {:?}",
            events.items
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A node that arrives later lets it schedule (the queue retries on the node event).
    client
        .create("nodes", "", &node("large", "16", json!({})))
        .await
        .unwrap();
    let huge = wait_pod(&client, "huge", "huge to land on the new node", |p| {
        node_name(p).is_some()
    })
    .await;
    assert_eq!(node_name(&huge), Some("large"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_pod_preempts_a_lower_priority_one() {
    let (_control, client) = start().await;
    client
        .create("nodes", "", &node("only", "1", json!({})))
        .await
        .unwrap();
    for (name, value) in [("low", 10), ("high", 1000)] {
        let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value});
        client.create("priorityclasses", "", &class).await.unwrap();
    }
    let missing = client
        .create(
            "pods",
            "default",
            &pod("x", "1m", json!({"priorityClassName": "nope"})),
        )
        .await
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("no PriorityClass with name nope was found"),
        "{missing}"
    );
    let low = client
        .create(
            "pods",
            "default",
            &pod("low", "800m", json!({"priorityClassName": "low"})),
        )
        .await
        .unwrap();
    assert_eq!(
        low["spec"]["priority"], 10,
        "the priority comes from the class"
    );
    wait_pod(&client, "low", "low to be bound", |p| {
        node_name(p) == Some("only")
    })
    .await;

    client
        .create(
            "pods",
            "default",
            &pod("high", "800m", json!({"priorityClassName": "high"})),
        )
        .await
        .unwrap();
    // The victim is evicted gracefully (marked for deletion), the preemptor nominated.
    let low = wait_pod(&client, "low", "low to be evicted", |p| {
        p["metadata"]["deletionTimestamp"].is_string()
    })
    .await;
    assert_eq!(low["metadata"]["deletionGracePeriodSeconds"], 30);
    let high = wait_pod(&client, "high", "high to be nominated", |p| {
        p["status"]["nominatedNodeName"] == "only"
    })
    .await;
    assert!(node_name(&high).is_none(), "it waits for the victim to go");
    // The node's agent would now stop `low` and confirm; this test plays that part.
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    client.delete("pods", "default", "low", &now).await.unwrap();
    let high = wait_pod(&client, "high", "high to be bound", |p| {
        node_name(p).is_some()
    })
    .await;
    assert_eq!(node_name(&high), Some("only"));
}

fn unschedulable_message(pod: &Value) -> Option<String> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
        .and_then(|c| c["message"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_anti_affinity_and_host_ports_keep_pods_apart() {
    let (_control, client) = start().await;
    let mut tainted = node("gpu", "8", json!({"kubernetes.io/hostname": "gpu"}));
    tainted["spec"] =
        json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]});
    client.create("nodes", "", &tainted).await.unwrap();
    client
        .create(
            "nodes",
            "",
            &node("a", "8", json!({"kubernetes.io/hostname": "a"})),
        )
        .await
        .unwrap();
    client
        .create(
            "nodes",
            "",
            &node("b", "8", json!({"kubernetes.io/hostname": "b"})),
        )
        .await
        .unwrap();

    // Replicas that must not share a host: never on the tainted node, never together.
    let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}});
    for name in ["web-1", "web-2"] {
        let mut p = pod(name, "100m", json!({"affinity": anti}));
        p["metadata"]["labels"] = json!({"app": "web"});
        client.create("pods", "default", &p).await.unwrap();
    }
    let first = wait_pod(&client, "web-1", "web-1 bound", |p| node_name(p).is_some()).await;
    let second = wait_pod(&client, "web-2", "web-2 bound", |p| node_name(p).is_some()).await;
    let mut hosts = [
        node_name(&first).unwrap().to_string(),
        node_name(&second).unwrap().to_string(),
    ];
    hosts.sort();
    assert_eq!(hosts, ["a", "b"]);
    let mut third = pod("web-3", "100m", json!({"affinity": anti}));
    third["metadata"]["labels"] = json!({"app": "web"});
    client.create("pods", "default", &third).await.unwrap();
    let third = wait_pod(&client, "web-3", "web-3 reported unschedulable", |p| {
        unschedulable_message(p).is_some()
    })
    .await;
    let message = unschedulable_message(&third).unwrap();
    assert!(
        message.contains("1 node(s) had untolerated taint {dedicated: gpu}"),
        "{message}"
    );
    assert!(
        message.contains("2 node(s) didn't match pod anti-affinity rules"),
        "{message}"
    );

    // A toleration opens the tainted node.
    let tolerant = pod(
        "tolerant",
        "100m",
        json!({
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
            "nodeSelector": {"kubernetes.io/hostname": "gpu"}
        }),
    );
    client.create("pods", "default", &tolerant).await.unwrap();
    let tolerant = wait_pod(&client, "tolerant", "tolerant bound", |p| {
        node_name(p).is_some()
    })
    .await;
    assert_eq!(node_name(&tolerant), Some("gpu"));
    // One host port per node: two pods asking for it land on different nodes.
    for name in ["port-1", "port-2"] {
        let mut p = pod(name, "100m", json!({}));
        p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
        client.create("pods", "default", &p).await.unwrap();
    }
    let p1 = wait_pod(&client, "port-1", "port-1 bound", |p| {
        node_name(p).is_some()
    })
    .await;
    let p2 = wait_pod(&client, "port-2", "port-2 bound", |p| {
        node_name(p).is_some()
    })
    .await;
    assert_ne!(node_name(&p1), node_name(&p2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_spread_node_affinity_and_cordon_place_pods_where_they_must() {
    let (_control, client) = start().await;
    for (name, zone, cores) in [("z-a", "a", "2"), ("z-b", "b", "8"), ("z-c", "c", "16")] {
        let labels = json!({"topology.kubernetes.io/zone": zone, "cores": cores,
            "kubernetes.io/hostname": name});
        client
            .create("nodes", "", &node(name, "8", labels))
            .await
            .unwrap();
    }
    // A cordoned node in zone a, the only one labelled `special`.
    let mut cordoned = node(
        "cordoned",
        "8",
        json!({"topology.kubernetes.io/zone": "a", "special": "yes"}),
    );
    cordoned["spec"] = json!({"unschedulable": true});
    client.create("nodes", "", &cordoned).await.unwrap();

    // Six replicas created at once, spread over zones with maxSkew 1: two per zone. The
    // cordoned node would make zone a roomier, but it takes no pods.
    let spread = json!({"topologySpreadConstraints": [{
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "spread"}}}]});
    for i in 0..6 {
        let mut p = pod(&format!("spread-{i}"), "100m", spread.clone());
        p["metadata"]["labels"] = json!({"app": "spread"});
        client.create("pods", "default", &p).await.unwrap();
    }
    let mut per_zone = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..6 {
        let bound = wait_pod(&client, &format!("spread-{i}"), "a spread pod bound", |p| {
            node_name(p).is_some()
        })
        .await;
        let node = node_name(&bound).unwrap();
        assert_ne!(node, "cordoned", "a cordoned node takes no new pods");
        let zone = node.trim_start_matches("z-").to_string();
        *per_zone.entry(zone).or_default() += 1;
    }
    assert_eq!(
        per_zone,
        [("a".into(), 2), ("b".into(), 2), ("c".into(), 2)].into(),
        "maxSkew 1 over three zones puts two replicas in each"
    );

    // Required node affinity with Gt on a numeric label, and NotIn on the zone.
    let affinity = |expressions: Value| {
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": expressions}]}}}})
    };
    client
        .create(
            "pods",
            "default",
            &pod(
                "many-cores",
                "100m",
                affinity(json!([{"key": "cores", "operator": "Gt", "values": ["10"]}])),
            ),
        )
        .await
        .unwrap();
    client
        .create(
            "pods",
            "default",
            &pod(
                "not-a-or-c",
                "100m",
                affinity(
                    json!([{"key": "topology.kubernetes.io/zone", "operator": "NotIn",
                    "values": ["a", "c"]}]),
                ),
            ),
        )
        .await
        .unwrap();
    let many = wait_pod(&client, "many-cores", "many-cores bound", |p| {
        node_name(p).is_some()
    })
    .await;
    assert_eq!(
        node_name(&many),
        Some("z-c"),
        "only z-c has more than 10 cores"
    );
    let not_a_or_c = wait_pod(&client, "not-a-or-c", "not-a-or-c bound", |p| {
        node_name(p).is_some()
    })
    .await;
    assert_eq!(node_name(&not_a_or_c), Some("z-b"));

    // The only node that matches is cordoned: Pending, and the message says why per node.
    client
        .create(
            "pods",
            "default",
            &pod(
                "wants-special",
                "100m",
                json!({"nodeSelector": {"special": "yes"}}),
            ),
        )
        .await
        .unwrap();
    let pending = wait_pod(
        &client,
        "wants-special",
        "wants-special unschedulable",
        |p| unschedulable_message(p).is_some(),
    )
    .await;
    let message = unschedulable_message(&pending).unwrap();
    assert!(message.starts_with("0/4 nodes are available:"), "{message}");
    assert!(
        message.contains("1 node(s) were unschedulable"),
        "{message}"
    );
    assert!(
        message.contains("3 node(s) didn't match Pod's node affinity/selector"),
        "{message}"
    );
    // Uncordoning the node lets the pod schedule there.
    client
        .patch(
            "nodes",
            "",
            "cordoned",
            &json!({"spec": {"unschedulable": false}}),
            "",
        )
        .await
        .unwrap();
    let placed = wait_pod(&client, "wants-special", "wants-special bound", |p| {
        node_name(p).is_some()
    })
    .await;
    assert_eq!(node_name(&placed), Some("cordoned"));
}
