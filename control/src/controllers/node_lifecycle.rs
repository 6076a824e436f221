//! The node lifecycle controller: a node whose Lease goes unrenewed for the grace period
//! turns Ready=Unknown; nodes that are not ready are tainted (`unreachable` / `not-ready`,
//! NoSchedule and NoExecute, NoExecute rate-limited), and pods on a NoExecute-tainted node
//! are evicted once their tolerations run out (Kubernetes' node lifecycle and taint
//! eviction controllers). Pressure conditions the agent reports (MemoryPressure,
//! DiskPressure, PIDPressure, NetworkUnavailable) give the node their NoSchedule taint
//! while they are True (Kubernetes' taint-nodes-by-condition).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use skiff_api::{
    client::ClientError,
    k8s_openapi::api::{
        coordination::v1::Lease,
        core::v1::{Node, NodeCondition, Pod, Taint},
    },
    runtime::{Action, Change, Controller, ObjectKey, Store, WorkQueue, Writer},
};
use tokio::time::Instant;
use tracing::info;

use super::{
    Context, Stop,
    cluster_api::{ClusterApi, LiveApi, is_not_found},
    feed::{feed, informer},
};
use crate::{events::EventType, scheduler::plugins::taint_toleration::tolerates};

/// Where node Leases live.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub use crate::apiserver::admission::{NOT_READY_TAINT, UNREACHABLE_TAINT};
/// The index of pods by `spec.nodeName`.
pub const BY_NODE: &str = "node";
/// The NoSchedule taint each node condition calls for while it has this status
/// (Kubernetes' `nodeConditionToTaintKeyStatusMap`, Ready aside).
pub const CONDITION_TAINTS: [(&str, &str, &str); 4] = [
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
];

/// Why a node or its pods could not be brought in line.
#[derive(Debug, thiserror::Error)]
pub enum NodeLifecycleError {
    #[error("writing the status of node {node}")]
    NodeStatus {
        node: String,
        #[source]
        source: ClientError,
    },
    #[error("writing the taints of node {node}")]
    Taints {
        node: String,
        #[source]
        source: ClientError,
    },
    #[error("{action} pod {namespace}/{name} on node {node}")]
    Pod {
        action: &'static str,
        namespace: String,
        name: String,
        node: String,
        #[source]
        source: ClientError,
    },
}

/// The controller's settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// How long a Lease may go unrenewed (`--node-monitor-grace-period`).
    pub grace_period: Duration,
    /// Nodes per second that may be given NoExecute taints (`--node-eviction-rate`).
    pub eviction_rate: f64,
}

/// The caches a reconcile reads.
#[derive(Clone, Debug)]
pub struct Caches {
    pub nodes: Store<Node>,
    pub leases: Store<Lease>,
    /// Indexed by [`BY_NODE`].
    pub pods: Store<Pod>,
}

/// A pod store indexed as [`Caches::pods`] must be.
pub fn pod_writer() -> Writer<Pod> {
    Writer::new().with_index(BY_NODE, |pod: &Pod| {
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .into_iter()
            .collect()
    })
}

/// The last Lease renewal seen for a node, and when (on this controller's clock) it was
/// seen: the grace period runs from there, so clock skew with the node does not matter.
#[derive(Debug)]
struct Observed {
    renewal: String,
    at: Instant,
}

/// Wall-clock time that follows Tokio's clock (so paused-time tests move it too).
#[derive(Debug, Clone, Copy)]
struct Clock {
    wall: Timestamp,
    at: Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            wall: Timestamp::now(),
            at: Instant::now(),
        }
    }

    fn now(&self) -> Timestamp {
        let elapsed = SignedDuration::try_from(self.at.elapsed()).unwrap_or(SignedDuration::MAX);
        self.wall.checked_add(elapsed).unwrap_or(self.wall)
    }

    /// The Tokio instant of wall-clock time `at`.
    fn instant_of(&self, at: Timestamp) -> Instant {
        let since = at.duration_since(self.wall);
        match Duration::try_from(since) {
            Ok(ahead) => self.at + ahead,
            Err(_) => self
                .at
                .checked_sub(Duration::try_from(-since).unwrap_or_default())
                .unwrap_or(self.at),
        }
    }
}

/// Reconciles one node (by name) at a time.
#[derive(Debug)]
pub struct Reconciler<A> {
    api: A,
    caches: Caches,
    settings: Settings,
    clock: Clock,
    observed: Mutex<HashMap<String, Observed>>,
    /// When the next node may be given a NoExecute taint.
    next_no_execute: Mutex<Option<Instant>>,
    /// The NoExecute taint each node was given (key and time): written again as it was,
    /// without another token, should a reconcile on a stale cache not see it yet.
    granted: Mutex<HashMap<String, Taint>>,
}

fn format_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The status of the node's Ready condition ("" when it has none).
fn ready_status(node: &Node) -> &str {
    condition_status(node, "Ready")
}

/// The status of the node's condition `kind` ("" when it has none).
fn condition_status<'a>(node: &'a Node, kind: &str) -> &'a str {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == kind))
        .map_or("", |c| c.status.as_str())
}

fn renewal_of(lease: Option<&Lease>) -> String {
    lease
        .map(|lease| {
            let renew = lease
                .spec
                .as_ref()
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| t.0.to_string())
                .unwrap_or_default();
            format!(
                "{renew}@{}",
                lease.metadata.resource_version.as_deref().unwrap_or("")
            )
        })
        .unwrap_or_default()
}

impl<A: ClusterApi> Reconciler<A> {
    pub fn new(api: A, caches: Caches, settings: Settings) -> Self {
        Self {
            api,
            caches,
            settings,
            clock: Clock::new(),
            observed: Mutex::default(),
            next_no_execute: Mutex::default(),
            granted: Mutex::default(),
        }
    }

    /// Checks the node's Lease, its conditions, its taints and the pods on it.
    ///
    /// # Errors
    /// When a write fails; the key is retried with backoff.
    pub async fn reconcile(&self, name: &str) -> Result<Action, NodeLifecycleError> {
        let Some(node) = self.caches.nodes.get(&ObjectKey::cluster(name)) else {
            self.observed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(name);
            return Ok(Action::Done);
        };
        let mut node = (*node).clone();
        let mut next: Option<Instant> = None;

        // 1. Has the Lease been renewed within the grace period?
        let lease = self
            .caches
            .leases
            .get(&ObjectKey::new(LEASE_NAMESPACE, name));
        let renewal = renewal_of(lease.as_deref());
        let last_seen = {
            let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
            let entry = observed.entry(name.to_string()).or_insert(Observed {
                renewal: renewal.clone(),
                at: Instant::now(),
            });
            if entry.renewal != renewal {
                entry.renewal = renewal;
                entry.at = Instant::now();
            }
            entry.at
        };
        let silent_until = last_seen + self.settings.grace_period;
        if Instant::now() >= silent_until {
            if ready_status(&node) != "Unknown" {
                self.mark_unknown(&mut node).await?;
            }
        } else if ready_status(&node) != "Unknown" {
            next = Some(silent_until);
        }

        // 2. Taints follow the Ready condition.
        if let Some(at) = self.sync_taints(&mut node).await? {
            next = Some(next.map_or(at, |n| n.min(at)));
        }

        // 3. Pods on a NoExecute-tainted node go when their tolerations run out.
        if let Some(at) = self.evict(&node).await? {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        Ok(match next {
            Some(at) => Action::RequeueAfter(at.saturating_duration_since(Instant::now())),
            None => Action::Done,
        })
    }

    /// Sets every condition of a silent node to Unknown (Ready first), and its pods'
    /// Ready conditions to False, as Kubernetes does.
    async fn mark_unknown(&self, node: &mut Node) -> Result<(), NodeLifecycleError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let now = self.clock.now();
        let status = node.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        let (reason, message) = if conditions.iter().any(|c| c.type_ == "Ready") {
            ("NodeStatusUnknown", "Kubelet stopped posting node status.")
        } else {
            conditions.push(NodeCondition {
                type_: "Ready".into(),
                ..NodeCondition::default()
            });
            (
                "NodeStatusNeverUpdated",
                "Kubelet never posted node status.",
            )
        };
        for condition in conditions.iter_mut() {
            condition.status = "Unknown".into();
            condition.reason = Some(reason.into());
            condition.message = Some(message.into());
            condition.last_transition_time =
                Some(skiff_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
        }
        let patch = json!({"status": {"conditions": conditions}});
        let written = self
            .api
            .patch("nodes", "", &name, patch, "status")
            .await
            .map_err(|source| NodeLifecycleError::NodeStatus {
                node: name.clone(),
                source,
            })?;
        // The taints are written next, pinned to this version.
        node.metadata.resource_version = written["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        info!(
            node = name,
            "node stopped renewing its Lease: Ready=Unknown"
        );
        let object = node_reference(node);
        self.api
            .event(
                &object,
                EventType::Normal,
                "NodeNotReady",
                &format!("Node {name} status is now: NodeNotReady"),
            )
            .await;
        for pod in self.caches.pods.by_index(BY_NODE, &name) {
            self.mark_pod_not_ready(&pod, &name, now).await?;
        }
        Ok(())
    }

    async fn mark_pod_not_ready(
        &self,
        pod: &Pod,
        node: &str,
        now: Timestamp,
    ) -> Result<(), NodeLifecycleError> {
        let Some(mut conditions) = pod.status.as_ref().and_then(|s| s.conditions.clone()) else {
            return Ok(());
        };
        let Some(ready) = conditions
            .iter_mut()
            .find(|c| c.type_ == "Ready" && c.status == "True")
        else {
            return Ok(());
        };
        ready.status = "False".into();
        ready.reason = Some("NodeNotReady".into());
        ready.last_transition_time =
            Some(skiff_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        match self
            .api
            .patch(
                "pods",
                &namespace,
                &name,
                json!({"status": {"conditions": conditions}}),
                "status",
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            Err(source) => Err(NodeLifecycleError::Pod {
                action: "marking not ready",
                namespace,
                name,
                node: node.into(),
                source,
            }),
        }
    }

    /// True when no node in the cluster is ready: Kubernetes' full disruption, where the
    /// fault is more likely the control plane's view than every node, so nothing is evicted.
    fn fully_disrupted(&self) -> bool {
        let nodes = self.caches.nodes.list();
        nodes.len() > 1 && nodes.iter().all(|n| ready_status(n) != "True")
    }

    /// Writes the taints the Ready condition and the pressure conditions call for; returns
    /// when to look again if a NoExecute taint had to wait for the rate limiter.
    async fn sync_taints(&self, node: &mut Node) -> Result<Option<Instant>, NodeLifecycleError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let wanted = match ready_status(node) {
            "Unknown" => Some(UNREACHABLE_TAINT),
            "False" => Some(NOT_READY_TAINT),
            _ => None,
        };
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let by_condition: Vec<&str> = CONDITION_TAINTS
            .iter()
            .filter(|(kind, status, _)| condition_status(node, kind) == *status)
            .map(|(_, _, key)| *key)
            .collect();
        let mut taints: Vec<Taint> = current
            .iter()
            .filter(|t| {
                if CONDITION_TAINTS.iter().any(|(_, _, key)| t.key == *key) {
                    return t.effect == "NoSchedule" && by_condition.contains(&t.key.as_str());
                }
                let ours = t.key == UNREACHABLE_TAINT || t.key == NOT_READY_TAINT;
                !ours || Some(t.key.as_str()) == wanted
            })
            .cloned()
            .collect();
        for key in by_condition {
            if !taints.iter().any(|t| t.key == key) {
                taints.push(Taint {
                    key: key.into(),
                    effect: "NoSchedule".into(),
                    ..Taint::default()
                });
            }
        }
        let mut wait = None;
        if let Some(key) = wanted {
            let has = |taints: &[Taint], effect: &str| {
                taints.iter().any(|t| t.key == key && t.effect == effect)
            };
            if !has(&taints, "NoSchedule") {
                taints.push(Taint {
                    key: key.into(),
                    effect: "NoSchedule".into(),
                    ..Taint::default()
                });
            }
            if !has(&taints, "NoExecute") {
                let granted = self
                    .granted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&name)
                    .filter(|t| t.key == key)
                    .cloned();
                match granted {
                    Some(taint) => taints.push(taint),
                    None => match self.take_no_execute_token() {
                        Ok(()) => {
                            let taint = Taint {
                                key: key.into(),
                                effect: "NoExecute".into(),
                                time_added: Some(
                                    skiff_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                                        self.clock.now(),
                                    ),
                                ),
                                ..Taint::default()
                            };
                            self.granted
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(name.clone(), taint.clone());
                            taints.push(taint);
                        }
                        Err(at) => wait = Some(at),
                    },
                }
            }
        } else {
            self.granted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
        }
        if taints == current {
            return Ok(wait);
        }
        // Pinned to the version this reconcile read: a stale cache gets a Conflict (and a
        // retry) instead of overwriting taints others added meanwhile.
        let patch = json!({
            "metadata": {"resourceVersion": node.metadata.resource_version},
            "spec": {"taints": taints},
        });
        self.api
            .patch("nodes", "", &name, patch, "")
            .await
            .map_err(|source| NodeLifecycleError::Taints {
                node: name.clone(),
                source,
            })?;
        info!(node = name, taints = ?taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect::<Vec<_>>(), "node taints updated");
        node.spec.get_or_insert_with(Default::default).taints = Some(taints);
        Ok(wait)
    }

    /// Takes the rate limiter's token for one NoExecute taint, or says when the next is
    /// due. Nothing is taken while every node is down.
    fn take_no_execute_token(&self) -> Result<(), Instant> {
        let now = Instant::now();
        if self.fully_disrupted() {
            return Err(now + self.settings.grace_period);
        }
        let mut next = self
            .next_no_execute
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(at) = *next
            && at > now
        {
            return Err(at);
        }
        let interval = if self.settings.eviction_rate > 0.0 {
            Duration::from_secs_f64(1.0 / self.settings.eviction_rate)
        } else {
            Duration::from_secs(3600)
        };
        *next = Some(now + interval);
        Ok(())
    }

    /// Deletes the pods whose tolerations of the node's NoExecute taints have run out;
    /// returns when the next one runs out.
    async fn evict(&self, node: &Node) -> Result<Option<Instant>, NodeLifecycleError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let taints: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.effect == "NoExecute")
            .collect();
        if taints.is_empty() {
            return Ok(None);
        }
        let now = self.clock.now();
        let mut next: Option<Instant> = None;
        for pod in self.caches.pods.by_index(BY_NODE, &name) {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(due) = eviction_time(&pod, &taints) else {
                continue;
            };
            if due > now {
                let at = self.clock.instant_of(due);
                next = Some(next.map_or(at, |n| n.min(at)));
                continue;
            }
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            match self.api.delete("pods", &namespace, &pod_name).await {
                Ok(()) => {}
                Err(error) if is_not_found(&error) => continue,
                Err(source) => {
                    return Err(NodeLifecycleError::Pod {
                        action: "evicting",
                        namespace,
                        name: pod_name,
                        node: name,
                        source,
                    });
                }
            }
            info!(pod = %format!("{namespace}/{pod_name}"), node = name, "evicted a pod from a NoExecute-tainted node");
            let object = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": namespace,
                             "uid": pod.metadata.uid.clone().unwrap_or_default()},
            });
            self.api
                .event(
                    &object,
                    EventType::Normal,
                    "TaintManagerEviction",
                    &format!("Marking for deletion Pod {namespace}/{pod_name}"),
                )
                .await;
        }
        Ok(next)
    }
}

/// When a pod must leave a node with these NoExecute `taints`: at once if one of them is
/// not tolerated, else when the shortest `tolerationSeconds` among the matching
/// tolerations has passed since the taint was added; `None` if it tolerates them forever.
pub fn eviction_time(pod: &Pod, taints: &[Taint]) -> Option<Timestamp> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut due: Option<Timestamp> = None;
    for taint in taints {
        let matching: Vec<_> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            // Not tolerated: at once.
            return Some(Timestamp::UNIX_EPOCH);
        }
        // The shortest bound among the matching tolerations; unbounded if none has one.
        let seconds = matching.iter().filter_map(|t| t.toleration_seconds).min();
        if let Some(seconds) = seconds {
            let added = taint
                .time_added
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
            let at = added
                .checked_add(SignedDuration::from_secs(seconds.max(0)))
                .unwrap_or(added);
            due = Some(due.map_or(at, |d| d.min(at)));
        }
    }
    due
}

fn node_reference(node: &Node) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node.metadata.name, "uid": node.metadata.uid},
    })
}

/// Runs the controller until `stop` fires.
pub async fn run(context: Context, stop: Stop) {
    let nodes = informer(&context, "nodes", Writer::<Node>::new());
    let leases = informer(&context, "leases", Writer::<Lease>::new());
    let pods = informer(&context, "pods", pod_writer());
    let queue: WorkQueue<ObjectKey> = context.queue("node_lifecycle");
    let caches = Caches {
        nodes: nodes.store(),
        leases: leases.store(),
        pods: pods.store(),
    };
    feed(nodes.subscribe(), queue.clone(), {
        let store = nodes.store();
        move |change: &Change<Node>| match change.object() {
            Some(node) => vec![ObjectKey::of(&**node)],
            None => store.keys(),
        }
    });
    feed(leases.subscribe(), queue.clone(), {
        let store = nodes.store();
        move |change: &Change<Lease>| match change.object() {
            Some(lease) if lease.metadata.namespace.as_deref() == Some(LEASE_NAMESPACE) => {
                vec![ObjectKey::cluster(
                    lease.metadata.name.clone().unwrap_or_default(),
                )]
            }
            Some(_) => Vec::new(),
            None => store.keys(),
        }
    });
    feed(pods.subscribe(), queue.clone(), {
        let store = nodes.store();
        move |change: &Change<Pod>| {
            let node_of = |pod: &Pod| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .filter(|n| !n.is_empty())
                    .map(ObjectKey::cluster)
            };
            match change {
                Change::Added(pod) | Change::Deleted(pod) => node_of(pod).into_iter().collect(),
                Change::Updated { old, new } => {
                    let mut keys: Vec<_> = node_of(old).into_iter().collect();
                    keys.extend(node_of(new));
                    keys
                }
                Change::Resynced => store.keys(),
            }
        }
    });
    let synced = async {
        tokio::join!(
            caches.nodes.wait_until_ready(),
            caches.leases.wait_until_ready(),
            caches.pods.wait_until_ready()
        )
    };
    tokio::select! {
        _ = synced => {}
        () = stop.clone().wait() => return,
    }
    let api = LiveApi::new(context.client.clone(), "node-controller", &context.identity);
    let settings = Settings {
        grace_period: context.options.node_monitor_grace_period,
        eviction_rate: context.options.node_eviction_rate,
    };
    let reconciler = Arc::new(Reconciler::new(api, caches, settings));
    Controller::new(queue)
        .graceful_shutdown_on(stop.wait())
        .run(2, move |key: ObjectKey| {
            let reconciler = Arc::clone(&reconciler);
            async move { reconciler.reconcile(&key.name).await }
        })
        .await;
    drop((nodes, leases, pods));
}

/// Formats `at` as Kubernetes writes times (for tests and events).
pub fn rfc3339(at: Timestamp) -> String {
    format_time(at)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use skiff_api::runtime::Event;

    use super::*;
    use crate::controllers::cluster_api::fake::{Call, FakeApi};

    const GRACE: Duration = Duration::from_secs(40);

    fn store<T: serde::de::DeserializeOwned>(
        mut writer: Writer<T>,
        objects: Vec<Value>,
    ) -> Store<T> {
        writer.apply(Event::Restarted {
            objects,
            resource_version: "1".into(),
        });
        writer.reader()
    }

    fn node(name: &str, ready: &str, taints: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "3"},
            "spec": {"taints": taints},
            "status": {"conditions": [
                {"type": "Ready", "status": ready, "reason": "KubeletReady"},
                {"type": "MemoryPressure", "status": "False"}
            ]}
        })
    }

    fn lease(name: &str, version: &str) -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": LEASE_NAMESPACE, "resourceVersion": version},
            "spec": {"holderIdentity": name, "renewTime": "2026-01-01T00:00:00.000000Z"}
        })
    }

    fn pod(name: &str, node: &str, tolerations: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "resourceVersion": "9"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}], "tolerations": tolerations},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        })
    }

    fn settings() -> Settings {
        Settings {
            grace_period: GRACE,
            eviction_rate: 0.1,
        }
    }

    fn reconciler(
        api: &FakeApi,
        nodes: Vec<Value>,
        leases: Vec<Value>,
        pods: Vec<Value>,
    ) -> Reconciler<FakeApi> {
        Reconciler::new(
            api.clone(),
            Caches {
                nodes: store(Writer::new(), nodes),
                leases: store(Writer::new(), leases),
                pods: store(pod_writer(), pods),
            },
            settings(),
        )
    }

    fn patches(api: &FakeApi, resource: &str, subresource: &str) -> Vec<(String, Value)> {
        api.writes()
            .into_iter()
            .filter_map(|c| match c {
                Call::Patch {
                    resource: r,
                    name,
                    patch,
                    subresource: s,
                    ..
                } if r == resource && s == subresource => Some((name, patch)),
                _ => None,
            })
            .collect()
    }

    fn deleted(api: &FakeApi) -> Vec<String> {
        api.writes()
            .into_iter()
            .filter_map(|c| match c {
                Call::Delete { resource, name, .. } if resource == "pods" => Some(name),
                _ => None,
            })
            .collect()
    }

    fn taint_keys(taints: &Value) -> Vec<String> {
        taints
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                format!(
                    "{}:{}",
                    t["key"].as_str().unwrap(),
                    t["effect"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_whose_lease_stops_is_unknown_after_the_grace_period_and_not_before() {
        let api = FakeApi::new();
        let r = reconciler(
            &api,
            vec![node("n1", "True", json!([]))],
            vec![lease("n1", "5")],
            vec![pod("p", "n1", json!([]))],
        );
        assert_eq!(
            r.reconcile("n1").await.unwrap(),
            Action::RequeueAfter(GRACE)
        );
        tokio::time::advance(Duration::from_secs(39)).await;
        assert_eq!(
            r.reconcile("n1").await.unwrap(),
            Action::RequeueAfter(Duration::from_secs(1))
        );
        assert!(
            api.writes().is_empty(),
            "nothing written within the grace period"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        r.reconcile("n1").await.unwrap();
        let status = patches(&api, "nodes", "status");
        assert_eq!(status.len(), 1);
        let conditions = status[0].1["status"]["conditions"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(conditions.len(), 2, "every condition, not only Ready");
        for condition in &conditions {
            assert_eq!(condition["status"], "Unknown");
            assert_eq!(condition["reason"], "NodeStatusUnknown");
        }
        let pod_status = patches(&api, "pods", "status");
        assert_eq!(
            pod_status[0].1["status"]["conditions"][0]["status"],
            "False"
        );
        assert!(api.event_reasons().contains(&"NodeNotReady".to_string()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewed_lease_keeps_the_node_as_it_is() {
        let api = FakeApi::new();
        let mut r = reconciler(
            &api,
            vec![node("n1", "True", json!([]))],
            vec![lease("n1", "5")],
            vec![],
        );
        r.reconcile("n1").await.unwrap();
        tokio::time::advance(Duration::from_secs(30)).await;
        r.caches.leases = store(Writer::new(), vec![lease("n1", "6")]);
        r.reconcile("n1").await.unwrap();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(
            r.reconcile("n1").await.unwrap(),
            Action::RequeueAfter(Duration::from_secs(10))
        );
        assert!(api.writes().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn memory_pressure_taints_the_node_no_schedule_until_it_ends() {
        let api = FakeApi::new();
        let mut pressed = node(
            "n1",
            "True",
            json!([{"key": "team", "effect": "NoSchedule"}]),
        );
        pressed["status"]["conditions"][1]["status"] = json!("True");
        let r = reconciler(&api, vec![pressed], vec![lease("n1", "5")], vec![]);
        r.reconcile("n1").await.unwrap();
        let written = patches(&api, "nodes", "");
        assert_eq!(
            taint_keys(&written[0].1["spec"]["taints"]),
            [
                "team:NoSchedule",
                "node.kubernetes.io/memory-pressure:NoSchedule"
            ]
        );
        assert!(deleted(&api).is_empty(), "NoSchedule evicts nothing");

        let api = FakeApi::new();
        let relieved = node(
            "n1",
            "True",
            json!([{"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"},
                   {"key": "team", "effect": "NoSchedule"}]),
        );
        let r = reconciler(&api, vec![relieved], vec![lease("n1", "5")], vec![]);
        r.reconcile("n1").await.unwrap();
        let written = patches(&api, "nodes", "");
        assert_eq!(
            taint_keys(&written[0].1["spec"]["taints"]),
            ["team:NoSchedule"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_node_is_tainted_unreachable_and_its_pods_without_tolerations_evicted_at_once()
     {
        let api = FakeApi::new();
        let tolerating = json!([{"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]);
        let r = reconciler(
            &api,
            vec![
                node("n1", "Unknown", json!([])),
                node("n2", "True", json!([])),
            ],
            vec![],
            vec![
                pod("plain", "n1", json!([])),
                pod("patient", "n1", tolerating),
                pod("elsewhere", "n2", json!([])),
            ],
        );
        let action = r.reconcile("n1").await.unwrap();
        let taints = patches(&api, "nodes", "");
        assert_eq!(
            taint_keys(&taints[0].1["spec"]["taints"]),
            [
                format!("{UNREACHABLE_TAINT}:NoSchedule"),
                format!("{UNREACHABLE_TAINT}:NoExecute")
            ]
        );
        assert_eq!(deleted(&api), ["plain"]);
        assert!(
            api.event_reasons()
                .contains(&"TaintManagerEviction".to_string())
        );
        match action {
            Action::RequeueAfter(after) => assert!(
                after <= Duration::from_secs(300) && after > Duration::from_secs(298),
                "comes back when the 300 s toleration runs out: {after:?}"
            ),
            other => panic!("expected a requeue, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_is_evicted_when_its_toleration_seconds_have_passed_since_the_taint() {
        let api = FakeApi::new();
        let added = rfc3339(Timestamp::now() - SignedDuration::from_secs(301));
        let taints = json!([{"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": added},
                            {"key": UNREACHABLE_TAINT, "effect": "NoSchedule"}]);
        let forever = json!([{"operator": "Exists"}]);
        let bounded = json!([{"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]);
        let r = reconciler(
            &api,
            vec![node("n1", "Unknown", taints), node("n2", "True", json!([]))],
            vec![],
            vec![pod("bounded", "n1", bounded), pod("forever", "n1", forever)],
        );
        assert_eq!(r.reconcile("n1").await.unwrap(), Action::Done);
        assert_eq!(deleted(&api), ["bounded"]);
        assert!(
            patches(&api, "nodes", "").is_empty(),
            "taints already right"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_reporting_not_ready_gets_not_ready_taints_and_loses_them_when_ready_again() {
        let api = FakeApi::new();
        let r = reconciler(
            &api,
            vec![
                node(
                    "n1",
                    "False",
                    json!([{"key": "dedicated", "effect": "NoSchedule", "value": "gpu"}]),
                ),
                node("n2", "True", json!([])),
            ],
            vec![lease("n1", "1")],
            vec![],
        );
        r.reconcile("n1").await.unwrap();
        let taints = patches(&api, "nodes", "");
        assert_eq!(
            taint_keys(&taints[0].1["spec"]["taints"]),
            [
                "dedicated:NoSchedule".to_string(),
                format!("{NOT_READY_TAINT}:NoSchedule"),
                format!("{NOT_READY_TAINT}:NoExecute")
            ]
        );
        let api = FakeApi::new();
        let back = json!([{"key": "dedicated", "effect": "NoSchedule", "value": "gpu"},
                          {"key": NOT_READY_TAINT, "effect": "NoSchedule"},
                          {"key": NOT_READY_TAINT, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}]);
        let r = reconciler(
            &api,
            vec![node("n1", "True", back)],
            vec![lease("n1", "1")],
            vec![],
        );
        r.reconcile("n1").await.unwrap();
        let taints = patches(&api, "nodes", "");
        assert_eq!(
            taint_keys(&taints[0].1["spec"]["taints"]),
            ["dedicated:NoSchedule"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_execute_taints_are_rate_limited_across_nodes() {
        let api = FakeApi::new();
        let r = reconciler(
            &api,
            vec![
                node("n1", "Unknown", json!([])),
                node("n2", "Unknown", json!([])),
                node("n3", "True", json!([])),
            ],
            vec![],
            vec![],
        );
        r.reconcile("n1").await.unwrap();
        let action = r.reconcile("n2").await.unwrap();
        let taints = patches(&api, "nodes", "");
        assert_eq!(
            taint_keys(&taints[0].1["spec"]["taints"]).len(),
            2,
            "n1: both taints"
        );
        assert_eq!(
            taint_keys(&taints[1].1["spec"]["taints"]),
            [format!("{UNREACHABLE_TAINT}:NoSchedule")],
            "n2: NoSchedule at once, NoExecute waits"
        );
        assert_eq!(
            action,
            Action::RequeueAfter(Duration::from_secs(10)),
            "0.1 nodes per second"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        api.clear();
        let mut r = r;
        r.caches.nodes = store(
            Writer::new(),
            vec![
                node("n1", "Unknown", json!([])),
                node(
                    "n2",
                    "Unknown",
                    json!([{"key": UNREACHABLE_TAINT, "effect": "NoSchedule"}]),
                ),
                node("n3", "True", json!([])),
            ],
        );
        r.reconcile("n2").await.unwrap();
        let taints = patches(&api, "nodes", "");
        assert_eq!(taint_keys(&taints[0].1["spec"]["taints"]).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_on_a_stale_cache_keeps_the_no_execute_taint_it_already_gave() {
        let api = FakeApi::new();
        let r = reconciler(
            &api,
            vec![
                node("n1", "Unknown", json!([])),
                node("n2", "True", json!([])),
            ],
            vec![],
            vec![],
        );
        r.reconcile("n1").await.unwrap();
        // The cache has not seen the taints yet; the rate limiter has no token left.
        r.reconcile("n1").await.unwrap();
        let taints = patches(&api, "nodes", "");
        assert_eq!(taints.len(), 2);
        assert_eq!(
            taints[0].1, taints[1].1,
            "the same taints, NoExecute with its first timeAdded"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_evicted_when_every_node_is_down() {
        let api = FakeApi::new();
        let r = reconciler(
            &api,
            vec![
                node("n1", "Unknown", json!([])),
                node("n2", "Unknown", json!([])),
            ],
            vec![],
            vec![pod("p", "n1", json!([]))],
        );
        r.reconcile("n1").await.unwrap();
        let taints = patches(&api, "nodes", "");
        assert_eq!(
            taint_keys(&taints[0].1["spec"]["taints"]),
            [format!("{UNREACHABLE_TAINT}:NoSchedule")]
        );
        assert!(deleted(&api).is_empty());
    }
}
