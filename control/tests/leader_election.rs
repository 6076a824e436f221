//! Leader election against a real API server: one of two candidates leads, the other takes
//! over once the leader stops renewing, and never while it renews.

use std::time::Duration;

use skiff_api::client::ListParams;
use skiff_control::{
    events::EventRecorder,
    leader::{ElectionTimings, LeaderElector},
};
use skiff_tests::control::{Backend, ControlPlane};
use tokio::sync::watch;

const TIMINGS: ElectionTimings = ElectionTimings {
    lease_duration: Duration::from_secs(2),
    renew_deadline: Duration::from_millis(1500),
    retry_period: Duration::from_millis(200),
};

async fn wait_leading(rx: &mut watch::Receiver<bool>, within: Duration, who: &str) {
    tokio::time::timeout(within, rx.wait_for(|&l| l))
        .await
        .unwrap_or_else(|_| panic!("{who} did not become the leader within {within:?}"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_candidate_takes_over_only_when_the_leader_stops_renewing() {
    let control = tokio::task::spawn_blocking(|| ControlPlane::start(Backend::Embedded))
        .await
        .unwrap()
        .unwrap();
    let client = control.admin_client().unwrap();
    let events = EventRecorder::new(client.clone(), "skiff-control", "test");
    let a = LeaderElector::new(client.clone(), "kube-system", "test-election", "a", TIMINGS)
        .with_events(events);
    let b = LeaderElector::new(client.clone(), "kube-system", "test-election", "b", TIMINGS);

    let mut a_leading = a.spawn();
    wait_leading(&mut a_leading, Duration::from_secs(10), "a").await;
    let mut b_leading = b.spawn();
    // Three lease durations with `a` renewing: `b` never leads.
    let b_won = tokio::time::timeout(TIMINGS.lease_duration * 3, b_leading.wait_for(|&l| l))
        .await
        .is_ok();
    assert!(!b_won, "b took the lease while a was renewing it");
    assert!(*a_leading.borrow());

    // Dropping a's receiver stops its campaign: b takes over after the lease expires.
    drop(a_leading);
    wait_leading(&mut b_leading, TIMINGS.lease_duration * 4, "b").await;
    let lease = client
        .get("leases", "kube-system", "test-election")
        .await
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    // a's leadership was recorded as an Event on the Lease.
    let params = ListParams {
        field_selector: "involvedObject.name=test-election".into(),
        ..Default::default()
    };
    let events = client.list("events", "kube-system", &params).await.unwrap();
    let messages: Vec<&str> = events
        .items
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(messages.contains(&"a became leader"), "{messages:?}");
    assert!(
        events
            .items
            .iter()
            .all(|e| e["reason"] == "LeaderElection" && e["involvedObject"]["kind"] == "Lease")
    );
}
