//! `describe pod`: where it runs, its status and IP, its containers with their state, its
//! conditions, QoS class, node selectors and tolerations.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::{
    common::{self, Context, annotation_lines, label_lines},
    writer::Writer,
};
use crate::columns::{format_label_map, pod::summarize};

/// Writes a pod's description (without events).
pub fn describe(w: &mut Writer, pod: &Pod, ctx: &Context) {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    w.field(0, "Name", meta.name.as_deref().unwrap_or_default());
    w.field(
        0,
        "Namespace",
        meta.namespace.as_deref().unwrap_or_default(),
    );
    w.field(0, "Priority", spec.priority.unwrap_or(0));
    if let Some(class) = &spec.priority_class_name {
        w.field(0, "Priority Class Name", class);
    }
    w.field(
        0,
        "Service Account",
        spec.service_account_name.as_deref().unwrap_or("default"),
    );
    let node = match (&spec.node_name, &status.host_ip) {
        (Some(node), Some(ip)) => format!("{node}/{ip}"),
        (Some(node), None) => node.clone(),
        (None, _) => "<none>".to_owned(),
    };
    w.field(0, "Node", node);
    if let Some(start) = &status.start_time {
        w.field(0, "Start Time", ctx.time(start.0));
    }
    w.multiline(0, "Labels", &label_lines(meta.labels.as_ref()));
    w.multiline(
        0,
        "Annotations",
        &annotation_lines(meta.annotations.as_ref()),
    );
    if let Some(deleting) = &meta.deletion_timestamp {
        w.field(
            0,
            "Status",
            format!(
                "Terminating (lasts {})",
                crate::age::since(Some(deleting.0), ctx.now)
            ),
        );
        if let Some(grace) = meta.deletion_grace_period_seconds {
            w.field(0, "Termination Grace Period", format!("{grace}s"));
        }
    } else {
        w.field(0, "Status", status.phase.as_deref().unwrap_or_default());
    }
    if let Some(reason) = &status.reason {
        w.field(0, "Reason", reason);
    }
    if let Some(message) = &status.message {
        w.field(0, "Message", message);
    }
    w.field(0, "IP", status.pod_ip.as_deref().unwrap_or_default());
    let ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.clone())
        .collect();
    if ips.is_empty() {
        w.field(0, "IPs", "<none>");
    } else {
        w.section(0, "IPs");
        for ip in ips {
            w.field(1, "IP", ip);
        }
    }
    if let Some(owner) = common::controlled_by(meta) {
        w.field(0, "Controlled By", owner);
    }
    let find = |statuses: &Option<Vec<ContainerStatus>>, name: &str| {
        statuses.iter().flatten().find(|s| s.name == name).cloned()
    };
    if let Some(init) = spec.init_containers.as_ref().filter(|c| !c.is_empty()) {
        w.section(0, "Init Containers");
        for c in init {
            let s = find(&status.init_container_statuses, &c.name);
            common::container(w, 1, c, s.as_ref(), ctx);
        }
    }
    w.section(0, "Containers");
    for c in &spec.containers {
        let s = find(&status.container_statuses, &c.name);
        common::container(w, 1, c, s.as_ref(), ctx);
    }
    let conditions = status.conditions.as_deref().unwrap_or_default();
    if conditions.is_empty() {
        w.field(0, "Conditions", "<none>");
    } else {
        w.section(0, "Conditions");
        w.row(1, ["Type", "Status"]);
        for c in conditions {
            w.row(1, [c.type_.as_str(), c.status.as_str()]);
        }
    }
    common::volumes(w, &spec);
    w.field(
        0,
        "QoS Class",
        status.qos_class.as_deref().unwrap_or_default(),
    );
    w.field(
        0,
        "Node-Selectors",
        format_label_map(spec.node_selector.as_ref()),
    );
    w.multiline(
        0,
        "Tolerations",
        &common::toleration_lines(spec.tolerations.as_deref()),
    );
}

/// The STATUS kubectl's table would show, for describers of other kinds that list pods.
pub fn table_status(pod: &Pod) -> String {
    summarize(pod).status
}
