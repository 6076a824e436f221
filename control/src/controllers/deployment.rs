//! The Deployment controller: one ReplicaSet per pod template (`<deployment>-<hash>`),
//! rolled forward by RollingUpdate (maxSurge / maxUnavailable) or Recreate, with a revision
//! per ReplicaSet, old ones kept up to `revisionHistoryLimit`, pause, a progress deadline,
//! and the status and conditions `rollout status` reads. Rollback is the client's job: it
//! copies an old ReplicaSet's template back, and that ReplicaSet becomes the new one.

use std::{collections::BTreeMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use skiff_api::{
    client::{ClientError, DeleteParams},
    k8s_openapi::{
        api::{
            apps::v1::{Deployment, DeploymentCondition, ReplicaSet},
            core::v1::{Pod, PodTemplateSpec},
        },
        apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    },
    runtime::{Action, Change, Controller, ObjectKey, Store},
    selector::{LabelSelector, SelectorError},
    status::Reason,
};
use tracing::debug;

use super::{
    Context, Stop,
    pods::{self, BY_CONTROLLER, BY_NAMESPACE},
    replicaset::status_differs,
    runner::{WORKERS, feed, wait_for_cache},
    writes::{ClientWrites, Writes},
};
use crate::events::EventType;

/// The label (on ReplicaSets, their selectors and pods) naming the template's hash.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The revision of a ReplicaSet, and of its Deployment (its newest ReplicaSet's).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// replicas + maxSurge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Why a revision was made (kubectl's `--record`), copied to the new ReplicaSet.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// Why a Deployment could not be synced (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
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
    #[error(
        "{key}: replica set {name} exists with another template (hash collision); retrying with status.collisionCount {count}"
    )]
    HashCollision {
        key: ObjectKey,
        name: String,
        count: i32,
    },
}

/// The Deployment sync over caches of Deployments, ReplicaSets and pods.
#[derive(Debug)]
pub struct DeploymentSync<W> {
    pub writes: W,
    pub deployments: Store<Deployment>,
    pub replica_sets: Store<ReplicaSet>,
    pub pods: Store<Pod>,
}

/// A ReplicaSet as this sync sees it: the cached object and the replicas it has been
/// scaled to during this sync.
#[derive(Clone, Debug)]
struct Rs {
    object: Arc<ReplicaSet>,
    replicas: i32,
}

impl Rs {
    fn new(object: Arc<ReplicaSet>) -> Self {
        let replicas = object.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        Self { object, replicas }
    }
    fn name(&self) -> String {
        self.object.metadata.name.clone().unwrap_or_default()
    }
    fn status(
        &self,
        field: fn(&skiff_api::k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>,
    ) -> i32 {
        self.object.status.as_ref().and_then(field).unwrap_or(0)
    }
    /// Available replicas, never more than it is scaled to: a status written before a
    /// scale-down was seen must not let the rollout take more away.
    fn available(&self) -> i32 {
        self.status(|s| s.available_replicas).min(self.replicas)
    }
    fn created(&self) -> Option<Timestamp> {
        self.object
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
    }
}

/// The revision annotation of `meta` (0 when absent).
pub fn revision(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// A template with its `pod-template-hash` label removed (Kubernetes' `EqualIgnoreHash`).
pub fn without_hash(template: &PodTemplateSpec) -> Value {
    let mut t = template.clone();
    if let Some(meta) = t.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH);
        }
        if meta.labels.as_ref().is_some_and(BTreeMap::is_empty) {
            meta.labels = None;
        }
    }
    serde_json::to_value(t).unwrap_or_default()
}

/// maxSurge and maxUnavailable resolved against `replicas` (surge rounded up,
/// unavailable down; both 0 means one unavailable), Kubernetes' `ResolveFenceposts`.
pub fn fenceposts(deployment: &Deployment) -> (i32, i32) {
    let spec = deployment.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let rolling = spec.strategy.and_then(|s| s.rolling_update);
    let Some(rolling) = rolling else {
        return (0, 0);
    };
    let surge = pods::scaled_value(rolling.max_surge.as_ref(), replicas, true);
    let unavailable = pods::scaled_value(rolling.max_unavailable.as_ref(), replicas, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

fn replicas_of(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

impl<W: Writes> DeploymentSync<W> {
    /// Converges Deployment `key` at `now`.
    ///
    /// # Errors
    /// When a write fails, the selector is unusable or a new ReplicaSet's name is taken.
    pub async fn reconcile(
        &self,
        key: &ObjectKey,
        now: Timestamp,
    ) -> Result<Action, DeploymentError> {
        let Some(d) = self.deployments.get(key) else {
            return Ok(Action::Done);
        };
        let spec = d.spec.clone().unwrap_or_default();
        let selector = LabelSelector::from_meta(&spec.selector).map_err(|source| {
            DeploymentError::Selector {
                key: key.clone(),
                source,
            }
        })?;
        if selector.is_empty() {
            return Ok(Action::Done);
        }
        let mut all = self.claim_replica_sets(key, &d, &selector).await?;
        all.sort_by_key(|r| (r.created(), r.name()));
        let want = without_hash(&spec.template);
        let new_index = all.iter().position(|r| {
            r.object
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| without_hash(t) == want)
        });
        let mut new = new_index.map(|i| all.remove(i));
        let mut olds = all;

        if pods::is_terminating(&d.metadata) {
            return self
                .sync_status(key, &d, new.as_ref(), &olds, now, false)
                .await;
        }
        let paused = spec.paused == Some(true);
        let mut created = false;
        if let Some(rs) = &new {
            self.sync_revision(key, &d, rs, &olds).await?;
        }
        if paused {
            // Scaling still applies to the current ReplicaSet; nothing rolls.
            if let Some(rs) = new.as_mut()
                && rs.replicas != replicas_of(&d)
                && olds.iter().all(|o| o.replicas == 0)
            {
                self.scale(key, &d, rs, replicas_of(&d)).await?;
            }
            return self
                .sync_status(key, &d, new.as_ref(), &olds, now, false)
                .await;
        }

        if is_recreate(&d) {
            let mut scaled = false;
            for old in olds.iter_mut().filter(|o| o.replicas > 0) {
                self.scale(key, &d, old, 0).await?;
                scaled = true;
            }
            if scaled || self.old_pods_running(&olds) {
                return self
                    .sync_status(key, &d, new.as_ref(), &olds, now, false)
                    .await;
            }
            match new.as_mut() {
                None => {
                    new = Some(self.create_new(key, &d, &olds, replicas_of(&d)).await?);
                    created = true;
                }
                Some(rs) if rs.replicas != replicas_of(&d) => {
                    self.scale(key, &d, rs, replicas_of(&d)).await?;
                }
                Some(_) => {}
            }
        } else {
            if new.is_none() {
                let replicas = new_rs_replicas(&d, &olds, None);
                new = Some(self.create_new(key, &d, &olds, replicas).await?);
                created = true;
            } else if let Some(rs) = new.as_mut() {
                let target = if rs.replicas > replicas_of(&d) {
                    replicas_of(&d)
                } else {
                    new_rs_replicas(&d, &olds, Some(rs))
                };
                if target != rs.replicas {
                    self.scale(key, &d, rs, target).await?;
                    return self
                        .sync_status(key, &d, new.as_ref(), &olds, now, false)
                        .await;
                }
            }
            if self
                .reconcile_olds(key, &d, new.as_ref(), &mut olds)
                .await?
            {
                return self
                    .sync_status(key, &d, new.as_ref(), &olds, now, created)
                    .await;
            }
        }
        if is_complete(&d, new.as_ref(), &olds) {
            self.cleanup(key, &d, &olds).await?;
        }
        self.sync_status(key, &d, new.as_ref(), &olds, now, created)
            .await
    }

    /// The ReplicaSets this Deployment controls, adopting matching orphans and releasing
    /// those that stopped matching.
    async fn claim_replica_sets(
        &self,
        key: &ObjectKey,
        d: &Deployment,
        selector: &LabelSelector,
    ) -> Result<Vec<Rs>, DeploymentError> {
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let mut owned = Vec::new();
        for rs in self.replica_sets.by_index(BY_NAMESPACE, &key.namespace) {
            let matches = selector.matches(&pods::labels(&rs.metadata));
            let owner = pods::controller_of(&rs.metadata);
            let adopt = match owner {
                Some(r) if r.uid == uid && matches => {
                    owned.push(Rs::new(rs));
                    continue;
                }
                Some(r) if r.uid == uid => false,
                None if matches && !pods::is_terminating(&d.metadata) => true,
                _ => continue,
            };
            let mut refs: Vec<_> = rs
                .metadata
                .owner_references
                .iter()
                .flatten()
                .filter(|r| r.controller != Some(true))
                .cloned()
                .collect();
            if adopt {
                refs.push(pods::controller_reference(
                    "apps/v1",
                    "Deployment",
                    &d.metadata,
                ));
            }
            let name = rs.metadata.name.clone().unwrap_or_default();
            let patch = json!({"metadata": {"ownerReferences": refs,
                "resourceVersion": rs.metadata.resource_version}});
            match self
                .writes
                .patch("replicasets", &key.namespace, &name, patch, "")
                .await
            {
                Ok(_) if adopt => owned.push(Rs::new(rs)),
                Ok(_) => {}
                Err(e) if e.is(Reason::NotFound) || e.is(Reason::Conflict) => {}
                Err(source) => {
                    return Err(DeploymentError::Write {
                        key: key.clone(),
                        action: format!("claiming replica set {name}"),
                        source,
                    });
                }
            }
        }
        Ok(owned)
    }

    /// Any pod of an old ReplicaSet still not finished (Recreate waits for none).
    fn old_pods_running(&self, olds: &[Rs]) -> bool {
        olds.iter().any(|rs| {
            let uid = rs.object.metadata.uid.clone().unwrap_or_default();
            self.pods
                .by_index(BY_CONTROLLER, &uid)
                .iter()
                .any(|p| !pods::has_phase(p, "Succeeded") && !pods::has_phase(p, "Failed"))
        })
    }

    /// Gives the new ReplicaSet the next revision (after a rollback it was an old one)
    /// and the Deployment the new ReplicaSet's revision.
    async fn sync_revision(
        &self,
        key: &ObjectKey,
        d: &Deployment,
        rs: &Rs,
        olds: &[Rs],
    ) -> Result<(), DeploymentError> {
        let max_old = olds
            .iter()
            .map(|o| revision(&o.object.metadata))
            .max()
            .unwrap_or(0);
        let mut current = revision(&rs.object.metadata);
        let mut annotations = serde_json::Map::new();
        if current <= max_old {
            current = max_old + 1;
            annotations.insert(REVISION.into(), json!(current.to_string()));
        }
        // The new ReplicaSet carries the Deployment's change-cause (rollout history's column).
        let cause = |meta: &ObjectMeta| {
            meta.annotations
                .as_ref()
                .and_then(|a| a.get(CHANGE_CAUSE))
                .cloned()
        };
        if let Some(wanted) = cause(&d.metadata)
            && cause(&rs.object.metadata).as_ref() != Some(&wanted)
        {
            annotations.insert(CHANGE_CAUSE.into(), json!(wanted));
        }
        if !annotations.is_empty() {
            self.patch(
                key,
                "replicasets",
                &rs.name(),
                json!({"metadata": {"annotations": annotations}}),
            )
            .await?;
        }
        let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if rs.object.spec.as_ref().and_then(|s| s.min_ready_seconds) != min_ready {
            self.patch(
                key,
                "replicasets",
                &rs.name(),
                json!({"spec": {"minReadySeconds": min_ready}}),
            )
            .await?;
        }
        if revision(&d.metadata) != current {
            self.patch(
                key,
                "deployments",
                &key.name,
                json!({"metadata": {"annotations": {REVISION: current.to_string()}}}),
            )
            .await?;
        }
        Ok(())
    }

    async fn patch(
        &self,
        key: &ObjectKey,
        resource: &str,
        name: &str,
        patch: Value,
    ) -> Result<Value, DeploymentError> {
        self.writes
            .patch(resource, &key.namespace, name, patch, "")
            .await
            .map_err(|source| DeploymentError::Write {
                key: key.clone(),
                action: format!("updating {resource} {name}"),
                source,
            })
    }

    /// Creates the ReplicaSet for the Deployment's template with `replicas`.
    async fn create_new(
        &self,
        key: &ObjectKey,
        d: &Deployment,
        olds: &[Rs],
        replicas: i32,
    ) -> Result<Rs, DeploymentError> {
        let spec = d.spec.clone().unwrap_or_default();
        let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = pods::template_hash(&spec.template, collision_count);
        let name = format!("{}-{hash}", key.name);
        let mut template = spec.template.clone();
        let meta = template.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let labels = meta.labels.clone().unwrap_or_default();
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash);
        let next_revision = olds
            .iter()
            .map(|o| revision(&o.object.metadata))
            .max()
            .unwrap_or(0)
            + 1;
        let (surge, _) = fenceposts(d);
        let rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": key.namespace,
                "labels": labels,
                "annotations": {
                    REVISION: next_revision.to_string(),
                    DESIRED_REPLICAS: replicas_of(d).to_string(),
                    MAX_REPLICAS: (replicas_of(d) + surge).to_string(),
                },
                "ownerReferences": [pods::controller_reference("apps/v1", "Deployment", &d.metadata)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": spec.min_ready_seconds.unwrap_or(0),
                "selector": selector,
                "template": template,
            },
        });
        let mut rs = rs;
        if let Some(cause) = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CHANGE_CAUSE))
        {
            rs["metadata"]["annotations"][CHANGE_CAUSE] = json!(cause);
        }
        match self.writes.create("replicasets", &key.namespace, rs).await {
            Ok(made) => {
                let object: ReplicaSet = serde_json::from_value(made).unwrap_or_default();
                self.writes
                    .event(
                        object_ref(d),
                        EventType::Normal,
                        "ScalingReplicaSet",
                        &format!("Scaled up replica set {name} from 0 to {replicas}"),
                    )
                    .await;
                if revision(&d.metadata) != next_revision {
                    self.patch(
                        key,
                        "deployments",
                        &key.name,
                        json!({"metadata": {"annotations": {REVISION: next_revision.to_string()}}}),
                    )
                    .await?;
                }
                let mut rs = Rs::new(Arc::new(object));
                rs.replicas = replicas;
                Ok(rs)
            }
            Err(e) if e.is(Reason::AlreadyExists) => {
                // Ours with this template (a cache that has not caught up): use it on the
                // next sync. Anything else is a collision: change the hash and retry.
                let existing = self
                    .writes
                    .get("replicasets", &key.namespace, &name)
                    .await
                    .ok();
                let ours = existing.as_ref().is_some_and(|v| {
                    let rs: ReplicaSet = serde_json::from_value(v.clone()).unwrap_or_default();
                    pods::controller_of(&rs.metadata).map(|r| &r.uid) == d.metadata.uid.as_ref()
                        && rs
                            .spec
                            .and_then(|s| s.template)
                            .is_some_and(|t| without_hash(&t) == without_hash(&spec.template))
                });
                if ours {
                    return Err(DeploymentError::Write {
                        key: key.clone(),
                        action: format!(
                            "creating replica set {name} (it exists; waiting for the cache)"
                        ),
                        source: e,
                    });
                }
                let count = collision_count.unwrap_or(0) + 1;
                self.writes
                    .patch(
                        "deployments",
                        &key.namespace,
                        &key.name,
                        json!({"status": {"collisionCount": count}}),
                        "status",
                    )
                    .await
                    .map_err(|source| DeploymentError::Write {
                        key: key.clone(),
                        action: "updating status.collisionCount".into(),
                        source,
                    })?;
                Err(DeploymentError::HashCollision {
                    key: key.clone(),
                    name,
                    count,
                })
            }
            Err(source) => Err(DeploymentError::Write {
                key: key.clone(),
                action: format!("creating replica set {name}"),
                source,
            }),
        }
    }

    /// Scales `rs` to `replicas` and records it.
    async fn scale(
        &self,
        key: &ObjectKey,
        d: &Deployment,
        rs: &mut Rs,
        replicas: i32,
    ) -> Result<(), DeploymentError> {
        let (surge, _) = fenceposts(d);
        let name = rs.name();
        self.patch(
            key,
            "replicasets",
            &name,
            json!({
                "metadata": {"annotations": {
                    DESIRED_REPLICAS: replicas_of(d).to_string(),
                    MAX_REPLICAS: (replicas_of(d) + surge).to_string(),
                }},
                "spec": {"replicas": replicas},
            }),
        )
        .await?;
        let direction = if replicas > rs.replicas { "up" } else { "down" };
        self.writes
            .event(
                object_ref(d),
                EventType::Normal,
                "ScalingReplicaSet",
                &format!(
                    "Scaled {direction} replica set {name} from {} to {replicas}",
                    rs.replicas
                ),
            )
            .await;
        rs.replicas = replicas;
        Ok(())
    }

    /// Scales old ReplicaSets down as far as maxUnavailable allows: unhealthy replicas
    /// first, then the oldest ReplicaSets' (Kubernetes' `reconcileOldReplicaSets`).
    /// True when anything was scaled.
    async fn reconcile_olds(
        &self,
        key: &ObjectKey,
        d: &Deployment,
        new: Option<&Rs>,
        olds: &mut [Rs],
    ) -> Result<bool, DeploymentError> {
        let old_pods: i32 = olds.iter().map(|r| r.replicas).sum();
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods = old_pods + new.map_or(0, |n| n.replicas);
        let (_, unavailable) = fenceposts(d);
        let min_available = replicas_of(d) - unavailable;
        let new_unavailable = new.map_or(0, |n| n.replicas - n.available());
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let mut scaled = false;
        // Unhealthy old replicas go first: they serve nothing.
        let mut total = 0;
        for rs in olds.iter_mut() {
            if total >= max_scaled_down {
                break;
            }
            let unhealthy = rs.replicas - rs.available();
            if rs.replicas == 0 || unhealthy <= 0 {
                continue;
            }
            let down = (max_scaled_down - total).min(unhealthy);
            let target = rs.replicas - down;
            self.scale(key, d, rs, target).await?;
            total += down;
            scaled = true;
        }
        // Then available ones, as long as minAvailable stays available.
        let available: i32 =
            olds.iter().map(Rs::available).sum::<i32>() + new.map_or(0, Rs::available);
        if available > min_available {
            let budget = available - min_available;
            let mut total = 0;
            for rs in olds.iter_mut() {
                if total >= budget {
                    break;
                }
                if rs.replicas == 0 {
                    continue;
                }
                let down = rs.replicas.min(budget - total);
                let target = rs.replicas - down;
                self.scale(key, d, rs, target).await?;
                total += down;
                scaled = true;
            }
        }
        Ok(scaled)
    }

    /// Deletes the oldest revisions beyond `revisionHistoryLimit` (only ReplicaSets with
    /// no replicas left).
    async fn cleanup(
        &self,
        key: &ObjectKey,
        d: &Deployment,
        olds: &[Rs],
    ) -> Result<(), DeploymentError> {
        let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut cleanable: Vec<&Rs> = olds
            .iter()
            .filter(|r| {
                r.replicas == 0
                    && r.status(|s| Some(s.replicas)) == 0
                    && !pods::is_terminating(&r.object.metadata)
            })
            .collect();
        let excess = cleanable
            .len()
            .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        cleanable.sort_by_key(|r| revision(&r.object.metadata));
        for rs in cleanable.into_iter().take(excess) {
            match self
                .writes
                .delete(
                    "replicasets",
                    &key.namespace,
                    &rs.name(),
                    DeleteParams::default(),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if e.is(Reason::NotFound) => {}
                Err(source) => {
                    return Err(DeploymentError::Write {
                        key: key.clone(),
                        action: format!("deleting old replica set {}", rs.name()),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes status counters and the Available and Progressing conditions; requeues
    /// for the progress deadline.
    async fn sync_status(
        &self,
        key: &ObjectKey,
        d: &Deployment,
        new: Option<&Rs>,
        olds: &[Rs],
        now: Timestamp,
        created: bool,
    ) -> Result<Action, DeploymentError> {
        let spec = d.spec.clone().unwrap_or_default();
        let old_status = d.status.clone().unwrap_or_default();
        let all: Vec<&Rs> = new.into_iter().chain(olds).collect();
        let sum = |f: fn(&Rs) -> i32| all.iter().map(|r| f(r)).sum::<i32>();
        let replicas = sum(|r| r.status(|s| Some(s.replicas)));
        let updated = new.map_or(0, |n| n.status(|s| Some(s.replicas)));
        let ready = sum(|r| r.status(|s| s.ready_replicas));
        let available = sum(|r| r.status(|s| s.available_replicas));
        let total_spec = sum(|r| r.replicas);
        let desired = replicas_of(d);
        let (_, max_unavailable) = fenceposts(d);
        let mut conditions: Vec<DeploymentCondition> =
            old_status.conditions.clone().unwrap_or_default();
        let min_available = desired - if is_recreate(d) { 0 } else { max_unavailable };
        if available >= min_available {
            set_condition(
                &mut conditions,
                now,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                false,
            );
        } else {
            set_condition(
                &mut conditions,
                now,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                false,
            );
        }

        let mut requeue = None;
        let new_name = new.map(Rs::name).unwrap_or_default();
        let progressing = conditions
            .iter()
            .find(|c| c.type_ == "Progressing")
            .cloned();
        let reason_of = |c: &Option<DeploymentCondition>| {
            c.as_ref()
                .and_then(|c| c.reason.clone())
                .unwrap_or_default()
        };
        let complete = updated == desired
            && replicas == desired
            && available == desired
            && total_spec == desired
            && new.is_some();
        if spec.paused == Some(true) {
            if reason_of(&progressing) != "DeploymentPaused" {
                set_condition(
                    &mut conditions,
                    now,
                    "Progressing",
                    "Unknown",
                    "DeploymentPaused",
                    "Deployment is paused".into(),
                    false,
                );
            }
        } else if let Some(deadline) = spec.progress_deadline_seconds {
            let old_replicas =
                old_status.replicas.unwrap_or(0) - old_status.updated_replicas.unwrap_or(0);
            let progressed = created
                || updated > old_status.updated_replicas.unwrap_or(0)
                || replicas - updated < old_replicas
                || ready > old_status.ready_replicas.unwrap_or(0)
                || available > old_status.available_replicas.unwrap_or(0);
            let was_paused = reason_of(&progressing) == "DeploymentPaused";
            if complete {
                set_condition(
                    &mut conditions,
                    now,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                    false,
                );
            } else if created {
                set_condition(
                    &mut conditions,
                    now,
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    format!("Created new replica set \"{new_name}\""),
                    true,
                );
            } else if was_paused {
                set_condition(
                    &mut conditions,
                    now,
                    "Progressing",
                    "Unknown",
                    "DeploymentResumed",
                    "Deployment is resumed".into(),
                    true,
                );
            } else if progressed || progressing.is_none() {
                set_condition(
                    &mut conditions,
                    now,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    format!("ReplicaSet \"{new_name}\" is progressing."),
                    true,
                );
            }
            if !complete {
                let current = conditions
                    .iter()
                    .find(|c| c.type_ == "Progressing")
                    .cloned();
                let since = current
                    .as_ref()
                    .and_then(|c| c.last_update_time.as_ref())
                    .map_or(now, |t| t.0);
                let until = since + SignedDuration::from_secs(deadline.into());
                if reason_of(&current) == "ProgressDeadlineExceeded" {
                } else if until <= now {
                    set_condition(
                        &mut conditions,
                        now,
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                        false,
                    );
                    self.writes
                        .event(
                            object_ref(d),
                            EventType::Warning,
                            "ProgressDeadlineExceeded",
                            &format!("Deployment {} has timed out progressing.", key.name),
                        )
                        .await;
                } else {
                    requeue = Some(
                        Duration::try_from(until.duration_since(now)).unwrap_or_default()
                            + Duration::from_secs(1),
                    );
                }
            }
        }
        let status = json!({
            "observedGeneration": d.metadata.generation.unwrap_or(0),
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": (total_spec.max(desired) - available).max(0),
            "conditions": conditions,
        });
        let current = serde_json::to_value(&old_status).unwrap_or_default();
        if status_differs(&current, &status) {
            self.writes
                .patch(
                    "deployments",
                    &key.namespace,
                    &key.name,
                    json!({"status": status}),
                    "status",
                )
                .await
                .map_err(|source| DeploymentError::Write {
                    key: key.clone(),
                    action: "updating status".into(),
                    source,
                })?;
        }
        Ok(requeue.map_or(Action::Done, Action::RequeueAfter))
    }
}

/// Sets condition `type_`, keeping lastTransitionTime while the status holds and
/// lastUpdateTime while nothing changes (unless `touch`).
fn set_condition(
    conditions: &mut Vec<DeploymentCondition>,
    now: Timestamp,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    touch: bool,
) {
    let stamp = Time(now);
    let existing = conditions.iter().position(|c| c.type_ == type_);
    let previous = existing.map(|i| conditions[i].clone());
    let same_status = previous.as_ref().is_some_and(|p| p.status == status);
    let same_reason = previous
        .as_ref()
        .is_some_and(|p| p.reason.as_deref() == Some(reason));
    let condition = DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: if same_status {
            previous
                .as_ref()
                .and_then(|p| p.last_transition_time.clone())
        } else {
            Some(stamp.clone())
        },
        last_update_time: if same_status && same_reason && !touch {
            previous.as_ref().and_then(|p| p.last_update_time.clone())
        } else {
            Some(stamp)
        },
    };
    match existing {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// Replicas for the new ReplicaSet under RollingUpdate: as many as maxSurge leaves room
/// for, never more than `replicas` (Kubernetes' `NewRSNewReplicas`).
fn new_rs_replicas(d: &Deployment, olds: &[Rs], new: Option<&Rs>) -> i32 {
    let desired = replicas_of(d);
    let current_new = new.map_or(0, |n| n.replicas);
    if is_recreate(d) {
        return desired;
    }
    let (surge, _) = fenceposts(d);
    let current: i32 = olds.iter().map(|r| r.replicas).sum::<i32>() + current_new;
    let max_total = desired + surge;
    if current >= max_total {
        return current_new;
    }
    let up = (max_total - current).min((desired - current_new).max(0));
    current_new + up
}

/// Every replica is updated and available, and no old one is left.
fn is_complete(d: &Deployment, new: Option<&Rs>, olds: &[Rs]) -> bool {
    let desired = replicas_of(d);
    new.is_some_and(|n| {
        n.replicas == desired
            && n.available() == desired
            && n.status(|s| Some(s.replicas)) == desired
    }) && olds.iter().all(|o| o.replicas == 0)
}

fn object_ref(d: &Deployment) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": d.metadata})
}

/// The Deployment controlling `meta`, if a Deployment controls it.
fn owning_deployment(meta: &ObjectMeta) -> Option<ObjectKey> {
    pods::controller_of(meta)
        .filter(|r| r.kind == "Deployment")
        .map(|r| ObjectKey::new(meta.namespace.clone().unwrap_or_default(), r.name.clone()))
}

/// Deployments in the namespace of `rs` whose selector matches it (for adoption).
fn matching_deployments(deployments: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectKey> {
    let labels = pods::labels(&rs.metadata);
    deployments
        .by_index(
            BY_NAMESPACE,
            rs.metadata.namespace.as_deref().unwrap_or_default(),
        )
        .iter()
        .filter(|d| {
            d.spec
                .as_ref()
                .and_then(|s| LabelSelector::from_meta(&s.selector).ok())
                .is_some_and(|s| !s.is_empty() && s.matches(&labels))
        })
        .map(|d| ObjectKey::of(&**d))
        .collect()
}

/// Runs the Deployment controller until `stop`.
pub fn run(context: Context, stop: Stop) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let client = context.client.clone();
        let deployments = context
            .informers
            .informer("deployments", pods::indexed(|d: &Deployment| &d.metadata));
        let replica_sets = context
            .informers
            .informer("replicasets", pods::indexed(|r: &ReplicaSet| &r.metadata));
        let pod_informer = context.informers.informer("pods", pods::indexed_pods());
        let sync = Arc::new(DeploymentSync {
            writes: ClientWrites::new(client, "deployment-controller", &context.identity),
            deployments: deployments.store(),
            replica_sets: replica_sets.store(),
            pods: pod_informer.store(),
        });
        let queue = context.queue("deployment");
        let d_store = deployments.store();
        let rs_store = replica_sets.store();
        let feeds = [
            feed(
                deployments.subscribe(),
                queue.clone(),
                move |change, queue| match change.object() {
                    Some(d) => queue.add(ObjectKey::of(&**d)),
                    None => d_store.keys().into_iter().for_each(|k| queue.add(k)),
                },
            ),
            {
                let d_store = deployments.store();
                feed(
                    replica_sets.subscribe(),
                    queue.clone(),
                    move |change, queue| {
                        let on = |rs: &ReplicaSet| match owning_deployment(&rs.metadata) {
                            Some(k) => queue.add(k),
                            None if pods::controller_of(&rs.metadata).is_none() => {
                                matching_deployments(&d_store, rs)
                                    .into_iter()
                                    .for_each(|k| queue.add(k));
                            }
                            None => {}
                        };
                        match change {
                            Change::Updated { old, new } => {
                                if old.metadata.owner_references != new.metadata.owner_references
                                    || old.metadata.labels != new.metadata.labels
                                {
                                    on(&old);
                                }
                                on(&new);
                            }
                            Change::Added(rs) | Change::Deleted(rs) => on(&rs),
                            Change::Resynced => {
                                d_store.keys().into_iter().for_each(|k| queue.add(k))
                            }
                        }
                    },
                )
            },
            feed(
                pod_informer.subscribe(),
                queue.clone(),
                move |change, queue| {
                    // Recreate waits for old pods to go.
                    if let Change::Deleted(pod) = change
                        && let Some(owner) =
                            pods::controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet")
                    {
                        let key = ObjectKey::new(
                            pod.metadata.namespace.clone().unwrap_or_default(),
                            owner.name.clone(),
                        );
                        if let Some(d) = rs_store
                            .get(&key)
                            .and_then(|rs| owning_deployment(&rs.metadata))
                        {
                            queue.add(d);
                        }
                    }
                },
            ),
        ];
        wait_for_cache("deployment", &sync.deployments).await;
        wait_for_cache("deployment", &sync.replica_sets).await;
        wait_for_cache("deployment", &sync.pods).await;
        Controller::new(queue)
            .graceful_shutdown_on(stop.wait())
            .run(WORKERS, move |key: ObjectKey| {
                let sync = Arc::clone(&sync);
                async move {
                    let result = sync.reconcile(&key, Timestamp::now()).await;
                    if let Err(error) = &result {
                        debug!(%key, %error, "deployment sync failed");
                    }
                    result
                }
            })
            .await;
        feeds.iter().for_each(|f| f.abort());
    })
}

/// Counts per ReplicaSet name, for tests.
#[cfg(test)]
fn replicas_by_name(calls: &[super::writes::fake::Call]) -> std::collections::HashMap<String, i64> {
    calls
        .iter()
        .filter_map(|c| Some((c.key.clone(), c.body.pointer("/spec/replicas")?.as_i64()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use skiff_api::k8s_openapi::{
        api::apps::v1::{
            DeploymentSpec, DeploymentStatus, DeploymentStrategy, ReplicaSetSpec, ReplicaSetStatus,
            RollingUpdateDeployment,
        },
        apimachinery::pkg::{
            apis::meta::v1::LabelSelector as MetaSelector, util::intstr::IntOrString,
        },
    };

    use super::*;
    use crate::controllers::{pods::testing::*, replicaset::label_map, writes::fake::FakeWrites};

    fn deployment(replicas: i32, image: &str, surge: i32, unavailable: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("d-uid".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: MetaSelector {
                    match_labels: Some(label_map(&[("app", "web")])),
                    ..Default::default()
                },
                template: template(&[("app", "web")], image),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(IntOrString::Int(surge)),
                        max_unavailable: Some(IntOrString::Int(unavailable)),
                    }),
                }),
                revision_history_limit: Some(1),
                progress_deadline_seconds: Some(600),
                ..Default::default()
            }),
            status: Some(DeploymentStatus::default()),
        }
    }

    /// A ReplicaSet of `d` for `image` with `replicas` of which `available` are available.
    fn rs(
        d: &Deployment,
        image: &str,
        replicas: i32,
        available: i32,
        rev: i64,
        created: i64,
    ) -> ReplicaSet {
        let mut t = template(&[("app", "web")], image);
        let hash = pods::template_hash(&t, None);
        t.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("web-{hash}")),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{hash}")),
                labels: t.metadata.as_ref().unwrap().labels.clone(),
                annotations: Some(label_map(&[(REVISION, &rev.to_string())])),
                owner_references: Some(vec![pods::controller_reference(
                    "apps/v1",
                    "Deployment",
                    &d.metadata,
                )]),
                creation_timestamp: Some(Time(at(created))),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: MetaSelector {
                    match_labels: Some(label_map(&[("app", "web"), (POD_TEMPLATE_HASH, &hash)])),
                    ..Default::default()
                },
                template: Some(t),
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                ready_replicas: Some(available),
                available_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    fn sync(d: Deployment, rss: &[ReplicaSet]) -> DeploymentSync<FakeWrites> {
        DeploymentSync {
            writes: FakeWrites::default(),
            deployments: store(pods::indexed(|d: &Deployment| &d.metadata), &[d]),
            replica_sets: store(pods::indexed(|r: &ReplicaSet| &r.metadata), rss),
            pods: store(pods::indexed_pods(), &[]),
        }
    }

    fn key() -> ObjectKey {
        ObjectKey::new("default", "web")
    }

    #[tokio::test(start_paused = true)]
    async fn deployment_creates_a_replica_set_named_by_its_template_hash_at_revision_one() {
        let d = deployment(3, "img:1", 1, 0);
        let s = sync(d.clone(), &[]);
        s.reconcile(&key(), at(0)).await.unwrap();
        let creates = s.writes.of("create", "replicasets");
        assert_eq!(creates.len(), 1);
        let body = &creates[0].body;
        let hash = pods::template_hash(&d.spec.as_ref().unwrap().template, None);
        assert_eq!(body["metadata"]["name"], format!("web-{hash}"));
        assert_eq!(body["spec"]["replicas"], 3);
        assert_eq!(
            body["spec"]["selector"]["matchLabels"][POD_TEMPLATE_HASH],
            hash
        );
        assert_eq!(
            body["spec"]["template"]["metadata"]["labels"][POD_TEMPLATE_HASH],
            hash
        );
        assert_eq!(body["metadata"]["annotations"][REVISION], "1");
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "d-uid");
        let status = &s.writes.of("patch-status", "deployments")[0].body["status"];
        let progressing = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Progressing")
            .unwrap();
        assert_eq!(progressing["reason"], "NewReplicaSetCreated");
    }

    #[tokio::test(start_paused = true)]
    async fn new_replica_set_carries_the_deployments_change_cause() {
        let mut d = deployment(1, "img:1", 1, 0);
        d.metadata.annotations = Some(label_map(&[(CHANGE_CAUSE, "skiffctl set image")]));
        let s = sync(d.clone(), &[]);
        s.reconcile(&key(), at(0)).await.unwrap();
        let created = &s.writes.of("create", "replicasets")[0].body;
        assert_eq!(
            created["metadata"]["annotations"][CHANGE_CAUSE],
            "skiffctl set image"
        );

        let s = sync(d.clone(), &[rs(&d, "img:1", 1, 1, 1, 0)]);
        s.reconcile(&key(), at(0)).await.unwrap();
        let patch = &s.writes.of("patch", "replicasets")[0].body;
        assert_eq!(
            patch["metadata"]["annotations"][CHANGE_CAUSE],
            "skiffctl set image"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rolling_update_surges_the_new_replica_set_first_then_scales_old_down_within_max_unavailable()
     {
        // 4 replicas, maxSurge 1, maxUnavailable 1: the new RS may start with 1.
        let d = deployment(4, "img:2", 1, 1);
        let old = rs(&d, "img:1", 4, 4, 1, 0);
        let s = sync(d.clone(), std::slice::from_ref(&old));
        s.reconcile(&key(), at(10)).await.unwrap();
        let created = &s.writes.of("create", "replicasets")[0].body;
        assert_eq!(created["spec"]["replicas"], 1, "4 + 1 surge - 4 running");
        assert_eq!(created["metadata"]["annotations"][REVISION], "2");
        // The old RS may lose 1 of 4 available (minAvailable 3).
        let scaled = replicas_by_name(&s.writes.of("patch", "replicasets"));
        assert_eq!(
            scaled.get(&format!("default/{}", old.metadata.name.unwrap())),
            Some(&3)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rolling_update_never_scales_old_down_while_new_pods_are_unavailable_at_the_floor() {
        let d = deployment(4, "img:2", 1, 1);
        let old = rs(&d, "img:1", 3, 3, 1, 0);
        let new = rs(&d, "img:2", 2, 0, 2, 5);
        let s = sync(d, &[old, new]);
        s.reconcile(&key(), at(10)).await.unwrap();
        assert!(
            s.writes
                .of("patch", "replicasets")
                .iter()
                .all(|c| c.body.pointer("/spec/replicas").is_none()),
            "5 = 4 + surge pods exist and only 3 are available: nothing may move; {:?}",
            s.writes.calls()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn completed_rollout_keeps_revision_history_limit_old_replica_sets() {
        let d = deployment(2, "img:3", 1, 0);
        let rss = [
            rs(&d, "img:1", 0, 0, 1, 0),
            rs(&d, "img:2", 0, 0, 2, 1),
            rs(&d, "img:3", 2, 2, 3, 2),
        ];
        let s = sync(d, &rss);
        s.reconcile(&key(), at(10)).await.unwrap();
        let deleted: Vec<_> = s
            .writes
            .of("delete", "replicasets")
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert_eq!(
            deleted,
            [format!("default/{}", rss[0].metadata.name.clone().unwrap())]
        );
        let status = &s.writes.of("patch-status", "deployments")[0].body["status"];
        let progressing = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Progressing")
            .unwrap();
        assert_eq!(progressing["reason"], "NewReplicaSetAvailable");
        assert_eq!(status["availableReplicas"], 2);
        assert_eq!(status["updatedReplicas"], 2);
    }

    #[tokio::test(start_paused = true)]
    async fn rollback_to_an_old_template_makes_its_replica_set_the_newest_revision() {
        let d = deployment(2, "img:1", 1, 0);
        let rss = [rs(&d, "img:1", 0, 0, 1, 0), rs(&d, "img:2", 2, 2, 2, 1)];
        let s = sync(d, &rss);
        s.reconcile(&key(), at(10)).await.unwrap();
        assert!(
            s.writes.of("create", "replicasets").is_empty(),
            "the old ReplicaSet is reused"
        );
        let revisions: Vec<_> = s
            .writes
            .of("patch", "replicasets")
            .into_iter()
            .filter_map(|c| {
                Some((
                    c.key,
                    c.body
                        .pointer(&format!(
                            "/metadata/annotations/{}",
                            REVISION.replace('/', "~1")
                        ))?
                        .clone(),
                ))
            })
            .collect();
        assert_eq!(
            revisions,
            [(
                format!("default/{}", rss[0].metadata.name.clone().unwrap()),
                json!("3")
            )]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn recreate_scales_old_to_zero_and_waits_for_old_pods_before_creating_the_new() {
        let mut d = deployment(2, "img:2", 0, 0);
        d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
        let old = rs(&d, "img:1", 2, 2, 1, 0);
        let s = sync(d.clone(), std::slice::from_ref(&old));
        s.reconcile(&key(), at(10)).await.unwrap();
        assert!(s.writes.of("create", "replicasets").is_empty());
        assert_eq!(
            replicas_by_name(&s.writes.of("patch", "replicasets"))
                .get(&format!("default/{}", old.metadata.name.clone().unwrap())),
            Some(&0)
        );

        // Old scaled to zero, but one of its pods is still running: wait.
        let mut zero = old.clone();
        zero.spec.as_mut().unwrap().replicas = Some(0);
        let owner = pods::controller_reference("apps/v1", "ReplicaSet", &zero.metadata);
        let running = ready(pod("old-pod", &[("app", "web")], Some(&owner), 0), "n1", 0);
        let mut s = sync(d.clone(), &[zero.clone()]);
        s.pods = store(pods::indexed_pods(), &[running]);
        s.reconcile(&key(), at(10)).await.unwrap();
        assert!(
            s.writes.of("create", "replicasets").is_empty(),
            "old pods still run"
        );

        let s = sync(d, &[zero]);
        s.reconcile(&key(), at(10)).await.unwrap();
        assert_eq!(
            s.writes.of("create", "replicasets")[0].body["spec"]["replicas"],
            2
        );
    }

    #[tokio::test(start_paused = true)]
    async fn paused_deployment_does_not_roll_out_a_new_template() {
        let mut d = deployment(2, "img:2", 1, 0);
        d.spec.as_mut().unwrap().paused = Some(true);
        let s = sync(d.clone(), &[rs(&d, "img:1", 2, 2, 1, 0)]);
        s.reconcile(&key(), at(10)).await.unwrap();
        assert!(s.writes.of("create", "replicasets").is_empty());
        let status = &s.writes.of("patch-status", "deployments")[0].body["status"];
        let progressing = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Progressing")
            .unwrap();
        assert_eq!(progressing["reason"], "DeploymentPaused");
        assert_eq!(progressing["status"], "Unknown");
    }

    #[tokio::test(start_paused = true)]
    async fn rollout_without_progress_past_the_deadline_is_marked_progress_deadline_exceeded() {
        let mut d = deployment(2, "img:2", 0, 1);
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(30);
        let new = rs(&d, "img:2", 2, 0, 2, 0);
        let mut with_condition = d.clone();
        with_condition.status = Some(DeploymentStatus {
            updated_replicas: Some(2),
            replicas: Some(2),
            conditions: Some(vec![DeploymentCondition {
                type_: "Progressing".into(),
                status: "True".into(),
                reason: Some("ReplicaSetUpdated".into()),
                last_update_time: Some(Time(at(0))),
                last_transition_time: Some(Time(at(0))),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let s = sync(with_condition.clone(), std::slice::from_ref(&new));
        let action = s.reconcile(&key(), at(10)).await.unwrap();
        assert_eq!(
            action,
            Action::RequeueAfter(Duration::from_secs(21)),
            "looks again at the deadline"
        );

        let s = sync(with_condition, &[new]);
        s.reconcile(&key(), at(31)).await.unwrap();
        let status = &s.writes.of("patch-status", "deployments")[0].body["status"];
        let progressing = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Progressing")
            .unwrap();
        assert_eq!(progressing["status"], "False");
        assert_eq!(progressing["reason"], "ProgressDeadlineExceeded");
        let available = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Available")
            .unwrap();
        assert_eq!(available["status"], "False");
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down_and_never_both_zero() {
        let mut d = deployment(10, "i", 0, 0);
        assert_eq!(fenceposts(&d), (0, 1));
        let rolling = d
            .spec
            .as_mut()
            .unwrap()
            .strategy
            .as_mut()
            .unwrap()
            .rolling_update
            .as_mut()
            .unwrap();
        rolling.max_surge = Some(IntOrString::String("25%".into()));
        rolling.max_unavailable = Some(IntOrString::String("25%".into()));
        assert_eq!(fenceposts(&d), (3, 2));
    }
}
