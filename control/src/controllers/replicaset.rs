//! The ReplicaSet controller: keeps `spec.replicas` active pods matching the selector,
//! adopting matching orphans and releasing pods that stop matching, creating in slow-start
//! batches and deleting the least useful pods first, and reports what it sees in `status`.

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
        api::{apps::v1::ReplicaSet, core::v1::Pod},
        apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
    },
    runtime::{Action, Change, Controller, ObjectKey, Store, WorkQueue},
    selector::{LabelSelector, SelectorError},
    status::Reason,
};
use tracing::debug;

use super::{
    Context, Stop,
    expectations::Expectations,
    pods::{self, BY_NAMESPACE},
    runner::{WORKERS, feed, wait_for_cache},
    writes::{ClientWrites, Writes, create_pod},
};
use crate::events::EventType;

/// Kubernetes' `BurstReplicas`: at most this many creates or deletes per sync.
pub const BURST_REPLICAS: usize = 500;

/// Why a ReplicaSet could not be synced (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum ReplicaSetError {
    #[error("{key}: spec.selector is not a valid label selector")]
    Selector {
        key: ObjectKey,
        #[source]
        source: SelectorError,
    },
    #[error("{key}: {action} failed")]
    Write {
        key: ObjectKey,
        action: String,
        #[source]
        source: ClientError,
    },
}

/// The ReplicaSet sync over caches of ReplicaSets and pods.
#[derive(Debug)]
pub struct ReplicaSetSync<W> {
    pub writes: W,
    pub replica_sets: Store<ReplicaSet>,
    pub pods: Store<Pod>,
    pub expectations: Arc<Expectations>,
}

impl<W: Writes> ReplicaSetSync<W> {
    /// Converges ReplicaSet `key` at `now`.
    ///
    /// # Errors
    /// When a write fails or the selector is unusable; the key is retried.
    pub async fn reconcile(
        &self,
        key: &ObjectKey,
        now: Timestamp,
    ) -> Result<Action, ReplicaSetError> {
        let Some(rs) = self.replica_sets.get(key) else {
            self.expectations.forget(key);
            return Ok(Action::Done);
        };
        let spec = rs.spec.clone().unwrap_or_default();
        let selector = LabelSelector::from_meta(&spec.selector).map_err(|source| {
            ReplicaSetError::Selector {
                key: key.clone(),
                source,
            }
        })?;
        let owner = pods::controller_reference("apps/v1", "ReplicaSet", &rs.metadata);
        let owned = self.claim_pods(key, &rs, &selector, &owner).await?;
        let mut active: Vec<Arc<Pod>> = owned
            .iter()
            .filter(|p| pods::is_active(p))
            .cloned()
            .collect();

        let mut manage_error = None;
        if self.expectations.satisfied(key) && !pods::is_terminating(&rs.metadata) {
            let want = usize::try_from(spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);
            match self.manage_replicas(key, &rs, &active, want, &owner).await {
                // Pods deleted just now no longer count in the status.
                Ok(deleted) => active
                    .retain(|p| !deleted.contains(p.metadata.uid.as_deref().unwrap_or_default())),
                Err(e) => manage_error = Some(e),
            }
        }

        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let template_labels = spec
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .map(pods::labels)
            .unwrap_or_default();
        let status = json!({
            "replicas": active.len(),
            "fullyLabeledReplicas": active.iter().filter(|p| {
                let labels = pods::labels(&p.metadata);
                template_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            }).count(),
            "readyReplicas": active.iter().filter(|p| pods::is_ready(p)).count(),
            "availableReplicas": active.iter().filter(|p| pods::is_available(p, min_ready, now)).count(),
            "observedGeneration": rs.metadata.generation.unwrap_or(0),
        });
        let current =
            serde_json::to_value(rs.status.clone().unwrap_or_default()).unwrap_or_default();
        if status_differs(&current, &status) {
            self.writes
                .patch(
                    "replicasets",
                    &key.namespace,
                    &key.name,
                    json!({ "status": status }),
                    "status",
                )
                .await
                .map_err(|source| ReplicaSetError::Write {
                    key: key.clone(),
                    action: "updating status".into(),
                    source,
                })?;
        }
        if let Some(error) = manage_error {
            return Err(error);
        }
        // A ready pod becomes available after minReadySeconds without any event: look again.
        let soonest = active
            .iter()
            .filter_map(|p| pods::until_available(p, min_ready, now))
            .min();
        Ok(match soonest {
            Some(wait) => Action::RequeueAfter(
                Duration::try_from(wait).unwrap_or_default() + Duration::from_secs(1),
            ),
            None => Action::Done,
        })
    }

    /// The pods this ReplicaSet controls after adopting matching orphans and releasing
    /// owned pods that no longer match (Kubernetes' `PodControllerRefManager`).
    async fn claim_pods(
        &self,
        key: &ObjectKey,
        rs: &ReplicaSet,
        selector: &LabelSelector,
        owner: &OwnerReference,
    ) -> Result<Vec<Arc<Pod>>, ReplicaSetError> {
        let mut owned = Vec::new();
        for pod in self.pods.by_index(BY_NAMESPACE, &key.namespace) {
            let matches = selector.matches(&pods::labels(&pod.metadata));
            match pods::controller_of(&pod.metadata) {
                Some(r) if r.uid == owner.uid => {
                    if matches || pods::is_terminating(&pod.metadata) {
                        owned.push(pod);
                    } else {
                        self.set_owner(key, &pod, None).await?;
                    }
                }
                Some(_) => {}
                None => {
                    if matches
                        && !pods::is_terminating(&pod.metadata)
                        && !pods::is_terminating(&rs.metadata)
                        && self.set_owner(key, &pod, Some(owner)).await?
                    {
                        owned.push(pod);
                    }
                }
            }
        }
        Ok(owned)
    }

    /// Adopts (`Some`) or releases (`None`) `pod`; false when the pod changed or went away
    /// meanwhile (the next sync sees its new state).
    async fn set_owner(
        &self,
        key: &ObjectKey,
        pod: &Pod,
        owner: Option<&OwnerReference>,
    ) -> Result<bool, ReplicaSetError> {
        let mut refs: Vec<_> = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.controller != Some(true))
            .cloned()
            .collect();
        refs.extend(owner.cloned());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let patch = json!({"metadata": {
            "ownerReferences": refs,
            "resourceVersion": pod.metadata.resource_version,
        }});
        match self
            .writes
            .patch("pods", &key.namespace, &name, patch, "")
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is(Reason::NotFound) || e.is(Reason::Conflict) => Ok(false),
            Err(source) => Err(ReplicaSetError::Write {
                key: key.clone(),
                action: format!(
                    "{} pod {name}",
                    if owner.is_some() {
                        "adopting"
                    } else {
                        "releasing"
                    }
                ),
                source,
            }),
        }
    }

    async fn manage_replicas(
        &self,
        key: &ObjectKey,
        rs: &ReplicaSet,
        active: &[Arc<Pod>],
        want: usize,
        owner: &OwnerReference,
    ) -> Result<HashSet<String>, ReplicaSetError> {
        let object = object_ref(rs);
        if active.len() < want {
            let count = (want - active.len()).min(BURST_REPLICAS);
            let Some(template) = rs.spec.as_ref().and_then(|s| s.template.as_ref()) else {
                return Ok(HashSet::new());
            };
            let pod =
                pods::pod_from_template(template, &key.namespace, &format!("{}-", key.name), owner);
            self.expectations.expect_creations(key, count);
            let (created, error) = slow_start_batch(count, || {
                create_pod(&self.writes, &self.expectations, key, &object, pod.clone())
            })
            .await;
            // Creates never attempted will never be observed either.
            for _ in created + usize::from(error.is_some())..count {
                self.expectations.creation_observed(key);
            }
            if let Some(source) = error {
                return Err(ReplicaSetError::Write {
                    key: key.clone(),
                    action: "creating pods".into(),
                    source,
                });
            }
        } else if active.len() > want {
            let count = (active.len() - want).min(BURST_REPLICAS);
            let mut ranked = active.to_vec();
            ranked.sort_by(|a, b| pods::deletion_order(a, b));
            ranked.truncate(count);
            let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
            self.expectations
                .expect_deletions(key, ranked.iter().map(|p| uid(p)));
            let results = join_all(ranked.iter().map(|pod| async {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let result = self
                    .writes
                    .delete("pods", &key.namespace, &name, DeleteParams::default())
                    .await;
                match result {
                    Ok(_) => {
                        self.writes
                            .event(
                                object.clone(),
                                EventType::Normal,
                                "SuccessfulDelete",
                                &format!("Deleted pod: {name}"),
                            )
                            .await;
                        Ok(uid(pod))
                    }
                    Err(e) if e.is(Reason::NotFound) => {
                        self.expectations.deletion_observed(key, &uid(pod));
                        Ok(uid(pod))
                    }
                    Err(e) => {
                        self.expectations.deletion_observed(key, &uid(pod));
                        self.writes
                            .event(
                                object.clone(),
                                EventType::Warning,
                                "FailedDelete",
                                &format!("Error deleting: {e}"),
                            )
                            .await;
                        Err(e)
                    }
                }
            }))
            .await;
            let mut deleted = HashSet::new();
            for result in results {
                match result {
                    Ok(uid) => {
                        deleted.insert(uid);
                    }
                    Err(source) => {
                        return Err(ReplicaSetError::Write {
                            key: key.clone(),
                            action: "deleting pods".into(),
                            source,
                        });
                    }
                }
            }
            return Ok(deleted);
        }
        Ok(HashSet::new())
    }
}

/// Kubernetes' `slowStartBatch`: runs `count` calls in batches of 1, 2, 4, ... and stops
/// after the first batch with a failure. Returns how many succeeded and the first error.
pub async fn slow_start_batch<F, Fut>(count: usize, call: F) -> (usize, Option<ClientError>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Value, ClientError>>,
{
    let mut done = 0;
    let mut batch = 1;
    while done < count {
        let size = batch.min(count - done);
        let results = join_all((0..size).map(|_| call())).await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        done += size - failed;
        if let Some(error) = results.into_iter().find_map(Result::err) {
            return (done, Some(error));
        }
        batch *= 2;
    }
    (done, None)
}

/// An object reference for events.
fn object_ref(rs: &ReplicaSet) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": rs.metadata})
}

/// Whether any field of `wanted` differs from `current` (absent counts as 0).
pub fn status_differs(current: &Value, wanted: &Value) -> bool {
    wanted.as_object().into_iter().flatten().any(|(k, v)| {
        let have = current.get(k).cloned().unwrap_or(Value::Null);
        let zero = |x: &Value| x.is_null() || *x == json!(0);
        !(have == *v || (zero(&have) && zero(v)))
    })
}

/// The ReplicaSet that controls `meta`, if that is what controls it.
fn owner_key(meta: &ObjectMeta) -> Option<ObjectKey> {
    pods::controller_of(meta)
        .filter(|r| r.kind == "ReplicaSet")
        .map(|r| ObjectKey::new(meta.namespace.clone().unwrap_or_default(), r.name.clone()))
}

/// Every ReplicaSet in the pod's namespace whose selector matches it (orphan adoption).
fn matching_replica_sets(replica_sets: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectKey> {
    let labels = pods::labels(&pod.metadata);
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    replica_sets
        .by_index(BY_NAMESPACE, &namespace)
        .iter()
        .filter(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| LabelSelector::from_meta(&s.selector).ok())
                .is_some_and(|s| !s.is_empty() && s.matches(&labels))
        })
        .map(|rs| ObjectKey::of(&**rs))
        .collect()
}

/// Turns a pod change into ReplicaSet keys, telling expectations what it observed.
fn pod_changed(
    change: Change<Pod>,
    queue: &WorkQueue<ObjectKey>,
    replica_sets: &Store<ReplicaSet>,
    expectations: &Expectations,
) {
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    let enqueue_for = |pod: &Pod| match owner_key(&pod.metadata) {
        Some(key) => queue.add(key),
        None if pods::controller_of(&pod.metadata).is_none() => {
            matching_replica_sets(replica_sets, pod)
                .into_iter()
                .for_each(|k| queue.add(k));
        }
        None => {}
    };
    match change {
        Change::Added(pod) => {
            if let Some(key) = owner_key(&pod.metadata) {
                if pods::is_terminating(&pod.metadata) {
                    expectations.deletion_observed(&key, &uid(&pod));
                } else {
                    expectations.creation_observed(&key);
                }
            }
            enqueue_for(&pod);
        }
        Change::Updated { old, new } => {
            if let Some(key) = owner_key(&new.metadata)
                && pods::is_terminating(&new.metadata)
                && !pods::is_terminating(&old.metadata)
            {
                expectations.deletion_observed(&key, &uid(&new));
            }
            if old.metadata.labels != new.metadata.labels
                || old.metadata.owner_references != new.metadata.owner_references
            {
                enqueue_for(&old);
            }
            enqueue_for(&new);
        }
        Change::Deleted(pod) => {
            if let Some(key) = owner_key(&pod.metadata) {
                expectations.deletion_observed(&key, &uid(&pod));
            }
            enqueue_for(&pod);
        }
        Change::Resynced => replica_sets.keys().into_iter().for_each(|k| queue.add(k)),
    }
}

/// Runs the ReplicaSet controller until `stop`.
pub fn run(context: Context, stop: Stop) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let client = context.client.clone();
        let rs_informer = context
            .informers
            .informer("replicasets", pods::indexed(|rs: &ReplicaSet| &rs.metadata));
        let pod_informer = context.informers.informer("pods", pods::indexed_pods());
        let sync = Arc::new(ReplicaSetSync {
            writes: ClientWrites::new(client, "replicaset-controller", &context.identity),
            replica_sets: rs_informer.store(),
            pods: pod_informer.store(),
            expectations: Arc::default(),
        });
        let queue = context.queue("replicaset");
        let rs_store = rs_informer.store();
        let feeds = [
            feed(
                rs_informer.subscribe(),
                queue.clone(),
                move |change, queue| match change.object() {
                    Some(rs) => queue.add(ObjectKey::of(&**rs)),
                    None => rs_store.keys().into_iter().for_each(|k| queue.add(k)),
                },
            ),
            {
                let (store, sync) = (rs_informer.store(), Arc::clone(&sync));
                feed(
                    pod_informer.subscribe(),
                    queue.clone(),
                    move |change, queue| {
                        pod_changed(change, queue, &store, &sync.expectations);
                    },
                )
            },
        ];
        wait_for_cache("replicaset", &sync.replica_sets).await;
        wait_for_cache("replicaset", &sync.pods).await;
        Controller::new(queue)
            .graceful_shutdown_on(stop.wait())
            .run(WORKERS, move |key: ObjectKey| {
                let sync = Arc::clone(&sync);
                async move {
                    let result = sync.reconcile(&key, Timestamp::now()).await;
                    if let Err(error) = &result {
                        debug!(%key, %error, "replicaset sync failed");
                    }
                    result
                }
            })
            .await;
        feeds.iter().for_each(|f| f.abort());
    })
}

/// Labels as a map, for tests and callers that build selectors.
pub fn label_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use skiff_api::k8s_openapi::{
        api::apps::v1::{ReplicaSetSpec, ReplicaSetStatus},
        apimachinery::pkg::apis::meta::v1::LabelSelector as MetaSelector,
    };

    use super::*;
    use crate::controllers::{pods::testing::*, writes::fake::FakeWrites};

    fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("rs-uid".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: Some(min_ready),
                selector: MetaSelector {
                    match_labels: Some(label_map(&[("app", "web")])),
                    ..Default::default()
                },
                template: Some(template(&[("app", "web")], "img:1")),
            }),
            status: Some(ReplicaSetStatus::default()),
        }
    }

    fn owner() -> OwnerReference {
        pods::controller_reference("apps/v1", "ReplicaSet", &rs(1, 0).metadata)
    }

    fn sync(rs: ReplicaSet, pods: &[Pod]) -> ReplicaSetSync<FakeWrites> {
        ReplicaSetSync {
            writes: FakeWrites::default(),
            replica_sets: store(pods::indexed(|r: &ReplicaSet| &r.metadata), &[rs]),
            pods: store(pods::indexed_pods(), pods),
            expectations: Arc::default(),
        }
    }

    fn key() -> ObjectKey {
        ObjectKey::new("default", "web")
    }

    #[tokio::test(start_paused = true)]
    async fn replica_set_creates_missing_pods_from_its_template_with_a_controller_reference() {
        let s = sync(
            rs(3, 0),
            &[pod("web-a", &[("app", "web")], Some(&owner()), 0)],
        );
        s.reconcile(&key(), at(10)).await.unwrap();
        let creates = s.writes.of("create", "pods");
        assert_eq!(creates.len(), 2);
        let body = &creates[0].body;
        assert_eq!(body["metadata"]["generateName"], "web-");
        assert_eq!(body["metadata"]["labels"]["app"], "web");
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "rs-uid");
        assert_eq!(body["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(s.writes.of("event", "SuccessfulCreate").len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn replica_set_never_creates_again_while_its_creates_are_unobserved() {
        let s = sync(rs(3, 0), &[]);
        s.reconcile(&key(), at(0)).await.unwrap();
        assert_eq!(s.writes.of("create", "pods").len(), 3);
        s.reconcile(&key(), at(1)).await.unwrap();
        assert_eq!(
            s.writes.of("create", "pods").len(),
            3,
            "the cache has not seen the pods yet; nothing more is created"
        );
        for _ in 0..3 {
            s.expectations.creation_observed(&key());
        }
        s.reconcile(&key(), at(2)).await.unwrap();
        assert_eq!(
            s.writes.of("create", "pods").len(),
            6,
            "the stale cache is trusted once observed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn replica_set_creates_in_slow_start_batches_and_stops_at_the_first_failure() {
        let s = sync(rs(10, 0), &[]);
        *s.writes.fail_creates_after.lock().unwrap() = Some(2);
        let error = s.reconcile(&key(), at(0)).await.unwrap_err();
        assert!(error.to_string().contains("creating pods"), "{error}");
        // Batch 1: one create; batch 2: one succeeds, one fails; nothing after.
        assert_eq!(s.writes.of("create", "pods").len(), 2);
        assert_eq!(s.writes.of("event", "FailedCreate").len(), 1);
        assert!(
            !s.expectations.satisfied(&key()),
            "the two successful creates are still awaited"
        );
        s.expectations.creation_observed(&key());
        s.expectations.creation_observed(&key());
        assert!(
            s.expectations.satisfied(&key()),
            "failed and skipped creates are not awaited"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn replica_set_scales_down_by_deleting_unscheduled_then_not_ready_then_newest_pods() {
        let o = owner();
        let l = [("app", "web")];
        let pods = [
            ready(pod("old-ready", &l, Some(&o), 0), "n1", 5),
            ready(pod("new-ready", &l, Some(&o), 9), "n1", 20),
            with_phase(pod("unscheduled", &l, Some(&o), 1), "Pending"),
            {
                let mut p = with_phase(pod("running-not-ready", &l, Some(&o), 1), "Running");
                p.spec.as_mut().unwrap().node_name = Some("n1".into());
                p
            },
        ];
        let s = sync(rs(1, 0), &pods);
        s.reconcile(&key(), at(30)).await.unwrap();
        let mut deleted: Vec<_> = s
            .writes
            .of("delete", "pods")
            .into_iter()
            .map(|c| c.key)
            .collect();
        deleted.sort();
        assert_eq!(
            deleted,
            [
                "default/new-ready",
                "default/running-not-ready",
                "default/unscheduled"
            ]
        );
        assert!(!s.expectations.satisfied(&key()));
        let status = &s.writes.of("patch-status", "replicasets")[0].body["status"];
        assert_eq!(
            status["replicas"], 1,
            "pods deleted just now no longer count"
        );
        assert_eq!(status["availableReplicas"], 1);
    }

    #[tokio::test(start_paused = true)]
    async fn replica_set_adopts_matching_orphans_and_releases_pods_that_stop_matching() {
        let pods = [
            pod("orphan", &[("app", "web")], None, 0),
            pod("relabelled", &[("app", "other")], Some(&owner()), 0),
            pod(
                "someone-elses",
                &[("app", "web")],
                Some(&OwnerRefOther::other()),
                0,
            ),
        ];
        let s = sync(rs(1, 0), &pods);
        s.reconcile(&key(), at(0)).await.unwrap();
        let patches = s.writes.of("patch", "pods");
        assert_eq!(patches.len(), 2);
        let adopt = patches.iter().find(|c| c.key == "default/orphan").unwrap();
        assert_eq!(
            adopt.body["metadata"]["ownerReferences"][0]["uid"],
            "rs-uid"
        );
        assert_eq!(
            adopt.body["metadata"]["resourceVersion"], "1",
            "adoption is pinned"
        );
        let release = patches
            .iter()
            .find(|c| c.key == "default/relabelled")
            .unwrap();
        assert_eq!(release.body["metadata"]["ownerReferences"], json!([]));
        assert!(
            s.writes.of("create", "pods").is_empty(),
            "the adopted orphan counts"
        );
    }

    struct OwnerRefOther;
    impl OwnerRefOther {
        fn other() -> OwnerReference {
            let mut o = owner();
            o.uid = "another".into();
            o.name = "another".into();
            o
        }
    }

    #[tokio::test(start_paused = true)]
    async fn replica_set_status_counts_ready_and_available_pods_and_looks_again_after_min_ready_seconds()
     {
        let o = owner();
        let l = [("app", "web")];
        let pods = [
            ready(pod("long-ready", &l, Some(&o), 0), "n1", 0),
            ready(pod("just-ready", &l, Some(&o), 0), "n1", 95),
            pod("pending", &[("app", "web"), ("extra", "x")], Some(&o), 0),
            with_phase(pod("done", &l, Some(&o), 0), "Succeeded"),
        ];
        let s = sync(rs(3, 10), &pods);
        let action = s.reconcile(&key(), at(100)).await.unwrap();
        let status = &s.writes.of("patch-status", "replicasets")[0].body["status"];
        assert_eq!(status["replicas"], 3);
        assert_eq!(status["fullyLabeledReplicas"], 3);
        assert_eq!(status["readyReplicas"], 2);
        assert_eq!(status["availableReplicas"], 1);
        assert_eq!(status["observedGeneration"], 3);
        assert_eq!(action, Action::RequeueAfter(Duration::from_secs(6)));
    }

    #[tokio::test(start_paused = true)]
    async fn replica_set_being_deleted_creates_nothing() {
        let mut r = rs(3, 0);
        r.metadata.deletion_timestamp =
            Some(skiff_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(0)));
        let s = sync(r, &[pod("orphan", &[("app", "web")], None, 0)]);
        s.reconcile(&key(), at(1)).await.unwrap();
        assert!(s.writes.of("create", "pods").is_empty());
        assert!(
            s.writes.of("patch", "pods").is_empty(),
            "no adoption either"
        );
    }

    #[test]
    fn status_comparison_treats_absent_as_zero() {
        assert!(!status_differs(&json!({}), &json!({"replicas": 0})));
        assert!(status_differs(
            &json!({"replicas": 1}),
            &json!({"replicas": 0})
        ));
    }
}
