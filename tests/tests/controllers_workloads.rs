//! End-to-end tests of the workload controllers inside a real `skiff-control`: Deployments,
//! ReplicaSets, Jobs, DaemonSets and the garbage collector, on hollow nodes (Node objects
//! with no agent) that the real scheduler binds pods to. No kubelet runs here, so the test
//! plays its part: [`PlayedKubelet`] writes pod status and finishes pod deletions.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use futures::StreamExt;
use serde_json::{Value, json};
use skiff_api::client::{Client, DeleteParams, EventType, ListParams, WatchParams};
use skiff_tests::{
    control::{Backend, ControlPlane},
    process::workspace_binary,
};
use tokio::task::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(60);

async fn start() -> (ControlPlane, Client) {
    let control = tokio::task::spawn_blocking(|| ControlPlane::start(Backend::Embedded))
        .await
        .unwrap()
        .unwrap();
    let client = control.admin_client().unwrap();
    // Objects made before an instance leads would race its scheduler's first lists; the
    // tests start once the controllers and the scheduler run.
    wait_until("skiff-control to take the leader lease", async || {
        let lease = client
            .get("leases", "kube-system", "skiff-control")
            .await
            .map_err(|e| e.to_string())?;
        lease["spec"]["holderIdentity"]
            .as_str()
            .is_some_and(|h| !h.is_empty())
            .then_some(())
            .ok_or_else(|| lease.to_string())
    })
    .await;
    (control, client)
}

/// A hollow node: a Ready Node object with room for pods and no agent behind it.
async fn hollow_node(client: &Client, name: &str, labels: Value, taints: Value) {
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {
            "allocatable": {"cpu": "16", "memory": "32Gi", "pods": "110"},
            "capacity": {"cpu": "16", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    });
    client.create("nodes", "", &node).await.unwrap();
}

/// What the played kubelet does with a bound pod it has not touched yet.
#[derive(Clone, Copy, Debug, PartialEq)]
enum PodOutcome {
    /// Running and Ready.
    BecomeReady,
    /// Ran to completion (phase Succeeded).
    Succeed,
    /// Its container failed (phase Failed).
    Fail,
}

/// The test playing the kubelet for every node: it marks bound pending pods with an
/// outcome and deletes terminating pods at once (grace 0), as an agent would after
/// stopping their containers. Stops when dropped.
struct PlayedKubelet(JoinHandle<()>);

impl Drop for PlayedKubelet {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl PlayedKubelet {
    fn start(client: &Client, namespace: &str, outcome: PodOutcome) -> Self {
        let (client, namespace) = (client.clone(), namespace.to_string());
        Self(tokio::spawn(async move {
            loop {
                if let Ok(list) = client
                    .list("pods", &namespace, &ListParams::default())
                    .await
                {
                    for pod in list.items {
                        play_kubelet_for(&client, &namespace, &pod, outcome).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }))
    }
}

async fn play_kubelet_for(client: &Client, namespace: &str, pod: &Value, outcome: PodOutcome) {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let bound = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    if pod["metadata"]["deletionTimestamp"].is_string() {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        let _ = client.delete("pods", namespace, name, &params).await;
        return;
    }
    if !bound || pod["status"]["phase"] != "Pending" {
        return;
    }
    let status = match outcome {
        PodOutcome::BecomeReady => json!({"phase": "Running", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
            {"type": "Ready", "status": "True", "lastTransitionTime": now()},
        ]}),
        PodOutcome::Succeed => json!({"phase": "Succeeded"}),
        PodOutcome::Fail => json!({"phase": "Failed"}),
    };
    let _ = client
        .patch(
            "pods",
            namespace,
            name,
            &json!({ "status": status }),
            "status",
        )
        .await;
}

async fn wait_until<T>(what: &str, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {DEADLINE:?} waiting for {what}; last seen: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn list(client: &Client, resource: &str, namespace: &str) -> Vec<Value> {
    client
        .list(resource, namespace, &ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn is_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn image(pod: &Value) -> &str {
    pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
}

fn deployment(name: &str, replicas: i32, image: &str, strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image,
                    "resources": {"requests": {"cpu": "10m"}}}]}
            }
        }
    })
}

/// Ready pods of `app` (not terminating) by image.
async fn ready_images(client: &Client, app: &str) -> BTreeMap<String, usize> {
    let mut images = BTreeMap::new();
    for pod in list(client, "pods", "default").await {
        if pod["metadata"]["labels"]["app"] == app && is_ready(&pod) {
            *images.entry(image(&pod).to_string()).or_default() += 1;
        }
    }
    images
}

async fn wait_for_ready_images(client: &Client, app: &str, want: &[(&str, usize)]) {
    let want: BTreeMap<String, usize> = want.iter().map(|(i, n)| (i.to_string(), *n)).collect();
    wait_until(&format!("{app} to run {want:?}"), async || {
        let pods = list(client, "pods", "default").await;
        let all: Vec<_> = pods
            .iter()
            .filter(|p| p["metadata"]["labels"]["app"] == app)
            .collect();
        let have = ready_images(client, app).await;
        if have == want && all.len() == want.values().sum::<usize>() {
            Ok(())
        } else {
            let states: Vec<String> = all
                .iter()
                .map(|p| {
                    format!(
                        "{} node={} phase={} terminating={}",
                        p["metadata"]["name"],
                        p["spec"]["nodeName"],
                        p["status"]["phase"],
                        p["metadata"]["deletionTimestamp"].is_string()
                    )
                })
                .collect();
            Err(format!(
                "ready {have:?}, {} pods in all: {states:?}",
                all.len()
            ))
        }
    })
    .await;
}

async fn set_image(client: &Client, name: &str, image: &str) {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": image, "resources": {"requests": {"cpu": "10m"}}}]}}}});
    client
        .patch("deployments", "default", name, &patch, "")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_scales_up_and_down_on_hollow_nodes() {
    let (_control, client) = start().await;
    hollow_node(&client, "node-a", json!({}), json!([])).await;
    hollow_node(&client, "node-b", json!({}), json!([])).await;
    let _kubelet = PlayedKubelet::start(&client, "default", PodOutcome::BecomeReady);

    let d = deployment("web", 3, "demo:1", json!({"type": "RollingUpdate"}));
    client.create("deployments", "default", &d).await.unwrap();
    wait_for_ready_images(&client, "web", &[("demo:1", 3)]).await;
    let pods = list(&client, "pods", "default").await;
    assert!(
        pods.iter().all(|p| p["spec"]["nodeName"].is_string()),
        "every pod is bound"
    );
    assert!(
        pods.iter()
            .all(|p| p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"),
        "pods belong to the deployment's replica set"
    );

    let scale = |n: i32| json!({"spec": {"replicas": n}});
    client
        .patch("deployments", "default", "web", &scale(6), "")
        .await
        .unwrap();
    wait_for_ready_images(&client, "web", &[("demo:1", 6)]).await;
    client
        .patch("deployments", "default", "web", &scale(2), "")
        .await
        .unwrap();
    wait_for_ready_images(&client, "web", &[("demo:1", 2)]).await;

    wait_until(
        "the deployment's status to report 2 available",
        async || {
            let d = client
                .get("deployments", "default", "web")
                .await
                .map_err(|e| e.to_string())?;
            let s = &d["status"];
            (s["availableReplicas"] == 2 && s["updatedReplicas"] == 2 && s["replicas"] == 2)
                .then_some(())
                .ok_or_else(|| s.to_string())
        },
    )
    .await;
    assert_eq!(list(&client, "replicasets", "default").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_replaces_every_pod_and_never_has_fewer_than_replicas_minus_max_unavailable_ready()
 {
    let (_control, client) = start().await;
    hollow_node(&client, "node-a", json!({}), json!([])).await;
    hollow_node(&client, "node-b", json!({}), json!([])).await;
    let _kubelet = PlayedKubelet::start(&client, "default", PodOutcome::BecomeReady);
    let strategy = json!({"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    let d = deployment("web", 4, "demo:1", strategy);
    client.create("deployments", "default", &d).await.unwrap();
    wait_for_ready_images(&client, "web", &[("demo:1", 4)]).await;

    // Watch every pod event from here on and check the floor after each one.
    let listed = client
        .list("pods", "default", &ListParams::default())
        .await
        .unwrap();
    let mut pods: BTreeMap<String, Value> = listed
        .items
        .into_iter()
        .map(|p| (p["metadata"]["name"].as_str().unwrap().to_string(), p))
        .collect();
    let params = WatchParams {
        resource_version: listed.resource_version,
        ..Default::default()
    };
    let mut events = client.watch("pods", "default", &params).await.unwrap();
    set_image(&client, "web", "demo:2").await;

    let floor = 4 - 1;
    let mut lowest = usize::MAX;
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("the rollout finishes within the deadline")
            .expect("the watch stays open")
            .unwrap();
        let name = event.object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match event.event_type {
            EventType::Deleted => {
                pods.remove(&name);
            }
            EventType::Added | EventType::Modified => {
                pods.insert(name, event.object);
            }
            EventType::Bookmark => continue,
        }
        seen += 1;
        let ready = pods.values().filter(|p| is_ready(p)).count();
        lowest = lowest.min(ready);
        assert!(
            ready >= floor,
            "after {seen} events only {ready} pods are ready (floor {floor}): {:?}",
            pods.values()
                .map(|p| (
                    p["metadata"]["name"].clone(),
                    image(p).to_string(),
                    is_ready(p)
                ))
                .collect::<Vec<_>>()
        );
        let done = pods.len() == 4 && pods.values().all(|p| image(p) == "demo:2" && is_ready(p));
        if done {
            break;
        }
    }
    assert!(
        seen > 8,
        "the rollout was observed event by event ({seen} events)"
    );
    println!("rolling update: {seen} pod events, lowest ready count {lowest} (floor {floor})");
    wait_until("the old replica set to be scaled to zero", async || {
        let rss = list(&client, "replicasets", "default").await;
        let replicas: Vec<_> = rss.iter().map(|r| r["spec"]["replicas"].as_i64()).collect();
        (rss.len() == 2 && replicas.contains(&Some(0)) && replicas.contains(&Some(4)))
            .then_some(())
            .ok_or_else(|| format!("{replicas:?}"))
    })
    .await;
}

/// Runs the real `skiffctl` against `control`; returns stdout, or panics with its output.
async fn skiffctl(control: &ControlPlane, args: &[&str]) -> String {
    let mut command = std::process::Command::new(workspace_binary("skiffctl"));
    command
        .args(args)
        .env("SKIFFCONFIG", control.admin_config_path())
        .stdin(std::process::Stdio::null());
    let what = format!("skiffctl {args:?}");
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("skiffctl runs");
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_undo_goes_back_to_the_previous_template_as_a_new_revision() {
    let (control, client) = start().await;
    hollow_node(&client, "node-a", json!({}), json!([])).await;
    let _kubelet = PlayedKubelet::start(&client, "default", PodOutcome::BecomeReady);
    let d = deployment("web", 2, "demo:1", json!({"type": "RollingUpdate"}));
    client.create("deployments", "default", &d).await.unwrap();
    let status = skiffctl(
        &control,
        &["rollout", "status", "deployment/web", "--timeout", "60s"],
    )
    .await;
    assert!(
        status.ends_with("deployment \"web\" successfully rolled out\n"),
        "{status}"
    );
    set_image(&client, "web", "demo:2").await;
    let status = skiffctl(
        &control,
        &["rollout", "status", "deploy/web", "--timeout", "60s"],
    )
    .await;
    assert!(
        status.ends_with("deployment \"web\" successfully rolled out\n"),
        "{status}"
    );
    wait_for_ready_images(&client, "web", &[("demo:2", 2)]).await;
    let history = skiffctl(&control, &["rollout", "history", "deployment/web"]).await;
    assert_eq!(
        history,
        "deployment.apps/web\nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n"
    );

    let undo = skiffctl(&control, &["rollout", "undo", "deployment/web"]).await;
    assert_eq!(undo, "deployment.apps/web rolled back\n");
    wait_for_ready_images(&client, "web", &[("demo:1", 2)]).await;
    skiffctl(
        &control,
        &["rollout", "status", "deployment/web", "--timeout", "60s"],
    )
    .await;
    let history = skiffctl(&control, &["rollout", "history", "deployment/web"]).await;
    assert_eq!(
        history,
        "deployment.apps/web\nREVISION  CHANGE-CAUSE\n2         <none>\n3         <none>\n",
        "revision 1 came back as 3"
    );
    assert_eq!(
        list(&client, "replicasets", "default").await.len(),
        2,
        "no third ReplicaSet"
    );

    let scaled = skiffctl(&control, &["scale", "--replicas=3", "deployment/web"]).await;
    assert_eq!(scaled, "deployment.apps/web scaled\n");
    wait_for_ready_images(&client, "web", &[("demo:1", 3)]).await;
}

fn job(name: &str, completions: i32, parallelism: i32, backoff_limit: i32) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completions": completions,
            "parallelism": parallelism,
            "backoffLimit": backoff_limit,
            "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "demo:1", "resources": {"requests": {"cpu": "10m"}}}]}}
        }
    })
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_with_five_completions_and_parallelism_two_completes() {
    let (_control, client) = start().await;
    hollow_node(&client, "node-a", json!({}), json!([])).await;
    client
        .create("jobs", "default", &job("batch", 5, 2, 6))
        .await
        .unwrap();

    // Watch the job's pods while the played kubelet finishes them: never more than two run.
    let listed = client
        .list("pods", "default", &ListParams::default())
        .await
        .unwrap();
    let params = WatchParams {
        resource_version: listed.resource_version,
        ..Default::default()
    };
    let mut events = client.watch("pods", "default", &params).await.unwrap();
    let _kubelet = PlayedKubelet::start(&client, "default", PodOutcome::Succeed);
    let mut pods: BTreeMap<String, Value> = BTreeMap::new();
    let mut most_running = 0;
    let finished = wait_until("the job to complete", async || {
        while let Ok(Some(Ok(event))) =
            tokio::time::timeout(Duration::from_millis(10), events.next()).await
        {
            let name = event.object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if event.event_type == EventType::Deleted {
                pods.remove(&name);
            } else if event.event_type != EventType::Bookmark {
                pods.insert(name, event.object);
            }
            let running = pods
                .values()
                .filter(|p| p["status"]["phase"] != "Succeeded" && p["status"]["phase"] != "Failed")
                .count();
            most_running = most_running.max(running);
        }
        let j = client
            .get("jobs", "default", "batch")
            .await
            .map_err(|e| e.to_string())?;
        condition(&j, "Complete")
            .is_some()
            .then(|| j.clone())
            .ok_or_else(|| j["status"].to_string())
    })
    .await;
    assert_eq!(finished["status"]["succeeded"], 5);
    assert_eq!(finished["status"]["failed"].as_i64().unwrap_or(0), 0);
    assert!(finished["status"]["completionTime"].is_string());
    assert!(finished["status"]["startTime"].is_string());
    assert!(
        most_running <= 2,
        "at most parallelism pods ran at once, saw {most_running}"
    );
    let succeeded = list(&client, "pods", "default")
        .await
        .iter()
        .filter(|p| p["status"]["phase"] == "Succeeded")
        .count();
    assert_eq!(succeeded, 5, "exactly five pods were run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_whose_pods_keep_failing_fails_with_backoff_limit_exceeded() {
    let (_control, client) = start().await;
    hollow_node(&client, "node-a", json!({}), json!([])).await;
    let _kubelet = PlayedKubelet::start(&client, "default", PodOutcome::Fail);
    client
        .create("jobs", "default", &job("doomed", 1, 1, 2))
        .await
        .unwrap();
    let failed = wait_until("the job to fail", async || {
        let j = client
            .get("jobs", "default", "doomed")
            .await
            .map_err(|e| e.to_string())?;
        condition(&j, "Failed")
            .cloned()
            .ok_or_else(|| j["status"].to_string())
    })
    .await;
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    let j = client.get("jobs", "default", "doomed").await.unwrap();
    assert_eq!(
        j["status"]["failed"], 3,
        "backoffLimit 2: the third failure fails the job"
    );
    assert!(condition(&j, "Complete").is_none());
    let pods = list(&client, "pods", "default").await;
    assert_eq!(pods.len(), 3, "no pod is started after the job failed");
}

fn daemon_set(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image,
                    "resources": {"requests": {"cpu": "10m"}}}]}
            }
        }
    })
}

/// Node name -> image of the app's ready pods, when every pod of the app is bound.
async fn ready_pods_by_node(
    client: &Client,
    app: &str,
) -> Result<BTreeMap<String, String>, String> {
    let pods: Vec<Value> = list(client, "pods", "default")
        .await
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == app)
        .collect();
    let mut by_node = BTreeMap::new();
    for pod in &pods {
        let node = pod["spec"]["nodeName"]
            .as_str()
            .ok_or("a pod is not bound yet")?;
        if !is_ready(pod) {
            return Err(format!(
                "{} on {node} is not ready",
                pod["metadata"]["name"]
            ));
        }
        if by_node
            .insert(node.to_string(), image(pod).to_string())
            .is_some()
        {
            return Err(format!("two pods on {node}"));
        }
    }
    Ok(by_node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_set_runs_one_pod_per_eligible_node_and_rolls_them_one_at_a_time() {
    let (_control, client) = start().await;
    hollow_node(&client, "node-a", json!({}), json!([])).await;
    hollow_node(&client, "node-b", json!({}), json!([])).await;
    let taint = json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]);
    hollow_node(&client, "node-db", json!({}), taint).await;
    let _kubelet = PlayedKubelet::start(&client, "default", PodOutcome::BecomeReady);
    client
        .create("daemonsets", "default", &daemon_set("agent", "demo:1"))
        .await
        .unwrap();

    let want = |image: &str| -> BTreeMap<String, String> {
        ["node-a", "node-b"]
            .iter()
            .map(|n| (n.to_string(), image.to_string()))
            .collect()
    };
    wait_until("one agent pod on each untainted node", async || {
        let have = ready_pods_by_node(&client, "agent").await?;
        (have == want("demo:1"))
            .then_some(())
            .ok_or_else(|| format!("{have:?}"))
    })
    .await;

    // A new node gets its pod too.
    hollow_node(&client, "node-c", json!({}), json!([])).await;
    wait_until("an agent pod on the new node", async || {
        let have = ready_pods_by_node(&client, "agent").await?;
        (have.len() == 3)
            .then_some(())
            .ok_or_else(|| format!("{have:?}"))
    })
    .await;

    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "demo:2", "resources": {"requests": {"cpu": "10m"}}}]}}}});
    client
        .patch("daemonsets", "default", "agent", &patch, "")
        .await
        .unwrap();
    let mut lowest_ready = usize::MAX;
    wait_until("every agent pod to run demo:2", async || {
        let pods = list(&client, "pods", "default").await;
        lowest_ready = lowest_ready.min(pods.iter().filter(|p| is_ready(p)).count());
        let have = ready_pods_by_node(&client, "agent").await?;
        (have.len() == 3 && have.values().all(|i| i == "demo:2"))
            .then_some(())
            .ok_or_else(|| format!("{have:?}"))
    })
    .await;
    assert!(
        lowest_ready >= 2,
        "maxUnavailable 1 of 3: at least 2 ready, saw {lowest_ready}"
    );
    wait_until(
        "the status to count three updated, available pods",
        async || {
            let ds = client
                .get("daemonsets", "default", "agent")
                .await
                .map_err(|e| e.to_string())?;
            let s = &ds["status"];
            (s["desiredNumberScheduled"] == 3
                && s["updatedNumberScheduled"] == 3
                && s["numberAvailable"] == 3)
                .then_some(())
                .ok_or_else(|| s.to_string())
        },
    )
    .await;
}

/// Objects of `resource` labelled `app`.
async fn of_app(client: &Client, resource: &str, app: &str) -> Vec<Value> {
    list(client, resource, "default")
        .await
        .into_iter()
        .filter(|o| o["metadata"]["labels"]["app"] == app)
        .collect()
}

async fn delete_with(client: &Client, name: &str, policy: &str) -> Value {
    let params = DeleteParams {
        propagation_policy: policy.into(),
        ..Default::default()
    };
    client
        .delete("deployments", "default", name, &params)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_deployment_in_the_background_or_foreground_removes_its_replica_sets_and_pods() {
    let (_control, client) = start().await;
    hollow_node(&client, "node-a", json!({}), json!([])).await;
    let _kubelet = PlayedKubelet::start(&client, "default", PodOutcome::BecomeReady);
    for name in ["web-bg", "web-fg"] {
        let d = deployment(name, 2, "demo:1", json!({"type": "RollingUpdate"}));
        client.create("deployments", "default", &d).await.unwrap();
        wait_for_ready_images(&client, name, &[("demo:1", 2)]).await;
    }

    delete_with(&client, "web-bg", "Background").await;
    wait_until(
        "web-bg's replica set and pods to be collected",
        async || {
            let (rss, pods) = (
                of_app(&client, "replicasets", "web-bg").await,
                of_app(&client, "pods", "web-bg").await,
            );
            (rss.is_empty() && pods.is_empty())
                .then_some(())
                .ok_or_else(|| format!("{} replica sets, {} pods", rss.len(), pods.len()))
        },
    )
    .await;

    let marked = delete_with(&client, "web-fg", "Foreground").await;
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        marked["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    wait_until(
        "web-fg to be deleted after everything it owns",
        async || {
            match client.get("deployments", "default", "web-fg").await {
                Ok(d) => Err(format!(
                    "still there: finalizers {}",
                    d["metadata"]["finalizers"]
                )),
                Err(e) if e.is(skiff_api::status::Reason::NotFound) => {
                    // Foreground: once the owner is gone, its dependents are already gone.
                    let (rss, pods) = (
                        of_app(&client, "replicasets", "web-fg").await,
                        of_app(&client, "pods", "web-fg").await,
                    );
                    assert!(
                        rss.is_empty() && pods.is_empty(),
                        "the owner went before {} replica sets and {} pods",
                        rss.len(),
                        pods.len()
                    );
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_deployment_with_the_orphan_policy_leaves_its_replica_set_and_pods() {
    let (_control, client) = start().await;
    hollow_node(&client, "node-a", json!({}), json!([])).await;
    let _kubelet = PlayedKubelet::start(&client, "default", PodOutcome::BecomeReady);
    let d = deployment("web", 2, "demo:1", json!({"type": "RollingUpdate"}));
    client.create("deployments", "default", &d).await.unwrap();
    wait_for_ready_images(&client, "web", &[("demo:1", 2)]).await;
    let pods_before: Vec<String> = of_app(&client, "pods", "web")
        .await
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();

    delete_with(&client, "web", "Orphan").await;
    wait_until("the deployment to be gone", async || {
        match client.get("deployments", "default", "web").await {
            Ok(d) => Err(format!("finalizers {}", d["metadata"]["finalizers"])),
            Err(_) => Ok(()),
        }
    })
    .await;
    // Give the collector time to do the wrong thing, then look.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = of_app(&client, "replicasets", "web").await;
    assert_eq!(rss.len(), 1, "the replica set stays");
    assert!(
        rss[0]["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "and has no owner: {}",
        rss[0]["metadata"]
    );
    let pods_after: Vec<String> = of_app(&client, "pods", "web")
        .await
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pods_after, pods_before, "the same pods keep running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_job_is_deleted_with_its_pods_after_ttl_seconds_after_finished() {
    let (_control, client) = start().await;
    hollow_node(&client, "node-a", json!({}), json!([])).await;
    let _kubelet = PlayedKubelet::start(&client, "default", PodOutcome::Succeed);
    let mut j = job("short-lived", 2, 2, 6);
    j["spec"]["ttlSecondsAfterFinished"] = json!(2);
    client.create("jobs", "default", &j).await.unwrap();
    let completed = wait_until("the job to complete", async || {
        let j = client
            .get("jobs", "default", "short-lived")
            .await
            .map_err(|e| e.to_string())?;
        condition(&j, "Complete")
            .is_some()
            .then(|| j.clone())
            .ok_or_else(|| j["status"].to_string())
    })
    .await;
    let finished_at = std::time::Instant::now();
    assert_eq!(completed["status"]["succeeded"], 2);
    wait_until("the job and its pods to be deleted", async || {
        let job = client.get("jobs", "default", "short-lived").await;
        let pods = list(&client, "pods", "default").await;
        (job.is_err() && pods.is_empty())
            .then_some(())
            .ok_or_else(|| format!("job still there: {}, {} pods", job.is_ok(), pods.len()))
    })
    .await;
    assert!(
        finished_at.elapsed() >= Duration::from_secs(1),
        "not deleted before its TTL ({:?} after completion was seen)",
        finished_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_that_makes_no_progress_reports_progress_deadline_exceeded() {
    let (control, client) = start().await;
    hollow_node(&client, "node-a", json!({}), json!([])).await;
    // No kubelet plays here: the pods are bound but never become ready.
    let mut d = deployment("stuck", 2, "demo:1", json!({"type": "RollingUpdate"}));
    d["spec"]["progressDeadlineSeconds"] = json!(2);
    client.create("deployments", "default", &d).await.unwrap();
    let progressing = wait_until("Progressing=False", async || {
        let d = client
            .get("deployments", "default", "stuck")
            .await
            .map_err(|e| e.to_string())?;
        let c = d["status"]["conditions"]
            .as_array()
            .and_then(|c| {
                c.iter()
                    .find(|c| c["type"] == "Progressing" && c["status"] == "False")
            })
            .cloned();
        c.ok_or_else(|| d["status"].to_string())
    })
    .await;
    assert_eq!(progressing["reason"], "ProgressDeadlineExceeded");

    let mut command = std::process::Command::new(workspace_binary("skiffctl"));
    command
        .args(["rollout", "status", "deployment/stuck"])
        .env("SKIFFCONFIG", control.admin_config_path());
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: deployment \"stuck\" exceeded its progress deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deployment_rolls_out_a_new_template_only_after_resume() {
    let (control, client) = start().await;
    hollow_node(&client, "node-a", json!({}), json!([])).await;
    let _kubelet = PlayedKubelet::start(&client, "default", PodOutcome::BecomeReady);
    let d = deployment("web", 2, "demo:1", json!({"type": "RollingUpdate"}));
    client.create("deployments", "default", &d).await.unwrap();
    wait_for_ready_images(&client, "web", &[("demo:1", 2)]).await;

    assert_eq!(
        skiffctl(&control, &["rollout", "pause", "deployment/web"]).await,
        "deployment.apps/web paused\n"
    );
    set_image(&client, "web", "demo:2").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        ready_images(&client, "web").await,
        BTreeMap::from([("demo:1".to_string(), 2)])
    );
    assert_eq!(
        list(&client, "replicasets", "default").await.len(),
        1,
        "no new ReplicaSet while paused"
    );

    assert_eq!(
        skiffctl(&control, &["rollout", "resume", "deployment/web"]).await,
        "deployment.apps/web resumed\n"
    );
    wait_for_ready_images(&client, "web", &[("demo:2", 2)]).await;
    assert_eq!(
        skiffctl(&control, &["rollout", "restart", "deployment/web"]).await,
        "deployment.apps/web restarted\n"
    );
    wait_until("a third revision after the restart", async || {
        let h = skiffctl(&control, &["rollout", "history", "deployment/web"]).await;
        h.contains("\n3 ").then_some(()).ok_or(h)
    })
    .await;
    wait_for_ready_images(&client, "web", &[("demo:2", 2)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_stops_every_old_pod_before_any_new_one_exists() {
    let (_control, client) = start().await;
    hollow_node(&client, "node-a", json!({}), json!([])).await;
    let _kubelet = PlayedKubelet::start(&client, "default", PodOutcome::BecomeReady);
    let d = deployment("web", 3, "demo:1", json!({"type": "Recreate"}));
    client.create("deployments", "default", &d).await.unwrap();
    wait_for_ready_images(&client, "web", &[("demo:1", 3)]).await;

    let listed = client
        .list("pods", "default", &ListParams::default())
        .await
        .unwrap();
    let mut old: BTreeSet<String> = names(&listed.items);
    let params = WatchParams {
        resource_version: listed.resource_version,
        ..Default::default()
    };
    let mut events = client.watch("pods", "default", &params).await.unwrap();
    set_image(&client, "web", "demo:2").await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut new = BTreeSet::new();
    while new.len() < 3 {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("the rollout finishes within the deadline")
            .expect("the watch stays open")
            .unwrap();
        let name = event.object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match event.event_type {
            EventType::Deleted => {
                old.remove(&name);
            }
            EventType::Added => {
                assert_eq!(image(&event.object), "demo:2");
                assert!(
                    old.is_empty(),
                    "{name} was created while old pods {old:?} still existed"
                );
                new.insert(name);
            }
            _ => {}
        }
    }
    wait_for_ready_images(&client, "web", &[("demo:2", 3)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_set_adopts_a_matching_orphan_and_releases_a_pod_relabelled_away() {
    let (_control, client) = start().await;
    hollow_node(&client, "node-a", json!({}), json!([])).await;
    let _kubelet = PlayedKubelet::start(&client, "default", PodOutcome::BecomeReady);
    let orphan = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "orphan", "labels": {"app": "cache"}},
        "spec": {"containers": [{"name": "main", "image": "demo:1"}]}});
    client.create("pods", "default", &orphan).await.unwrap();
    // Ready first, so that every watcher (the controller's cache too) has seen it.
    wait_for_ready_images(&client, "cache", &[("demo:1", 1)]).await;
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "cache"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "cache"}},
            "template": {"metadata": {"labels": {"app": "cache"}},
                "spec": {"containers": [{"name": "main", "image": "demo:1"}]}}}});
    let rs = client.create("replicasets", "default", &rs).await.unwrap();
    wait_for_ready_images(&client, "cache", &[("demo:1", 2)]).await;
    let adopted = client.get("pods", "default", "orphan").await.unwrap();
    assert_eq!(
        adopted["metadata"]["ownerReferences"][0]["uid"], rs["metadata"]["uid"],
        "the orphan counts as one of the two"
    );

    // Relabelled away: released, and replaced.
    let patch = json!({"metadata": {"labels": {"app": "debugging"}}});
    client
        .patch("pods", "default", "orphan", &patch, "")
        .await
        .unwrap();
    wait_for_ready_images(&client, "cache", &[("demo:1", 2)]).await;
    wait_until("the relabelled pod to lose its owner", async || {
        let pod = client
            .get("pods", "default", "orphan")
            .await
            .map_err(|e| e.to_string())?;
        pod["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(Vec::is_empty)
            .then_some(())
            .ok_or_else(|| pod["metadata"].to_string())
    })
    .await;
}

fn names(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}
