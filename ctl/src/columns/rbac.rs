//! Tables of the RBAC kinds: roles show when they were created (`CREATED AT`, as kubectl
//! does), bindings show the role they grant (`ROLE`) and, wide, who they grant it to.

use k8s_openapi::api::rbac::v1::{RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{RowContext, creation};
use crate::age;

/// Role and ClusterRole columns after NAME.
pub fn role_headers(_wide: bool) -> Vec<&'static str> {
    vec!["CREATED AT"]
}

/// Role and ClusterRole cells after NAME: the creation time in RFC 3339.
pub fn role_row(metadata: &ObjectMeta, _ctx: &RowContext) -> Vec<String> {
    vec![
        creation(metadata)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default(),
    ]
}

/// RoleBinding and ClusterRoleBinding columns after NAME.
pub fn binding_headers(wide: bool) -> Vec<&'static str> {
    let mut headers = vec!["ROLE", "AGE"];
    if wide {
        headers.extend(["USERS", "GROUPS", "SERVICEACCOUNTS"]);
    }
    headers
}

/// RoleBinding and ClusterRoleBinding cells after NAME.
pub fn binding_row(
    metadata: &ObjectMeta,
    role: &RoleRef,
    subjects: Option<&[Subject]>,
    ctx: &RowContext,
) -> Vec<String> {
    let mut cells = vec![
        format!("{}/{}", role.kind, role.name),
        age::since(creation(metadata), ctx.now),
    ];
    if ctx.wide {
        let subjects = subjects.unwrap_or_default();
        let of_kind = |kind: &str| {
            subjects
                .iter()
                .filter(|s| s.kind == kind)
                .map(|s| match &s.namespace {
                    Some(ns) if kind == "ServiceAccount" => format!("{ns}/{}", s.name),
                    _ => s.name.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        cells.extend([of_kind("User"), of_kind("Group"), of_kind("ServiceAccount")]);
    }
    cells
}
