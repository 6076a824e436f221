//! The garbage collector: the ownerReferences graph over every resource type (metadata
//! only). It deletes dependents whose owners are all gone (background propagation), and
//! finishes deletions the API server left to it: `foregroundDeletion` (delete the
//! dependents, remove the finalizer once no blocking dependent is left) and `orphan`
//! (take the owner out of each dependent's ownerReferences, then remove the finalizer).

use std::{collections::BTreeMap, fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_api::{
    client::{ClientError, DeleteParams},
    k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
    resources::{self, ResourceId, ResourceType},
    runtime::{Action, Change, Controller, Informer, ObjectKey, Store, Writer},
    status::Reason,
};
use tracing::debug;

use super::{
    Context, Stop,
    pods::is_terminating,
    runner::{feed, wait_for_cache},
    writes::{ClientWrites, Writes},
};

/// The store index of objects by the uid of each of their owners.
const BY_OWNER: &str = "owner-uid";
/// The store index of objects by their own uid.
const BY_UID: &str = "uid";
/// The finalizer of a foreground deletion.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of an orphaning deletion.
pub const ORPHAN: &str = "orphan";
/// How soon to look again at a dependent whose owner the cache does not show yet.
const CACHE_LAG_RETRY: Duration = Duration::from_secs(1);
/// kube-controller-manager's `--concurrent-gc-syncs`.
const GC_WORKERS: usize = 20;

/// Any object, by its metadata only.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct PartialObject {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// Names one object of one type: the garbage collector's queue key.
#[derive(Clone, Debug)]
pub struct Node {
    pub resource: &'static ResourceType,
    pub key: ObjectKey,
}

impl PartialEq for Node {
    fn eq(&self, other: &Self) -> bool {
        self.resource.plural == other.resource.plural && self.key == other.key
    }
}

impl Eq for Node {}

impl std::hash::Hash for Node {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.resource.plural.hash(state);
        self.key.hash(state);
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.resource.plural, self.key)
    }
}

/// Why an object could not be processed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum GarbageCollectorError {
    #[error("{node}: {action} failed")]
    Write {
        node: Node,
        action: String,
        #[source]
        source: ClientError,
    },
}

/// A metadata store indexed by owner uid and own uid.
pub fn graph_writer() -> Writer<PartialObject> {
    Writer::new()
        .with_index(BY_OWNER, |o: &PartialObject| {
            o.metadata
                .owner_references
                .iter()
                .flatten()
                .map(|r| r.uid.clone())
                .collect()
        })
        .with_index(BY_UID, |o: &PartialObject| {
            o.metadata.uid.clone().into_iter().collect()
        })
}

/// The types whose objects the collector follows: every served type but Events.
pub fn collected_types() -> impl Iterator<Item = &'static ResourceType> {
    resources::RESOURCES
        .iter()
        .filter(|r| r.id != ResourceId::Event)
}

/// The garbage collector over one metadata store per type.
#[derive(Debug)]
pub struct GarbageCollector<W> {
    pub writes: W,
    pub graph: BTreeMap<&'static str, (&'static ResourceType, Store<PartialObject>)>,
}

impl<W: Writes> GarbageCollector<W> {
    fn get(&self, node: &Node) -> Option<Arc<PartialObject>> {
        self.graph.get(node.resource.plural)?.1.get(&node.key)
    }

    /// Every object that names `uid` among its owners.
    fn dependents(&self, uid: &str) -> Vec<(Node, Arc<PartialObject>)> {
        self.graph
            .values()
            .flat_map(|(resource, store)| {
                store.by_index(BY_OWNER, uid).into_iter().map(move |o| {
                    (
                        Node {
                            resource,
                            key: ObjectKey::from_meta(&o.metadata),
                        },
                        o,
                    )
                })
            })
            .collect()
    }

    /// The owners of `object` the graph knows, as nodes.
    fn owners(&self, object: &PartialObject) -> Vec<Node> {
        object
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter_map(|r| {
                let resource = resources::lookup_kind(&r.api_version, &r.kind).ok()?;
                let (_, store) = self.graph.get(resource.plural)?;
                let owner = store.by_index(BY_UID, &r.uid).into_iter().next()?;
                Some(Node {
                    resource,
                    key: ObjectKey::from_meta(&owner.metadata),
                })
            })
            .collect()
    }

    /// Processes one object.
    ///
    /// # Errors
    /// When a write fails or a live check cannot be made; the object is retried.
    pub async fn reconcile(&self, node: &Node) -> Result<Action, GarbageCollectorError> {
        let Some(object) = self.get(node) else {
            return Ok(Action::Done);
        };
        let finalizers = object.metadata.finalizers.clone().unwrap_or_default();
        if is_terminating(&object.metadata) {
            if finalizers.iter().any(|f| f == ORPHAN) {
                return self.orphan_dependents(node, &object).await;
            }
            if finalizers.iter().any(|f| f == FOREGROUND) {
                return self.delete_dependents_first(node, &object).await;
            }
            return Ok(Action::Done);
        }
        self.collect_if_owners_gone(node, &object).await
    }

    async fn orphan_dependents(
        &self,
        node: &Node,
        object: &PartialObject,
    ) -> Result<Action, GarbageCollectorError> {
        let uid = object.metadata.uid.clone().unwrap_or_default();
        for (dependent, meta) in self.dependents(&uid) {
            let kept: Vec<&OwnerReference> = meta
                .metadata
                .owner_references
                .iter()
                .flatten()
                .filter(|r| r.uid != uid)
                .collect();
            let patch = json!({"metadata": {"ownerReferences": kept,
                "resourceVersion": meta.metadata.resource_version}});
            self.patch(&dependent, patch, "removing an orphaned owner reference")
                .await?;
        }
        self.remove_finalizer(node, object, ORPHAN).await
    }

    async fn delete_dependents_first(
        &self,
        node: &Node,
        object: &PartialObject,
    ) -> Result<Action, GarbageCollectorError> {
        let uid = object.metadata.uid.clone().unwrap_or_default();
        let mut blocking = 0;
        for (dependent, meta) in self.dependents(&uid) {
            let blocks = meta
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid && r.block_owner_deletion == Some(true));
            blocking += usize::from(blocks);
            if is_terminating(&meta.metadata) {
                continue;
            }
            // Blocking dependents go in the foreground too, so that the whole tree is
            // gone before the owner; pods have no dependents to wait for.
            let policy = if blocks && dependent.resource.id != ResourceId::Pod {
                "Foreground"
            } else {
                "Background"
            };
            self.delete(&dependent, policy, &meta).await?;
        }
        if blocking > 0 {
            return Ok(Action::Done);
        }
        self.remove_finalizer(node, object, FOREGROUND).await
    }

    /// A dependent whose owners are all gone is deleted; one with some owners gone loses
    /// those references. An owner missing from the cache is confirmed with a live read.
    async fn collect_if_owners_gone(
        &self,
        node: &Node,
        object: &PartialObject,
    ) -> Result<Action, GarbageCollectorError> {
        let refs = object.metadata.owner_references.clone().unwrap_or_default();
        if refs.is_empty() {
            return Ok(Action::Done);
        }
        let mut dangling = Vec::new();
        for r in &refs {
            let Ok(resource) = resources::lookup_kind(&r.api_version, &r.kind) else {
                continue;
            };
            let Some((_, store)) = self.graph.get(resource.plural) else {
                continue;
            };
            if !store.by_index(BY_UID, &r.uid).is_empty() {
                continue;
            }
            let namespace = if resource.namespaced() {
                node.key.namespace.as_str()
            } else {
                ""
            };
            match self.writes.get(resource.plural, namespace, &r.name).await {
                Ok(live) if live["metadata"]["uid"] == r.uid.as_str() => {
                    // The cache has not caught up with the owner yet.
                    return Ok(Action::RequeueAfter(CACHE_LAG_RETRY));
                }
                Ok(_) => dangling.push(r.uid.clone()),
                Err(e) if e.is(Reason::NotFound) => dangling.push(r.uid.clone()),
                Err(source) => {
                    return Err(GarbageCollectorError::Write {
                        node: node.clone(),
                        action: format!("reading owner {} {}", r.kind, r.name),
                        source,
                    });
                }
            }
        }
        if dangling.is_empty() {
            return Ok(Action::Done);
        }
        if dangling.len() == refs.len() {
            self.delete(node, "Background", object).await?;
        } else {
            let kept: Vec<&OwnerReference> =
                refs.iter().filter(|r| !dangling.contains(&r.uid)).collect();
            let patch = json!({"metadata": {"ownerReferences": kept,
                "resourceVersion": object.metadata.resource_version}});
            self.patch(node, patch, "removing dangling owner references")
                .await?;
        }
        Ok(Action::Done)
    }

    async fn delete(
        &self,
        node: &Node,
        policy: &str,
        object: &PartialObject,
    ) -> Result<(), GarbageCollectorError> {
        let params = DeleteParams {
            propagation_policy: policy.into(),
            precondition_resource_version: object
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default(),
            ..Default::default()
        };
        match self
            .writes
            .delete(
                node.resource.plural,
                &node.key.namespace,
                &node.key.name,
                params,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is(Reason::NotFound) => Ok(()),
            Err(source) => Err(GarbageCollectorError::Write {
                node: node.clone(),
                action: format!("deleting ({policy})"),
                source,
            }),
        }
    }

    async fn patch(
        &self,
        node: &Node,
        patch: serde_json::Value,
        action: &str,
    ) -> Result<(), GarbageCollectorError> {
        match self
            .writes
            .patch(
                node.resource.plural,
                &node.key.namespace,
                &node.key.name,
                patch,
                "",
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is(Reason::NotFound) => Ok(()),
            Err(source) => Err(GarbageCollectorError::Write {
                node: node.clone(),
                action: action.into(),
                source,
            }),
        }
    }

    async fn remove_finalizer(
        &self,
        node: &Node,
        object: &PartialObject,
        finalizer: &str,
    ) -> Result<Action, GarbageCollectorError> {
        let kept: Vec<&String> = object
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != finalizer)
            .collect();
        let patch = json!({"metadata": {"finalizers": kept,
            "resourceVersion": object.metadata.resource_version}});
        self.patch(node, patch, &format!("removing the {finalizer} finalizer"))
            .await?;
        Ok(Action::Done)
    }
}

/// What a change to `object` of `resource` asks the collector to look at: the object,
/// its owners (a foreground deletion may be waiting on it) and, when it is gone, its
/// dependents (their owner may be gone).
fn affected<W: Writes>(
    collector: &GarbageCollector<W>,
    resource: &'static ResourceType,
    object: &PartialObject,
    deleted: bool,
) -> Vec<Node> {
    let mut nodes = vec![Node {
        resource,
        key: ObjectKey::from_meta(&object.metadata),
    }];
    nodes.extend(collector.owners(object));
    if deleted && let Some(uid) = &object.metadata.uid {
        nodes.extend(collector.dependents(uid).into_iter().map(|(n, _)| n));
    }
    nodes
}

/// Runs the garbage collector until `stop`.
pub fn run(context: Context, stop: Stop) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let client = context.client.clone();
        let informers: Vec<(&'static ResourceType, Arc<Informer<PartialObject>>)> =
            collected_types()
                .map(|r| (r, context.informers.informer(r.plural, graph_writer())))
                .collect();
        let collector = Arc::new(GarbageCollector {
            writes: ClientWrites::new(client, "garbage-collector-controller", &context.identity),
            graph: informers
                .iter()
                .map(|(r, i)| (r.plural, (*r, i.store())))
                .collect(),
        });
        let queue = context.queue("garbagecollector");
        let feeds: Vec<_> = informers
            .iter()
            .map(|(resource, informer)| {
                let (resource, collector, store) =
                    (*resource, Arc::clone(&collector), informer.store());
                feed(informer.subscribe(), queue.clone(), move |change, queue| {
                    let nodes = match &change {
                        Change::Added(o) => affected(&collector, resource, o, false),
                        Change::Updated { new, .. } => affected(&collector, resource, new, false),
                        Change::Deleted(o) => affected(&collector, resource, o, true),
                        Change::Resynced => store
                            .keys()
                            .into_iter()
                            .map(|key| Node { resource, key })
                            .collect(),
                    };
                    nodes.into_iter().for_each(|n| queue.add(n));
                })
            })
            .collect();
        for (_, informer) in &informers {
            wait_for_cache("garbagecollector", &informer.store()).await;
        }
        Controller::new(queue)
            .graceful_shutdown_on(stop.wait())
            .run(GC_WORKERS, move |node: Node| {
                let collector = Arc::clone(&collector);
                async move {
                    let result = collector.reconcile(&node).await;
                    if let Err(error) = &result {
                        debug!(%node, %error, "garbage collection failed");
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
    use serde_json::Value;
    use skiff_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::controllers::{pods::testing::*, writes::fake::FakeWrites};

    fn object(name: &str, uid: &str, owners: &[(&str, &str, &str, bool)]) -> PartialObject {
        PartialObject {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                resource_version: Some("5".into()),
                owner_references: Some(
                    owners
                        .iter()
                        .map(|(kind, name, uid, block)| OwnerReference {
                            api_version: if *kind == "Pod" { "v1" } else { "apps/v1" }.into(),
                            kind: (*kind).into(),
                            name: (*name).into(),
                            uid: (*uid).into(),
                            controller: Some(true),
                            block_owner_deletion: Some(*block),
                        })
                        .collect(),
                ),
                ..Default::default()
            },
        }
    }

    fn deleting(mut o: PartialObject, finalizer: &str) -> PartialObject {
        o.metadata.deletion_timestamp = Some(Time(at(0)));
        o.metadata.finalizers = Some(vec![finalizer.into()]);
        o
    }

    fn gc(
        deployments: &[PartialObject],
        replica_sets: &[PartialObject],
        pods: &[PartialObject],
    ) -> GarbageCollector<FakeWrites> {
        let entry = |id, objects: &[PartialObject]| {
            let r = resources::get(id);
            (r.plural, (r, store(graph_writer(), objects)))
        };
        GarbageCollector {
            writes: FakeWrites::default(),
            graph: [
                entry(ResourceId::Deployment, deployments),
                entry(ResourceId::ReplicaSet, replica_sets),
                entry(ResourceId::Pod, pods),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn node(id: ResourceId, name: &str) -> Node {
        Node {
            resource: resources::get(id),
            key: ObjectKey::new("default", name),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dependent_whose_owner_is_gone_is_deleted_in_the_background() {
        let g = gc(
            &[],
            &[object("rs", "rs-1", &[("Deployment", "web", "d-1", true)])],
            &[],
        );
        g.reconcile(&node(ResourceId::ReplicaSet, "rs"))
            .await
            .unwrap();
        let deletes = g.writes.of("delete", "replicasets");
        assert_eq!(deletes.len(), 1);
        assert_eq!(deletes[0].body["propagationPolicy"], "Background");
    }

    #[tokio::test(start_paused = true)]
    async fn owner_missing_only_from_the_cache_is_confirmed_live_and_spares_the_dependent() {
        let g = gc(
            &[],
            &[object("rs", "rs-1", &[("Deployment", "web", "d-1", true)])],
            &[],
        );
        g.writes.objects.lock().unwrap().insert(
            "deployments/default/web".into(),
            json!({"metadata": {"name": "web", "uid": "d-1"}}),
        );
        let action = g
            .reconcile(&node(ResourceId::ReplicaSet, "rs"))
            .await
            .unwrap();
        assert_eq!(action, Action::RequeueAfter(CACHE_LAG_RETRY));
        assert!(g.writes.of("delete", "replicasets").is_empty());

        // A namesake with another uid is not the owner.
        g.writes.objects.lock().unwrap().insert(
            "deployments/default/web".into(),
            json!({"metadata": {"name": "web", "uid": "d-2"}}),
        );
        g.reconcile(&node(ResourceId::ReplicaSet, "rs"))
            .await
            .unwrap();
        assert_eq!(g.writes.of("delete", "replicasets").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn dependent_with_a_live_owner_left_only_loses_the_dangling_reference() {
        let mut rs = object("rs", "rs-1", &[("Deployment", "web", "d-1", true)]);
        let mut second = rs.metadata.owner_references.clone().unwrap()[0].clone();
        second.name = "other".into();
        second.uid = "d-2".into();
        second.controller = Some(false);
        rs.metadata.owner_references.as_mut().unwrap().push(second);
        let g = gc(&[object("other", "d-2", &[])], &[rs], &[]);
        g.reconcile(&node(ResourceId::ReplicaSet, "rs"))
            .await
            .unwrap();
        assert!(g.writes.of("delete", "replicasets").is_empty());
        let patch = &g.writes.of("patch", "replicasets")[0].body;
        let refs = patch["metadata"]["ownerReferences"].as_array().unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0]["uid"], "d-2");
    }

    #[tokio::test(start_paused = true)]
    async fn foreground_deletion_deletes_dependents_and_keeps_the_finalizer_until_they_are_gone() {
        let d = deleting(object("web", "d-1", &[]), FOREGROUND);
        let rs = object("rs", "rs-1", &[("Deployment", "web", "d-1", true)]);
        let g = gc(std::slice::from_ref(&d), &[rs], &[]);
        g.reconcile(&node(ResourceId::Deployment, "web"))
            .await
            .unwrap();
        let deletes = g.writes.of("delete", "replicasets");
        assert_eq!(deletes.len(), 1);
        assert_eq!(
            deletes[0].body["propagationPolicy"], "Foreground",
            "the tree goes in order"
        );
        assert!(
            g.writes.of("patch", "deployments").is_empty(),
            "a blocking dependent remains"
        );

        let g = gc(&[d], &[], &[]);
        g.reconcile(&node(ResourceId::Deployment, "web"))
            .await
            .unwrap();
        let patch = &g.writes.of("patch", "deployments")[0].body;
        assert_eq!(patch["metadata"]["finalizers"], json!([]));
        assert_eq!(patch["metadata"]["resourceVersion"], "5");
    }

    #[tokio::test(start_paused = true)]
    async fn foreground_deletion_deletes_pods_in_the_background() {
        let rs = deleting(object("rs", "rs-1", &[]), FOREGROUND);
        let pods = [object("p", "p-1", &[("ReplicaSet", "rs", "rs-1", true)])];
        let g = gc(&[], &[rs], &pods);
        g.reconcile(&node(ResourceId::ReplicaSet, "rs"))
            .await
            .unwrap();
        assert_eq!(
            g.writes.of("delete", "pods")[0].body["propagationPolicy"],
            "Background"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn orphan_deletion_removes_the_owner_from_dependents_then_the_finalizer() {
        let rs = deleting(object("rs", "rs-1", &[]), ORPHAN);
        let pods = [
            object("p1", "p-1", &[("ReplicaSet", "rs", "rs-1", true)]),
            object("p2", "p-2", &[("ReplicaSet", "rs", "rs-1", true)]),
        ];
        let g = gc(&[], &[rs], &pods);
        g.reconcile(&node(ResourceId::ReplicaSet, "rs"))
            .await
            .unwrap();
        let calls = g.writes.calls();
        let verbs: Vec<_> = calls
            .iter()
            .map(|c| (c.verb, c.resource.as_str()))
            .collect();
        assert_eq!(
            verbs,
            [
                ("patch", "pods"),
                ("patch", "pods"),
                ("patch", "replicasets")
            ]
        );
        assert!(
            calls[..2]
                .iter()
                .all(|c| c.body["metadata"]["ownerReferences"] == json!([]))
        );
        assert_eq!(
            calls[2].body["metadata"]["finalizers"],
            Value::Array(vec![])
        );
        assert!(g.writes.of("delete", "pods").is_empty());
    }

    #[test]
    fn the_collector_follows_every_type_but_events() {
        let types: Vec<_> = collected_types().map(|r| r.plural).collect();
        assert!(
            types.contains(&"pods") && types.contains(&"replicasets") && types.contains(&"jobs")
        );
        assert!(!types.contains(&"events"));
    }
}
