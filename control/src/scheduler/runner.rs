//! The scheduler against the API: the process's shared informers on nodes, pods and
//! namespaces feed the [`Scheduler`]; a loop pops pending pods, runs a cycle each, and
//! carries out the decision: binds (in the background, so the next pod is scheduled while
//! the bind is in flight), evicts preemption victims, and reports unschedulable pods with a
//! `PodScheduled=False` condition and a `FailedScheduling` event, as kube-scheduler does.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use serde_json::{Value, json};
use skiff_api::k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use skiff_api::{
    client::{Client, DeleteParams},
    runtime::{Change, InformerFactory, Store, Writer},
};
use tracing::{debug, info, warn};

use super::{ScheduleResult, Scheduler};
use crate::{
    events::{EventRecorder, EventType},
    metrics::Metrics,
};

/// Runs the scheduler until `stop` completes.
pub async fn run(
    client: Client,
    informers: Arc<InformerFactory>,
    events: EventRecorder,
    scheduler: Scheduler,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()>,
) {
    let scheduler = Arc::new(Mutex::new(scheduler));
    let queue = Arc::clone(lock(&scheduler).queue());
    metrics.register_pending_pods({
        let queue = Arc::clone(&queue);
        Box::new(move || queue.lengths())
    });
    let nodes = informers.informer::<Node>("nodes", Writer::new());
    let pods = informers.informer::<Pod>("pods", Writer::new());
    let namespaces = informers.informer::<Namespace>("namespaces", Writer::new());
    let feeders = [
        tokio::spawn(feed_nodes(
            nodes.subscribe(),
            nodes.store(),
            Arc::clone(&scheduler),
        )),
        tokio::spawn(feed_pods(
            pods.subscribe(),
            pods.store(),
            Arc::clone(&scheduler),
        )),
        tokio::spawn(feed_namespaces(
            namespaces.subscribe(),
            Arc::clone(&scheduler),
        )),
    ];
    nodes.store().wait_until_ready().await;
    pods.store().wait_until_ready().await;
    info!("scheduler started");

    let schedule = async {
        while let Some(queued) = queue.pop().await {
            let started = Instant::now();
            let result = lock(&scheduler).schedule_one(queued);
            if let Some((outcome, pod)) = attempt_result(&result) {
                let profile = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.scheduler_name.as_deref())
                    .unwrap_or("default-scheduler");
                metrics.observe_attempt(outcome, profile, started.elapsed());
            }
            act(&client, &events, &scheduler, result).await;
        }
    };
    tokio::select! {
        () = schedule => {}
        () = stop => {}
    }
    queue.close();
    for feeder in feeders {
        feeder.abort();
    }
    info!("scheduler stopped");
}

/// kube-scheduler's `result` label for an attempt, and the pod; `None` for pods skipped
/// without an attempt.
fn attempt_result(result: &ScheduleResult) -> Option<(&'static str, &Pod)> {
    match result {
        ScheduleResult::Bind { pod, .. } => Some(("scheduled", pod)),
        ScheduleResult::Unschedulable { pod, .. } | ScheduleResult::Preempt { pod, .. } => {
            Some(("unschedulable", pod))
        }
        ScheduleResult::Error { pod, .. } => Some(("error", pod)),
        ScheduleResult::Skipped { .. } => None,
    }
}

fn lock(scheduler: &Mutex<Scheduler>) -> MutexGuard<'_, Scheduler> {
    scheduler.lock().unwrap_or_else(|e| e.into_inner())
}

async fn act(
    client: &Client,
    events: &EventRecorder,
    scheduler: &Arc<Mutex<Scheduler>>,
    result: ScheduleResult,
) {
    match result {
        ScheduleResult::Bind { pod, node } => {
            let (client, events, scheduler) =
                (client.clone(), events.clone(), Arc::clone(scheduler));
            tokio::spawn(async move {
                let (namespace, name) = names(&pod);
                match client.bind_pod(&namespace, &name, &node).await {
                    Ok(_) => {
                        lock(&scheduler).confirm(&pod);
                        let message = format!("Successfully assigned {namespace}/{name} to {node}");
                        events
                            .record(&pod_json(&pod), EventType::Normal, "Scheduled", &message)
                            .await;
                    }
                    Err(error) => {
                        warn!(%error, pod = %name, %node, "binding failed; the pod is retried");
                        lock(&scheduler).forget(&pod);
                    }
                }
            });
        }
        ScheduleResult::Unschedulable { pod, diagnosis } => {
            report_unschedulable(client, events, &pod, &diagnosis.message(), None).await;
        }
        ScheduleResult::Preempt {
            pod,
            node,
            victims,
            clear_nomination,
            diagnosis,
        } => {
            for victim in &victims {
                let (namespace, name) = names(victim);
                let message = format!(
                    "Preempted by pod {} on node {node}",
                    pod.metadata.uid.as_deref().unwrap_or("")
                );
                events
                    .record(&pod_json(victim), EventType::Normal, "Preempted", &message)
                    .await;
                if let Err(error) = client
                    .delete("pods", &namespace, &name, &DeleteParams::default())
                    .await
                {
                    warn!(%error, pod = %name, "evicting a preemption victim failed");
                }
            }
            for other in &clear_nomination {
                let (namespace, name) = names(other);
                let patch = json!({"status": {"nominatedNodeName": null}});
                let _ = client
                    .patch("pods", &namespace, &name, &patch, "status")
                    .await;
            }
            report_unschedulable(client, events, &pod, &diagnosis.message(), Some(&node)).await;
        }
        ScheduleResult::Error { pod, message } => {
            warn!(pod = ?pod.metadata.name, %message, "scheduling cycle failed");
            events
                .record(
                    &pod_json(&pod),
                    EventType::Warning,
                    "FailedScheduling",
                    &message,
                )
                .await;
        }
        ScheduleResult::Skipped { pod, reason } => {
            debug!(pod = ?pod.metadata.name, ?reason, "skipped")
        }
    }
}

async fn report_unschedulable(
    client: &Client,
    events: &EventRecorder,
    pod: &Pod,
    message: &str,
    nominated: Option<&str>,
) {
    let (namespace, name) = names(pod);
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut conditions: Vec<Value> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|c| {
            c.iter()
                .filter(|c| c.type_ != "PodScheduled")
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect()
        })
        .unwrap_or_default();
    conditions.push(json!({
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastTransitionTime": now,
    }));
    let mut status = json!({"conditions": conditions});
    if let Some(node) = nominated {
        status["nominatedNodeName"] = json!(node);
    }
    if let Err(error) = client
        .patch(
            "pods",
            &namespace,
            &name,
            &json!({"status": status}),
            "status",
        )
        .await
    {
        debug!(%error, pod = %name, "reporting an unschedulable pod failed");
    }
    events
        .record(
            &pod_json(pod),
            EventType::Warning,
            "FailedScheduling",
            message,
        )
        .await;
}

fn names(pod: &Pod) -> (String, String) {
    (
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// What an event needs of the pod it is about: its kind and identifying metadata (not the
/// whole pod, which would be serialized per event for nothing).
fn pod_json(pod: &Pod) -> Value {
    let meta = &pod.metadata;
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid,
                     "resourceVersion": meta.resource_version},
    })
}

async fn feed_nodes(
    mut changes: skiff_api::runtime::Subscription<Node>,
    store: Store<Node>,
    scheduler: Arc<Mutex<Scheduler>>,
) {
    while let Some(change) = changes.recv().await {
        let mut s = lock(&scheduler);
        match change {
            Change::Added(node) => s.node_added((*node).clone()),
            Change::Updated { old, new } => s.node_updated(&old, (*new).clone()),
            Change::Deleted(node) => s.node_deleted(&node),
            Change::Resynced => s.resync_nodes(&store.list()),
        }
    }
}

async fn feed_pods(
    mut changes: skiff_api::runtime::Subscription<Pod>,
    store: Store<Pod>,
    scheduler: Arc<Mutex<Scheduler>>,
) {
    while let Some(change) = changes.recv().await {
        let mut s = lock(&scheduler);
        match change {
            Change::Added(pod) => s.pod_added((*pod).clone()),
            Change::Updated { old, new } => s.pod_updated(&old, (*new).clone()),
            Change::Deleted(pod) => s.pod_deleted(&pod),
            Change::Resynced => s.resync_pods(&store.list()),
        }
    }
}

async fn feed_namespaces(
    mut changes: skiff_api::runtime::Subscription<Namespace>,
    scheduler: Arc<Mutex<Scheduler>>,
) {
    while let Some(change) = changes.recv().await {
        let mut s = lock(&scheduler);
        match change {
            Change::Added(ns) | Change::Updated { new: ns, .. } => s.namespace_updated(&ns),
            Change::Deleted(ns) => s.namespace_deleted(ns.metadata.name.as_deref().unwrap_or("")),
            Change::Resynced => {}
        }
    }
}
