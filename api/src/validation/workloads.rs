//! Workloads, as Kubernetes' apps/v1 and batch/v1 validation checks them: a non-empty
//! selector that matches the template's labels, counts that are not negative, restart
//! policies that suit the controller, rolling-update bounds; and the immutable selectors and
//! Job templates on update.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{
    selector_is_empty, selector_is_well_formed, selector_matches, validate_label_selector,
};
use super::names::{FIELD_IMMUTABLE, is_valid_percent};
use super::pod::validate_pod_template_spec;
use super::{FieldError, Path, immutable, json_value, non_negative};

/// Validates a workload's selector (required, not empty, well formed) and that it selects
/// the pods of its template. `kind` names the workload in the empty-selector message.
fn validate_selector_and_template(
    selector: Option<&LabelSelector>,
    template: Option<&PodTemplateSpec>,
    kind: &str,
    spec_path: &Path,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let selector_path = spec_path.child("selector");
    let template_path = spec_path.child("template");
    match selector {
        None => errors.push(FieldError::required(&selector_path, "")),
        Some(s) if s.match_labels.is_none() && s.match_expressions.is_none() => {
            errors.push(FieldError::required(&selector_path, ""));
        }
        Some(s) => {
            errors.extend(validate_label_selector(s, &selector_path));
            if selector_is_empty(s) {
                errors.push(FieldError::invalid(
                    &selector_path,
                    &json_value(s),
                    format!("empty selector is invalid for {kind}"),
                ));
            }
        }
    }
    let Some(template) = template else {
        errors.push(FieldError::required(&template_path, ""));
        return errors;
    };
    if let Some(selector) = selector.filter(|s| !selector_is_empty(s)) {
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        if !selector_is_well_formed(selector) {
            errors.push(FieldError::invalid(
                &selector_path,
                &json_value(selector),
                "invalid label selector",
            ));
        } else if !selector_matches(selector, &labels) {
            let shown = template.metadata.as_ref().and_then(|m| m.labels.clone());
            errors.push(FieldError::invalid(
                &template_path.child("metadata").child("labels"),
                &shown,
                "`selector` does not match template `labels`",
            ));
        }
    }
    errors.extend(validate_pod_template_spec(template, &template_path));
    errors
}

/// A controller that keeps pods running needs templates with `restartPolicy: Always` and no
/// active deadline.
fn validate_always_restart(
    template: Option<&PodTemplateSpec>,
    template_path: &Path,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(spec) = template.and_then(|t| t.spec.as_ref()) else {
        return errors;
    };
    let spec_path = template_path.child("spec");
    if let Some(policy) = spec
        .restart_policy
        .as_deref()
        .filter(|p| *p != "Always" && !p.is_empty())
    {
        errors.push(FieldError::not_supported(
            &spec_path.child("restartPolicy"),
            policy,
            &["Always"],
        ));
    }
    if spec.active_deadline_seconds.is_some() {
        errors.push(FieldError::forbidden(
            &spec_path.child("activeDeadlineSeconds"),
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        ));
    }
    errors
}

fn non_negative_opt(value: Option<i32>, path: &Path) -> Option<FieldError> {
    value.and_then(|v| non_negative(i64::from(v), path))
}

/// The number of an int-or-percent (`25%` -> 25), as Kubernetes' `getIntOrPercentValue`.
fn int_or_percent_value(value: &IntOrString) -> Option<i64> {
    match value {
        IntOrString::Int(i) => Some(i64::from(*i)),
        IntOrString::String(s) => s.strip_suffix('%').and_then(|n| n.parse().ok()),
    }
}

/// Kubernetes' `ValidatePositiveIntOrPercent`.
fn validate_positive_int_or_percent(value: &IntOrString, path: &Path) -> Vec<FieldError> {
    match value {
        IntOrString::String(s) => is_valid_percent(s)
            .into_iter()
            .map(|msg| FieldError::invalid(path, value, msg))
            .collect(),
        IntOrString::Int(i) => non_negative(i64::from(*i), path).into_iter().collect(),
    }
}

fn validate_not_more_than_100_percent(value: &IntOrString, path: &Path) -> Option<FieldError> {
    match value {
        IntOrString::String(_) if int_or_percent_value(value).is_some_and(|v| v > 100) => Some(
            FieldError::invalid(path, value, "must not be greater than 100%"),
        ),
        _ => None,
    }
}

/// Validates maxUnavailable and maxSurge, which may not both be zero.
fn validate_rolling_bounds(
    max_unavailable: Option<&IntOrString>,
    max_surge: Option<&IntOrString>,
    path: &Path,
    both_zero_message: &str,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let unavailable_path = path.child("maxUnavailable");
    if let Some(value) = max_unavailable {
        errors.extend(validate_positive_int_or_percent(value, &unavailable_path));
        errors.extend(validate_not_more_than_100_percent(value, &unavailable_path));
    }
    if let Some(value) = max_surge {
        errors.extend(validate_positive_int_or_percent(
            value,
            &path.child("maxSurge"),
        ));
    }
    let zero = |v: Option<&IntOrString>| v.and_then(int_or_percent_value).unwrap_or(0) == 0;
    if zero(max_unavailable) && zero(max_surge) {
        let shown = max_unavailable.cloned().unwrap_or(IntOrString::Int(0));
        errors.push(FieldError::invalid(
            &unavailable_path,
            &shown,
            both_zero_message,
        ));
    }
    errors
}

/// Validates a Deployment.
pub fn validate_deployment(deployment: &Deployment) -> Vec<FieldError> {
    let spec_path = Path::new("spec");
    let Some(spec) = &deployment.spec else {
        return vec![FieldError::required(&spec_path, "")];
    };
    let mut errors = Vec::new();
    errors.extend(non_negative_opt(
        spec.replicas,
        &spec_path.child("replicas"),
    ));
    errors.extend(validate_selector_and_template(
        Some(&spec.selector),
        Some(&spec.template),
        "deployment",
        &spec_path,
    ));
    errors.extend(validate_always_restart(
        Some(&spec.template),
        &spec_path.child("template"),
    ));
    if let Some(strategy) = &spec.strategy {
        let path = spec_path.child("strategy");
        match strategy.type_.as_deref() {
            Some("Recreate") => {
                if strategy.rolling_update.is_some() {
                    errors.push(FieldError::forbidden(
                        &path.child("rollingUpdate"),
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            Some("RollingUpdate") => {
                if let Some(rolling) = &strategy.rolling_update {
                    errors.extend(validate_rolling_bounds(
                        rolling.max_unavailable.as_ref(),
                        rolling.max_surge.as_ref(),
                        &path.child("rollingUpdate"),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
            }
            None | Some("") => errors.push(FieldError::required(&path.child("type"), "")),
            Some(other) => errors.push(FieldError::not_supported(
                &path.child("type"),
                other,
                &["Recreate", "RollingUpdate"],
            )),
        }
    }
    errors.extend(non_negative_opt(
        spec.min_ready_seconds,
        &spec_path.child("minReadySeconds"),
    ));
    errors.extend(non_negative_opt(
        spec.revision_history_limit,
        &spec_path.child("revisionHistoryLimit"),
    ));
    if let Some(deadline) = spec.progress_deadline_seconds {
        errors.extend(non_negative(
            i64::from(deadline),
            &spec_path.child("progressDeadlineSeconds"),
        ));
        if deadline <= spec.min_ready_seconds.unwrap_or(0) {
            errors.push(FieldError::invalid(
                &spec_path.child("progressDeadlineSeconds"),
                &deadline,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errors
}

/// Validates a ReplicaSet.
pub fn validate_replica_set(replica_set: &ReplicaSet) -> Vec<FieldError> {
    let spec_path = Path::new("spec");
    let Some(spec) = &replica_set.spec else {
        return vec![FieldError::required(&spec_path, "")];
    };
    let mut errors = Vec::new();
    errors.extend(non_negative_opt(
        spec.replicas,
        &spec_path.child("replicas"),
    ));
    errors.extend(non_negative_opt(
        spec.min_ready_seconds,
        &spec_path.child("minReadySeconds"),
    ));
    errors.extend(validate_selector_and_template(
        Some(&spec.selector),
        spec.template.as_ref(),
        "replicaset",
        &spec_path,
    ));
    errors.extend(validate_always_restart(
        spec.template.as_ref(),
        &spec_path.child("template"),
    ));
    errors
}

/// Validates a DaemonSet.
pub fn validate_daemon_set(daemon_set: &DaemonSet) -> Vec<FieldError> {
    let spec_path = Path::new("spec");
    let Some(spec) = &daemon_set.spec else {
        return vec![FieldError::required(&spec_path, "")];
    };
    let mut errors = Vec::new();
    errors.extend(validate_selector_and_template(
        Some(&spec.selector),
        Some(&spec.template),
        "daemonset",
        &spec_path,
    ));
    errors.extend(validate_always_restart(
        Some(&spec.template),
        &spec_path.child("template"),
    ));
    errors.extend(non_negative_opt(
        spec.min_ready_seconds,
        &spec_path.child("minReadySeconds"),
    ));
    errors.extend(non_negative_opt(
        spec.revision_history_limit,
        &spec_path.child("revisionHistoryLimit"),
    ));
    if let Some(strategy) = &spec.update_strategy {
        let path = spec_path.child("updateStrategy");
        match strategy.type_.as_deref() {
            Some("OnDelete") => {}
            Some("RollingUpdate") => {
                if let Some(rolling) = &strategy.rolling_update {
                    errors.extend(validate_rolling_bounds(
                        rolling.max_unavailable.as_ref(),
                        rolling.max_surge.as_ref(),
                        &path.child("rollingUpdate"),
                        "cannot be 0 when maxSurge is 0",
                    ));
                }
            }
            None | Some("") => errors.push(FieldError::required(&path.child("type"), "")),
            Some(other) => errors.push(FieldError::not_supported(
                &path.child("type"),
                other,
                &["OnDelete", "RollingUpdate"],
            )),
        }
    }
    errors
}

/// Validates a Job: pods that restart `OnFailure` or `Never`, counts not negative, a
/// selector (when set, or required with `manualSelector`) that matches the template.
pub fn validate_job(job: &Job) -> Vec<FieldError> {
    let spec_path = Path::new("spec");
    let Some(spec) = &job.spec else {
        return vec![FieldError::required(&spec_path, "")];
    };
    let mut errors = Vec::new();
    for (field, value) in [
        ("parallelism", spec.parallelism),
        ("completions", spec.completions),
        ("backoffLimit", spec.backoff_limit),
        ("ttlSecondsAfterFinished", spec.ttl_seconds_after_finished),
    ] {
        errors.extend(non_negative_opt(value, &spec_path.child(field)));
    }
    if let Some(deadline) = spec.active_deadline_seconds {
        errors.extend(non_negative(
            deadline,
            &spec_path.child("activeDeadlineSeconds"),
        ));
    }
    let template_path = spec_path.child("template");
    if spec.selector.is_some() || spec.manual_selector == Some(true) {
        errors.extend(validate_selector_and_template(
            spec.selector.as_ref(),
            Some(&spec.template),
            "job",
            &spec_path,
        ));
    } else {
        // The API server generates the selector from the Job's uid
        // (`defaults::workloads::generate_job_selector`).
        errors.extend(validate_pod_template_spec(&spec.template, &template_path));
    }
    if let Some(template_spec) = &spec.template.spec {
        let policy = template_spec.restart_policy.as_deref().unwrap_or_default();
        if !policy.is_empty() && !["OnFailure", "Never"].contains(&policy) {
            errors.push(FieldError::not_supported(
                &template_path.child("spec").child("restartPolicy"),
                policy,
                &["OnFailure", "Never"],
            ));
        }
    }
    match spec.completion_mode.as_deref() {
        None | Some("NonIndexed") => {}
        Some("Indexed") => {
            if spec.completions.is_none() {
                errors.push(FieldError::required(
                    &spec_path.child("completions"),
                    "when completion mode is Indexed",
                ));
            }
        }
        Some(other) => errors.push(FieldError::not_supported(
            &spec_path.child("completionMode"),
            other,
            &["Indexed", "NonIndexed"],
        )),
    }
    errors
}

fn selector_immutable(old: &LabelSelector, new: &LabelSelector) -> Option<FieldError> {
    immutable(
        old,
        new,
        &json_value(new),
        &Path::new("spec").child("selector"),
    )
}

/// A Deployment's selector may not change.
pub fn validate_deployment_update(old: &Deployment, new: &Deployment) -> Vec<FieldError> {
    match (&old.spec, &new.spec) {
        (Some(old), Some(new)) => selector_immutable(&old.selector, &new.selector)
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// A ReplicaSet's selector may not change.
pub fn validate_replica_set_update(old: &ReplicaSet, new: &ReplicaSet) -> Vec<FieldError> {
    match (&old.spec, &new.spec) {
        (Some(old), Some(new)) => selector_immutable(&old.selector, &new.selector)
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// A DaemonSet's selector may not change.
pub fn validate_daemon_set_update(old: &DaemonSet, new: &DaemonSet) -> Vec<FieldError> {
    match (&old.spec, &new.spec) {
        (Some(old), Some(new)) => selector_immutable(&old.selector, &new.selector)
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// A Job's selector, template, completions and completion mode may not change.
pub fn validate_job_update(old: &Job, new: &Job) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let (Some(old), Some(new)) = (&old.spec, &new.spec) else {
        return errors;
    };
    let spec_path = Path::new("spec");
    // A selector generated by the API server is carried over when the update omits it.
    if new.selector.is_some() {
        errors.extend(immutable(
            &old.selector,
            &new.selector,
            &json_value(&new.selector),
            &spec_path.child("selector"),
        ));
    }
    if old.template != new.template {
        errors.push(FieldError::invalid(
            &spec_path.child("template"),
            &json_value(&new.template),
            FIELD_IMMUTABLE,
        ));
    }
    if old.completions != new.completions {
        let shown = new
            .completions
            .map_or_else(|| "null".to_owned(), |c| c.to_string());
        errors.push(FieldError {
            path: spec_path.child("completions").to_string(),
            kind: super::ErrorKind::Invalid,
            value: Some(shown),
            detail: FIELD_IMMUTABLE.to_owned(),
        });
    }
    errors.extend(immutable(
        &old.completion_mode,
        &new.completion_mode,
        new.completion_mode.as_deref().unwrap_or_default(),
        &spec_path.child("completionMode"),
    ));
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DaemonSetSpec, DaemonSetUpdateStrategy, DeploymentSpec, DeploymentStrategy, ReplicaSetSpec,
        RollingUpdateDaemonSet, RollingUpdateDeployment,
    };
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, ObjectMeta};
    use std::collections::BTreeMap;

    fn labels(app: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_owned(), app.to_owned())])
    }

    fn selector(app: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels(app)),
            match_expressions: None,
        }
    }

    fn template(app: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels(app)),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: Some("nginx:1.27".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn deployment(selector: LabelSelector, template: PodTemplateSpec) -> Deployment {
        let mut d = Deployment {
            spec: Some(DeploymentSpec {
                selector,
                template,
                ..Default::default()
            }),
            ..Default::default()
        };
        crate::defaults::workloads::default_deployment(&mut d);
        d
    }

    fn strings(errors: Vec<FieldError>) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn deployment_whose_selector_matches_template_labels_is_valid() {
        assert!(validate_deployment(&deployment(selector("web"), template("web"))).is_empty());
    }

    #[test]
    fn deployment_whose_selector_does_not_match_template_labels_is_rejected() {
        assert_eq!(
            strings(validate_deployment(&deployment(
                selector("web"),
                template("db")
            ))),
            vec![
                r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"db"}: `selector` does not match template `labels`"#
            ]
        );
    }

    #[test]
    fn deployment_without_a_selector_is_rejected() {
        assert_eq!(
            strings(validate_deployment(&deployment(
                LabelSelector::default(),
                template("web")
            ))),
            vec!["spec.selector: Required value"]
        );
        let empty = LabelSelector {
            match_labels: Some(BTreeMap::new()),
            match_expressions: None,
        };
        assert_eq!(
            strings(validate_deployment(&deployment(empty, template("web")))),
            vec![
                r#"spec.selector: Invalid value: {"matchLabels":{}}: empty selector is invalid for deployment"#
            ]
        );
    }

    #[test]
    fn deployment_template_without_image_is_reported_at_the_template_path() {
        let mut t = template("web");
        t.spec.as_mut().expect("spec").containers[0].image = None;
        assert_eq!(
            strings(validate_deployment(&deployment(selector("web"), t))),
            vec!["spec.template.spec.containers[0].image: Required value"]
        );
    }

    #[test]
    fn deployment_with_negative_replicas_is_rejected() {
        let mut d = deployment(selector("web"), template("web"));
        d.spec.as_mut().expect("spec").replicas = Some(-1);
        assert_eq!(
            strings(validate_deployment(&d)),
            vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
        );
    }

    #[test]
    fn deployment_template_must_restart_always() {
        let mut t = template("web");
        t.spec.as_mut().expect("spec").restart_policy = Some("Never".into());
        assert_eq!(
            strings(validate_deployment(&deployment(selector("web"), t))),
            vec![
                r#"spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always""#
            ]
        );
    }

    #[test]
    fn deployment_max_surge_and_max_unavailable_may_not_both_be_zero() {
        let mut d = deployment(selector("web"), template("web"));
        d.spec.as_mut().expect("spec").strategy = Some(DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(0)),
                max_unavailable: Some(IntOrString::String("0%".into())),
            }),
        });
        assert_eq!(
            strings(validate_deployment(&d)),
            vec![
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0%: may not be 0 when `maxSurge` is 0"
            ]
        );
    }

    #[test]
    fn deployment_rolling_bounds_must_be_percentages_up_to_100() {
        let mut d = deployment(selector("web"), template("web"));
        d.spec.as_mut().expect("spec").strategy = Some(DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::String("ten".into())),
                max_unavailable: Some(IntOrString::String("150%".into())),
            }),
        });
        let found = strings(validate_deployment(&d));
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0],
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 150%: must not be greater than 100%"
        );
        assert!(found[1].starts_with(
            "spec.strategy.rollingUpdate.maxSurge: Invalid value: ten: a valid percent string must be"
        ));
    }

    #[test]
    fn recreate_deployment_may_not_have_rolling_update_parameters() {
        let mut d = deployment(selector("web"), template("web"));
        d.spec.as_mut().expect("spec").strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: Some(RollingUpdateDeployment::default()),
        });
        assert_eq!(
            strings(validate_deployment(&d)),
            vec![
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"
            ]
        );
    }

    #[test]
    fn progress_deadline_must_exceed_min_ready_seconds() {
        let mut d = deployment(selector("web"), template("web"));
        let spec = d.spec.as_mut().expect("spec");
        spec.min_ready_seconds = Some(600);
        assert_eq!(
            strings(validate_deployment(&d)),
            vec![
                "spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"
            ]
        );
    }

    #[test]
    fn selector_expressions_are_matched_against_template_labels() {
        let by_expression = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: "In".into(),
                values: Some(vec!["web".into(), "api".into()]),
            }]),
        };
        assert!(validate_deployment(&deployment(by_expression, template("api"))).is_empty());
    }

    #[test]
    fn replica_set_selector_must_match_and_template_is_required() {
        let mut rs = ReplicaSet {
            spec: Some(ReplicaSetSpec {
                selector: selector("web"),
                template: Some(template("db")),
                ..Default::default()
            }),
            ..Default::default()
        };
        crate::defaults::workloads::default_replica_set(&mut rs);
        assert_eq!(validate_replica_set(&rs).len(), 1);
        rs.spec.as_mut().expect("spec").template = None;
        assert_eq!(
            strings(validate_replica_set(&rs)),
            vec!["spec.template: Required value"]
        );
    }

    #[test]
    fn daemon_set_rolling_update_may_not_be_all_zero() {
        let mut ds = DaemonSet {
            spec: Some(DaemonSetSpec {
                selector: selector("agent"),
                template: template("agent"),
                update_strategy: Some(DaemonSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDaemonSet {
                        max_surge: Some(IntOrString::Int(0)),
                        max_unavailable: Some(IntOrString::Int(0)),
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        crate::defaults::workloads::default_daemon_set(&mut ds);
        assert_eq!(
            strings(validate_daemon_set(&ds)),
            vec![
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: cannot be 0 when maxSurge is 0"
            ]
        );
    }

    fn job(restart_policy: &str) -> Job {
        let mut t = template("pi");
        t.spec.as_mut().expect("spec").restart_policy = Some(restart_policy.into());
        let mut job = Job {
            spec: Some(JobSpec {
                template: t,
                ..Default::default()
            }),
            ..Default::default()
        };
        crate::defaults::workloads::default_job(&mut job);
        job
    }

    #[test]
    fn job_pods_restart_on_failure_or_never() {
        assert!(validate_job(&job("Never")).is_empty());
        assert!(validate_job(&job("OnFailure")).is_empty());
        assert_eq!(
            strings(validate_job(&job("Always"))),
            vec![
                r#"spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "Never", "OnFailure""#
            ]
        );
    }

    #[test]
    fn job_counts_may_not_be_negative() {
        let mut j = job("Never");
        let spec = j.spec.as_mut().expect("spec");
        spec.completions = Some(-1);
        spec.parallelism = Some(-2);
        assert_eq!(
            strings(validate_job(&j)),
            vec![
                "spec.parallelism: Invalid value: -2: must be greater than or equal to 0",
                "spec.completions: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
    }

    #[test]
    fn job_with_manual_selector_must_match_its_template() {
        let mut j = job("Never");
        let spec = j.spec.as_mut().expect("spec");
        spec.manual_selector = Some(true);
        spec.selector = Some(selector("other"));
        assert_eq!(validate_job(&j).len(), 1);
    }

    #[test]
    fn deployment_selector_is_immutable() {
        let old = deployment(selector("web"), template("web"));
        let mut new = old.clone();
        new.spec.as_mut().expect("spec").selector = selector("web2");
        assert_eq!(
            strings(validate_deployment_update(&old, &new)),
            vec![
                r#"spec.selector: Invalid value: {"matchLabels":{"app":"web2"}}: field is immutable"#
            ]
        );
        let mut scaled = old.clone();
        scaled.spec.as_mut().expect("spec").replicas = Some(5);
        assert!(validate_deployment_update(&old, &scaled).is_empty());
    }

    #[test]
    fn job_template_is_immutable() {
        let old = job("Never");
        let mut new = old.clone();
        new.spec
            .as_mut()
            .expect("spec")
            .template
            .spec
            .as_mut()
            .expect("spec")
            .containers[0]
            .image = Some("busybox".into());
        let found = strings(validate_job_update(&old, &new));
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("spec.template: Invalid value: {"));
        assert!(found[0].ends_with(": field is immutable"));
    }
}
