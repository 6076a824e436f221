//! Control-plane faults on a real 3-member etcd cluster: losing an etcd member (the raft
//! leader) during a burst of writes loses no acknowledged write, and killing the leading
//! `skiff-control` of two hands scheduling to the other without scheduling anything twice.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use serde_json::{Value, json};
use skiff_api::client::{Client, ListParams, WatchParams};
use skiff_tests::{control::ControlPlane, etcd::EtcdCluster};

/// Short leader-election timings for the failover test (the defaults are 15 s / 10 s / 2 s):
/// a killed leader's Lease expires 6 s after its last renewal.
const ELECTION: [&str; 6] = [
    "--leader-elect-lease-duration",
    "6s",
    "--leader-elect-renew-deadline",
    "4s",
    "--leader-elect-retry-period",
    "1s",
];

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn config_map(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("burst-{i:03}")}, "data": {"i": i.to_string()}})
}

/// Creates `object`, retrying while the store is failing over. `true` once the API
/// acknowledged it (an AlreadyExists on a retry means an earlier, unanswered attempt
/// landed: also acknowledged now).
async fn create_acknowledged(client: &Client, object: &Value, deadline: Instant) -> bool {
    let mut retried = false;
    loop {
        match client.create("configmaps", "default", object).await {
            Ok(_) => return true,
            Err(e) if retried && e.is(skiff_api::status::Reason::AlreadyExists) => return true,
            Err(_) if Instant::now() < deadline => {
                retried = true;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_etcd_leader_during_a_burst_of_500_creates_loses_no_acknowledged_write() {
    let mut etcd = blocking(|| EtcdCluster::start(3)).await.unwrap();
    let urls = etcd.client_urls();
    let control = blocking(move || ControlPlane::start_on_etcd(&urls, None, &[]))
        .await
        .unwrap();
    let client = control.admin_client().unwrap();

    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let burst = {
        let (client, acknowledged, done) = (client.clone(), acknowledged.clone(), done.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            stream::iter(0..500)
                .for_each_concurrent(16, |i| {
                    let (client, acknowledged, done) =
                        (client.clone(), acknowledged.clone(), done.clone());
                    async move {
                        let object = config_map(i);
                        if create_acknowledged(&client, &object, deadline).await {
                            acknowledged.lock().unwrap().insert(i);
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .await;
        })
    };
    // Kill the raft leader once the burst is well under way.
    let until = Instant::now() + Duration::from_secs(30);
    while done.load(Ordering::SeqCst) < 100 {
        assert!(Instant::now() < until, "the burst made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let leader = etcd.leader().expect("the etcd cluster has a leader");
    etcd.kill(leader);
    let killed_at = done.load(Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(90), burst)
        .await
        .expect("the burst ends")
        .unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    eprintln!(
        "etcd member {leader} (the leader) killed after {killed_at} of 500 creates; {} acknowledged",
        acknowledged.len()
    );
    assert!(
        killed_at < 500,
        "the leader died before the burst ended ({killed_at} done)"
    );
    assert_eq!(
        acknowledged.len(),
        500,
        "the API kept serving on the two remaining members: every create was acknowledged \
         in the end; control log:\n{}\netcd:\n{}",
        control.log(),
        etcd.log()
    );

    // Every acknowledged write is there, with its content.
    let listed = client
        .list("configmaps", "default", &ListParams::default())
        .await
        .unwrap();
    let present: BTreeMap<String, String> = listed
        .items
        .iter()
        .filter_map(|cm| {
            Some((
                cm["metadata"]["name"].as_str()?.to_string(),
                cm["data"]["i"].as_str()?.to_string(),
            ))
        })
        .collect();
    for i in &acknowledged {
        assert_eq!(
            present.get(&format!("burst-{i:03}")).map(String::as_str),
            Some(i.to_string().as_str()),
            "acknowledged write burst-{i:03} is missing"
        );
    }
    // The killed member comes back and catches up; the API still serves.
    tokio::task::block_in_place(|| etcd.restart(leader)).unwrap();
    if let Err(e) = client
        .create("configmaps", "default", &config_map(999))
        .await
    {
        panic!(
            "a create after member {leader} rejoined failed: {e}\ncontrol log:\n{}\netcd:\n{}",
            control.log(),
            etcd.log()
        );
    }
}

fn hollow_node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"allocatable": {"cpu": "64", "memory": "64Gi", "pods": "500"},
            "capacity": {"cpu": "64", "memory": "64Gi", "pods": "500"},
            "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "skiff.local/demo:1.0",
            "resources": {"requests": {"cpu": "10m"}}}]}})
}

/// Which of the instances holds the `skiff-control` Lease, by the identity each one logs
/// when it becomes the leader.
async fn leader_of(client: &Client, controls: &[ControlPlane]) -> Option<usize> {
    let lease = client
        .get("leases", "kube-system", "skiff-control")
        .await
        .ok()?;
    let holder = lease["spec"]["holderIdentity"].as_str()?.to_string();
    controls
        .iter()
        .position(|c| c.log().contains(&format!("identity={holder}")))
}

async fn wait_all_bound(client: &Client, names: &[String], within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let pods = client
            .list("pods", "default", &ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let bound: BTreeSet<&str> = pods
            .iter()
            .filter(|p| p["spec"]["nodeName"].is_string())
            .filter_map(|p| p["metadata"]["name"].as_str())
            .collect();
        if names.iter().all(|n| bound.contains(n.as_str())) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "pods not bound within {within:?}: {:?}",
            names
                .iter()
                .filter(|n| !bound.contains(n.as_str()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leading_control_hands_scheduling_to_the_other_within_15s() {
    let etcd = blocking(|| EtcdCluster::start(3)).await.unwrap();
    let urls = etcd.client_urls();
    let first = blocking({
        let urls = urls.clone();
        move || ControlPlane::start_on_etcd(&urls, None, &ELECTION)
    })
    .await
    .unwrap();
    let (first, second) = blocking(move || {
        let second = ControlPlane::start_on_etcd(&urls, Some(&first), &ELECTION);
        (first, second)
    })
    .await;
    let mut controls = vec![first, second.unwrap()];
    // Both serve the API; either client works for either instance's cluster.
    let clients: Vec<Client> = controls.iter().map(|c| c.admin_client().unwrap()).collect();
    clients[1]
        .create("nodes", "", &hollow_node("hollow-1"))
        .await
        .unwrap();

    // Every binding any pod ever gets, as watches through both instances see it (the one
    // through the instance that gets killed ends with it).
    let bindings: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
    let mut recorders = Vec::new();
    for client in &clients {
        let mut watch = client
            .watch("pods", "default", &WatchParams::default())
            .await
            .unwrap();
        let bindings = bindings.clone();
        recorders.push(tokio::spawn(async move {
            while let Some(Ok(event)) = watch.next().await {
                let pod = &event.object;
                if let (Some(name), Some(node)) = (
                    pod["metadata"]["name"].as_str(),
                    pod["spec"]["nodeName"].as_str(),
                ) {
                    bindings
                        .lock()
                        .unwrap()
                        .entry(name.to_string())
                        .or_default()
                        .insert(node.to_string());
                }
            }
        }));
    }

    let before: Vec<String> = (0..10).map(|i| format!("before-{i}")).collect();
    for name in &before {
        clients[0]
            .create("pods", "default", &pod(name))
            .await
            .unwrap();
    }
    wait_all_bound(&clients[0], &before, Duration::from_secs(30)).await;
    let leader = leader_of(&clients[0], &controls)
        .await
        .expect("one instance leads");
    let survivor = 1 - leader;

    controls[leader].kill9();
    let killed = Instant::now();
    let after: Vec<String> = (0..10).map(|i| format!("after-{i}")).collect();
    for name in &after {
        clients[survivor]
            .create("pods", "default", &pod(name))
            .await
            .unwrap();
    }
    wait_all_bound(&clients[survivor], &after, Duration::from_secs(15)).await;
    let takeover = killed.elapsed();
    eprintln!("the survivor bound every new pod {takeover:?} after the leader was killed");
    assert!(
        takeover < Duration::from_secs(15),
        "the survivor scheduled within {takeover:?}"
    );
    assert_eq!(
        leader_of(&clients[survivor], &controls).await,
        Some(survivor),
        "the survivor holds the Lease"
    );

    // Nothing was scheduled twice: one binding per pod, ever, and one Scheduled event each.
    tokio::time::sleep(Duration::from_millis(500)).await;
    recorders.iter().for_each(|r| r.abort());
    let bindings = bindings.lock().unwrap().clone();
    for name in before.iter().chain(&after) {
        let nodes = bindings.get(name).cloned().unwrap_or_default();
        assert_eq!(nodes.len(), 1, "{name} was bound to {nodes:?}");
    }
    let events = clients[survivor]
        .list("events", "default", &ListParams::default())
        .await
        .unwrap();
    for name in before.iter().chain(&after) {
        let scheduled: Vec<&Value> = events
            .items
            .iter()
            .filter(|e| e["reason"] == "Scheduled" && e["involvedObject"]["name"] == *name)
            .collect();
        assert!(
            scheduled.len() <= 1
                && scheduled
                    .iter()
                    .all(|e| e["count"].as_i64().unwrap_or(1) == 1),
            "{name} has Scheduled events {scheduled:?}"
        );
    }
}
