//! Defaults of workloads, as Kubernetes' apps/v1 and batch/v1 defaulters set them:
//! replicas, update strategies, history limits, Job counts and policies, and the pod
//! template of each (through [`super::pod::default_pod_spec`]).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetUpdateStrategy, Deployment, DeploymentStrategy, ReplicaSet,
    RollingUpdateDaemonSet, RollingUpdateDeployment,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::{default_pod_spec, set_if_empty};

/// Old ReplicaSets (or DaemonSet revisions) kept for rollback.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
/// Seconds a rollout may make no progress before it is marked failed.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// Retries of a Job's pods before the Job fails.
pub const DEFAULT_BACKOFF_LIMIT: i32 = 6;

fn default_template(template: &mut PodTemplateSpec) {
    default_pod_spec(template.spec.get_or_insert_with(Default::default));
}

/// One replica, a 25%/25% rolling update, 10 old ReplicaSets, a 600 s progress deadline.
pub fn default_deployment(deployment: &mut Deployment) {
    let spec = deployment.spec.get_or_insert_with(Default::default);
    spec.replicas.get_or_insert(1);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    set_if_empty(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        rolling
            .max_unavailable
            .get_or_insert_with(|| IntOrString::String("25%".into()));
        rolling
            .max_surge
            .get_or_insert_with(|| IntOrString::String("25%".into()));
    }
    spec.revision_history_limit
        .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
    spec.progress_deadline_seconds
        .get_or_insert(DEFAULT_PROGRESS_DEADLINE_SECONDS);
    default_template(&mut spec.template);
}

/// One replica.
pub fn default_replica_set(replica_set: &mut ReplicaSet) {
    let spec = replica_set.spec.get_or_insert_with(Default::default);
    spec.replicas.get_or_insert(1);
    if let Some(template) = spec.template.as_mut() {
        default_template(template);
    }
}

/// A rolling update one node at a time (maxUnavailable 1, maxSurge 0), 10 revisions kept.
pub fn default_daemon_set(daemon_set: &mut DaemonSet) {
    let spec = daemon_set.spec.get_or_insert_with(Default::default);
    let strategy = spec
        .update_strategy
        .get_or_insert_with(DaemonSetUpdateStrategy::default);
    set_if_empty(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDaemonSet::default);
        rolling.max_unavailable.get_or_insert(IntOrString::Int(1));
        rolling.max_surge.get_or_insert(IntOrString::Int(0));
    }
    spec.revision_history_limit
        .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
    default_template(&mut spec.template);
}

/// One pod at a time to one completion, 6 retries, not indexed, not suspended; the Job takes
/// its template's labels when it has none.
pub fn default_job(job: &mut Job) {
    let spec = job.spec.get_or_insert_with(Default::default);
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
    }
    spec.parallelism.get_or_insert(1);
    if spec.backoff_limit.is_none() {
        spec.backoff_limit = Some(if spec.backoff_limit_per_index.is_some() {
            i32::MAX
        } else {
            DEFAULT_BACKOFF_LIMIT
        });
    }
    set_if_empty(&mut spec.completion_mode, "NonIndexed");
    spec.suspend.get_or_insert(false);
    if spec.pod_replacement_policy.is_none() {
        let policy = if spec.pod_failure_policy.is_some() {
            "Failed"
        } else {
            "TerminatingOrFailed"
        };
        spec.pod_replacement_policy = Some(policy.to_owned());
    }
    for rule in spec
        .pod_failure_policy
        .iter_mut()
        .flat_map(|p| p.rules.iter_mut())
    {
        for pattern in rule.on_pod_conditions.iter_mut().flatten() {
            if pattern.status.is_empty() {
                pattern.status = "True".to_owned();
            }
        }
    }
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone());
    default_template(&mut spec.template);
    if let Some(labels) = template_labels
        && job.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty)
    {
        job.metadata.labels = Some(labels);
    }
}

/// The label the API server puts on a Job's pods to tie them to the Job's uid.
pub const JOB_CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The label naming a Job's pods' Job.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Kubernetes' `generateSelector` for Jobs: unless `spec.manualSelector` is true, the API
/// server selects a Job's pods by its uid and labels the template to match. The control
/// plane calls this once it has given the Job its uid, before storing it.
pub fn generate_job_selector(job: &mut Job, uid: &str) {
    let name = job.metadata.name.clone().unwrap_or_default();
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    if spec.manual_selector == Some(true) {
        return;
    }
    let template_labels = spec
        .template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    for (key, value) in [
        (JOB_CONTROLLER_UID_LABEL, uid),
        (JOB_NAME_LABEL, name.as_str()),
        ("controller-uid", uid),
        ("job-name", name.as_str()),
    ] {
        template_labels
            .entry(key.to_owned())
            .or_insert_with(|| value.to_owned());
    }
    if spec.selector.is_none() {
        spec.selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                JOB_CONTROLLER_UID_LABEL.to_owned(),
                uid.to_owned(),
            )])),
            match_expressions: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DaemonSetSpec, DeploymentSpec};
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn deployment_gets_one_replica_and_a_quarter_rolling_update() {
        let mut deployment = Deployment::default();
        default_deployment(&mut deployment);
        let spec = deployment.spec.expect("spec");
        assert_eq!(spec.replicas, Some(1));
        let strategy = spec.strategy.expect("strategy");
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let rolling = strategy.rolling_update.expect("rolling update");
        assert_eq!(rolling.max_surge, Some(IntOrString::String("25%".into())));
        assert_eq!(
            rolling.max_unavailable,
            Some(IntOrString::String("25%".into()))
        );
        assert_eq!(spec.revision_history_limit, Some(10));
        assert_eq!(spec.progress_deadline_seconds, Some(600));
        let template = spec.template.spec.expect("template spec");
        assert_eq!(template.restart_policy.as_deref(), Some("Always"));
    }

    #[test]
    fn recreate_deployments_get_no_rolling_update() {
        let mut deployment = Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(0),
                strategy: Some(DeploymentStrategy {
                    type_: Some("Recreate".into()),
                    rolling_update: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        default_deployment(&mut deployment);
        let spec = deployment.spec.expect("spec");
        assert_eq!(spec.replicas, Some(0));
        assert_eq!(spec.strategy.expect("strategy").rolling_update, None);
    }

    #[test]
    fn replica_set_gets_one_replica() {
        let mut replica_set = ReplicaSet::default();
        default_replica_set(&mut replica_set);
        assert_eq!(replica_set.spec.expect("spec").replicas, Some(1));
    }

    #[test]
    fn daemon_set_rolls_one_node_at_a_time() {
        let mut daemon_set = DaemonSet {
            spec: Some(DaemonSetSpec::default()),
            ..Default::default()
        };
        default_daemon_set(&mut daemon_set);
        let spec = daemon_set.spec.expect("spec");
        let strategy = spec.update_strategy.expect("strategy");
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let rolling = strategy.rolling_update.expect("rolling");
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(rolling.max_surge, Some(IntOrString::Int(0)));
        assert_eq!(spec.revision_history_limit, Some(10));
    }

    #[test]
    fn job_runs_once_with_six_retries_and_takes_template_labels() {
        let mut job = Job {
            spec: Some(JobSpec {
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([("app".to_owned(), "batch".to_owned())])),
                        ..Default::default()
                    }),
                    spec: None,
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        default_job(&mut job);
        let spec = job.spec.clone().expect("spec");
        assert_eq!(
            (spec.parallelism, spec.completions, spec.backoff_limit),
            (Some(1), Some(1), Some(6))
        );
        assert_eq!(spec.completion_mode.as_deref(), Some("NonIndexed"));
        assert_eq!(spec.suspend, Some(false));
        assert_eq!(
            spec.pod_replacement_policy.as_deref(),
            Some("TerminatingOrFailed")
        );
        assert_eq!(job.metadata.labels.expect("labels")["app"], "batch");
    }

    #[test]
    fn job_with_parallelism_keeps_completions_unset() {
        let mut job = Job {
            spec: Some(JobSpec {
                parallelism: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        };
        default_job(&mut job);
        let spec = job.spec.expect("spec");
        assert_eq!((spec.parallelism, spec.completions), (Some(3), None));
    }

    #[test]
    fn job_selector_is_generated_from_the_uid() {
        let mut job = Job {
            metadata: ObjectMeta {
                name: Some("pi".into()),
                ..Default::default()
            },
            spec: Some(JobSpec::default()),
            ..Default::default()
        };
        generate_job_selector(&mut job, "1234");
        let spec = job.spec.expect("spec");
        let selector = spec.selector.expect("selector");
        assert_eq!(
            selector.match_labels.expect("labels")[JOB_CONTROLLER_UID_LABEL],
            "1234"
        );
        let labels = spec
            .template
            .metadata
            .and_then(|m| m.labels)
            .expect("labels");
        assert_eq!(labels[JOB_NAME_LABEL], "pi");
        assert_eq!(labels["controller-uid"], "1234");
    }
}
