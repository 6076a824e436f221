//! The Job controller (NonIndexed completion mode): runs up to `parallelism` pods until
//! `completions` have succeeded, counts failures against `backoffLimit` (with the pod
//! failure back-off between retries), enforces `activeDeadlineSeconds`, marks the Job
//! Complete or Failed, and deletes it `ttlSecondsAfterFinished` after it finished.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use futures::future::join_all;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use skiff_api::{
    client::{ClientError, DeleteParams},
    k8s_openapi::{
        api::{batch::v1::Job, core::v1::Pod},
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
use crate::events::EventType;

/// The first wait before a failed Job pod is replaced; it doubles per failure
/// (Kubernetes' `DefaultJobPodFailureBackOff`).
pub const POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// The longest wait before a failed Job pod is replaced (`MaxJobPodFailureBackOff`).
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(360);

/// Why a Job could not be synced (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{key}: {action} failed")]
    Write {
        key: ObjectKey,
        action: String,
        #[source]
        source: ClientError,
    },
}

/// The Job sync over caches of Jobs and pods.
#[derive(Debug)]
pub struct JobSync<W> {
    pub writes: W,
    pub jobs: Store<Job>,
    pub pods: Store<Pod>,
    pub expectations: Arc<Expectations>,
}

fn condition_true(job: &Job, type_: &str) -> Option<Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
        })
}

/// When the job finished (Complete or Failed), if it has.
pub fn finished_at(job: &Job) -> Option<Timestamp> {
    condition_true(job, "Complete").or_else(|| condition_true(job, "Failed"))
}

/// When the pod's containers last stopped, as far as its status tells.
fn stopped_at(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
}

fn seconds(d: SignedDuration) -> Duration {
    Duration::try_from(d).unwrap_or_default()
}

fn job_condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> Value {
    let at = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({"type": type_, "status": "True", "reason": reason, "message": message,
        "lastProbeTime": at, "lastTransitionTime": at})
}

impl<W: Writes> JobSync<W> {
    /// Converges Job `key` at `now`.
    ///
    /// # Errors
    /// When a write fails; the key is retried.
    pub async fn reconcile(&self, key: &ObjectKey, now: Timestamp) -> Result<Action, JobError> {
        let Some(job) = self.jobs.get(key) else {
            self.expectations.forget(key);
            return Ok(Action::Done);
        };
        let spec = job.spec.clone().unwrap_or_default();
        if let Some(finished) = finished_at(&job) {
            return self.expire_after_ttl(key, &job, finished, now).await;
        }
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let owned = self.pods.by_index(BY_CONTROLLER, &uid);
        let active: Vec<Arc<Pod>> = owned
            .iter()
            .filter(|p| pods::is_active(p))
            .cloned()
            .collect();
        let succeeded = owned
            .iter()
            .filter(|p| pods::has_phase(p, "Succeeded"))
            .count();
        let failed_pods: Vec<&Arc<Pod>> = owned
            .iter()
            .filter(|p| pods::has_phase(p, "Failed"))
            .collect();
        let old_status = job.status.clone().unwrap_or_default();
        let failed = failed_pods
            .len()
            .max(usize::try_from(old_status.failed.unwrap_or(0)).unwrap_or(0));
        let started = old_status.start_time.as_ref().map_or(now, |t| t.0);
        let object = object_ref(&job);

        let backoff_limit = usize::try_from(spec.backoff_limit.unwrap_or(6).max(0)).unwrap_or(0);
        let deadline = spec
            .active_deadline_seconds
            .map(|s| started + SignedDuration::from_secs(s));
        let failure = if failed > backoff_limit {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else if deadline.is_some_and(|d| d <= now) {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else {
            None
        };
        let completions = spec
            .completions
            .map(|c| usize::try_from(c.max(0)).unwrap_or(0));
        let complete = match completions {
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active.is_empty(),
        };

        let mut status = json!({
            "startTime": started.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "active": active.len(),
            "ready": active.iter().filter(|p| pods::is_ready(p)).count(),
            "succeeded": succeeded,
            "failed": failed,
        });
        let mut action = Action::Done;
        if let Some((reason, message)) = failure.filter(|_| !complete) {
            self.delete_pods(key, &active).await?;
            status["active"] = json!(0);
            status["ready"] = json!(0);
            status["conditions"] = json!([
                job_condition("FailureTarget", reason, message, now),
                job_condition("Failed", reason, message, now),
            ]);
            self.writes
                .event(object.clone(), EventType::Warning, reason, message)
                .await;
        } else if complete {
            self.delete_pods(key, &active).await?;
            status["active"] = json!(0);
            status["ready"] = json!(0);
            status["completionTime"] = json!(now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
            let message = "Reached expected number of succeeded pods";
            status["conditions"] = json!([
                job_condition("SuccessCriteriaMet", "CompletionsReached", message, now),
                job_condition("Complete", "CompletionsReached", message, now),
            ]);
            self.writes
                .event(
                    object.clone(),
                    EventType::Normal,
                    "Completed",
                    "Job completed",
                )
                .await;
        } else if !pods::is_terminating(&job.metadata) && self.expectations.satisfied(key) {
            let parallelism = usize::try_from(spec.parallelism.unwrap_or(1).max(0)).unwrap_or(0);
            let want = if spec.suspend == Some(true) {
                0
            } else {
                match completions {
                    Some(c) => parallelism.min(c.saturating_sub(succeeded)),
                    None if succeeded > 0 => active.len().min(parallelism),
                    None => parallelism,
                }
            };
            // Replacements for failed pods wait out the failure back-off.
            let backoff = failure_backoff(&failed_pods, now);
            if active.len() < want && backoff.is_some() {
                action = Action::RequeueAfter(backoff.unwrap_or_default());
            } else if active.len() < want {
                self.create_pods(key, &job, want - active.len()).await?;
            } else if active.len() > want {
                let mut extra = active.clone();
                extra.sort_by(|a, b| pods::deletion_order(a, b));
                extra.truncate(active.len() - want);
                self.delete_pods(key, &extra).await?;
            }
            if let Some(d) = deadline {
                let wait = seconds(d.duration_since(now)) + Duration::from_secs(1);
                action = match action {
                    Action::RequeueAfter(other) => Action::RequeueAfter(other.min(wait)),
                    Action::Done => Action::RequeueAfter(wait),
                };
            }
        }
        let current = serde_json::to_value(&old_status).unwrap_or_default();
        if status_differs(&current, &status) {
            self.writes
                .patch(
                    "jobs",
                    &key.namespace,
                    &key.name,
                    json!({ "status": status }),
                    "status",
                )
                .await
                .map_err(|source| JobError::Write {
                    key: key.clone(),
                    action: "updating status".into(),
                    source,
                })?;
        }
        if status.get("conditions").is_some()
            && let Some(ttl) = spec.ttl_seconds_after_finished
        {
            action = Action::RequeueAfter(
                Duration::from_secs(u64::try_from(ttl.max(0)).unwrap_or(0))
                    + Duration::from_secs(1),
            );
        }
        Ok(action)
    }

    /// A finished Job is deleted (with its pods, in the foreground) once
    /// `ttlSecondsAfterFinished` has passed: the TTL-after-finished controller's part.
    async fn expire_after_ttl(
        &self,
        key: &ObjectKey,
        job: &Job,
        finished: Timestamp,
        now: Timestamp,
    ) -> Result<Action, JobError> {
        let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
            return Ok(Action::Done);
        };
        if pods::is_terminating(&job.metadata) {
            return Ok(Action::Done);
        }
        let expires = finished + SignedDuration::from_secs(ttl.into());
        if expires > now {
            return Ok(Action::RequeueAfter(
                seconds(expires.duration_since(now)) + Duration::from_secs(1),
            ));
        }
        let params = DeleteParams {
            propagation_policy: "Foreground".into(),
            precondition_resource_version: job
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default(),
            ..Default::default()
        };
        match self
            .writes
            .delete("jobs", &key.namespace, &key.name, params)
            .await
        {
            Ok(_) => Ok(Action::Done),
            Err(e) if e.is(Reason::NotFound) => Ok(Action::Done),
            Err(source) => Err(JobError::Write {
                key: key.clone(),
                action: "deleting the finished job after its TTL".into(),
                source,
            }),
        }
    }

    async fn create_pods(&self, key: &ObjectKey, job: &Job, count: usize) -> Result<(), JobError> {
        let count = count.min(BURST_REPLICAS);
        let owner = pods::controller_reference("batch/v1", "Job", &job.metadata);
        let template = job
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let pod =
            pods::pod_from_template(&template, &key.namespace, &format!("{}-", key.name), &owner);
        let object = object_ref(job);
        self.expectations.expect_creations(key, count);
        let (created, error) = slow_start_batch(count, || {
            create_pod(&self.writes, &self.expectations, key, &object, pod.clone())
        })
        .await;
        for _ in created + usize::from(error.is_some())..count {
            self.expectations.creation_observed(key);
        }
        match error {
            Some(source) => Err(JobError::Write {
                key: key.clone(),
                action: "creating pods".into(),
                source,
            }),
            None => Ok(()),
        }
    }

    async fn delete_pods(&self, key: &ObjectKey, doomed: &[Arc<Pod>]) -> Result<(), JobError> {
        if doomed.is_empty() {
            return Ok(());
        }
        let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
        self.expectations
            .expect_deletions(key, doomed.iter().map(|p| uid(p)));
        let results = join_all(doomed.iter().map(|pod| async {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let result = self
                .writes
                .delete("pods", &key.namespace, &name, DeleteParams::default())
                .await;
            if result.is_err() {
                self.expectations.deletion_observed(key, &uid(pod));
            }
            result
        }))
        .await;
        match results
            .into_iter()
            .filter_map(Result::err)
            .find(|e| !e.is(Reason::NotFound))
        {
            Some(source) => Err(JobError::Write {
                key: key.clone(),
                action: "deleting pods".into(),
                source,
            }),
            None => Ok(()),
        }
    }
}

/// How long replacements of failed pods still wait: 10 s doubled per failure, up to 6 min,
/// from the newest failure (None when nothing is to wait for).
pub fn failure_backoff(failed: &[&Arc<Pod>], now: Timestamp) -> Option<Duration> {
    let last = failed.iter().filter_map(|p| stopped_at(p)).max()?;
    let exponent = u32::try_from(failed.len().saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(16);
    let delay = (POD_FAILURE_BACKOFF * 2u32.pow(exponent)).min(MAX_POD_FAILURE_BACKOFF);
    let ready_at = last + SignedDuration::try_from(delay).unwrap_or_default();
    (ready_at > now).then(|| seconds(ready_at.duration_since(now)))
}

fn object_ref(job: &Job) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": job.metadata})
}

fn owning_job(meta: &ObjectMeta) -> Option<ObjectKey> {
    pods::controller_of(meta)
        .filter(|r| r.kind == "Job")
        .map(|r| ObjectKey::new(meta.namespace.clone().unwrap_or_default(), r.name.clone()))
}

/// Runs the Job controller until `stop`.
pub fn run(context: Context, stop: Stop) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let client = context.client.clone();
        let jobs = context.informers.informer("jobs", Writer::new());
        let pod_informer = context.informers.informer("pods", pods::indexed_pods());
        let sync = Arc::new(JobSync {
            writes: ClientWrites::new(client, "job-controller", &context.identity),
            jobs: jobs.store(),
            pods: pod_informer.store(),
            expectations: Arc::default(),
        });
        let queue = context.queue("job");
        let job_store = jobs.store();
        let feeds = [
            feed(
                jobs.subscribe(),
                queue.clone(),
                move |change, queue| match change.object() {
                    Some(job) => queue.add(ObjectKey::of(&**job)),
                    None => job_store.keys().into_iter().for_each(|k| queue.add(k)),
                },
            ),
            {
                let (job_store, sync) = (jobs.store(), Arc::clone(&sync));
                feed(
                    pod_informer.subscribe(),
                    queue.clone(),
                    move |change, queue| {
                        if let Change::Resynced = change {
                            job_store.keys().into_iter().for_each(|k| queue.add(k));
                        } else if let Some(key) = sync.expectations.observe_pod(&change, owning_job)
                        {
                            queue.add(key);
                        }
                    },
                )
            },
        ];
        wait_for_cache("job", &sync.jobs).await;
        wait_for_cache("job", &sync.pods).await;
        Controller::new(queue)
            .graceful_shutdown_on(stop.wait())
            .run(WORKERS, move |key: ObjectKey| {
                let sync = Arc::clone(&sync);
                async move {
                    let result = sync.reconcile(&key, Timestamp::now()).await;
                    if let Err(error) = &result {
                        debug!(%key, %error, "job sync failed");
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
    use skiff_api::k8s_openapi::{
        api::{
            batch::v1::{JobCondition, JobSpec, JobStatus},
            core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus},
        },
        apimachinery::pkg::apis::meta::v1::Time,
    };

    use super::*;
    use crate::controllers::{pods::testing::*, writes::fake::FakeWrites};

    fn job(completions: Option<i32>, parallelism: i32, backoff: i32) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("batch".into()),
                namespace: Some("default".into()),
                uid: Some("job-uid".into()),
                resource_version: Some("7".into()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                completions,
                parallelism: Some(parallelism),
                backoff_limit: Some(backoff),
                template: template(&[("batch.kubernetes.io/job-name", "batch")], "img:1"),
                ..Default::default()
            }),
            status: Some(JobStatus::default()),
        }
    }

    fn owner() -> skiff_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        pods::controller_reference("batch/v1", "Job", &job(None, 1, 0).metadata)
    }

    fn job_pod(name: &str, phase: &str) -> Pod {
        with_phase(pod(name, &[], Some(&owner()), 0), phase)
    }

    fn sync(job: Job, pods: &[Pod]) -> JobSync<FakeWrites> {
        JobSync {
            writes: FakeWrites::default(),
            jobs: store(Writer::new(), &[job]),
            pods: store(pods::indexed_pods(), pods),
            expectations: Arc::default(),
        }
    }

    use skiff_api::runtime::Writer;

    fn key() -> ObjectKey {
        ObjectKey::new("default", "batch")
    }

    fn status(s: &JobSync<FakeWrites>) -> Value {
        s.writes.of("patch-status", "jobs").last().unwrap().body["status"].clone()
    }

    #[tokio::test(start_paused = true)]
    async fn job_runs_parallelism_pods_but_no_more_than_the_completions_left() {
        let s = sync(job(Some(5), 2, 6), &[]);
        s.reconcile(&key(), at(0)).await.unwrap();
        assert_eq!(s.writes.of("create", "pods").len(), 2);
        assert_eq!(
            s.writes.of("create", "pods")[0].body["metadata"]["ownerReferences"][0]["kind"],
            "Job"
        );

        let done: Vec<Pod> = (0..4)
            .map(|i| job_pod(&format!("ok-{i}"), "Succeeded"))
            .collect();
        let s = sync(job(Some(5), 2, 6), &done);
        s.reconcile(&key(), at(0)).await.unwrap();
        assert_eq!(
            s.writes.of("create", "pods").len(),
            1,
            "one completion is left"
        );
        assert_eq!(status(&s)["succeeded"], 4);
    }

    #[tokio::test(start_paused = true)]
    async fn job_with_all_completions_is_complete_with_a_completion_time() {
        let done: Vec<Pod> = (0..5)
            .map(|i| job_pod(&format!("ok-{i}"), "Succeeded"))
            .collect();
        let s = sync(job(Some(5), 2, 6), &done);
        s.reconcile(&key(), at(30)).await.unwrap();
        let st = status(&s);
        assert_eq!(st["succeeded"], 5);
        assert_eq!(st["active"], 0);
        assert!(st["completionTime"].is_string());
        let types: Vec<_> = st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].clone())
            .collect();
        assert!(types.contains(&json!("Complete")));
        assert!(s.writes.of("create", "pods").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn job_past_its_backoff_limit_fails_and_stops_its_active_pods() {
        let pods = [
            job_pod("f1", "Failed"),
            job_pod("f2", "Failed"),
            job_pod("running", "Running"),
        ];
        let s = sync(job(Some(3), 1, 1), &pods);
        s.reconcile(&key(), at(0)).await.unwrap();
        let st = status(&s);
        assert_eq!(st["failed"], 2);
        let failed = st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Failed")
            .unwrap();
        assert_eq!(failed["reason"], "BackoffLimitExceeded");
        let deleted: Vec<_> = s
            .writes
            .of("delete", "pods")
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert_eq!(deleted, ["default/running"]);
        assert!(s.writes.of("create", "pods").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn job_active_longer_than_its_deadline_fails_with_deadline_exceeded() {
        let mut j = job(Some(1), 1, 6);
        j.spec.as_mut().unwrap().active_deadline_seconds = Some(60);
        j.status.as_mut().unwrap().start_time = Some(Time(at(0)));
        let s = sync(j.clone(), &[job_pod("slow", "Running")]);
        let action = s.reconcile(&key(), at(30)).await.unwrap();
        assert_eq!(
            action,
            Action::RequeueAfter(Duration::from_secs(31)),
            "looks again at the deadline"
        );

        let s = sync(j, &[job_pod("slow", "Running")]);
        s.reconcile(&key(), at(60)).await.unwrap();
        let failed = status(&s)["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Failed")
            .cloned()
            .unwrap();
        assert_eq!(failed["reason"], "DeadlineExceeded");
        assert_eq!(s.writes.of("delete", "pods").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn replacement_of_a_failed_pod_waits_out_the_failure_back_off() {
        let mut failed = job_pod("f1", "Failed");
        failed.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: "main".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    finished_at: Some(Time(at(100))),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        let s = sync(job(Some(1), 1, 6), std::slice::from_ref(&failed));
        let action = s.reconcile(&key(), at(104)).await.unwrap();
        assert_eq!(action, Action::RequeueAfter(Duration::from_secs(6)));
        assert!(s.writes.of("create", "pods").is_empty());

        let s = sync(job(Some(1), 1, 6), &[failed]);
        s.reconcile(&key(), at(111)).await.unwrap();
        assert_eq!(s.writes.of("create", "pods").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn finished_job_is_deleted_in_the_foreground_after_its_ttl() {
        let mut j = job(Some(1), 1, 6);
        j.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(20);
        j.status.as_mut().unwrap().conditions = Some(vec![JobCondition {
            type_: "Complete".into(),
            status: "True".into(),
            last_transition_time: Some(Time(at(0))),
            ..Default::default()
        }]);
        let s = sync(j.clone(), &[]);
        assert_eq!(
            s.reconcile(&key(), at(5)).await.unwrap(),
            Action::RequeueAfter(Duration::from_secs(16))
        );
        assert!(s.writes.of("delete", "jobs").is_empty());
        let s = sync(j, &[]);
        s.reconcile(&key(), at(20)).await.unwrap();
        let deletes = s.writes.of("delete", "jobs");
        assert_eq!(deletes.len(), 1);
        assert_eq!(deletes[0].body["propagationPolicy"], "Foreground");
    }
}
