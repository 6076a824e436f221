//! `describe` for the workload controllers: a Deployment's replicas and update strategy,
//! a ReplicaSet's and DaemonSet's counts and pod states, a Job's completions and timing,
//! each with its pod template and conditions.

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, ReplicaSet},
    batch::v1::Job,
    core::v1::Pod,
};

use super::{
    common::{self, Context},
    writer::Writer,
};
use crate::columns::format_label_selector;

/// `0 Running / 1 Waiting / 0 Succeeded / 0 Failed` over `pods`.
pub fn pod_phases(pods: &[Pod]) -> String {
    let count = |phase: &str| {
        pods.iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase))
            .count()
    };
    format!(
        "{} Running / {} Waiting / {} Succeeded / {} Failed",
        count("Running"),
        count("Pending"),
        count("Succeeded"),
        count("Failed")
    )
}

fn conditions<'a>(w: &mut Writer, rows: impl Iterator<Item = (&'a str, &'a str, Option<&'a str>)>) {
    let rows: Vec<_> = rows.collect();
    if rows.is_empty() {
        return;
    }
    w.section(0, "Conditions");
    w.row(1, ["Type", "Status", "Reason"]);
    w.row(1, ["----", "------", "------"]);
    for (kind, status, reason) in rows {
        w.row(1, [kind, status, reason.unwrap_or("")]);
    }
}

/// Writes a Deployment's description (without events).
pub fn deployment(w: &mut Writer, deployment: &Deployment, ctx: &Context) {
    common::metadata(w, &deployment.metadata, true, ctx);
    let spec = deployment.spec.clone().unwrap_or_default();
    let status = deployment.status.clone().unwrap_or_default();
    w.field(0, "Selector", format_label_selector(Some(&spec.selector)));
    let total = status.replicas.unwrap_or(0);
    w.field(
        0,
        "Replicas",
        format!(
            "{} desired | {} updated | {total} total | {} available | {} unavailable",
            spec.replicas.unwrap_or(1),
            status.updated_replicas.unwrap_or(0),
            status.available_replicas.unwrap_or(0),
            status.unavailable_replicas.unwrap_or(0)
        ),
    );
    let strategy = spec.strategy.clone().unwrap_or_default();
    let kind = strategy
        .type_
        .clone()
        .unwrap_or_else(|| "RollingUpdate".to_owned());
    w.field(0, "StrategyType", &kind);
    w.field(0, "MinReadySeconds", spec.min_ready_seconds.unwrap_or(0));
    if kind == "RollingUpdate" {
        let rolling = strategy.rolling_update.unwrap_or_default();
        let show = |v: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>| {
            v.map_or_else(|| "25%".to_owned(), common::int_or_string)
        };
        w.field(
            0,
            "RollingUpdateStrategy",
            format!(
                "{} max unavailable, {} max surge",
                show(rolling.max_unavailable.as_ref()),
                show(rolling.max_surge.as_ref())
            ),
        );
    }
    common::pod_template(w, Some(&spec.template), ctx);
    conditions(
        w,
        status
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_deref())),
    );
}

/// Writes a ReplicaSet's description (without events); `pods` are the ones it selects.
pub fn replicaset(w: &mut Writer, rs: &ReplicaSet, pods: &[Pod], ctx: &Context) {
    let meta = &rs.metadata;
    let spec = rs.spec.clone().unwrap_or_default();
    let status = rs.status.clone().unwrap_or_default();
    w.field(0, "Name", meta.name.as_deref().unwrap_or_default());
    w.field(
        0,
        "Namespace",
        meta.namespace.as_deref().unwrap_or_default(),
    );
    w.field(0, "Selector", format_label_selector(Some(&spec.selector)));
    w.multiline(0, "Labels", &common::label_lines(meta.labels.as_ref()));
    w.multiline(
        0,
        "Annotations",
        &common::annotation_lines(meta.annotations.as_ref()),
    );
    if let Some(owner) = common::controlled_by(meta) {
        w.field(0, "Controlled By", owner);
    }
    w.field(
        0,
        "Replicas",
        format!(
            "{} current / {} desired",
            status.replicas,
            spec.replicas.unwrap_or(1)
        ),
    );
    w.field(0, "Pods Status", pod_phases(pods));
    common::pod_template(w, spec.template.as_ref(), ctx);
    conditions(
        w,
        status
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_deref())),
    );
}

/// Writes a DaemonSet's description (without events).
pub fn daemonset(w: &mut Writer, ds: &DaemonSet, pods: &[Pod], ctx: &Context) {
    let meta = &ds.metadata;
    let spec = ds.spec.clone().unwrap_or_default();
    let status = ds.status.clone().unwrap_or_default();
    w.field(0, "Name", meta.name.as_deref().unwrap_or_default());
    w.field(
        0,
        "Namespace",
        meta.namespace.as_deref().unwrap_or_default(),
    );
    w.field(0, "Selector", format_label_selector(Some(&spec.selector)));
    w.field(
        0,
        "Node-Selector",
        crate::columns::format_label_map(
            spec.template
                .spec
                .as_ref()
                .and_then(|s| s.node_selector.as_ref()),
        ),
    );
    w.multiline(0, "Labels", &common::label_lines(meta.labels.as_ref()));
    w.multiline(
        0,
        "Annotations",
        &common::annotation_lines(meta.annotations.as_ref()),
    );
    w.field(
        0,
        "Desired Number of Nodes Scheduled",
        status.desired_number_scheduled,
    );
    w.field(
        0,
        "Current Number of Nodes Scheduled",
        status.current_number_scheduled,
    );
    w.field(
        0,
        "Number of Nodes Scheduled with Up-to-date Pods",
        status.updated_number_scheduled.unwrap_or(0),
    );
    w.field(
        0,
        "Number of Nodes Scheduled with Available Pods",
        status.number_available.unwrap_or(0),
    );
    w.field(
        0,
        "Number of Nodes Misscheduled",
        status.number_misscheduled,
    );
    w.field(0, "Pods Status", pod_phases(pods));
    common::pod_template(w, Some(&spec.template), ctx);
}

/// Writes a Job's description (without events).
pub fn job(w: &mut Writer, job: &Job, ctx: &Context) {
    let meta = &job.metadata;
    let spec = job.spec.clone().unwrap_or_default();
    let status = job.status.clone().unwrap_or_default();
    w.field(0, "Name", meta.name.as_deref().unwrap_or_default());
    w.field(
        0,
        "Namespace",
        meta.namespace.as_deref().unwrap_or_default(),
    );
    w.field(0, "Selector", format_label_selector(spec.selector.as_ref()));
    w.multiline(0, "Labels", &common::label_lines(meta.labels.as_ref()));
    w.multiline(
        0,
        "Annotations",
        &common::annotation_lines(meta.annotations.as_ref()),
    );
    if let Some(owner) = common::controlled_by(meta) {
        w.field(0, "Controlled By", owner);
    }
    w.field(0, "Parallelism", spec.parallelism.unwrap_or(1));
    w.field(
        0,
        "Completions",
        spec.completions
            .map_or_else(|| "<unset>".to_owned(), |c| c.to_string()),
    );
    w.field(
        0,
        "Completion Mode",
        spec.completion_mode.as_deref().unwrap_or("NonIndexed"),
    );
    w.field(0, "Suspend", spec.suspend.unwrap_or(false));
    w.field(0, "Backoff Limit", spec.backoff_limit.unwrap_or(6));
    if let Some(start) = &status.start_time {
        w.field(0, "Start Time", ctx.time(start.0));
    }
    if let Some(end) = &status.completion_time {
        w.field(0, "Completed At", ctx.time(end.0));
        if let Some(start) = &status.start_time {
            w.field(
                0,
                "Duration",
                crate::age::human_duration(end.0.duration_since(start.0)),
            );
        }
    }
    w.field(
        0,
        "Pods Statuses",
        format!(
            "{} Active ({} Ready) / {} Succeeded / {} Failed",
            status.active.unwrap_or(0),
            status.ready.unwrap_or(0),
            status.succeeded.unwrap_or(0),
            status.failed.unwrap_or(0)
        ),
    );
    common::pod_template(w, Some(&spec.template), ctx);
    conditions(
        w,
        status
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_deref())),
    );
}
