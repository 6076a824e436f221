//! Issue #7's service data-plane scenarios on a whole [`Cluster`], from the client
//! namespace that plays the outside world: a NodePort and a LoadBalancer IP through the
//! backend's node and through nodes without one, ClientIP session affinity,
//! externalTrafficPolicy Local and Cluster as the backend sees the client, and scaling a
//! Deployment under steady load without dropping an established connection.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{self, BufRead, BufReader, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use skiff_api::client::Client;
use skiff_ebpf_common::LbEvent;
use skiff_tests::{
    cluster::{CLIENT_IP, Cluster, ClusterConfig},
    pod_node::IMAGE,
    wait::eventually,
    workload::{
        self, PEER_PATH, answers_through_every_node, create, deploy_web, http_get, http_get_path,
        name, node_of, node_port, node_port_answers_through_every_node, pod_name_env,
        print_lb_counters, probe_from_outside, ready_pods, start_cluster, summary,
    },
};

/// Where LoadBalancer Services get their addresses (`--load-balancer-ip-pool`).
const LB_POOL: (Ipv4Addr, Ipv4Addr) = (
    Ipv4Addr::new(10, 250, 0, 200),
    Ipv4Addr::new(10, 250, 0, 209),
);
/// The node the single backend is pinned to; the other two have none.
const BACKEND_NODE: usize = 1;

/// Starts a cluster with a namespace `shop` and a web Deployment `app` of `replicas`
/// (`pod_spec` merged into its pods' spec); returns the cluster, an admin client and the
/// Ready pods.
async fn cluster_with(
    config: ClusterConfig,
    app: &str,
    replicas: u32,
    pod_spec: Value,
) -> (Cluster, Client, Vec<Value>) {
    let cluster = start_cluster(config).await;
    let client = cluster.client().unwrap();
    let pods = deploy_web(&client, app, replicas, json!({}), pod_spec).await;
    (cluster, client, pods)
}

/// A cluster with one web pod pinned to [`BACKEND_NODE`]; the pod's name.
async fn one_pinned_backend(config: ClusterConfig) -> (Cluster, Client, String) {
    let node = format!("node-{BACKEND_NODE}");
    let (cluster, client, pods) = cluster_with(
        config,
        "web",
        1,
        json!({"nodeSelector": {"kubernetes.io/hostname": node}}),
    )
    .await;
    assert_eq!(node_of(&pods[0]), node, "pinned: {}", summary(&pods));
    (cluster, client, name(&pods[0]))
}

/// A Service like [`workload::service`] with `extra` merged into its spec.
fn service_with(name: &str, type_: &str, extra: Value) -> Value {
    let mut service = workload::service(name, "web", type_);
    for (key, value) in extra.as_object().into_iter().flatten() {
        service["spec"][key] = value.clone();
    }
    service
}

/// Creates a Service in `shop`; its (first) nodePort.
async fn create_service(client: &Client, service: &Value) -> u16 {
    node_port(&create(client, "services", "shop", service).await)
}

/// What a node is to the backend, for messages.
fn role(i: usize) -> &'static str {
    if i == BACKEND_NODE {
        "the backend's node"
    } else {
        "a node without a backend"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_node_port_and_load_balancer_ip_answer_through_the_backends_node_and_through_nodes_without_one()
 {
    let pool = format!("--load-balancer-ip-pool={}-{}", LB_POOL.0, LB_POOL.1);
    let (cluster, client, backend) =
        one_pinned_backend(ClusterConfig::default().with_control_args(&[&pool])).await;
    let node_port = create_service(&client, &workload::service("web", "web", "LoadBalancer")).await;
    let lb_ip: Ipv4Addr = eventually(
        "the LoadBalancer Service to get an ingress IP",
        Duration::from_secs(30),
        || async {
            let service = client
                .get("services", "shop", "web")
                .await
                .map_err(|e| e.to_string())?;
            service["status"]["loadBalancer"]["ingress"][0]["ip"]
                .as_str()
                .and_then(|ip| ip.parse().ok())
                .ok_or_else(|| service["status"].to_string())
        },
    )
    .await
    .unwrap();
    assert!(
        (LB_POOL.0..=LB_POOL.1).contains(&lb_ip),
        "the ingress IP {lb_ip} comes from the pool {LB_POOL:?}"
    );

    node_port_answers_through_every_node(&cluster, node_port).await;
    let only_backend = BTreeMap::from([(backend.clone(), 10)]);
    let lb = SocketAddr::from((lb_ip, 80));
    for (i, node) in cluster.nodes.iter().enumerate() {
        let address = SocketAddr::from((node.ip, node_port));
        let answers = probe_from_outside(&cluster, address, 10);
        assert_eq!(
            answers,
            only_backend,
            "10 new connections to the NodePort through {} ({}, {address}) all reach {backend}",
            node.name,
            role(i)
        );

        // The outside world's router sends the LoadBalancer IP to this node.
        cluster.route_from_client_via(lb_ip, i).unwrap();
        // An agent learns the address from the Service's status, after the NodePort.
        eventually(
            &format!("the LoadBalancer IP {lb} to answer through {}", node.name),
            Duration::from_secs(30),
            || async {
                cluster
                    .in_client(|| http_get(lb, Duration::from_secs(1)))
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            },
        )
        .await
        .unwrap();
        let answers = probe_from_outside(&cluster, lb, 10);
        assert_eq!(
            answers,
            only_backend,
            "10 new connections to the LoadBalancer IP {lb} routed through {} ({}) all reach \
             {backend}",
            node.name,
            role(i)
        );
    }
    print_lb_counters(&cluster);
    // The backend's agent registered its pod: what came in for it from outside went
    // straight into the pod's veth, past the node's forwarding.
    let delivered =
        cluster.nodes[BACKEND_NODE].lb_stats().unwrap()[LbEvent::LocalDelivered as usize];
    assert!(
        delivered >= 20,
        "the NodePort and LoadBalancer connections through the backend's node were handed \
         to the pod's veth: {delivered} packets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_client_ip_affinity_sends_every_new_connection_to_one_backend_and_without_it_connections_spread()
 {
    let (cluster, client, pods) = cluster_with(ClusterConfig::default(), "web", 3, json!({})).await;
    let backends: BTreeSet<String> = pods.iter().map(name).collect();
    let sticky = create_service(
        &client,
        &service_with("sticky", "NodePort", json!({"sessionAffinity": "ClientIP"})),
    )
    .await;
    let spread = create_service(&client, &workload::service("spread", "web", "NodePort")).await;
    node_port_answers_through_every_node(&cluster, sticky).await;
    node_port_answers_through_every_node(&cluster, spread).await;

    // Each node keeps its own affinity table (as kube-proxy's rules on each node do):
    // through one node, every connection from the client reaches one backend.
    for node in &cluster.nodes {
        let answers = probe_from_outside(&cluster, SocketAddr::from((node.ip, sticky)), 20);
        eprintln!("ClientIP affinity through {}: {answers:?}", node.name);
        assert!(
            answers.len() == 1 && answers.keys().all(|pod| backends.contains(pod)),
            "with sessionAffinity ClientIP, 20 new connections through {} all reach the same \
             one of {backends:?}: {answers:?}",
            node.name
        );
        let answers = probe_from_outside(&cluster, SocketAddr::from((node.ip, spread)), 20);
        eprintln!("no affinity through {}: {answers:?}", node.name);
        assert!(
            answers.len() > 1 && answers.keys().all(|pod| backends.contains(pod)),
            "without affinity, 20 new connections through {} spread over more than one of \
             {backends:?}, none failing: {answers:?}",
            node.name
        );
    }
    print_lb_counters(&cluster);
}

/// Splits a [`PEER_PATH`] answer into the pod's name and the source address it saw
/// (httpd's dual-stack socket shows an IPv4 peer as `[::ffff:a.b.c.d]`).
fn pod_and_peer(answer: &str) -> Option<(String, Ipv4Addr)> {
    let (pod, peer) = answer.split_once(' ')?;
    let peer = peer.trim().trim_start_matches('[').trim_end_matches(']');
    let peer = peer.strip_prefix("::ffff:").unwrap_or(peer);
    Some((pod.to_string(), peer.parse().ok()?))
}

/// Who answered `address` from outside and which source address it saw.
fn peer_seen_through(cluster: &Cluster, address: SocketAddr) -> io::Result<(String, Ipv4Addr)> {
    let answer = cluster
        .in_client(|| http_get_path(address, PEER_PATH, Duration::from_secs(2)))
        .map_err(io::Error::other)??;
    pod_and_peer(&answer).ok_or_else(|| io::Error::other(format!("not `pod peer`: {answer:?}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_external_traffic_policy_local_keeps_the_client_address_and_is_not_forwarded_from_other_nodes_while_cluster_snats()
 {
    let (cluster, client, backend) = one_pinned_backend(ClusterConfig::default()).await;
    let local = create_service(
        &client,
        &service_with(
            "local",
            "NodePort",
            json!({"externalTrafficPolicy": "Local"}),
        ),
    )
    .await;
    // Created after `local`: agents get Services in watch order, so a node that serves
    // `cluster` has `local` in its maps too.
    let cluster_port = create_service(
        &client,
        &service_with(
            "cluster",
            "NodePort",
            json!({"externalTrafficPolicy": "Cluster"}),
        ),
    )
    .await;
    node_port_answers_through_every_node(&cluster, cluster_port).await;
    let with_backend = &cluster.nodes[BACKEND_NODE];
    let through_backend_node = SocketAddr::from((with_backend.ip, local));
    let seen = eventually(
        &format!(
            "the eTP Local NodePort to answer through {}",
            with_backend.name
        ),
        Duration::from_secs(30),
        || async { peer_seen_through(&cluster, through_backend_node).map_err(|e| e.to_string()) },
    )
    .await
    .unwrap();
    assert_eq!(
        seen,
        (backend.clone(), CLIENT_IP),
        "externalTrafficPolicy Local through the backend's node {}: the backend sees the \
         client's own address",
        with_backend.name
    );

    for (i, node) in cluster.nodes.iter().enumerate() {
        let seen = peer_seen_through(&cluster, SocketAddr::from((node.ip, cluster_port)));
        eprintln!(
            "externalTrafficPolicy Cluster through {} ({}): {seen:?}",
            node.name,
            role(i)
        );
        if i == BACKEND_NODE {
            continue;
        }
        assert_eq!(
            seen.unwrap(),
            (backend.clone(), node.ip),
            "externalTrafficPolicy Cluster through {} (no backend there): the connection is \
             SNATed to that node's address",
            node.name
        );

        // Kubernetes: a node without a local endpoint does not forward eTP Local traffic
        // to other nodes; the connection fails.
        let address = SocketAddr::from((node.ip, local));
        let answers = probe_from_outside(&cluster, address, 5);
        eprintln!(
            "externalTrafficPolicy Local through {} (no local backend): {answers:?}",
            node.name
        );
        assert!(
            answers.keys().all(|answer| answer.starts_with("FAIL")),
            "externalTrafficPolicy Local through {} ({address}), which has no local backend: \
             no connection is forwarded to {backend} on {}: {answers:?}",
            node.name,
            with_backend.name
        );
    }
    print_lb_counters(&cluster);
}

/// The echo Service's port.
const ECHO_PORT: u16 = 9000;

/// A container that answers every line on [`ECHO_PORT`] with `<pod name> <line>` for as
/// long as the connection lasts; a preStop pause keeps a terminating pod serving until
/// every node has stopped giving it new connections.
fn named_echo_container() -> Value {
    json!({"name": "echo", "image": IMAGE,
        "command": ["sh", "-c",
            "printf '#!/bin/sh\\nwhile read -r line; do echo \"$POD_NAME $line\"; done\\n' \
               > /tmp/echo && chmod +x /tmp/echo && exec nc -ll -p 9000 -e /tmp/echo"],
        "env": [pod_name_env()],
        "ports": [{"name": "echo", "containerPort": ECHO_PORT}],
        "readinessProbe": {"tcpSocket": {"port": ECHO_PORT}, "periodSeconds": 1},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "4"]}}}})
}

/// Sends `line` and reads its echo; the pod that answered.
fn ask(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    line: &str,
) -> io::Result<String> {
    writer.write_all(format!("{line}\n").as_bytes())?;
    let mut answer = String::new();
    if reader.read_line(&mut answer)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed by the other end",
        ));
    }
    match answer.trim_end().split_once(' ') {
        Some((pod, echoed)) if echoed == line => Ok(pod.to_string()),
        _ => Err(io::Error::other(format!("sent {line:?}, got {answer:?}"))),
    }
}

/// One line on a new connection; the pod that answered.
fn ask_once(address: SocketAddr) -> io::Result<String> {
    let stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    ask(&mut reader, &mut writer, "hello")
}

/// One persistent connection's record.
#[derive(Clone, Debug, Default)]
struct Persistent {
    /// The pod that answered its first request.
    backend: String,
    answered: usize,
    /// Why it stopped: a failed request, or an answer from another pod.
    error: Option<String>,
}

/// Requests on connection `i` every 50 ms until `stop`, or until one fails or another pod
/// answers.
fn keep_asking(
    i: usize,
    stream: TcpStream,
    record: &Mutex<Vec<Persistent>>,
    stop: &AtomicBool,
) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let result = ask(&mut reader, &mut writer, &format!("conn {i} request {n}"));
        let mut records = record.lock().unwrap();
        let mine = &mut records[i];
        match result {
            Ok(pod) if mine.backend.is_empty() || mine.backend == pod => {
                mine.backend = pod;
                mine.answered += 1;
            }
            Ok(pod) => {
                mine.error = Some(format!(
                    "request {n} answered by {pod} after {} answers from {}",
                    mine.answered, mine.backend
                ));
                return Ok(());
            }
            Err(e) => {
                mine.error = Some(format!("request {n}: {e}"));
                return Ok(());
            }
        }
        drop(records);
        n += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// New connections, one request each, by phase of the test.
#[derive(Debug, Default)]
struct Fresh {
    phase: &'static str,
    /// Per phase, how many answers each pod gave.
    answers: BTreeMap<&'static str, BTreeMap<String, usize>>,
    errors: Vec<String>,
}

impl Fresh {
    fn reached(&self, phase: &str) -> BTreeSet<String> {
        self.answers
            .get(phase)
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// Scales the echo Deployment and waits for exactly `replicas` Ready pods; their names.
async fn scale(client: &Client, replicas: usize) -> BTreeSet<String> {
    client
        .patch(
            "deployments",
            "shop",
            "echo",
            &json!({"spec": {"replicas": replicas}}),
            "",
        )
        .await
        .unwrap_or_else(|e| panic!("scaling to {replicas}: {e}"));
    ready_pods(client, "shop", "app=echo", replicas)
        .await
        .iter()
        .map(name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_scaling_under_steady_load_keeps_every_established_connection_on_its_backend_and_fails_no_new_connection()
 {
    let (cluster, client, _) = cluster_with(
        ClusterConfig::default(),
        "echo",
        3,
        json!({"terminationGracePeriodSeconds": 8, "containers": [named_echo_container()]}),
    )
    .await;
    let port = create_service(
        &client,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
            "spec": {"type": "NodePort", "selector": {"app": "echo"},
                "ports": [{"name": "echo", "port": ECHO_PORT, "targetPort": "echo"}]}}),
    )
    .await;
    answers_through_every_node(&cluster, port, ask_once).await;
    let addresses: Vec<SocketAddr> = cluster
        .nodes
        .iter()
        .map(|n| SocketAddr::from((n.ip, port)))
        .collect();

    // Ten persistent connections, spread over the NodePort of every node.
    let connections: Vec<TcpStream> = cluster
        .in_client(|| {
            (0..10)
                .map(|i| {
                    TcpStream::connect_timeout(
                        &addresses[i % addresses.len()],
                        Duration::from_secs(3),
                    )
                })
                .collect::<io::Result<Vec<_>>>()
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("connecting from outside: {e}"));
    let stop = Arc::new(AtomicBool::new(false));
    let persistent = Arc::new(Mutex::new(vec![Persistent::default(); connections.len()]));
    let workers: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            let (record, stop) = (persistent.clone(), stop.clone());
            std::thread::spawn(move || keep_asking(i, stream, &record, &stop))
        })
        .collect();
    // And new connections all along, through every node in turn.
    let fresh = Arc::new(Mutex::new(Fresh {
        phase: "steady",
        ..Fresh::default()
    }));
    let opener = {
        let (fresh, stop, addresses) = (fresh.clone(), stop.clone(), addresses.clone());
        cluster
            .client_ns
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    for address in &addresses {
                        let result = ask_once(*address);
                        let mut fresh = fresh.lock().unwrap();
                        let phase = fresh.phase;
                        match result {
                            Ok(pod) => {
                                *fresh
                                    .answers
                                    .entry(phase)
                                    .or_default()
                                    .entry(pod)
                                    .or_insert(0) += 1;
                            }
                            Err(e) => fresh.errors.push(format!("{phase}, via {address}: {e}")),
                        }
                        drop(fresh);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
            .unwrap()
    };
    let snapshot = || persistent.lock().unwrap().clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let steady = snapshot();

    // 3 -> 6: every established connection stays on its backend (conntrack), while new
    // connections reach the new pods too (the Maglev tables changed under them).
    fresh.lock().unwrap().phase = "scale up";
    let six = scale(&client, 6).await;
    eventually(
        "new connections to reach all six pods",
        Duration::from_secs(30),
        || async {
            let reached = fresh.lock().unwrap().reached("scale up");
            if six.is_subset(&reached) {
                Ok(())
            } else {
                Err(format!("reached {reached:?} of {six:?}"))
            }
        },
    )
    .await
    .unwrap();
    let scaled_up = snapshot();

    // 6 -> 3: connections whose backend stays keep working.
    fresh.lock().unwrap().phase = "scale down";
    let three = scale(&client, 3).await;
    let scaled_down = snapshot();
    fresh.lock().unwrap().phase = "after";
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.join().unwrap().unwrap();
    }
    opener.join().unwrap();
    let last = snapshot();
    let fresh = fresh.lock().unwrap();

    let answered = |records: &[Persistent]| records.iter().map(|r| r.answered).collect::<Vec<_>>();
    eprintln!(
        "persistent connections (backend, answers, error): {:?}",
        last.iter()
            .map(|r| (&r.backend, r.answered, &r.error))
            .collect::<Vec<_>>()
    );
    eprintln!(
        "answers per connection: steady {:?}, scaled up {:?}, scaled down {:?}, last {:?}",
        answered(&steady),
        answered(&scaled_up),
        answered(&scaled_down),
        answered(&last)
    );
    eprintln!(
        "new connections by phase: {:?}; failed: {:?}",
        fresh.answers, fresh.errors
    );
    print_lb_counters(&cluster);

    for (i, (before, after)) in steady.iter().zip(&scaled_up).enumerate() {
        assert!(
            after.error.is_none() && after.answered > before.answered,
            "connection {i} kept answering from {} through the scale-up ({} -> {} answers): \
             {:?}",
            before.backend,
            before.answered,
            after.answered,
            after.error
        );
    }
    let survivors: Vec<usize> = (0..last.len())
        .filter(|&i| three.contains(&last[i].backend))
        .collect();
    assert!(
        !survivors.is_empty(),
        "some connection's backend outlives the scale-down (the newest pods go first): \
         backends {:?}, remaining {three:?}",
        last.iter().map(|r| &r.backend).collect::<Vec<_>>()
    );
    for &i in &survivors {
        assert!(
            last[i].error.is_none() && last[i].answered > scaled_down[i].answered,
            "connection {i}, whose backend {} stays, kept answering through and after the \
             scale-down ({} -> {} answers): {:?}",
            last[i].backend,
            scaled_down[i].answered,
            last[i].answered,
            last[i].error
        );
    }
    assert!(
        fresh.errors.is_empty(),
        "every new connection succeeded while scaling up and down: {:?}",
        fresh.errors
    );
    assert!(
        fresh.reached("after").is_subset(&three),
        "after the scale-down new connections reach only the remaining pods {three:?}: {:?}",
        fresh.answers.get("after")
    );
}
