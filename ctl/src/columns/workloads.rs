//! Tables of the workload controllers: Deployments, ReplicaSets, DaemonSets and Jobs, with
//! kubectl's columns (wide adds CONTAINERS, IMAGES and SELECTOR).

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, ReplicaSet},
    batch::v1::{Job, JobCondition},
    core::v1::PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{RowContext, creation, format_label_map, format_label_selector};
use crate::age;

const WIDE: [&str; 3] = ["CONTAINERS", "IMAGES", "SELECTOR"];

fn with_wide(mut headers: Vec<&'static str>, wide: bool) -> Vec<&'static str> {
    if wide {
        headers.extend(WIDE);
    }
    headers
}

/// CONTAINERS, IMAGES and SELECTOR, the wide cells every workload shares.
fn wide_cells(template: Option<&PodTemplateSpec>, selector: Option<&LabelSelector>) -> [String; 3] {
    let containers = template
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c.image.as_deref().unwrap_or_default())
        .collect();
    [
        names.join(","),
        images.join(","),
        format_label_selector(selector),
    ]
}

/// Deployment columns after NAME.
pub fn deployment_headers(wide: bool) -> Vec<&'static str> {
    with_wide(vec!["READY", "UP-TO-DATE", "AVAILABLE", "AGE"], wide)
}

/// Deployment cells after NAME.
pub fn deployment_row(deployment: &Deployment, ctx: &RowContext) -> Vec<String> {
    let spec = deployment.spec.as_ref();
    let status = deployment.status.clone().unwrap_or_default();
    let desired = spec.and_then(|s| s.replicas).unwrap_or(1);
    let mut cells = vec![
        format!("{}/{desired}", status.ready_replicas.unwrap_or(0)),
        status.updated_replicas.unwrap_or(0).to_string(),
        status.available_replicas.unwrap_or(0).to_string(),
        age::since(creation(&deployment.metadata), ctx.now),
    ];
    if ctx.wide {
        cells.extend(wide_cells(
            spec.map(|s| &s.template),
            spec.map(|s| &s.selector),
        ));
    }
    cells
}

/// ReplicaSet columns after NAME.
pub fn replicaset_headers(wide: bool) -> Vec<&'static str> {
    with_wide(vec!["DESIRED", "CURRENT", "READY", "AGE"], wide)
}

/// ReplicaSet cells after NAME.
pub fn replicaset_row(rs: &ReplicaSet, ctx: &RowContext) -> Vec<String> {
    let spec = rs.spec.as_ref();
    let status = rs.status.clone().unwrap_or_default();
    let mut cells = vec![
        spec.and_then(|s| s.replicas).unwrap_or(1).to_string(),
        status.replicas.to_string(),
        status.ready_replicas.unwrap_or(0).to_string(),
        age::since(creation(&rs.metadata), ctx.now),
    ];
    if ctx.wide {
        cells.extend(wide_cells(
            spec.and_then(|s| s.template.as_ref()),
            spec.map(|s| &s.selector),
        ));
    }
    cells
}

/// DaemonSet columns after NAME.
pub fn daemonset_headers(wide: bool) -> Vec<&'static str> {
    with_wide(
        vec![
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE",
        ],
        wide,
    )
}

/// DaemonSet cells after NAME.
pub fn daemonset_row(ds: &DaemonSet, ctx: &RowContext) -> Vec<String> {
    let spec = ds.spec.as_ref();
    let status = ds.status.clone().unwrap_or_default();
    let node_selector = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.node_selector.as_ref());
    let mut cells = vec![
        status.desired_number_scheduled.to_string(),
        status.current_number_scheduled.to_string(),
        status.number_ready.to_string(),
        status.updated_number_scheduled.unwrap_or(0).to_string(),
        status.number_available.unwrap_or(0).to_string(),
        format_label_map(node_selector),
        age::since(creation(&ds.metadata), ctx.now),
    ];
    if ctx.wide {
        cells.extend(wide_cells(
            spec.map(|s| &s.template),
            spec.map(|s| &s.selector),
        ));
    }
    cells
}

/// Job columns after NAME.
pub fn job_headers(wide: bool) -> Vec<&'static str> {
    with_wide(vec!["STATUS", "COMPLETIONS", "DURATION", "AGE"], wide)
}

/// Job cells after NAME.
pub fn job_row(job: &Job, ctx: &RowContext) -> Vec<String> {
    let spec = job.spec.as_ref();
    let status = job.status.clone().unwrap_or_default();
    let succeeded = status.succeeded.unwrap_or(0);
    let completions = match (
        spec.and_then(|s| s.completions),
        spec.and_then(|s| s.parallelism),
    ) {
        (Some(completions), _) => format!("{succeeded}/{completions}"),
        (None, Some(parallelism)) if parallelism > 1 => {
            format!("{succeeded}/1 of {parallelism}")
        }
        _ => format!("{succeeded}/1"),
    };
    let duration = match (&status.start_time, &status.completion_time) {
        (None, _) => String::new(),
        (Some(start), None) => age::human_duration(ctx.now.duration_since(start.0)),
        (Some(start), Some(end)) => age::human_duration(end.0.duration_since(start.0)),
    };
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let mut cells = vec![
        job_status(conditions, job.metadata.deletion_timestamp.is_some()).to_owned(),
        completions,
        duration,
        age::since(creation(&job.metadata), ctx.now),
    ];
    if ctx.wide {
        cells.extend(wide_cells(
            spec.map(|s| &s.template),
            spec.and_then(|s| s.selector.as_ref()),
        ));
    }
    cells
}

/// kubectl's Job STATUS: the first of Complete, Failed, Terminating, Suspended,
/// FailureTarget that holds, else Running.
pub fn job_status(conditions: &[JobCondition], deleting: bool) -> &'static str {
    let has = |kind: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == kind && c.status == "True")
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if deleting {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}
