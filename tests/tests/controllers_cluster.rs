//! End-to-end tests of the cluster controllers in a real `skiff-control` (embedded store):
//! EndpointSlices, node lifecycle and eviction, namespace deletion, service accounts, load
//! balancers and node IPAM. No node agent runs here, so where a test needs pod IPs,
//! readiness or Lease renewals it plays the agent's part through the API, as the helpers'
//! names say.

use std::{future::Future, time::Duration};

use serde_json::{Value, json};
use skiff_api::{
    client::{Client, ListParams},
    status::Reason,
};
use skiff_tests::control::{Backend, ControlPlane};

/// Every wait for a controller is bounded by this.
const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// The control plane, whose log is printed when the test fails.
struct Logged(ControlPlane);

impl Drop for Logged {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.0.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- skiff-control log (last 60 lines) ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

async fn start(args: &[&'static str]) -> (Logged, Client) {
    let args = args.to_vec();
    let control = tokio::task::spawn_blocking(move || {
        ControlPlane::start_with_args(Backend::Embedded, &args)
    })
    .await
    .unwrap()
    .expect("skiff-control starts");
    let client = control.admin_client().unwrap();
    (Logged(control), client)
}

/// Polls `check` until it returns `Ok`, failing after `timeout` with `what` and the last
/// thing it saw.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

async fn create(client: &Client, resource: &str, namespace: &str, object: Value) -> Value {
    client
        .create(resource, namespace, &object)
        .await
        .unwrap_or_else(|e| panic!("creating {resource} in {namespace:?}: {e}"))
}

/// A Node object with no agent behind it, reporting Ready as an agent would at start.
async fn register_hollow_node(client: &Client, name: &str) {
    create(
        client,
        "nodes",
        "",
        json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "lastHeartbeatTime": now(), "lastTransitionTime": now()},
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                 "lastHeartbeatTime": now(), "lastTransitionTime": now()}
            ]}
        }),
    )
    .await;
}

/// Renews (or first creates) the node's Lease, as its agent's heartbeat does.
async fn renew_lease_as_an_agent_would(client: &Client, node: &str) {
    match client.get("leases", "kube-node-lease", node).await {
        Ok(mut lease) => {
            lease["spec"]["renewTime"] = json!(now());
            client
                .update("leases", "kube-node-lease", &lease)
                .await
                .unwrap_or_else(|e| panic!("renewing the lease of {node}: {e}"));
        }
        Err(e) if e.is(Reason::NotFound) => {
            create(
                client,
                "leases",
                "kube-node-lease",
                json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": node, "namespace": "kube-node-lease"},
                    "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": now()}
                }),
            )
            .await;
        }
        Err(e) => panic!("reading the lease of {node}: {e}"),
    }
}

/// Writes a pod's IP and readiness into its status, as the kubelet would once its
/// containers run.
async fn report_pod_status_as_a_kubelet_would(
    client: &Client,
    namespace: &str,
    name: &str,
    ip: &str,
    ready: bool,
) {
    let status = if ready { "True" } else { "False" };
    let patch = json!({"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.0.0.1",
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": status, "lastTransitionTime": now()},
            {"type": "ContainersReady", "status": status, "lastTransitionTime": now()}
        ]
    }});
    client
        .patch("pods", namespace, name, &patch, "status")
        .await
        .unwrap_or_else(|e| panic!("reporting the status of pod {namespace}/{name}: {e}"));
}

async fn create_namespace(client: &Client, name: &str) {
    create(
        client,
        "namespaces",
        "",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    .await;
}

fn pod_on(name: &str, node: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{
            "name": "web", "image": "skiff.local/web:1",
            "ports": [{"name": "http", "containerPort": 8080}]
        }]}
    })
}

async fn list(client: &Client, resource: &str, namespace: &str, selector: &str) -> Vec<Value> {
    client
        .list(
            resource,
            namespace,
            &ListParams {
                label_selector: selector.into(),
                ..ListParams::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("listing {resource} in {namespace}: {e}"))
        .items
}

/// The (address, ready, serving, terminating) of every endpoint in the Service's slices.
async fn endpoints_of(
    client: &Client,
    namespace: &str,
    service: &str,
) -> Vec<(String, bool, bool, bool)> {
    let slices = list(
        client,
        "endpointslices",
        namespace,
        &format!("kubernetes.io/service-name={service}"),
    )
    .await;
    let mut endpoints: Vec<_> = slices
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let c = &e["conditions"];
            (
                e["addresses"][0].as_str().unwrap_or("").to_string(),
                c["ready"].as_bool().unwrap_or(false),
                c["serving"].as_bool().unwrap_or(false),
                c["terminating"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    endpoints.sort();
    endpoints
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_gets_a_cluster_ip_and_node_port_and_its_endpoint_slice_follows_pod_readiness() {
    let (_control, client) = start(&[]).await;
    register_hollow_node(&client, "node-a").await;
    create_namespace(&client, "shop").await;
    let service = create(
        &client,
        "services",
        "shop",
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
        }),
    )
    .await;
    let ip: std::net::Ipv4Addr = service["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ip.octets()[0], 10, "a ClusterIP from 10.96.0.0/12: {ip}");
    assert!(
        (96..112).contains(&ip.octets()[1]),
        "a ClusterIP from 10.96.0.0/12: {ip}"
    );
    let node_port = service["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&node_port), "nodePort {node_port}");

    create(
        &client,
        "pods",
        "shop",
        pod_on("web-1", "node-a", json!({"app": "web"})),
    )
    .await;
    create(
        &client,
        "pods",
        "shop",
        pod_on("other", "node-a", json!({"app": "db"})),
    )
    .await;
    // A Service with no endpoints still has its (empty) slice.
    let slices = eventually("the service's placeholder slice", DEADLINE, || async {
        let slices = list(
            &client,
            "endpointslices",
            "shop",
            "kubernetes.io/service-name=web",
        )
        .await;
        if slices.len() == 1 {
            Ok(slices)
        } else {
            Err(format!("{slices:?}"))
        }
    })
    .await;
    let slice = &slices[0];
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["name"], "web");
    assert!(
        slice["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("web-")
    );

    report_pod_status_as_a_kubelet_would(&client, "shop", "other", "10.244.0.9", true).await;
    report_pod_status_as_a_kubelet_would(&client, "shop", "web-1", "10.244.0.5", false).await;
    eventually("an endpoint that is not ready", DEADLINE, || async {
        let e = endpoints_of(&client, "shop", "web").await;
        if e == [("10.244.0.5".into(), false, false, false)] {
            Ok(())
        } else {
            Err(format!("{e:?}"))
        }
    })
    .await;
    report_pod_status_as_a_kubelet_would(&client, "shop", "web-1", "10.244.0.5", true).await;
    let slices = eventually("the endpoint turning ready", DEADLINE, || async {
        let e = endpoints_of(&client, "shop", "web").await;
        if e == [("10.244.0.5".into(), true, true, false)] {
            Ok(list(
                &client,
                "endpointslices",
                "shop",
                "kubernetes.io/service-name=web",
            )
            .await)
        } else {
            Err(format!("{e:?}"))
        }
    })
    .await;
    assert_eq!(slices.len(), 1, "one slice, updated in place");
    assert_eq!(
        slices[0]["ports"],
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );
    assert_eq!(slices[0]["endpoints"][0]["nodeName"], "node-a");
    assert_eq!(slices[0]["endpoints"][0]["targetRef"]["name"], "web-1");

    // A bound pod being deleted stays (its agent would stop it) and shows as terminating.
    client
        .delete("pods", "shop", "web-1", &Default::default())
        .await
        .unwrap();
    eventually("the endpoint terminating", DEADLINE, || async {
        let e = endpoints_of(&client, "shop", "web").await;
        if e == [("10.244.0.5".into(), false, true, true)] {
            Ok(())
        } else {
            Err(format!("{e:?}"))
        }
    })
    .await;
    let force = skiff_api::client::DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    client
        .delete("pods", "shop", "web-1", &force)
        .await
        .unwrap();
    eventually("the endpoint gone", DEADLINE, || async {
        let e = endpoints_of(&client, "shop", "web").await;
        if e.is_empty() {
            Ok(())
        } else {
            Err(format!("{e:?}"))
        }
    })
    .await;
}

fn condition(node: &Value, type_: &str) -> (String, String) {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_default()
}

fn taints(node: &Value) -> Vec<String> {
    let mut taints: Vec<String> = node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or(""),
                t["effect"].as_str().unwrap_or("")
            )
        })
        .collect();
    taints.sort();
    taints
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_stops_is_unknown_and_tainted_within_the_grace_period_and_its_pods_are_evicted()
 {
    let (_control, client) = start(&[
        "--node-monitor-grace-period=3s",
        "--node-eviction-rate=10",
        "--default-unreachable-toleration-seconds=2",
    ])
    .await;
    for node in ["alive", "silent"] {
        register_hollow_node(&client, node).await;
        renew_lease_as_an_agent_would(&client, node).await;
    }
    create_namespace(&client, "shop").await;
    let staying = create(
        &client,
        "pods",
        "shop",
        pod_on("on-alive", "alive", json!({"app": "web"})),
    )
    .await;
    let evicted = create(
        &client,
        "pods",
        "shop",
        pod_on("on-silent", "silent", json!({"app": "web"})),
    )
    .await;
    for pod in [&staying, &evicted] {
        let tolerations = pod["spec"]["tolerations"].to_string();
        assert!(
            tolerations.contains("node.kubernetes.io/unreachable")
                && tolerations.contains("\"tolerationSeconds\":2"),
            "the API server adds the default tolerations: {tolerations}"
        );
    }

    // "alive" keeps renewing its Lease; "silent" stops.
    let keep_alive = {
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                renew_lease_as_an_agent_would(&client, "alive").await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let stopped = tokio::time::Instant::now();
    let node = eventually(
        "the silent node to turn Ready=Unknown and be tainted",
        DEADLINE,
        || async {
            let node = client
                .get("nodes", "", "silent")
                .await
                .map_err(|e| e.to_string())?;
            let tainted = taints(&node)
                == [
                    "node.kubernetes.io/unreachable:NoExecute",
                    "node.kubernetes.io/unreachable:NoSchedule",
                ];
            if condition(&node, "Ready") == ("Unknown".into(), "NodeStatusUnknown".into())
                && tainted
            {
                Ok(node)
            } else {
                Err(format!("{}", node["status"]))
            }
        },
    )
    .await;
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "not before the grace period: {took:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "within the grace period and a resync: {took:?}"
    );
    assert_eq!(condition(&node, "MemoryPressure").0, "Unknown");

    eventually(
        "the pod on the silent node to be evicted after its 2 s toleration",
        DEADLINE,
        || async {
            let pod = client
                .get("pods", "shop", "on-silent")
                .await
                .map_err(|e| e.to_string())?;
            if pod["metadata"]["deletionTimestamp"].is_string() {
                Ok(())
            } else {
                Err(pod["metadata"].to_string())
            }
        },
    )
    .await;
    let pod = client.get("pods", "shop", "on-alive").await.unwrap();
    assert!(
        pod["metadata"]["deletionTimestamp"].is_null(),
        "the pod on the live node stays"
    );
    let alive = client.get("nodes", "", "alive").await.unwrap();
    assert_eq!(condition(&alive, "Ready").0, "True");
    assert!(taints(&alive).is_empty());

    // The node comes back: its agent renews the Lease and reports Ready again.
    renew_lease_as_an_agent_would(&client, "silent").await;
    let back = json!({"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now(), "lastTransitionTime": now()}
    ]}});
    client
        .patch("nodes", "", "silent", &back, "status")
        .await
        .unwrap();
    eventually(
        "the taints to go when the node is back",
        DEADLINE,
        || async {
            let node = client
                .get("nodes", "", "silent")
                .await
                .map_err(|e| e.to_string())?;
            if taints(&node).is_empty() {
                Ok(())
            } else {
                Err(format!("{:?}", taints(&node)))
            }
        },
    )
    .await;
    keep_alive.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_deletes_everything_in_it_and_then_the_namespace() {
    let (_control, client) = start(&[]).await;
    create_namespace(&client, "doomed").await;
    create_namespace(&client, "kept").await;
    let ns = client.get("namespaces", "", "doomed").await.unwrap();
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    for namespace in ["doomed", "kept"] {
        create(&client, "configmaps", namespace, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}})).await;
        create(&client, "secrets", namespace, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "data": {"p": "eA=="}})).await;
        create(&client, "services", namespace, json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})).await;
        create(&client, "pods", namespace, json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "skiff.local/web:1"}]}})).await;
        create(&client, "deployments", namespace, json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "skiff.local/web:1"}]}}}})).await;
    }
    client
        .delete("namespaces", "", "doomed", &Default::default())
        .await
        .unwrap();
    eventually("the namespace to be gone", DEADLINE, || async {
        match client.get("namespaces", "", "doomed").await {
            Err(e) if e.is(Reason::NotFound) => Ok(()),
            Ok(ns) => Err(ns["status"].to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    for resource in skiff_api::resources::RESOURCES
        .iter()
        .filter(|rt| rt.scope == skiff_api::Scope::Namespaced)
    {
        let left = list(&client, resource.plural, "doomed", "").await;
        assert!(left.is_empty(), "{} left behind: {left:?}", resource.plural);
    }
    for (resource, name) in [
        ("configmaps", "settings"),
        ("secrets", "creds"),
        ("services", "web"),
        ("pods", "p"),
        ("deployments", "d"),
    ] {
        client
            .get(resource, "kept", name)
            .await
            .unwrap_or_else(|e| panic!("{resource}/{name} in the other namespace stays: {e}"));
    }
}

/// The token in the namespace's token Secret for account `account` with `uid`.
async fn token_of(
    client: &Client,
    namespace: &str,
    account: &str,
    uid: &str,
) -> Result<String, String> {
    let secrets = list(client, "secrets", namespace, "").await;
    let secret = secrets
        .iter()
        .find(|s| {
            s["type"] == "kubernetes.io/service-account-token"
                && s["metadata"]["annotations"]["kubernetes.io/service-account.name"] == account
                && s["metadata"]["annotations"]["kubernetes.io/service-account.uid"] == uid
        })
        .ok_or_else(|| format!("no token secret among {secrets:?}"))?;
    let encoded = secret["data"]["token"].as_str().ok_or("no data.token")?;
    let bytes: skiff_api::k8s_openapi::ByteString =
        serde_json::from_value(json!(encoded)).map_err(|e| e.to_string())?;
    String::from_utf8(bytes.0).map_err(|e| e.to_string())
}

async fn default_account_uid(client: &Client, namespace: &str) -> Result<String, String> {
    let account = client
        .get("serviceaccounts", namespace, "default")
        .await
        .map_err(|e| e.to_string())?;
    Ok(account["metadata"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_a_default_service_account_whose_token_reads_only_its_namespace() {
    let (control, client) = start(&[]).await;
    create_namespace(&client, "team").await;
    let uid = eventually("the default ServiceAccount", DEADLINE, || {
        default_account_uid(&client, "team")
    })
    .await;
    let token = eventually("its token Secret", DEADLINE, || {
        token_of(&client, "team", "default", &uid)
    })
    .await;

    let as_account = control.0.client_with_token(&token).unwrap();
    as_account
        .list("pods", "team", &ListParams::default())
        .await
        .expect("the account reads its own namespace");
    for (resource, namespace) in [("secrets", "team"), ("pods", "default")] {
        let error = as_account
            .list(resource, namespace, &ListParams::default())
            .await
            .unwrap_err();
        assert!(
            error.is(Reason::Forbidden),
            "{resource} in {namespace}: {error}"
        );
    }
    let error = as_account
        .create(
            "configmaps",
            "team",
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
        )
        .await
        .unwrap_err();
    assert!(error.is(Reason::Forbidden), "{error}");

    // Deleted, the account comes back with a new uid; the old token stops working and its
    // Secret goes, the new account gets its own.
    client
        .delete("serviceaccounts", "team", "default", &Default::default())
        .await
        .unwrap();
    let new_uid = eventually(
        "the default ServiceAccount made again",
        DEADLINE,
        || async {
            match default_account_uid(&client, "team").await {
                Ok(new) if new != uid => Ok(new),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let error = as_account
        .list("pods", "team", &ListParams::default())
        .await
        .unwrap_err();
    assert!(
        error.is(Reason::Unauthorized),
        "the old token is revoked: {error}"
    );
    eventually(
        "the new token, and the old one's Secret gone",
        DEADLINE,
        || async {
            token_of(&client, "team", "default", &new_uid).await?;
            match token_of(&client, "team", "default", &uid).await {
                Ok(_) => Err("the old token Secret is still there".to_string()),
                Err(_) => Ok(()),
            }
        },
    )
    .await;
}

async fn restart(control: &mut Logged) -> Client {
    // `restart` waits for the port: off the async threads.
    tokio::task::block_in_place(|| control.0.restart()).expect("skiff-control restarts");
    control.0.admin_client().unwrap()
}

async fn ingress_of(client: &Client, namespace: &str, name: &str) -> Result<Vec<String>, String> {
    let service = client
        .get("services", namespace, name)
        .await
        .map_err(|e| e.to_string())?;
    Ok(service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_string))
        .collect())
}

fn load_balancer(name: &str, requested: Option<&str>) -> Value {
    let mut service = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": 80}]}
    });
    if let Some(ip) = requested {
        service["spec"]["loadBalancerIP"] = json!(ip);
    }
    service
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_services_get_ingress_addresses_from_the_pool_never_twice_even_across_a_restart()
 {
    let (mut control, client) = start(&["--load-balancer-ip-pool=10.250.0.200-10.250.0.201"]).await;
    let a = create(&client, "services", "default", load_balancer("a", None)).await;
    assert!(
        a["spec"]["ports"][0]["nodePort"].as_i64().is_some(),
        "a LoadBalancer Service has a NodePort"
    );
    let got = |name: &'static str, want: &'static [&'static str]| {
        let client = client.clone();
        async move {
            eventually(
                &format!("the ingress of {name} to be {want:?}"),
                DEADLINE,
                || async {
                    let ips = ingress_of(&client, "default", name).await?;
                    if ips == want {
                        Ok(())
                    } else {
                        Err(format!("{ips:?}"))
                    }
                },
            )
            .await;
        }
    };
    got("a", &["10.250.0.200"]).await;
    create(
        &client,
        "services",
        "default",
        load_balancer("b", Some("10.250.0.200")),
    )
    .await;
    create(&client, "services", "default", load_balancer("c", None)).await;
    got("c", &["10.250.0.201"]).await;
    eventually(
        "a Warning event saying b's address is taken",
        DEADLINE,
        || async {
            let events = list(&client, "events", "default", "").await;
            events
                .iter()
                .find(|e| {
                    e["reason"] == "SyncLoadBalancerFailed"
                        && e["involvedObject"]["name"] == "b"
                        && e["message"]
                            .as_str()
                            .unwrap_or("")
                            .contains("already used by Service default/a")
                })
                .map(|_| ())
                .ok_or_else(|| format!("{} events", events.len()))
        },
    )
    .await;
    assert!(
        ingress_of(&client, "default", "b")
            .await
            .unwrap()
            .is_empty()
    );

    // After a restart the pool is read back from the Services: nothing moves.
    let client = restart(&mut control).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        ingress_of(&client, "default", "a").await.unwrap(),
        ["10.250.0.200"]
    );
    assert_eq!(
        ingress_of(&client, "default", "c").await.unwrap(),
        ["10.250.0.201"]
    );
    assert!(
        ingress_of(&client, "default", "b")
            .await
            .unwrap()
            .is_empty()
    );

    // Released on delete (b, which asked for it, gets it) and on a change of type.
    client
        .delete("services", "default", "a", &Default::default())
        .await
        .unwrap();
    eventually("b to get the address a released", DEADLINE, || async {
        let ips = ingress_of(&client, "default", "b").await?;
        if ips == ["10.250.0.200"] {
            Ok(())
        } else {
            Err(format!("{ips:?}"))
        }
    })
    .await;
    let mut c = client.get("services", "default", "c").await.unwrap();
    c["spec"]["type"] = json!("ClusterIP");
    c["spec"]["ports"][0]
        .as_object_mut()
        .unwrap()
        .remove("nodePort");
    for field in ["externalTrafficPolicy", "allocateLoadBalancerNodePorts"] {
        c["spec"].as_object_mut().unwrap().remove(field);
    }
    client.update("services", "default", &c).await.unwrap();
    eventually("c's ingress to be cleared", DEADLINE, || async {
        let ips = ingress_of(&client, "default", "c").await?;
        if ips.is_empty() {
            Ok(())
        } else {
            Err(format!("{ips:?}"))
        }
    })
    .await;
}

async fn pod_cidr_of(client: &Client, node: &str) -> Result<String, String> {
    let node = client
        .get("nodes", "", node)
        .await
        .map_err(|e| e.to_string())?;
    match (
        node["spec"]["podCIDR"].as_str(),
        node["spec"]["podCIDRs"][0].as_str(),
    ) {
        (Some(cidr), Some(first)) if cidr == first => Ok(cidr.to_string()),
        _ => Err(node["spec"].to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_free_pod_cidrs_from_the_cluster_cidr_and_keep_them_across_a_restart() {
    let (mut control, client) =
        start(&["--cluster-cidr=10.244.0.0/16", "--node-cidr-mask-size=24"]).await;
    // An agent that brings its own CIDR.
    create(
        &client,
        "nodes",
        "",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "own"},
               "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}}),
    )
    .await;
    register_hollow_node(&client, "n1").await;
    let n1 = eventually("n1's pod CIDR", DEADLINE, || pod_cidr_of(&client, "n1")).await;
    register_hollow_node(&client, "n2").await;
    let n2 = eventually("n2's pod CIDR", DEADLINE, || pod_cidr_of(&client, "n2")).await;
    assert_eq!(
        (n1.as_str(), n2.as_str()),
        ("10.244.1.0/24", "10.244.2.0/24")
    );

    let client = restart(&mut control).await;
    register_hollow_node(&client, "n3").await;
    let n3 = eventually("n3's pod CIDR after a restart", DEADLINE, || {
        pod_cidr_of(&client, "n3")
    })
    .await;
    assert_eq!(
        n3, "10.244.3.0/24",
        "nothing handed out before the restart is handed out again"
    );
    assert_eq!(pod_cidr_of(&client, "own").await.unwrap(), "10.244.0.0/24");

    client
        .delete("nodes", "", "n1", &Default::default())
        .await
        .unwrap();
    // The controller frees n1's CIDR once it sees the deletion; n4 then gets it.
    eventually("n1 gone", DEADLINE, || async {
        match client.get("nodes", "", "n1").await {
            Err(e) if e.is(Reason::NotFound) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    register_hollow_node(&client, "n4").await;
    let n4 = eventually("n4's pod CIDR", DEADLINE, || pod_cidr_of(&client, "n4")).await;
    assert_eq!(n4, "10.244.1.0/24", "the deleted node's CIDR is reused");
}
