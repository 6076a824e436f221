//! The controllers of issue #6 with real agents: on a [`Cluster`] (3 etcd members, two
//! `skiff-control` instances, three `skiff-agent` nodes with real containerd and runc),
//! Deployments scale and roll, Jobs complete, a dead node's pods move, Services follow
//! readiness and a deleted namespace leaves nothing behind on the nodes.

use std::{
    collections::BTreeSet,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use skiff_api::client::Client;
use skiff_tests::{
    cluster::{Cluster, ClusterConfig, node_ready},
    pod_node::IMAGE,
    process::workspace_binary,
    wait::eventually,
    workload::{
        self, POD_WAIT, create, deploy_web, endpoints, is_ready, is_terminating, name, namespace,
        node_of, pods, ready_pods, start_cluster, summary, web_deployment,
    },
};

/// Every running container on every node.
fn running_containers(cluster: &Cluster) -> BTreeSet<String> {
    cluster
        .nodes
        .iter()
        .flat_map(|n| n.running_tasks().unwrap())
        .map(|(id, _)| id)
        .collect()
}

/// Waits until the nodes run exactly `count` containers.
async fn containers_on_nodes(cluster: &Cluster, count: usize) {
    eventually(
        &format!("{count} running containers on the nodes"),
        POD_WAIT,
        || async {
            let running = running_containers(cluster);
            if running.len() == count {
                Ok(())
            } else {
                Err(format!("{running:?}"))
            }
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_a_deployment_scales_up_and_down_with_real_containers_on_the_nodes() {
    let cluster = start_cluster(ClusterConfig::default()).await;
    let client = cluster.client().unwrap();
    deploy_web(&client, "web", 2, json!({}), json!({})).await;
    containers_on_nodes(&cluster, 2).await;

    client
        .patch(
            "deployments",
            "shop",
            "web",
            &json!({"spec": {"replicas": 5}}),
            "",
        )
        .await
        .unwrap();
    let five = ready_pods(&client, "shop", "app=web", 5).await;
    containers_on_nodes(&cluster, 5).await;
    let nodes: BTreeSet<String> = five.iter().map(node_of).collect();
    assert!(
        nodes.len() >= 2,
        "5 pods on 3 nodes spread over more than one: {}",
        summary(&five)
    );

    client
        .patch(
            "deployments",
            "shop",
            "web",
            &json!({"spec": {"replicas": 1}}),
            "",
        )
        .await
        .unwrap();
    ready_pods(&client, "shop", "app=web", 1).await;
    containers_on_nodes(&cluster, 1).await;
    let deployment = eventually("the deployment's status to say 1/1", POD_WAIT, || async {
        let d = client
            .get("deployments", "shop", "web")
            .await
            .map_err(|e| e.to_string())?;
        let s = &d["status"];
        if s["replicas"] == 1 && s["readyReplicas"] == 1 && s["availableReplicas"] == 1 {
            Ok(d)
        } else {
            Err(s.to_string())
        }
    })
    .await
    .unwrap();
    assert_eq!(deployment["spec"]["replicas"], 1);
}

fn template_hash(pod: &Value) -> String {
    pod["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Samples, every 100 ms until stopped, how many pods of `selector` are Ready and not
/// terminating; returns (the fewest seen, how many samples).
fn sample_ready(
    client: Client,
    ns: &'static str,
    selector: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize)> {
    tokio::spawn(async move {
        let (mut fewest, mut samples) = (usize::MAX, 0);
        while !stop.load(Ordering::SeqCst) {
            if let Ok(pods) = pods(&client, ns, selector).await {
                let ready = pods
                    .iter()
                    .filter(|p| is_ready(p) && !is_terminating(p))
                    .count();
                fewest = fewest.min(ready);
                samples += 1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (fewest, samples)
    })
}

/// Waits until `replicas` pods of template hash `hash` are ready and no other pod is left.
async fn rolled_to(client: &Client, hash_of: impl Fn(&[Value]) -> bool, what: &str) -> Vec<Value> {
    eventually(what, POD_WAIT, || async {
        let pods = pods(client, "shop", "app=web").await?;
        if hash_of(&pods) {
            Ok(pods)
        } else {
            Err(format!(
                "{} [{}]",
                summary(&pods),
                pods.iter().map(template_hash).collect::<Vec<_>>().join(",")
            ))
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_a_rolling_update_replaces_every_pod_never_below_replicas_minus_max_unavailable_and_undo_goes_back()
 {
    let cluster = start_cluster(ClusterConfig::default()).await;
    let client = cluster.client().unwrap();
    create(&client, "namespaces", "", &namespace("shop")).await;
    let strategy = json!({"strategy": {"type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}});
    create(
        &client,
        "deployments",
        "shop",
        &web_deployment("web", 4, strategy, json!({})),
    )
    .await;
    let before = ready_pods(&client, "shop", "app=web", 4).await;
    let old_hash = template_hash(&before[0]);
    let old_names: BTreeSet<String> = before.iter().map(name).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_ready(client.clone(), "shop", "app=web", stop.clone());
    client
        .patch(
            "deployments",
            "shop",
            "web",
            &json!({"spec": {"template": {"spec": {"containers": [
                workload::web_container(&[("VERSION", "2")])]}}}}),
            "",
        )
        .await
        .unwrap();
    let after = rolled_to(
        &client,
        |pods| {
            pods.len() == 4
                && pods
                    .iter()
                    .all(|p| is_ready(p) && !is_terminating(p) && template_hash(p) != old_hash)
        },
        "every pod replaced by a ready one of the new template",
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let (fewest, samples) = sampler.await.unwrap();
    eprintln!("rolling update: fewest ready pods seen {fewest} in {samples} samples");
    assert!(samples > 10, "readiness was sampled throughout ({samples})");
    assert!(
        fewest >= 3,
        "never fewer than replicas - maxUnavailable = 3 ready pods; saw {fewest}"
    );
    let new_hash = template_hash(&after[0]);
    assert!(
        after.iter().all(|p| !old_names.contains(&name(p))),
        "every pod is new: {}",
        summary(&after)
    );
    assert!(
        after[0]["spec"]["containers"][0]["env"]
            .to_string()
            .contains("VERSION")
    );

    // `skiffctl rollout undo` goes back to the first template (the same pod-template-hash).
    let output = Command::new(workspace_binary("skiffctl"))
        .args(["rollout", "undo", "deployment/web", "-n", "shop"])
        .env("SKIFFCONFIG", cluster.admin_config_path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "skiffctl rollout undo: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let back = rolled_to(
        &client,
        |pods| {
            pods.len() == 4
                && pods
                    .iter()
                    .all(|p| is_ready(p) && !is_terminating(p) && template_hash(p) == old_hash)
        },
        "every pod back on the first template after undo",
    )
    .await;
    assert!(
        !back[0]["spec"]["containers"][0]["env"]
            .to_string()
            .contains("VERSION"),
        "the first template has no VERSION"
    );
    assert_ne!(old_hash, new_hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_a_job_with_completions_5_and_parallelism_2_completes_never_running_more_than_2()
{
    let cluster = start_cluster(ClusterConfig::default()).await;
    let client = cluster.client().unwrap();
    create(&client, "namespaces", "", &namespace("batch")).await;
    create(
        &client,
        "jobs",
        "batch",
        &json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "count"},
            "spec": {"completions": 5, "parallelism": 2, "backoffLimit": 2,
                "template": {"spec": {"restartPolicy": "Never", "containers": [{
                    "name": "work", "image": IMAGE,
                    "command": ["sh", "-c", "sleep 2; echo done"]}]}}}
        }),
    )
    .await;
    let most_active = Arc::new(AtomicUsize::new(0));
    let seen = {
        let (client, most_active) = (client.clone(), most_active.clone());
        tokio::spawn(async move {
            let mut names = BTreeSet::new();
            loop {
                if let Ok(pods) = pods(&client, "batch", "").await {
                    let active = pods
                        .iter()
                        .filter(|p| {
                            !is_terminating(p)
                                && !matches!(
                                    p["status"]["phase"].as_str(),
                                    Some("Succeeded" | "Failed")
                                )
                        })
                        .count();
                    most_active.fetch_max(active, Ordering::SeqCst);
                    names.extend(pods.iter().map(name));
                }
                let job = client.get("jobs", "batch", "count").await;
                if job.is_ok_and(|j| {
                    j["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Complete" && c["status"] == "True")
                }) {
                    return names;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let names = tokio::time::timeout(POD_WAIT, seen)
        .await
        .unwrap_or_else(|_| panic!("the job did not complete within {POD_WAIT:?}"))
        .unwrap();
    let job = client.get("jobs", "batch", "count").await.unwrap();
    assert_eq!(job["status"]["succeeded"], 5, "{}", job["status"]);
    assert!(job["status"]["completionTime"].is_string());
    let most = most_active.load(Ordering::SeqCst);
    eprintln!(
        "job: {} pods in all, at most {most} active at once",
        names.len()
    );
    assert!(most <= 2, "never more than parallelism = 2 active: {most}");
    assert!(most >= 1);
    let succeeded = pods(&client, "batch", "")
        .await
        .unwrap()
        .iter()
        .filter(|p| p["status"]["phase"] == "Succeeded")
        .count();
    assert_eq!(succeeded, 5, "five pods ran to completion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_killing_a_nodes_agent_makes_it_not_ready_within_the_grace_period_and_its_pods_move()
 {
    let mut cluster = start_cluster(ClusterConfig::default()).await;
    let client = cluster.client().unwrap();
    let before = deploy_web(&client, "web", 3, json!({}), json!({})).await;
    let victim = node_of(&before[0]);
    let index = cluster.node_index(&victim).unwrap();
    let on_victim: BTreeSet<String> = before
        .iter()
        .filter(|p| node_of(p) == victim)
        .map(name)
        .collect();

    cluster.kill_agent(index);
    let killed = Instant::now();
    eventually(
        &format!("node {victim} to be NotReady (Ready=Unknown)"),
        Duration::from_secs(30),
        || async {
            let node = client
                .get("nodes", "", &victim)
                .await
                .map_err(|e| e.to_string())?;
            match node_ready(&node).as_str() {
                "True" => Err(node["status"]["conditions"].to_string()),
                _ => Ok(()),
            }
        },
    )
    .await
    .unwrap();
    let took = killed.elapsed();
    eprintln!("node {victim} NotReady {took:?} after its agent died (grace period 6 s)");
    assert!(
        took <= Duration::from_secs(6 + 5),
        "NotReady within the 6 s grace period and the monitor's period: {took:?}"
    );

    let after = eventually("3 ready pods on the other nodes", POD_WAIT, || async {
        let pods = pods(&client, "shop", "app=web").await?;
        let live: Vec<&Value> = pods.iter().filter(|p| !is_terminating(p)).collect();
        if live.len() == 3 && live.iter().all(|p| is_ready(p) && node_of(p) != victim) {
            Ok(pods)
        } else {
            Err(summary(&pods))
        }
    })
    .await
    .unwrap();
    for pod in after.iter().filter(|p| on_victim.contains(&name(p))) {
        assert!(
            is_terminating(pod),
            "the dead node's pod {} was evicted",
            name(pod)
        );
    }
    eprintln!("pods after the move: {}", summary(&after));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_a_service_gets_a_cluster_ip_and_node_port_and_its_endpoint_slice_follows_real_readiness()
 {
    let cluster = start_cluster(ClusterConfig::default()).await;
    let client = cluster.client().unwrap();
    create(&client, "namespaces", "", &namespace("shop")).await;
    let service = create(
        &client,
        "services",
        "shop",
        &workload::service("web", "web", "NodePort"),
    )
    .await;
    let cluster_ip: std::net::Ipv4Addr = service["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        cluster_ip.octets()[..2],
        [10, 96],
        "from --service-cluster-ip-range 10.96.0.0/16"
    );
    let node_port = service["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&node_port), "{node_port}");

    // Readiness is a file on the host, mounted into the pod: the test flips it.
    let flags = tempfile::tempdir().unwrap();
    let flag = flags.path().join("ready");
    let mut container = workload::web_container(&[]);
    container["readinessProbe"] = json!({"exec": {"command": ["test", "-f", "/flags/ready"]},
        "periodSeconds": 1, "failureThreshold": 1, "successThreshold": 1});
    container["volumeMounts"] = json!([{"name": "flags", "mountPath": "/flags"}]);
    create(
        &client,
        "pods",
        "shop",
        &json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "labels": {"app": "web"}},
            "spec": {"terminationGracePeriodSeconds": 2, "containers": [container],
                "volumes": [{"name": "flags", "hostPath": {"path": flags.path()}}]}}),
    )
    .await;
    let pod = eventually("web-1 running with an IP", POD_WAIT, || async {
        let pod = client
            .get("pods", "shop", "web-1")
            .await
            .map_err(|e| e.to_string())?;
        if pod["status"]["phase"] == "Running" && pod["status"]["podIP"].is_string() {
            Ok(pod)
        } else {
            Err(pod["status"].to_string())
        }
    })
    .await
    .unwrap();
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    let endpoint_is = |ready: bool| {
        let (client, ip) = (client.clone(), ip.clone());
        async move {
            eventually(
                &format!("the endpoint {ip} with ready={ready}"),
                Duration::from_secs(30),
                || async {
                    let e = endpoints(&client, "shop", "web").await?;
                    let matches = e.len() == 1
                        && e[0]["addresses"][0] == ip.as_str()
                        && e[0]["conditions"]["ready"].as_bool() == Some(ready);
                    if matches {
                        Ok(e)
                    } else {
                        Err(Value::from(e).to_string())
                    }
                },
            )
            .await
            .unwrap()
        }
    };
    endpoint_is(false).await;
    std::fs::write(&flag, b"").unwrap();
    let e = endpoint_is(true).await;
    assert_eq!(e[0]["nodeName"], node_of(&pod));
    assert_eq!(e[0]["targetRef"]["name"], "web-1");
    std::fs::remove_file(&flag).unwrap();
    endpoint_is(false).await;
    std::fs::write(&flag, b"").unwrap();
    endpoint_is(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_deleting_a_namespace_leaves_nothing_behind_in_the_api_or_on_the_nodes() {
    let cluster = start_cluster(ClusterConfig::default()).await;
    let client = cluster.client().unwrap();
    create(&client, "namespaces", "", &namespace("temp")).await;
    create(
        &client,
        "deployments",
        "temp",
        &web_deployment("web", 3, json!({}), json!({})),
    )
    .await;
    create(
        &client,
        "services",
        "temp",
        &workload::service("web", "web", "ClusterIP"),
    )
    .await;
    create(
        &client,
        "configmaps",
        "temp",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
            "data": {"a": "b"}}),
    )
    .await;
    ready_pods(&client, "temp", "app=web", 3).await;
    containers_on_nodes(&cluster, 3).await;

    client
        .delete("namespaces", "", "temp", &Default::default())
        .await
        .unwrap();
    eventually("the namespace to be gone", POD_WAIT, || async {
        match client.get("namespaces", "", "temp").await {
            Err(e) if e.is(skiff_api::status::Reason::NotFound) => Ok(()),
            Ok(ns) => Err(ns["status"].to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap();
    for resource in [
        "pods",
        "deployments",
        "replicasets",
        "services",
        "endpointslices",
        "configmaps",
    ] {
        let left = client
            .list(resource, "temp", &Default::default())
            .await
            .unwrap()
            .items;
        assert!(
            left.is_empty(),
            "no {resource} left: {:?}",
            left.iter().map(name).collect::<Vec<_>>()
        );
    }
    // The containers are gone from the nodes too (stopped and removed).
    eventually(
        "no containers left on any node",
        Duration::from_secs(30),
        || async {
            let left: Vec<String> = cluster
                .nodes
                .iter()
                .flat_map(|n| n.containers().unwrap())
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .await
    .unwrap();
}
