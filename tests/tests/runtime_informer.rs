//! End-to-end test of the client runtime (`skiff_api::runtime`) against a real
//! `skiff-control`: an informer on pods follows creates, updates and deletes, and after its
//! connection is cut and the control plane killed and restarted, it lists again and its
//! store converges to the server's state, including a delete it never saw as an event.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use skiff_api::{
    client::{Client, DeleteParams, ListParams},
    k8s_openapi::api::core::v1::Pod,
    runtime::{Change, Config, Informer, ObjectKey, Store, Subscription, Watcher, Writer},
};
use skiff_tests::control::{Backend, ControlPlane};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// Every wait on the server or the informer is bounded by this.
const DEADLINE: Duration = Duration::from_secs(30);
const NAMESPACE: &str = "default";
const BY_NODE: &str = "node";

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?}: {what}"))
}

/// A TCP relay between the informer and the API server that can cut every connection
/// through it (and refuse new ones) until restored: a network partition, in one process.
struct Relay {
    address: SocketAddr,
    open: watch::Sender<bool>,
    /// Connections being relayed right now.
    live: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (open, gate) = watch::channel(true);
        let live = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&live);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let mut gate = gate.clone();
                if !*gate.borrow() {
                    continue;
                }
                let live = Arc::clone(&counter);
                live.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = gate.wait_for(|open| !*open) => {}
                        }
                    }
                    // Both sockets are closed before the connection stops counting.
                    drop(inbound);
                    live.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            address,
            open,
            live,
            task,
        }
    }

    /// Closes every relayed connection (and refuses new ones) before returning.
    async fn cut(&self) {
        self.open.send_replace(false);
        bounded("the relay to close its connections", async {
            while self.live.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }

    fn restore(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn pod(name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "skiff.local/demo:1.0"}]}
    })
}

fn node_of(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.node_name.clone())
        .into_iter()
        .collect()
}

/// A change as one line: `added default/a`, `resynced`.
fn describe(change: &Change<Pod>) -> String {
    let key = |pod: &Arc<Pod>| ObjectKey::of(&**pod).to_string();
    match change {
        Change::Added(pod) => format!("added {}", key(pod)),
        Change::Updated { new, .. } => format!("updated {}", key(new)),
        Change::Deleted(pod) => format!("deleted {}", key(pod)),
        Change::Resynced => "resynced".to_string(),
    }
}

/// Receives changes until every one of `expected` has been seen (others may come between).
async fn expect_changes(changes: &mut Subscription<Pod>, expected: &[&str]) {
    let mut missing: BTreeSet<&str> = expected.iter().copied().collect();
    let mut seen = Vec::new();
    let what = format!("notifications {expected:?}");
    bounded(&what, async {
        while !missing.is_empty() {
            let change = changes.recv().await.expect("the informer is running");
            let line = describe(&change);
            missing.remove(line.as_str());
            seen.push(line);
        }
    })
    .await;
    assert!(missing.is_empty(), "missing {missing:?}; saw {seen:?}");
}

/// Waits until the store holds exactly the pods the server lists.
async fn converge(store: &Store<Pod>, admin: &Client) -> BTreeSet<ObjectKey> {
    let server = admin
        .list("pods", NAMESPACE, &ListParams::default())
        .await
        .expect("the server lists pods")
        .items
        .iter()
        .map(|pod| ObjectKey::from_value(pod).unwrap())
        .collect::<BTreeSet<_>>();
    bounded("the store to match the server's list", async {
        while store.keys().into_iter().collect::<BTreeSet<_>>() != server {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    server
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new(NAMESPACE, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informer_follows_pods_and_converges_after_a_partition_and_a_control_plane_restart() {
    let control = bounded(
        "skiff-control to start",
        tokio::task::spawn_blocking(|| ControlPlane::start(Backend::Embedded)),
    )
    .await
    .unwrap()
    .expect("skiff-control starts");
    let admin = control.admin_client().unwrap();

    // The informer reaches the server through a relay the test can cut.
    let mut config = control.admin_config().unwrap();
    let server: SocketAddr = config
        .server
        .trim_start_matches("https://")
        .parse()
        .expect("the server URL is https://<ip>:<port>");
    let relay = Relay::start(server).await;
    config.server = format!("https://{}", relay.address);
    let informer = Informer::spawn(
        Watcher::new(
            Client::new(&config).unwrap(),
            "pods",
            NAMESPACE,
            Config::default(),
        ),
        Writer::new().with_index(BY_NODE, node_of),
    );
    let mut changes = informer.subscribe();
    let store = informer.store();
    bounded("the first list", store.wait_until_ready()).await;
    assert!(store.is_empty());

    // Creates, an update and a delete arrive as notifications and in the store.
    for (name, node) in [("a", "node-1"), ("b", "node-2"), ("c", "node-2")] {
        bounded("create", admin.create("pods", NAMESPACE, &pod(name, node)))
            .await
            .unwrap();
    }
    expect_changes(
        &mut changes,
        &["added default/a", "added default/b", "added default/c"],
    )
    .await;
    assert_eq!(store.index_keys(BY_NODE, "node-2"), [key("b"), key("c")]);

    let labels = json!({"metadata": {"labels": {"tier": "web"}}});
    bounded("patch", admin.patch("pods", NAMESPACE, "a", &labels, ""))
        .await
        .unwrap();
    expect_changes(&mut changes, &["updated default/a"]).await;
    let a = store.get(&key("a")).expect("a is cached");
    assert_eq!(a.metadata.labels.as_ref().unwrap()["tier"], "web");

    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    bounded("delete", admin.delete("pods", NAMESPACE, "b", &now))
        .await
        .unwrap();
    expect_changes(&mut changes, &["deleted default/b"]).await;
    assert_eq!(converge(&store, &admin).await, [key("a"), key("c")].into());

    // Out of the informer's sight: c is deleted, d created, and the control plane is
    // killed and restarted, so its watch history starts after both.
    relay.cut().await;
    bounded("delete", admin.delete("pods", NAMESPACE, "c", &now))
        .await
        .unwrap();
    bounded(
        "create",
        admin.create("pods", NAMESPACE, &pod("d", "node-1")),
    )
    .await
    .unwrap();
    let control = bounded(
        "skiff-control to restart",
        tokio::task::spawn_blocking(move || {
            let mut control = control;
            control.kill9();
            control.restart().map(|()| control)
        }),
    )
    .await
    .unwrap()
    .expect("skiff-control restarts");
    let admin = control.admin_client().unwrap();
    assert_eq!(
        store.keys(),
        [key("a"), key("c")],
        "the store keeps its last state while disconnected"
    );
    relay.restore();

    // Resuming from its resourceVersion fails (the history is gone): the informer lists
    // again, and the relist reports what the gap hid.
    expect_changes(
        &mut changes,
        &["deleted default/c", "added default/d", "resynced"],
    )
    .await;
    assert_eq!(converge(&store, &admin).await, [key("a"), key("d")].into());
    assert_eq!(store.index_keys(BY_NODE, "node-1"), [key("a"), key("d")]);
    assert!(store.index_keys(BY_NODE, "node-2").is_empty());

    // The watch is live again.
    bounded("delete", admin.delete("pods", NAMESPACE, "a", &now))
        .await
        .unwrap();
    expect_changes(&mut changes, &["deleted default/a"]).await;
    assert_eq!(converge(&store, &admin).await, [key("d")].into());
    assert_eq!(store.index_keys(BY_NODE, "node-1"), [key("d")]);
}
