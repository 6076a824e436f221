//! The nodes table: STATUS from the Ready condition (plus `SchedulingDisabled` when
//! cordoned), ROLES from the `node-role.kubernetes.io/<role>` labels, as kubectl shows them.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Node;

use super::{RowContext, creation, none_if_empty};
use crate::age;

/// Node columns after NAME.
pub fn headers(wide: bool) -> Vec<&'static str> {
    let mut headers = vec!["STATUS", "ROLES", "AGE", "VERSION"];
    if wide {
        headers.extend([
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME",
        ]);
    }
    headers
}

/// Node cells after NAME.
pub fn row(node: &Node, ctx: &RowContext) -> Vec<String> {
    let info = node
        .status
        .as_ref()
        .and_then(|s| s.node_info.clone())
        .unwrap_or_default();
    let roles = roles(node);
    let mut cells = vec![
        status(node),
        if roles.is_empty() {
            "<none>".to_owned()
        } else {
            roles.join(",")
        },
        age::since(creation(&node.metadata), ctx.now),
        info.kubelet_version.clone(),
    ];
    if ctx.wide {
        let unknown = |s: String| if s.is_empty() { "<unknown>".into() } else { s };
        cells.extend([
            none_if_empty(address(node, "InternalIP")),
            none_if_empty(address(node, "ExternalIP")),
            unknown(info.os_image),
            unknown(info.kernel_version),
            unknown(info.container_runtime_version),
        ]);
    }
    cells
}

/// `Ready`, `NotReady` or `Unknown`, then `SchedulingDisabled` when the node is cordoned.
pub fn status(node: &Node) -> String {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let mut status = vec![match ready {
        Some(c) if c.status == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        status.push("SchedulingDisabled");
    }
    status.join(",")
}

/// The node's roles, sorted: from `node-role.kubernetes.io/<role>` label keys and the
/// value of `kubernetes.io/role`.
pub fn roles(node: &Node) -> Vec<String> {
    let mut roles = BTreeSet::new();
    for (key, value) in node.metadata.labels.iter().flatten() {
        if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_owned());
            }
        } else if key == "kubernetes.io/role" && !value.is_empty() {
            roles.insert(value.clone());
        }
    }
    roles.into_iter().collect()
}

fn address(node: &Node, kind: &str) -> String {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == kind))
        .map(|a| a.address.clone())
        .unwrap_or_default()
}
