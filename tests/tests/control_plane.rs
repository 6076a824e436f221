//! End-to-end tests of `skiff-control` as a process, on the embedded store and on a real
//! etcd: objects in and out through the gRPC API, watches, optimistic concurrency,
//! validation, authentication and node authorization, and durability through `kill -9`.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use skiff_api::{
    client::{Client, EventType, ListParams, WatchParams},
    parse_objects,
    status::Reason,
};
use skiff_tests::control::{Backend, ControlPlane};

/// Every wait on the server is bounded by this.
const DEADLINE: Duration = Duration::from_secs(20);

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: skiff.local/demo:1.0
          ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

async fn start(backend: Backend) -> (ControlPlane, Client) {
    let control = tokio::task::spawn_blocking(move || ControlPlane::start(backend))
        .await
        .unwrap()
        .expect("skiff-control starts");
    let client = control.admin_client().unwrap();
    (control, client)
}

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?}: {what}"))
}

async fn manifest_round_trip_watch_and_conflict(backend: Backend) {
    let (control, client) = start(backend).await;
    for object in parse_objects(MANIFEST).unwrap() {
        let namespace = object.target_namespace("default").unwrap_or("");
        bounded(
            "create",
            client.create(object.resource.plural, namespace, &object.value),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating {}: {e}; log: {}",
                object.resource.kind,
                control.log()
            )
        });
    }

    let deployment = client.get("deployments", "shop", "web").await.unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["metadata"]["generation"], 1);
    assert!(
        deployment["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );
    // Server-side defaults, as the Kubernetes API server sets them.
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        "25%"
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["restartPolicy"],
        "Always"
    );
    let service = client.get("services", "shop", "web").await.unwrap();
    assert_eq!(service["spec"]["ports"][0]["protocol"], "TCP");
    assert_eq!(service["spec"]["type"], "ClusterIP");

    // A watch from the list's version sees the next change and nothing before it.
    let list = client
        .list("deployments", "shop", &ListParams::default())
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let mut watch = client
        .watch(
            "deployments",
            "shop",
            &WatchParams {
                resource_version: list.resource_version.clone(),
                ..WatchParams::default()
            },
        )
        .await
        .unwrap();
    // The Deployment controller writes the object too (revision annotation, status): the
    // update retries on Conflict from a fresh read, as a client does.
    let updated = loop {
        let mut scaled = client.get("deployments", "shop", "web").await.unwrap();
        scaled["spec"]["replicas"] = json!(5);
        match client.update("deployments", "shop", &scaled).await {
            Err(e) if e.is(Reason::Conflict) => continue,
            result => break result.unwrap(),
        }
    };
    assert_eq!(
        updated["metadata"]["generation"], 2,
        "a spec change bumps generation"
    );
    // Events before ours are the controller's; ours arrives with its resourceVersion.
    let event = loop {
        let event = bounded("the watch event", watch.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(event.event_type, EventType::Modified);
        if event.object["spec"]["replicas"] == 5 {
            break event;
        }
    };
    assert_eq!(
        event.resource_version,
        updated["metadata"]["resourceVersion"].as_str().unwrap()
    );

    // The first copy's resourceVersion is stale now: a Conflict, and nothing changes.
    let mut stale = deployment.clone();
    stale["spec"]["replicas"] = json!(7);
    let conflict = client
        .update("deployments", "shop", &stale)
        .await
        .unwrap_err();
    assert!(conflict.is(Reason::Conflict), "{conflict}");
    assert!(
        conflict
            .to_string()
            .contains("the object has been modified"),
        "{conflict}"
    );
    let current = client.get("deployments", "shop", "web").await.unwrap();
    assert_eq!(current["spec"]["replicas"], 5);

    // Delete, then it is gone, and the watch says so.
    client
        .delete("deployments", "shop", "web", &Default::default())
        .await
        .unwrap();
    let event = loop {
        let event = bounded("the delete event", watch.next())
            .await
            .unwrap()
            .unwrap();
        if event.event_type != EventType::Modified {
            break event;
        }
    };
    assert_eq!(event.event_type, EventType::Deleted);
    let gone = client.get("deployments", "shop", "web").await.unwrap_err();
    assert!(gone.is(Reason::NotFound));
    assert_eq!(gone.to_string(), "deployments.apps \"web\" not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_control_plane_round_trips_a_manifest_watches_and_rejects_stale_writes() {
    manifest_round_trip_watch_and_conflict(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_control_plane_round_trips_a_manifest_watches_and_rejects_stale_writes() {
    manifest_round_trip_watch_and_conflict(Backend::Etcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_objects_get_field_path_errors_and_change_nothing() {
    let (_control, client) = start(Backend::Embedded).await;
    let before = client
        .list("pods", "", &ListParams::default())
        .await
        .unwrap();

    let no_image = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c"}]}
    });
    let error = client
        .create("pods", "default", &no_image)
        .await
        .unwrap_err();
    assert!(error.is(Reason::Invalid), "{error}");
    let api = error.api().unwrap();
    assert!(
        api.message
            .contains("spec.containers[0].image: Required value"),
        "{}",
        api.message
    );
    assert_eq!(api.causes[0].field, "spec.containers[0].image");

    let bad_name = json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}
    });
    let error = client
        .create("configmaps", "default", &bad_name)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{error}"
    );

    let wrong_type =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}});
    let error = client
        .create("pods", "default", &wrong_type)
        .await
        .unwrap_err();
    assert!(error.is(Reason::BadRequest), "{error}");

    let unknown = client
        .create("widgets", "default", &json!({}))
        .await
        .unwrap_err();
    assert!(
        unknown
            .to_string()
            .contains("doesn't have a resource type \"widgets\""),
        "{unknown}"
    );

    let no_namespace = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    let error = client
        .create("configmaps", "nowhere", &no_namespace)
        .await
        .unwrap_err();
    assert!(error.is(Reason::NotFound), "{error}");

    let after = client
        .list("pods", "", &ListParams::default())
        .await
        .unwrap();
    assert_eq!(before.items.len(), after.items.len());
    let configmaps = client
        .list("configmaps", "", &ListParams::default())
        .await
        .unwrap();
    assert!(
        configmaps.items.is_empty(),
        "nothing was created: {:?}",
        configmaps.items
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_are_rejected() {
    let (control, _client) = start(Backend::Embedded).await;
    for token in ["", "not-a-token"] {
        let anonymous = control.client_with_token(token).unwrap();
        let error = anonymous
            .list("namespaces", "", &ListParams::default())
            .await
            .unwrap_err();
        assert!(error.is(Reason::Unauthorized), "token {token:?}: {error}");
    }
}

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_identity_cannot_touch_another_nodes_objects() {
    let (control, admin) = start(Backend::Embedded).await;
    let bootstrap_token =
        std::fs::read_to_string(control.data_dir().join("auth/bootstrap.token")).unwrap();
    let bootstrap = control.client_with_token(bootstrap_token.trim()).unwrap();
    let forbidden = bootstrap
        .list("pods", "", &ListParams::default())
        .await
        .unwrap_err();
    assert!(forbidden.is(Reason::Forbidden), "{forbidden}");

    let token_1 = bootstrap.issue_node_credential("node-1").await.unwrap();
    let node_1 = control.client_with_token(&token_1).unwrap();
    node_1.create("nodes", "", &node("node-1")).await.unwrap();
    admin.create("nodes", "", &node("node-2")).await.unwrap();

    let error = node_1
        .create("nodes", "", &node("node-3"))
        .await
        .unwrap_err();
    assert!(error.is(Reason::Forbidden), "{error}");
    let mut other = admin.get("nodes", "", "node-2").await.unwrap();
    other["metadata"]["labels"] = json!({"stolen": "yes"});
    let error = node_1.update("nodes", "", &other).await.unwrap_err();
    assert!(error.is(Reason::Forbidden), "{error}");
    assert!(error.to_string().contains("system:node:node-1"), "{error}");
    let error = node_1
        .delete("nodes", "", "node-2", &Default::default())
        .await
        .unwrap_err();
    assert!(error.is(Reason::Forbidden), "{error}");

    // A pod bound to node-2: node-1 may read it but not write its status.
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"nodeName": "node-2", "containers": [{"name": "c", "image": "skiff.local/demo:1.0"}]}
    });
    let mut pod = admin.create("pods", "default", &pod).await.unwrap();
    node_1.get("pods", "default", "p").await.unwrap();
    pod["status"] = json!({"phase": "Running"});
    let error = node_1
        .update_status("pods", "default", &pod)
        .await
        .unwrap_err();
    assert!(error.is(Reason::Forbidden), "{error}");
    let token_2 = bootstrap.issue_node_credential("node-2").await.unwrap();
    let node_2 = control.client_with_token(&token_2).unwrap();
    let running = node_2.update_status("pods", "default", &pod).await.unwrap();
    assert_eq!(running["status"]["phase"], "Running");
    // A node cannot mint a credential for another node.
    let error = node_1.issue_node_credential("node-2").await.unwrap_err();
    assert!(error.is(Reason::Forbidden), "{error}");
}

async fn acknowledged_writes_survive_kill_9(backend: Backend) {
    let (mut control, client) = start(backend).await;
    // Writes in flight when the process dies: each acknowledged one must survive.
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..100_000 {
                let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("cm-{i}")}, "data": {"i": i.to_string()}});
                match client.create("configmaps", "default", &cm).await {
                    Ok(stored) => {
                        acknowledged.push((i, stored["metadata"]["resourceVersion"].clone()))
                    }
                    Err(_) => break,
                }
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    control.kill9();
    let acknowledged = bounded("the writer to stop", writer).await.unwrap();
    assert!(
        acknowledged.len() > 10,
        "only {} writes before the kill",
        acknowledged.len()
    );

    let control = tokio::task::spawn_blocking(move || {
        control.restart().expect("restart");
        control
    })
    .await
    .unwrap();
    let client = control.admin_client().unwrap();
    let list = client
        .list("configmaps", "default", &ListParams::default())
        .await
        .unwrap();
    assert!(list.items.len() >= acknowledged.len());
    for (i, rv) in acknowledged {
        let stored = client
            .get("configmaps", "default", &format!("cm-{i}"))
            .await
            .unwrap_or_else(|e| panic!("acknowledged cm-{i} lost: {e}"));
        assert_eq!(stored["metadata"]["resourceVersion"], rv);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_control_plane_keeps_every_acknowledged_write_through_kill_9() {
    acknowledged_writes_survive_kill_9(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_control_plane_keeps_every_acknowledged_write_through_kill_9() {
    acknowledged_writes_survive_kill_9(Backend::Etcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_is_bound_to_a_node_exactly_once() {
    let (_control, client) = start(Backend::Embedded).await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        // Another scheduler's pod: the one inside skiff-control leaves it alone.
        "spec": {"schedulerName": "test-scheduler", "containers": [{"name": "c", "image": "skiff.local/demo:1.0"}]}
    });
    client.create("pods", "default", &pod).await.unwrap();
    let bound = client.bind_pod("default", "p", "node-1").await.unwrap();
    assert_eq!(bound["spec"]["nodeName"], "node-1");
    let scheduled = bound["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .expect("a PodScheduled condition");
    assert_eq!(scheduled["status"], "True");
    let again = client.bind_pod("default", "p", "node-2").await.unwrap_err();
    assert!(again.is(Reason::Conflict), "{again}");
    assert!(
        again
            .to_string()
            .contains("already assigned to node \"node-1\""),
        "{again}"
    );
    // Binding is the only way to change spec.nodeName: a plain update may not.
    let mut moved = client.get("pods", "default", "p").await.unwrap();
    moved["spec"]["nodeName"] = json!("node-2");
    let error = client.update("pods", "default", &moved).await.unwrap_err();
    assert!(error.is(Reason::Invalid), "{error}");
}

fn service(name: &str, node_port: Option<i64>) -> Value {
    let mut port = json!({"port": 80, "targetPort": 8080});
    if let Some(p) = node_port {
        port["nodePort"] = json!(p);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [port]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_a_cluster_ip_and_node_port_that_are_never_handed_out_twice() {
    let (control, client) = start(Backend::Embedded).await;
    let kubernetes = client
        .get("services", "default", "kubernetes")
        .await
        .unwrap();
    assert_eq!(
        kubernetes["spec"]["clusterIP"], "10.96.0.1",
        "the first address is the API's own"
    );
    let a = client
        .create("services", "default", &service("a", Some(30080)))
        .await
        .unwrap();
    let a_ip = a["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(a_ip.starts_with("10."), "{a_ip}");
    assert_eq!(a["spec"]["ports"][0]["nodePort"], 30080);

    let taken = client
        .create("services", "default", &service("b", Some(30080)))
        .await
        .unwrap_err();
    assert!(taken.is(Reason::Invalid), "{taken}");
    assert!(
        taken
            .to_string()
            .contains("spec.ports[0].nodePort: Invalid value: provided port is already allocated"),
        "{taken}"
    );
    let b = client
        .create("services", "default", &service("b", None))
        .await
        .unwrap();
    assert_ne!(b["spec"]["clusterIP"], a["spec"]["clusterIP"]);
    assert_ne!(b["spec"]["ports"][0]["nodePort"], 30080);

    // Allocations are persisted: after a restart a new Service still gets fresh values, and
    // a deleted Service's port is free again.
    let mut control = control;
    let control = tokio::task::spawn_blocking(move || {
        control.restart().unwrap();
        control
    })
    .await
    .unwrap();
    let client = control.admin_client().unwrap();
    let c = client
        .create("services", "default", &service("c", None))
        .await
        .unwrap();
    for other in [&a, &b] {
        assert_ne!(c["spec"]["clusterIP"], other["spec"]["clusterIP"]);
        assert_ne!(
            c["spec"]["ports"][0]["nodePort"],
            other["spec"]["ports"][0]["nodePort"]
        );
    }
    client
        .delete("services", "default", "a", &Default::default())
        .await
        .unwrap();
    let again = client
        .create("services", "default", &service("d", Some(30080)))
        .await
        .unwrap();
    assert_eq!(again["spec"]["ports"][0]["nodePort"], 30080);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_bound_pod_marks_it_for_its_grace_period_first() {
    let (_control, client) = start(Backend::Embedded).await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "skiff.local/demo:1.0"}]}
    });
    client.create("pods", "default", &pod).await.unwrap();
    let marked = client
        .delete("pods", "default", "p", &Default::default())
        .await
        .unwrap();
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    let at: jiff::Timestamp = marked["metadata"]["deletionTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let from_now = at.duration_since(jiff::Timestamp::now()).as_secs();
    assert!(
        (25..=31).contains(&from_now),
        "deletionTimestamp is {from_now} s away, not the 30 s grace"
    );
    // The pod stays until its node confirms with a zero grace period.
    client.get("pods", "default", "p").await.unwrap();
    let force = skiff_api::client::DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    client.delete("pods", "default", "p", &force).await.unwrap();
    assert!(
        client
            .get("pods", "default", "p")
            .await
            .unwrap_err()
            .is(Reason::NotFound)
    );
}
