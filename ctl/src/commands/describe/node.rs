//! `describe node`: roles, taints, conditions, addresses, capacity, system info and the
//! pods running there.

use k8s_openapi::api::core::v1::{Node, Pod};

use super::{
    common::{self, Context},
    writer::Writer,
};
use crate::{age, columns::node::roles};

/// Writes a Node's description (without events); `pods` are the pods bound to it.
pub fn describe(w: &mut Writer, node: &Node, pods: &[Pod], ctx: &Context) {
    let meta = &node.metadata;
    let spec = node.spec.clone().unwrap_or_default();
    let status = node.status.clone().unwrap_or_default();
    w.field(0, "Name", meta.name.as_deref().unwrap_or_default());
    let roles = roles(node);
    w.field_or_none(0, "Roles", &roles.join(","));
    w.multiline(0, "Labels", &common::label_lines(meta.labels.as_ref()));
    w.multiline(
        0,
        "Annotations",
        &common::annotation_lines(meta.annotations.as_ref()),
    );
    if let Some(created) = &meta.creation_timestamp {
        w.field(0, "CreationTimestamp", ctx.time(created.0));
    }
    let taints: Vec<String> = spec
        .taints
        .iter()
        .flatten()
        .map(|t| match &t.value {
            Some(v) if !v.is_empty() => format!("{}={v}:{}", t.key, t.effect),
            _ => format!("{}:{}", t.key, t.effect),
        })
        .collect();
    w.multiline(0, "Taints", &taints);
    w.field(0, "Unschedulable", spec.unschedulable.unwrap_or(false));
    let conditions = status.conditions.as_deref().unwrap_or_default();
    if conditions.is_empty() {
        w.field(0, "Conditions", "<none>");
    } else {
        w.section(0, "Conditions");
        w.row(
            1,
            [
                "Type",
                "Status",
                "LastHeartbeatTime",
                "LastTransitionTime",
                "Reason",
                "Message",
            ],
        );
        w.row(
            1,
            [
                "----",
                "------",
                "-----------------",
                "------------------",
                "------",
                "-------",
            ],
        );
        for c in conditions {
            w.row(
                1,
                [
                    c.type_.clone(),
                    c.status.clone(),
                    ctx.time_or_unset(c.last_heartbeat_time.as_ref().map(|t| t.0)),
                    ctx.time_or_unset(c.last_transition_time.as_ref().map(|t| t.0)),
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                ],
            );
        }
    }
    w.section(0, "Addresses");
    for address in status.addresses.iter().flatten() {
        w.field(1, &address.type_, &address.address);
    }
    for (title, list) in [
        ("Capacity", &status.capacity),
        ("Allocatable", &status.allocatable),
    ] {
        if let Some(list) = list.as_ref().filter(|l| !l.is_empty()) {
            w.section(0, title);
            for (name, quantity) in list {
                w.field(1, name, &quantity.0);
            }
        }
    }
    if let Some(info) = &status.node_info {
        w.section(0, "System Info");
        for (key, value) in [
            ("Machine ID", &info.machine_id),
            ("System UUID", &info.system_uuid),
            ("Boot ID", &info.boot_id),
            ("Kernel Version", &info.kernel_version),
            ("OS Image", &info.os_image),
            ("Operating System", &info.operating_system),
            ("Architecture", &info.architecture),
            ("Container Runtime Version", &info.container_runtime_version),
            ("Kubelet Version", &info.kubelet_version),
        ] {
            w.field(1, key, value);
        }
    }
    if let Some(cidr) = &spec.pod_cidr {
        w.field(0, "PodCIDR", cidr);
    }
    w.field(
        0,
        "Non-terminated Pods",
        format!("({} in total)", pods.len()),
    );
    if !pods.is_empty() {
        w.row(1, ["Namespace", "Name", "Status", "Age"]);
        w.row(1, ["---------", "----", "------", "---"]);
        for pod in pods {
            w.row(
                1,
                [
                    pod.metadata.namespace.clone().unwrap_or_default(),
                    pod.metadata.name.clone().unwrap_or_default(),
                    super::pod::table_status(pod),
                    age::since(
                        pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
                        ctx.now,
                    ),
                ],
            );
        }
    }
}
