//! Issue #9's scenarios on a whole [`Cluster`] with the real data plane: services reached
//! from pods and from outside through every node, a dead agent's node losing its pods and
//! its backends, a cut-off node coming back without duplicates, an agent restart under
//! load, and a rolling update under load with zero failed requests.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use skiff_api::client::Client;
use skiff_tests::{
    cluster::{Cluster, ClusterConfig, node_ready},
    pod_node::IMAGE,
    wait::eventually,
    workload::{
        self, POD_WAIT, answers_through_every_node, create, deploy_web, endpoints, http_get,
        is_ready, is_terminating, name, namespace, node_of, node_port_answers_through_every_node,
        pods, print_lb_counters, probe_from_outside, prober, prober_output, ready_pods,
        start_cluster, summary, web_deployment,
    },
};

/// Runs a prober pod on every node against `host` and returns, per node, how many answers
/// each backend gave (FAIL counted as a backend called "FAIL").
async fn probe_from_every_node(
    cluster: &Cluster,
    client: &Client,
    ns: &str,
    tag: &str,
    host: &str,
    count: u32,
) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    for node in &cluster.nodes {
        let pod = format!("probe-{tag}-{}", node.name);
        create(client, "pods", ns, &prober(&pod, &node.name, host, count)).await;
    }
    for node in &cluster.nodes {
        let pod_name = format!("probe-{tag}-{}", node.name);
        let output = prober_output(client, ns, node, &pod_name).await;
        let mut answers = BTreeMap::new();
        for line in output.lines().filter(|l| *l != "DONE" && !l.is_empty()) {
            *answers.entry(line.to_string()).or_insert(0) += 1;
        }
        out.insert(node.name.clone(), answers);
    }
    out
}

fn spread() -> Value {
    json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_six_spread_replicas_are_reached_through_cluster_ip_from_every_node_and_node_port_from_outside()
 {
    let started = Instant::now();
    let cluster = start_cluster(ClusterConfig::default()).await;
    let client = cluster.client().unwrap();
    let web = deploy_web(&client, "web", 6, json!({}), spread()).await;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for pod in &web {
        *per_node.entry(node_of(pod)).or_insert(0) += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "topology spread puts 2 on each node: {}",
        summary(&web)
    );
    let backends: BTreeSet<String> = web.iter().map(name).collect();

    let cluster_ip = create(
        &client,
        "services",
        "shop",
        &workload::service("web", "web", "ClusterIP"),
    )
    .await["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let node_port_service = create(
        &client,
        "services",
        "shop",
        &workload::service("web-outside", "web", "NodePort"),
    )
    .await;
    let node_port = u16::try_from(
        node_port_service["spec"]["ports"][0]["nodePort"]
            .as_i64()
            .unwrap(),
    )
    .unwrap();

    // Every node's data plane has the NodePort before anything is measured.
    node_port_answers_through_every_node(&cluster, node_port).await;
    let seen = probe_from_every_node(&cluster, &client, "shop", "cip", &cluster_ip, 60).await;
    for (node, answers) in &seen {
        let reached: BTreeSet<String> = answers.keys().cloned().collect();
        assert_eq!(
            reached, backends,
            "from a pod on {node}, the ClusterIP {cluster_ip} reaches all six and never fails: {answers:?}"
        );
    }

    eprintln!(
        "ClusterIP from every node: {seen:?} ({:?} in)",
        started.elapsed()
    );
    for node in &cluster.nodes {
        let address = SocketAddr::from((node.ip, node_port));
        let answers = probe_from_outside(&cluster, address, 60);
        eprintln!(
            "NodePort via {}: {answers:?} ({:?} in)",
            node.name,
            started.elapsed()
        );
        let reached: BTreeSet<String> = answers.keys().cloned().collect();
        assert_eq!(
            reached, backends,
            "from outside through {} ({address}) the NodePort reaches all six: {answers:?}",
            node.name
        );
    }
}

/// Waits for the node to leave Ready=True, returning how long that took.
async fn wait_not_ready(client: &Client, node: &str, since: Instant) -> Duration {
    eventually(
        &format!("node {node} to be NotReady"),
        Duration::from_secs(30),
        || async {
            let n = client
                .get("nodes", "", node)
                .await
                .map_err(|e| e.to_string())?;
            if node_ready(&n) == "True" {
                Err(n["status"]["conditions"].to_string())
            } else {
                Ok(())
            }
        },
    )
    .await
    .unwrap();
    since.elapsed()
}

/// Waits until `count` live (not terminating) pods are Ready, none on `avoid`.
async fn replaced_away_from(client: &Client, avoid: &str, count: usize) -> Vec<Value> {
    eventually(
        &format!("{count} ready pods away from {avoid}"),
        POD_WAIT,
        || async {
            let pods = pods(client, "shop", "app=web").await?;
            let live: Vec<Value> = pods
                .iter()
                .filter(|p| !is_terminating(p))
                .cloned()
                .collect();
            if live.len() == count && live.iter().all(|p| is_ready(p) && node_of(p) != avoid) {
                Ok(live)
            } else {
                Err(summary(&pods))
            }
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_a_killed_agents_node_goes_not_ready_its_pods_are_replaced_and_the_service_stops_using_them()
 {
    let mut cluster = start_cluster(ClusterConfig::default()).await;
    let client = cluster.client().unwrap();
    create(&client, "namespaces", "", &namespace("shop")).await;
    create(
        &client,
        "deployments",
        "shop",
        &web_deployment("web", 3, json!({}), json!({})),
    )
    .await;
    let service = create(
        &client,
        "services",
        "shop",
        &workload::service("web", "web", "NodePort"),
    )
    .await;
    let cluster_ip = service["spec"]["clusterIP"].as_str().unwrap().to_string();
    let node_port =
        u16::try_from(service["spec"]["ports"][0]["nodePort"].as_i64().unwrap()).unwrap();
    let before = ready_pods(&client, "shop", "app=web", 3).await;
    let victim = node_of(&before[0]);
    let index = cluster.node_index(&victim).unwrap();
    let dead: BTreeSet<String> = before
        .iter()
        .filter(|p| node_of(p) == victim)
        .map(name)
        .collect();

    cluster.kill_agent(index);
    let took = wait_not_ready(&client, &victim, Instant::now()).await;
    eprintln!("{victim} NotReady {took:?} after its agent was killed (grace 6 s)");
    assert!(
        took <= Duration::from_secs(11),
        "within the grace period: {took:?}"
    );
    let live = replaced_away_from(&client, &victim, 3).await;
    let live: BTreeSet<String> = live.iter().map(name).collect();
    // The dead node's containers still run (only its agent died), so any answer from
    // them would show the data plane still sends there.
    assert!(
        cluster.nodes[index].running_tasks().unwrap().len() >= dead.len(),
        "the killed agent's containers still run"
    );
    eventually(
        "the endpoint slices to hold only the live pods",
        Duration::from_secs(30),
        || async {
            let slices = client
                .list(
                    "endpointslices",
                    "shop",
                    &skiff_api::client::ListParams {
                        label_selector: "kubernetes.io/service-name=web".into(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| e.to_string())?
                .items;
            let ready: BTreeSet<String> = slices
                .iter()
                .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
                .filter(|e| e["conditions"]["ready"] == true)
                .filter_map(|e| e["targetRef"]["name"].as_str().map(str::to_string))
                .collect();
            if ready == live {
                Ok(())
            } else {
                Err(format!("{ready:?}"))
            }
        },
    )
    .await
    .unwrap();

    // Each agent applies the slice on its own watch, a moment after the API has it.
    for i in (0..cluster.nodes.len()).filter(|&i| i != index) {
        let address = SocketAddr::from((cluster.nodes[i].ip, node_port));
        let path = format!("outside via {}", cluster.nodes[i].name);
        eventually(
            &format!("{path}: only live backends to answer, none to fail"),
            Duration::from_secs(10),
            || async {
                let answers = probe_from_outside(&cluster, address, 30);
                let reached: BTreeSet<String> = answers.keys().cloned().collect();
                if !reached.is_empty() && reached.is_subset(&live) {
                    Ok(())
                } else {
                    Err(format!("{answers:?} (live: {live:?})"))
                }
            },
        )
        .await
        .unwrap();
    }
    // And from pods on the live nodes through the ClusterIP.
    for i in (0..cluster.nodes.len()).filter(|&i| i != index) {
        let node = &cluster.nodes[i];
        let pod_name = format!("probe-after-{}", node.name);
        create(
            &client,
            "pods",
            "shop",
            &prober(&pod_name, &node.name, &cluster_ip, 30),
        )
        .await;
        let output = prober_output(&client, "shop", node, &pod_name).await;
        let reached: BTreeSet<String> = output
            .lines()
            .filter(|l| *l != "DONE")
            .map(str::to_string)
            .collect();
        assert!(
            reached.is_subset(&live) && !reached.is_empty(),
            "from {}: only live backends through the ClusterIP: {output}",
            node.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_a_node_cut_off_and_healed_converges_with_no_duplicate_pods_or_containers() {
    let cluster = start_cluster(ClusterConfig::default()).await;
    let client = cluster.client().unwrap();
    let before = deploy_web(&client, "web", 3, json!({}), json!({})).await;
    let victim = node_of(&before[0]);
    let index = cluster.node_index(&victim).unwrap();

    cluster.cut_node(index).unwrap();
    let took = wait_not_ready(&client, &victim, Instant::now()).await;
    eprintln!("{victim} NotReady {took:?} after it was cut off");
    replaced_away_from(&client, &victim, 3).await;

    cluster.heal_node(index).unwrap();
    eventually(
        &format!("{victim} Ready again"),
        Duration::from_secs(60),
        || async {
            let n = client
                .get("nodes", "", &victim)
                .await
                .map_err(|e| e.to_string())?;
            if node_ready(&n) == "True" {
                Ok(())
            } else {
                Err(n["status"]["conditions"].to_string())
            }
        },
    )
    .await
    .unwrap();
    // The evicted pods finish terminating on the healed node: exactly three pods remain,
    // and exactly three containers run on all nodes together.
    let after = eventually("exactly 3 pods and 3 containers", POD_WAIT, || async {
        let pods = pods(&client, "shop", "app=web").await?;
        let running: usize = cluster
            .nodes
            .iter()
            .map(|n| n.running_tasks().map(|t| t.len()).unwrap_or(0))
            .sum();
        if pods.len() == 3 && pods.iter().all(|p| is_ready(p) && !is_terminating(p)) && running == 3
        {
            Ok(pods)
        } else {
            Err(format!("{}; {running} containers", summary(&pods)))
        }
    })
    .await
    .unwrap();
    let names: BTreeSet<String> = after.iter().map(name).collect();
    assert_eq!(names.len(), 3);
    let deployment = client.get("deployments", "shop", "web").await.unwrap();
    assert_eq!(
        deployment["status"]["replicas"], 3,
        "{}",
        deployment["status"]
    );
}

/// The (container id, pid) of every running container, and every pod's restart counts.
async fn containers_and_restarts(
    cluster: &Cluster,
    client: &Client,
) -> (BTreeSet<(String, String)>, BTreeMap<String, i64>) {
    let tasks = cluster
        .nodes
        .iter()
        .flat_map(|n| n.running_tasks().unwrap())
        .collect();
    let restarts = pods(client, "shop", "")
        .await
        .unwrap()
        .iter()
        .map(|p| {
            (
                name(p),
                p["status"]["containerStatuses"][0]["restartCount"]
                    .as_i64()
                    .unwrap_or(-1),
            )
        })
        .collect();
    (tasks, restarts)
}

/// One line through the echo server on a new connection.
fn echo_once(address: SocketAddr) -> std::io::Result<String> {
    let stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    writer.write_all(b"ready?\n")?;
    let mut answer = String::new();
    reader.read_line(&mut answer)?;
    if answer == "ready?\n" {
        Ok(answer)
    } else {
        Err(std::io::Error::other(format!("echoed {answer:?}")))
    }
}

/// An echo server: each connection gets its own `cat`.
fn echo_deployment(replicas: u32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "echo"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "echo"}},
            "template": {"metadata": {"labels": {"app": "echo"}},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                    "name": "echo", "image": IMAGE,
                    "command": ["nc", "-ll", "-p", "9000", "-e", "cat"],
                    "ports": [{"name": "echo", "containerPort": 9000}],
                    "readinessProbe": {"tcpSocket": {"port": 9000}, "periodSeconds": 1}}]}}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_restarting_an_agent_under_load_drops_no_established_connection_and_restarts_no_container()
 {
    let mut cluster = start_cluster(ClusterConfig::default()).await;
    let client = cluster.client().unwrap();
    create(&client, "namespaces", "", &namespace("shop")).await;
    create(&client, "deployments", "shop", &echo_deployment(3)).await;
    let service = create(
        &client,
        "services",
        "shop",
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
            "spec": {"type": "NodePort", "selector": {"app": "echo"},
                "ports": [{"name": "echo", "port": 9000, "targetPort": "echo"}]}}),
    )
    .await;
    let node_port =
        u16::try_from(service["spec"]["ports"][0]["nodePort"].as_i64().unwrap()).unwrap();
    ready_pods(&client, "shop", "app=echo", 3).await;
    // Ready pods are not yet backends everywhere: each agent applies the EndpointSlice on
    // its own watch. Only then is a refused connection a failure.
    answers_through_every_node(&cluster, node_port, echo_once).await;
    let (tasks_before, restarts_before) = containers_and_restarts(&cluster, &client).await;

    // Established connections from outside through node 0's NodePort, each echoing a line
    // every 100 ms until told to stop.
    let address = SocketAddr::from((cluster.nodes[0].ip, node_port));
    let connections: Vec<TcpStream> = cluster
        .in_client(|| {
            (0..8)
                .map(|_| TcpStream::connect_timeout(&address, Duration::from_secs(3)))
                .collect::<std::io::Result<Vec<_>>>()
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("connecting to {address} from outside: {e}"));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let echoed = Arc::new(Mutex::new(vec![0usize; connections.len()]));
    let workers: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            let (stop, errors, echoed) = (stop.clone(), errors.clone(), echoed.clone());
            std::thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(3)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let line = format!("conn {i} line {n}\n");
                    let mut answer = String::new();
                    let result = writer
                        .write_all(line.as_bytes())
                        .and_then(|()| reader.read_line(&mut answer));
                    match result {
                        Ok(_) if answer == line => echoed.lock().unwrap()[i] += 1,
                        Ok(_) => {
                            errors
                                .lock()
                                .unwrap()
                                .push(format!("conn {i}: sent {line:?}, got {answer:?}"));
                            return;
                        }
                        Err(e) => {
                            errors.lock().unwrap().push(format!("conn {i}: {e}"));
                            return;
                        }
                    }
                    n += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_restart: Vec<usize> = echoed.lock().unwrap().clone();

    // Restart every agent (node 0's carries the NodePort path) while the load runs.
    for i in 0..cluster.nodes.len() {
        cluster.restart_agent(i).unwrap();
    }
    // Until every node is back (its Lease renewed by the new agent) and a while after.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for node in &cluster.nodes {
        let n = client.get("nodes", "", &node.name).await.unwrap();
        assert_eq!(node_ready(&n), "True", "{} is Ready", node.name);
    }
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.join().unwrap();
    }
    let errors = errors.lock().unwrap().clone();
    let echoed = echoed.lock().unwrap().clone();
    eprintln!("lines echoed per connection: before restart {before_restart:?}, in all {echoed:?}");
    assert!(
        errors.is_empty(),
        "no established connection dropped: {errors:?}"
    );
    for (i, (before, all)) in before_restart.iter().zip(&echoed).enumerate() {
        assert!(
            all > &(before + 40),
            "connection {i} kept echoing through and after the restarts ({before} -> {all})"
        );
    }
    // New connections work too, and nothing restarted.
    let fresh = cluster
        .in_client(|| TcpStream::connect_timeout(&address, Duration::from_secs(3)).map(|_| ()))
        .unwrap();
    assert!(
        fresh.is_ok(),
        "a new connection after the restart: {fresh:?}"
    );
    let (tasks_after, restarts_after) = containers_and_restarts(&cluster, &client).await;
    assert_eq!(tasks_before, tasks_after, "the same containers, same pids");
    assert_eq!(restarts_before, restarts_after, "no container restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_a_rolling_update_under_steady_load_through_the_service_fails_no_request() {
    let cluster = start_cluster(ClusterConfig::default()).await;
    let client = cluster.client().unwrap();
    create(&client, "namespaces", "", &namespace("shop")).await;
    // Zero-downtime settings: surge one, never below replicas, and a preStop pause longer
    // than it takes every node to drop the endpoint from its maps, so that a terminating
    // pod serves until the data plane has stopped sending to it (with 2 s, 1 request in
    // ~3700 timed out once on a loaded machine).
    let mut container = workload::web_container(&[]);
    container["lifecycle"] = json!({"preStop": {"exec": {"command": ["sleep", "4"]}}});
    let deployment = web_deployment(
        "web",
        3,
        json!({"strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}),
        json!({"terminationGracePeriodSeconds": 8, "containers": [container]}),
    );
    create(&client, "deployments", "shop", &deployment).await;
    let service = create(
        &client,
        "services",
        "shop",
        &workload::service("web", "web", "NodePort"),
    )
    .await;
    let node_port =
        u16::try_from(service["spec"]["ports"][0]["nodePort"].as_i64().unwrap()).unwrap();
    let before = ready_pods(&client, "shop", "app=web", 3).await;
    let old: BTreeSet<String> = before.iter().map(name).collect();
    // The starting point: the slices list all three, and every node serves the NodePort.
    eventually("the slices to list 3 ready endpoints", POD_WAIT, || async {
        let ready: Vec<Value> = endpoints(&client, "shop", "web")
            .await?
            .into_iter()
            .filter(|e| e["conditions"]["ready"] == true)
            .collect();
        (ready.len() == 3).then_some(()).ok_or(format!("{ready:?}"))
    })
    .await
    .unwrap();
    node_port_answers_through_every_node(&cluster, node_port).await;

    // Steady load from outside through every node, one request at a time per node.
    let stop = Arc::new(AtomicBool::new(false));
    let results = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let addresses: Vec<SocketAddr> = cluster
        .nodes
        .iter()
        .map(|n| SocketAddr::from((n.ip, node_port)))
        .collect();
    let load = {
        let (stop, results) = (stop.clone(), results.clone());
        cluster
            .client_ns
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    for address in &addresses {
                        let answer = match http_get(*address, Duration::from_secs(2)) {
                            Ok(_) => "ok".to_string(),
                            Err(e) => format!("FAIL via {address}: {e}"),
                        };
                        *results.lock().unwrap().entry(answer).or_insert(0) += 1;
                    }
                }
            })
            .unwrap()
    };
    // What the nodes are told: the fewest ready endpoints and every slice name seen.
    let slices_seen = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut fewest, mut names, mut at_fewest) = (usize::MAX, BTreeSet::new(), Value::Null);
            while !stop.load(Ordering::SeqCst) {
                if let Ok(list) = client
                    .list(
                        "endpointslices",
                        "shop",
                        &skiff_api::client::ListParams {
                            label_selector: "kubernetes.io/service-name=web".into(),
                            ..Default::default()
                        },
                    )
                    .await
                {
                    let ready = list
                        .items
                        .iter()
                        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
                        .filter(|e| e["conditions"]["ready"] == true)
                        .count();
                    if ready < fewest {
                        fewest = ready;
                        at_fewest = json!(
                            list.items
                                .iter()
                                .map(|s| &s["endpoints"])
                                .collect::<Vec<_>>()
                        );
                    }
                    names.extend(list.items.iter().map(name));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (fewest, names, at_fewest)
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_update: usize = results.lock().unwrap().values().sum();
    client
        .patch(
            "deployments",
            "shop",
            "web",
            &json!({"spec": {"template": {"metadata": {"annotations": {"rollout": "2"}}}}}),
            "",
        )
        .await
        .unwrap();
    eventually("every pod replaced", POD_WAIT, || async {
        let pods = pods(&client, "shop", "app=web").await?;
        if pods.len() == 3
            && pods
                .iter()
                .all(|p| is_ready(p) && !is_terminating(p) && !old.contains(&name(p)))
        {
            Ok(())
        } else {
            Err(summary(&pods))
        }
    })
    .await
    .unwrap();
    let during_update = results.lock().unwrap().values().sum::<usize>() - before_update;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();
    let results = results.lock().unwrap().clone();
    let (fewest_ready, slice_names, at_fewest) = slices_seen.await.unwrap();
    eprintln!(
        "requests through the NodePort of every node: {results:?}, {during_update} of them while pods were replaced; \
         endpoint slices {slice_names:?} never had fewer than {fewest_ready} ready endpoints"
    );
    print_lb_counters(&cluster);
    assert!(
        fewest_ready >= 3,
        "with maxUnavailable 0 the slices always list 3 ready endpoints: {fewest_ready} in \
         {at_fewest}; pods now: {}",
        summary(&pods(&client, "shop", "app=web").await.unwrap_or_default())
    );
    assert!(
        during_update >= 10,
        "steady load ran throughout the update: {during_update} requests"
    );
    assert_eq!(results.len(), 1, "zero failed requests: {results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_killing_the_leading_control_and_the_etcd_leader_leaves_a_cluster_that_schedules_and_runs_pods()
 {
    let mut cluster = start_cluster(ClusterConfig::default()).await;
    let client = cluster.client().unwrap();
    deploy_web(&client, "web", 3, json!({}), json!({})).await;
    let leader = eventually("a leading control", Duration::from_secs(15), || async {
        cluster
            .leading_control(&client)
            .await
            .ok_or("no leader yet".to_string())
    })
    .await
    .unwrap();
    let etcd_leader = cluster.etcd.leader().expect("etcd has a leader");

    cluster.kill_control(leader);
    cluster.kill_etcd(etcd_leader);
    let killed = Instant::now();
    // Scale up through the proxy (the survivor answers once etcd has a new leader).
    eventually(
        "the scale-up to be accepted",
        Duration::from_secs(15),
        || async {
            client
                .patch(
                    "deployments",
                    "shop",
                    "web",
                    &json!({"spec": {"replicas": 6}}),
                    "",
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await
    .unwrap();
    let survivor = eventually(
        "the other control to lead",
        Duration::from_secs(15),
        || async {
            match cluster.leading_control(&client).await {
                Some(i) if i != leader => Ok(i),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .unwrap();
    let took_over = killed.elapsed();
    let pods = ready_pods(&client, "shop", "app=web", 6).await;
    let all_ready = killed.elapsed();
    eprintln!(
        "control {leader} and etcd member {etcd_leader} killed: control {survivor} led after \
         {took_over:?}, 6 pods ready after {all_ready:?}: {}",
        summary(&pods)
    );
    assert!(took_over < Duration::from_secs(15), "took over within 15 s");
    // Nothing was scheduled or started twice: one running container per pod.
    let running: usize = cluster
        .nodes
        .iter()
        .map(|n| n.running_tasks().unwrap().len())
        .sum();
    assert_eq!(running, 6, "one container per pod on the nodes");
    for node in &cluster.nodes {
        let n = client.get("nodes", "", &node.name).await.unwrap();
        assert_eq!(
            node_ready(&n),
            "True",
            "{} stayed Ready through the failover",
            node.name
        );
    }
}
