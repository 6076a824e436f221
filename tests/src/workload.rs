//! Manifests and queries the cluster tests share: a web Deployment of busybox httpd pods
//! that answer with their own name, Services, pod listings by label, and a plain HTTP GET.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use serde_json::{Value, json};
use skiff_api::client::{Client, ListParams};
use skiff_ebpf_common::LbEvent;

use crate::{
    cluster::{Cluster, ClusterConfig, ClusterNode},
    pod_node::IMAGE,
    wait::eventually,
};

/// Every wait for pods to start, move or go is bounded by this.
pub const POD_WAIT: Duration = Duration::from_secs(90);

/// Starts a whole cluster (off the async runtime's threads); panics with the reason when
/// it cannot.
pub async fn start_cluster(config: ClusterConfig) -> Cluster {
    tokio::task::spawn_blocking(move || Cluster::start(config))
        .await
        .expect("the cluster start task")
        .unwrap_or_else(|e| panic!("the cluster starts: {e:#}"))
}

/// Creates `object`; panics with what failed.
pub async fn create(client: &Client, resource: &str, namespace: &str, object: &Value) -> Value {
    client
        .create(resource, namespace, object)
        .await
        .unwrap_or_else(|e| panic!("creating {resource} in {namespace:?}: {e}"))
}

/// Waits until exactly `count` pods match `selector`, none terminating, all Ready.
pub async fn ready_pods(client: &Client, ns: &str, selector: &str, count: usize) -> Vec<Value> {
    eventually(
        &format!("{count} ready pods {selector} in {ns}"),
        POD_WAIT,
        || async {
            let pods = pods(client, ns, selector).await?;
            if pods.len() == count && pods.iter().all(|p| is_ready(p) && !is_terminating(p)) {
                Ok(pods)
            } else {
                Err(summary(&pods))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Every endpoint (ready or not) of the Service's EndpointSlices.
pub async fn endpoints(client: &Client, ns: &str, service: &str) -> Result<Vec<Value>, String> {
    let slices = client
        .list(
            "endpointslices",
            ns,
            &ListParams {
                label_selector: format!("kubernetes.io/service-name={service}"),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?
        .items;
    Ok(slices
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .collect())
}

/// The container port every web pod serves on.
pub const WEB_PORT: u16 = 8080;

/// A Deployment of `replicas` pods labelled `app: <name>`, each running busybox httpd on
/// [`WEB_PORT`] whose `/` answers the pod's name, Ready once httpd answers. `spec` keys
/// are merged over the defaults (e.g. `strategy`, `topologySpreadConstraints` go in
/// `pod_spec`).
pub fn web_deployment(name: &str, replicas: u32, spec: Value, pod_spec: Value) -> Value {
    let mut deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [web_container(&[])],
                },
            },
        },
    });
    merge(&mut deployment["spec"], spec);
    merge(&mut deployment["spec"]["template"]["spec"], pod_spec);
    deployment
}

/// Creates the namespace `shop` and in it the web Deployment `app` (see
/// [`web_deployment`]), and waits for its `replicas` pods to be Ready; returns them.
///
/// # Panics
/// When a create fails or the pods are not Ready within [`POD_WAIT`].
pub async fn deploy_web(
    client: &Client,
    app: &str,
    replicas: u32,
    spec: Value,
    pod_spec: Value,
) -> Vec<Value> {
    create(client, "namespaces", "", &namespace("shop")).await;
    create(
        client,
        "deployments",
        "shop",
        &web_deployment(app, replicas, spec, pod_spec),
    )
    .await;
    ready_pods(client, "shop", &format!("app={app}"), replicas as usize).await
}

/// The path under which a web pod answers `<pod name> <client address>`: the address its
/// connection came from, as the pod sees it (the client's own, or a node's after SNAT).
pub const PEER_PATH: &str = "/cgi-bin/peer";

/// The web container, with more environment variables (`(name, value)`). `/` answers the
/// pod's name; [`PEER_PATH`] (a CGI script) the name and the connection's source address.
pub fn web_container(env: &[(&str, &str)]) -> Value {
    let mut vars = vec![pod_name_env()];
    vars.extend(env.iter().map(|(k, v)| json!({"name": k, "value": v})));
    json!({
        "name": "web", "image": IMAGE,
        "command": ["sh", "-c",
            "mkdir -p /tmp/www/cgi-bin && echo $POD_NAME > /tmp/www/index.html \
             && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $POD_NAME $REMOTE_ADDR\\n' \
                > /tmp/www/cgi-bin/peer && chmod +x /tmp/www/cgi-bin/peer \
             && exec httpd -f -p 8080 -h /tmp/www"],
        "env": vars,
        "ports": [{"name": "http", "containerPort": WEB_PORT}],
        "readinessProbe": {"httpGet": {"path": "/", "port": WEB_PORT},
                           "periodSeconds": 1, "failureThreshold": 1},
    })
}

/// The `POD_NAME` environment variable: the pod's own name (downward API).
pub fn pod_name_env() -> Value {
    json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
}

/// A Service of `type_` selecting `app: <app>` on port 80 to the pods' `http` port.
pub fn service(name: &str, app: &str, type_: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": type_, "selector": {"app": app},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    })
}

/// A Namespace object.
pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        for (k, v) in from {
            into.insert(k, v);
        }
    }
}

/// Pods in `namespace` matching `selector` (an error as text, for `eventually`).
///
/// # Errors
/// When the list fails.
pub async fn pods(client: &Client, namespace: &str, selector: &str) -> Result<Vec<Value>, String> {
    client
        .list(
            "pods",
            namespace,
            &ListParams {
                label_selector: selector.into(),
                ..ListParams::default()
            },
        )
        .await
        .map(|l| l.items)
        .map_err(|e| format!("listing pods in {namespace}: {e}"))
}

/// True when the pod's Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// True once the pod is being deleted.
pub fn is_terminating(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_string()
}

/// The pod's name.
pub fn name(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The node the pod is bound to ("" when none).
pub fn node_of(pod: &Value) -> String {
    pod["spec"]["nodeName"].as_str().unwrap_or("").to_string()
}

/// A short summary of pods for failure messages: name, node, phase, ready, terminating.
pub fn summary(pods: &[Value]) -> String {
    pods.iter()
        .map(|p| {
            format!(
                "{}@{}:{}{}{}",
                name(p),
                node_of(p),
                p["status"]["phase"].as_str().unwrap_or("?"),
                if is_ready(p) { ":ready" } else { "" },
                if is_terminating(p) {
                    ":terminating"
                } else {
                    ""
                },
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `GET /` over a fresh connection (HTTP/1.0) from the calling thread's network
/// namespace; the body, trimmed.
///
/// # Errors
/// When the connection fails, times out or the answer is not 200.
pub fn http_get(address: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    http_get_path(address, "/", timeout)
}

/// `GET <path>` over a fresh connection, like [`http_get`].
///
/// # Errors
/// When the connection fails, times out or the answer is not 200.
pub fn http_get_path(
    address: SocketAddr,
    path: &str,
    timeout: Duration,
) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    // A CGI script's own header lines (busybox httpd passes them on) may end in bare LFs.
    let (head, body) = response
        .split_once("\r\n\r\n")
        .or_else(|| response.split_once("\n\n"))
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {response:?}")))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("answer: {head}")));
    }
    Ok(body.trim().to_string())
}

/// GETs `address` `count` times from the client namespace, a new connection each; how many
/// answers each backend gave (failures under "FAIL: <error>").
///
/// # Panics
/// When the client namespace cannot be entered.
pub fn probe_from_outside(
    cluster: &Cluster,
    address: SocketAddr,
    count: usize,
) -> BTreeMap<String, usize> {
    cluster
        .in_client(|| {
            let mut answers = BTreeMap::new();
            for _ in 0..count {
                let answer = http_get(address, Duration::from_secs(2))
                    .unwrap_or_else(|e| format!("FAIL: {e}"));
                *answers.entry(answer).or_insert(0) += 1;
            }
            answers
        })
        .unwrap()
}

/// Waits until `port` answers `request` from outside through every node: each agent has
/// put the service in its maps.
///
/// # Panics
/// When some node does not answer within 30 s.
pub async fn answers_through_every_node(
    cluster: &Cluster,
    port: u16,
    request: impl Fn(SocketAddr) -> std::io::Result<String> + Sync,
) {
    for node in &cluster.nodes {
        let address = SocketAddr::from((node.ip, port));
        eventually(
            &format!("port {port} to answer through {}", node.name),
            Duration::from_secs(30),
            || async {
                cluster
                    .in_client(|| request(address))
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            },
        )
        .await
        .unwrap();
    }
}

/// Waits until the HTTP NodePort `node_port` answers from outside through every node.
///
/// # Panics
/// When some node does not answer within 30 s.
pub async fn node_port_answers_through_every_node(cluster: &Cluster, node_port: u16) {
    answers_through_every_node(cluster, node_port, |address| {
        http_get(address, Duration::from_secs(1))
    })
    .await;
}

/// The first port's `nodePort` of a Service.
///
/// # Panics
/// When the Service has none.
pub fn node_port(service: &Value) -> u16 {
    service["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("a nodePort in {}", service["spec"]))
}

/// A pod on `node` that GETs `http://<host>:80/` `count` times (one connection each, with
/// busybox nc), printing each answer's body (or FAIL), then DONE; see [`prober_output`].
pub fn prober(pod: &str, node: &str, host: &str, count: u32) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod, "labels": {"role": "prober"}},
        "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 1, "restartPolicy": "Never",
            "containers": [{"name": "probe", "image": IMAGE,
                "env": [{"name": "HOST", "value": host}],
                "command": ["sh", "-c", format!(
                    "for i in $(seq 1 {count}); do \
                       r=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $HOST 80 | tail -n 1); \
                       echo ${{r:-FAIL}}; done; echo DONE")]}]}})
}

/// Waits for the [`prober`] pod `pod` in `namespace`, running on `node`, to finish, and
/// returns what it printed (its answers, one a line, then DONE).
///
/// # Panics
/// When it has not printed DONE within [`POD_WAIT`] (with its phase and its output so far).
pub async fn prober_output(
    client: &Client,
    namespace: &str,
    node: &ClusterNode,
    pod: &str,
) -> String {
    eventually(&format!("prober {pod} to finish"), POD_WAIT, || async {
        let object = client
            .get("pods", namespace, pod)
            .await
            .map_err(|e| e.to_string())?;
        let output = node.container_output(&object, "probe", 0);
        if output.contains("DONE") {
            Ok(output)
        } else {
            Err(format!(
                "{}; output so far: {output}",
                object["status"]["phase"]
            ))
        }
    })
    .await
    .unwrap()
}

/// Prints every node's uplink load-balancing counters (for the record and for failures).
pub fn print_lb_counters(cluster: &Cluster) {
    for node in &cluster.nodes {
        let names = LbEvent::ALL.map(LbEvent::name);
        eprintln!(
            "{} uplink LB counters {names:?}: {:?}",
            node.name,
            node.lb_stats()
        );
    }
}
