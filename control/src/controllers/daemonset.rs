//! The DaemonSet controller: one pod on every node the DaemonSet's template fits (node
//! selector, required node affinity, taints against its tolerations plus the default
//! daemon tolerations), each pinned to its node by required node affinity on
//! `metadata.name`; a RollingUpdate that replaces old pods within maxUnavailable; status.

use std::{
    collections::{BTreeMap, HashSet},
    future::Future,
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use futures::future::join_all;
use jiff::Timestamp;
use serde_json::{Value, json};
use skiff_api::{
    client::{ClientError, DeleteParams},
    k8s_openapi::{
        api::{
            apps::v1::DaemonSet,
            core::v1::{
                Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement,
                NodeSelectorTerm, Pod, PodTemplateSpec, Toleration,
            },
        },
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    },
    runtime::{Action, Change, Controller, ObjectKey, Store, Writer},
    status::Reason,
};
use tracing::debug;

use super::{
    Context, Stop,
    expectations::Expectations,
    pods::{self, BY_CONTROLLER},
    replicaset::{BURST_REPLICAS, slow_start_batch, status_differs},
    runner::{WORKERS, feed, wait_for_cache},
    writes::{ClientWrites, Writes, create_pod},
};
use crate::{
    events::EventType,
    scheduler::plugins::{node_affinity::term_matches, taint_toleration::tolerates},
};

/// The label naming the template revision a daemon pod was made from.
pub const REVISION_HASH: &str = "controller-revision-hash";

/// Why a DaemonSet could not be synced (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum DaemonSetError {
    #[error("{key}: {action} failed")]
    Write {
        key: ObjectKey,
        action: String,
        #[source]
        source: ClientError,
    },
}

/// The DaemonSet sync over caches of DaemonSets, nodes and pods.
#[derive(Debug)]
pub struct DaemonSetSync<W> {
    pub writes: W,
    pub daemon_sets: Store<DaemonSet>,
    pub nodes: Store<Node>,
    pub pods: Store<Pod>,
    pub expectations: Arc<Expectations>,
}

/// The tolerations every daemon pod gets (Kubernetes' `AddOrUpdateDaemonPodTolerations`):
/// it stays on not-ready and unreachable nodes and ignores pressure and cordoning.
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let toleration = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut all = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        all.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    all
}

/// The template's tolerations plus the default daemon ones.
fn all_tolerations(template: &PodTemplateSpec) -> Vec<Toleration> {
    let spec = template.spec.clone().unwrap_or_default();
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    for default in default_tolerations(spec.host_network == Some(true)) {
        if !tolerations.contains(&default) {
            tolerations.push(default);
        }
    }
    tolerations
}

/// Where a daemon pod may go on `node`: (should run there, may keep running there).
/// NoSchedule taints keep new pods off; only NoExecute ones evict running pods.
pub fn placement(template: &PodTemplateSpec, node: &Node) -> (bool, bool) {
    let spec = template.spec.clone().unwrap_or_default();
    let labels = pods::labels(&node.metadata);
    let name = node.metadata.name.clone().unwrap_or_default();
    let selected = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
        && spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_none_or(|s| {
                s.node_selector_terms
                    .iter()
                    .any(|t| term_matches(t, &labels, &name))
            });
    if !selected {
        return (false, false);
    }
    let tolerations = all_tolerations(template);
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        taints
            .iter()
            .filter(|t| t.effect == effect)
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    let evicted = untolerated("NoExecute");
    (!evicted && !untolerated("NoSchedule"), !evicted)
}

/// The template's pod for `node`: pinned by required node affinity on `metadata.name`
/// (each existing term gets the field; none becomes one term) and tolerating the defaults.
pub fn pod_for_node(
    template: &PodTemplateSpec,
    namespace: &str,
    generate_name: &str,
    owner: &skiff_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    node: &str,
    hash: &str,
) -> Value {
    let mut template = template.clone();
    template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(REVISION_HASH.into(), hash.into());
    let spec = template.spec.get_or_insert_with(Default::default);
    spec.tolerations = Some(all_tolerations(&PodTemplateSpec {
        metadata: None,
        spec: Some(spec.clone()),
    }));
    let pin = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.into()]),
    };
    let required = spec
        .affinity
        .get_or_insert_with(Affinity::default)
        .node_affinity
        .get_or_insert_with(NodeAffinity::default)
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields = Some(vec![pin.clone()]);
    }
    pods::pod_from_template(&template, namespace, generate_name, owner)
}

/// The node a daemon pod is for: its `spec.nodeName`, or the node its affinity pins.
fn node_of(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(node);
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH)
        .map(String::as_str)
}

impl<W: Writes> DaemonSetSync<W> {
    /// Converges DaemonSet `key` at `now`.
    ///
    /// # Errors
    /// When a write fails; the key is retried.
    pub async fn reconcile(
        &self,
        key: &ObjectKey,
        now: Timestamp,
    ) -> Result<Action, DaemonSetError> {
        let Some(ds) = self.daemon_sets.get(key) else {
            self.expectations.forget(key);
            return Ok(Action::Done);
        };
        let spec = ds.spec.clone().unwrap_or_default();
        let hash = pods::template_hash(
            &spec.template,
            ds.status.as_ref().and_then(|s| s.collision_count),
        );
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        let mut doomed: Vec<Arc<Pod>> = Vec::new();
        for pod in self.pods.by_index(BY_CONTROLLER, &uid) {
            if pods::is_terminating(&pod.metadata) {
                continue;
            }
            if pods::has_phase(&pod, "Failed") {
                // A failed daemon pod is replaced on its node.
                doomed.push(pod);
                continue;
            }
            match node_of(&pod) {
                Some(node) => by_node.entry(node).or_default().push(pod),
                None => doomed.push(pod),
            }
        }

        let mut wanted_nodes = Vec::new();
        let mut creates = Vec::new();
        let (mut desired, mut current, mut misscheduled, mut ready, mut available, mut updated) =
            (0, 0, 0, 0, 0, 0);
        let mut unavailable_nodes = 0;
        let mut old_available = Vec::new();
        let mut old_unavailable = Vec::new();
        for node in self.nodes.list() {
            let name = node.metadata.name.clone().unwrap_or_default();
            let (should_run, may_continue) = placement(&spec.template, &node);
            let mut here = by_node.remove(&name).unwrap_or_default();
            here.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
            if !here.is_empty() && !should_run {
                misscheduled += 1;
            }
            if !may_continue || (!should_run && here.is_empty()) {
                doomed.extend(here);
                continue;
            }
            if !should_run {
                continue;
            }
            desired += 1;
            wanted_nodes.push(name.clone());
            if here.len() > 1 {
                // Keep the oldest.
                doomed.extend(here.drain(1..));
            }
            let Some(pod) = here.pop() else {
                creates.push(name);
                unavailable_nodes += 1;
                continue;
            };
            current += 1;
            let is_new = hash_of(&pod) == Some(hash.as_str());
            updated += usize::from(is_new);
            ready += usize::from(pods::is_ready(&pod));
            if pods::is_available(&pod, min_ready, now) {
                available += 1;
                if !is_new {
                    old_available.push(pod);
                }
            } else {
                unavailable_nodes += 1;
                if !is_new {
                    old_unavailable.push(pod);
                }
            }
        }
        // Pods for nodes that no longer exist.
        doomed.extend(by_node.into_values().flatten());

        let rolling = spec
            .update_strategy
            .as_ref()
            .filter(|s| s.type_.as_deref() != Some("OnDelete"))
            .map(|s| s.rolling_update.clone().unwrap_or_default());
        if let Some(rolling) = rolling {
            // Old pods that serve nothing go first; they cost no availability.
            doomed.extend(old_unavailable);
            let max_unavailable =
                pods::scaled_value(rolling.max_unavailable.as_ref(), desired, true).max(1);
            let mut budget = usize::try_from(max_unavailable)
                .unwrap_or(0)
                .saturating_sub(unavailable_nodes);
            old_available.sort_by(|a, b| pods::deletion_order(a, b));
            for pod in old_available {
                if budget == 0 {
                    break;
                }
                budget -= 1;
                doomed.push(pod);
            }
        }

        let mut result = Ok(());
        if self.expectations.satisfied(key) && !pods::is_terminating(&ds.metadata) {
            creates.truncate(BURST_REPLICAS);
            doomed.truncate(BURST_REPLICAS);
            result = self.apply(key, &ds, &hash, &creates, &doomed).await;
        }
        let status = json!({
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": current,
            "numberMisscheduled": misscheduled,
            "numberReady": ready,
            "numberAvailable": available,
            "numberUnavailable": (desired - available.min(desired)),
            "updatedNumberScheduled": updated,
            "observedGeneration": ds.metadata.generation.unwrap_or(0),
        });
        let old = serde_json::to_value(ds.status.clone().unwrap_or_default()).unwrap_or_default();
        if status_differs(&old, &status) {
            self.writes
                .patch(
                    "daemonsets",
                    &key.namespace,
                    &key.name,
                    json!({ "status": status }),
                    "status",
                )
                .await
                .map_err(|source| DaemonSetError::Write {
                    key: key.clone(),
                    action: "updating status".into(),
                    source,
                })?;
        }
        result?;
        let soonest = self
            .pods
            .by_index(BY_CONTROLLER, &uid)
            .iter()
            .filter_map(|p| pods::until_available(p, min_ready, now))
            .min();
        Ok(soonest.map_or(Action::Done, |d| {
            Action::RequeueAfter(Duration::try_from(d).unwrap_or_default() + Duration::from_secs(1))
        }))
    }

    async fn apply(
        &self,
        key: &ObjectKey,
        ds: &DaemonSet,
        hash: &str,
        creates: &[String],
        doomed: &[Arc<Pod>],
    ) -> Result<(), DaemonSetError> {
        let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
        let unique: HashSet<String> = doomed.iter().map(|p| uid(p)).collect();
        self.expectations
            .expect(key, creates.len(), unique.iter().cloned());
        let object = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": ds.metadata});
        let owner = pods::controller_reference("apps/v1", "DaemonSet", &ds.metadata);
        let template = ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (created, error) = slow_start_batch(creates.len(), || async {
            let node = &creates[next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)];
            let pod = pod_for_node(
                &template,
                &key.namespace,
                &format!("{}-", key.name),
                &owner,
                node,
                hash,
            );
            create_pod(&self.writes, &self.expectations, key, &object, pod).await
        })
        .await;
        for _ in created + usize::from(error.is_some())..creates.len() {
            self.expectations.creation_observed(key);
        }
        let mut seen = HashSet::new();
        let results = join_all(
            doomed
                .iter()
                .filter(|p| seen.insert(uid(p)))
                .map(|pod| async {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let result = self
                        .writes
                        .delete("pods", &key.namespace, &name, DeleteParams::default())
                        .await;
                    match &result {
                        Ok(_) => {
                            self.writes
                                .event(
                                    object.clone(),
                                    EventType::Normal,
                                    "SuccessfulDelete",
                                    &format!("Deleted pod: {name}"),
                                )
                                .await;
                        }
                        Err(_) => self.expectations.deletion_observed(key, &uid(pod)),
                    }
                    result
                }),
        )
        .await;
        let failure = error.or_else(|| {
            results
                .into_iter()
                .filter_map(Result::err)
                .find(|e| !e.is(Reason::NotFound))
        });
        match failure {
            Some(source) => Err(DaemonSetError::Write {
                key: key.clone(),
                action: "creating or deleting daemon pods".into(),
                source,
            }),
            None => Ok(()),
        }
    }
}

fn owning_daemon_set(meta: &ObjectMeta) -> Option<ObjectKey> {
    pods::controller_of(meta)
        .filter(|r| r.kind == "DaemonSet")
        .map(|r| ObjectKey::new(meta.namespace.clone().unwrap_or_default(), r.name.clone()))
}

/// Runs the DaemonSet controller until `stop`.
pub fn run(context: Context, stop: Stop) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let client = context.client.clone();
        let daemon_sets = context.informers.informer("daemonsets", Writer::new());
        let nodes = context.informers.informer("nodes", Writer::new());
        let pod_informer = context.informers.informer("pods", pods::indexed_pods());
        let sync = Arc::new(DaemonSetSync {
            writes: ClientWrites::new(client, "daemonset-controller", &context.identity),
            daemon_sets: daemon_sets.store(),
            nodes: nodes.store(),
            pods: pod_informer.store(),
            expectations: Arc::default(),
        });
        let queue = context.queue("daemonset");
        let feeds = [
            {
                let store = daemon_sets.store();
                feed(
                    daemon_sets.subscribe(),
                    queue.clone(),
                    move |change, queue| match change.object() {
                        Some(ds) => queue.add(ObjectKey::of(&**ds)),
                        None => store.keys().into_iter().for_each(|k| queue.add(k)),
                    },
                )
            },
            {
                // Any node change may change where every DaemonSet runs.
                let store = daemon_sets.store();
                feed(nodes.subscribe(), queue.clone(), move |_, queue| {
                    store.keys().into_iter().for_each(|k| queue.add(k));
                })
            },
            {
                let (store, sync) = (daemon_sets.store(), Arc::clone(&sync));
                feed(
                    pod_informer.subscribe(),
                    queue.clone(),
                    move |change, queue| {
                        if let Change::Resynced = change {
                            store.keys().into_iter().for_each(|k| queue.add(k));
                        } else if let Some(key) =
                            sync.expectations.observe_pod(&change, owning_daemon_set)
                        {
                            queue.add(key);
                        }
                    },
                )
            },
        ];
        wait_for_cache("daemonset", &sync.daemon_sets).await;
        wait_for_cache("daemonset", &sync.nodes).await;
        wait_for_cache("daemonset", &sync.pods).await;
        Controller::new(queue)
            .graceful_shutdown_on(stop.wait())
            .run(WORKERS, move |key: ObjectKey| {
                let sync = Arc::clone(&sync);
                async move {
                    let result = sync.reconcile(&key, Timestamp::now()).await;
                    if let Err(error) = &result {
                        debug!(%key, %error, "daemonset sync failed");
                    }
                    result
                }
            })
            .await;
        feeds.iter().for_each(|f| f.abort());
    })
}

#[cfg(test)]
mod tests {
    use skiff_api::{
        k8s_openapi::{
            api::{
                apps::v1::{
                    DaemonSetSpec, DaemonSetStatus, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
                },
                core::v1::{NodeSpec, Taint},
            },
            apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
        },
        runtime::Writer,
    };

    use super::*;
    use crate::controllers::{pods::testing::*, replicaset::label_map, writes::fake::FakeWrites};

    fn ds(image: &str) -> DaemonSet {
        let mut t = template(&[("app", "agent")], image);
        t.spec.as_mut().unwrap().node_selector = Some(label_map(&[("role", "worker")]));
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("default".into()),
                uid: Some("ds-uid".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DaemonSetSpec {
                selector: LabelSelector {
                    match_labels: Some(label_map(&[("app", "agent")])),
                    ..Default::default()
                },
                template: t,
                update_strategy: Some(DaemonSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDaemonSet {
                        max_unavailable: Some(IntOrString::Int(1)),
                        max_surge: None,
                    }),
                }),
                ..Default::default()
            }),
            status: Some(DaemonSetStatus::default()),
        }
    }

    fn node(name: &str, role: &str, taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(label_map(&[("role", role)])),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    /// A ready daemon pod on `node` made from the template of `ds` at `image`.
    fn daemon_pod(name: &str, node: &str, image: &str) -> Pod {
        let owner = pods::controller_reference("apps/v1", "DaemonSet", &ds(image).metadata);
        let hash = pods::template_hash(&ds(image).spec.unwrap().template, None);
        ready(
            pod(
                name,
                &[("app", "agent"), (REVISION_HASH, &hash)],
                Some(&owner),
                0,
            ),
            node,
            0,
        )
    }

    fn sync(ds: DaemonSet, nodes: &[Node], pods: &[Pod]) -> DaemonSetSync<FakeWrites> {
        DaemonSetSync {
            writes: FakeWrites::default(),
            daemon_sets: store(Writer::new(), &[ds]),
            nodes: store(Writer::new(), nodes),
            pods: store(pods::indexed_pods(), pods),
            expectations: Arc::default(),
        }
    }

    fn key() -> ObjectKey {
        ObjectKey::new("default", "agent")
    }

    fn pinned_node(body: &Value) -> Value {
        body.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0")
            .cloned()
            .unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn daemon_set_puts_one_pod_pinned_to_each_eligible_node() {
        let nodes = [
            node("w1", "worker", vec![]),
            node(
                "w2",
                "worker",
                vec![taint("node.kubernetes.io/unschedulable", "NoSchedule")],
            ),
            node("db", "database", vec![]),
            node("w3", "worker", vec![taint("dedicated", "NoSchedule")]),
        ];
        let s = sync(ds("img:1"), &nodes, &[]);
        s.reconcile(&key(), at(0)).await.unwrap();
        let mut pinned: Vec<_> = s
            .writes
            .of("create", "pods")
            .iter()
            .map(|c| pinned_node(&c.body))
            .collect();
        pinned.sort_by_key(ToString::to_string);
        assert_eq!(
            pinned,
            [json!("w1"), json!("w2")],
            "cordoned w2 is tolerated; db is not selected; w3 is tainted"
        );
        let body = &s.writes.of("create", "pods")[0].body;
        let tolerations = body["spec"]["tolerations"].as_array().unwrap();
        assert!(tolerations.iter().any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"));
        assert!(body["metadata"]["labels"][REVISION_HASH].is_string());
        let status = &s.writes.of("patch-status", "daemonsets")[0].body["status"];
        assert_eq!(status["desiredNumberScheduled"], 2);
        assert_eq!(status["currentNumberScheduled"], 0);
    }

    #[tokio::test(start_paused = true)]
    async fn daemon_set_removes_pods_from_nodes_that_no_longer_fit_or_have_two() {
        let nodes = [
            node("w1", "worker", vec![]),
            node("gone", "database", vec![]),
        ];
        let mut duplicate = daemon_pod("dup", "w1", "img:1");
        duplicate.metadata.creation_timestamp =
            Some(skiff_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(50)));
        let pods = [
            daemon_pod("first", "w1", "img:1"),
            duplicate,
            daemon_pod("misplaced", "gone", "img:1"),
            daemon_pod("nodeless", "deleted-node", "img:1"),
        ];
        let s = sync(ds("img:1"), &nodes, &pods);
        s.reconcile(&key(), at(100)).await.unwrap();
        let mut deleted: Vec<_> = s
            .writes
            .of("delete", "pods")
            .into_iter()
            .map(|c| c.key)
            .collect();
        deleted.sort();
        assert_eq!(
            deleted,
            ["default/dup", "default/misplaced", "default/nodeless"]
        );
        assert!(s.writes.of("create", "pods").is_empty());
        let status = &s.writes.of("patch-status", "daemonsets")[0].body["status"];
        assert_eq!(status["numberMisscheduled"], 1);
        assert_eq!(status["numberReady"], 1);
    }

    #[tokio::test(start_paused = true)]
    async fn rolling_update_replaces_at_most_max_unavailable_old_pods_at_a_time() {
        let nodes = [
            node("w1", "worker", vec![]),
            node("w2", "worker", vec![]),
            node("w3", "worker", vec![]),
        ];
        let pods = [
            daemon_pod("a", "w1", "img:1"),
            daemon_pod("b", "w2", "img:1"),
            daemon_pod("c", "w3", "img:1"),
        ];
        let s = sync(ds("img:2"), &nodes, &pods);
        s.reconcile(&key(), at(100)).await.unwrap();
        assert_eq!(s.writes.of("delete", "pods").len(), 1, "maxUnavailable 1");
        let status = &s.writes.of("patch-status", "daemonsets")[0].body["status"];
        assert_eq!(status["updatedNumberScheduled"], 0);

        // One node is already without a pod: nothing more may go.
        let s = sync(ds("img:2"), &nodes, &pods[..2]);
        s.reconcile(&key(), at(100)).await.unwrap();
        assert!(s.writes.of("delete", "pods").is_empty());
        assert_eq!(s.writes.of("create", "pods").len(), 1);
        assert_eq!(
            pinned_node(&s.writes.of("create", "pods")[0].body),
            json!("w3")
        );
    }

    #[test]
    fn no_execute_taints_evict_while_no_schedule_taints_only_keep_new_pods_off() {
        let t = ds("img:1").spec.unwrap().template;
        assert_eq!(
            placement(&t, &node("w", "worker", vec![taint("x", "NoSchedule")])),
            (false, true)
        );
        assert_eq!(
            placement(&t, &node("w", "worker", vec![taint("x", "NoExecute")])),
            (false, false)
        );
        assert_eq!(
            placement(
                &t,
                &node(
                    "w",
                    "worker",
                    vec![taint("node.kubernetes.io/not-ready", "NoExecute")]
                )
            ),
            (true, true)
        );
        assert_eq!(placement(&t, &node("w", "db", vec![])), (false, false));
    }
}
