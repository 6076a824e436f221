//! Tables of the cluster's bookkeeping kinds: Namespaces (`STATUS`), Leases (`HOLDER`) and
//! PriorityClasses (`VALUE GLOBAL-DEFAULT`).

use k8s_openapi::api::{
    coordination::v1::Lease, core::v1::Namespace, scheduling::v1::PriorityClass,
};

use super::{RowContext, creation};
use crate::age;

/// Namespace columns after NAME.
pub fn namespace_headers(_wide: bool) -> Vec<&'static str> {
    vec!["STATUS", "AGE"]
}

/// Namespace cells after NAME.
pub fn namespace_row(ns: &Namespace, ctx: &RowContext) -> Vec<String> {
    vec![
        ns.status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default(),
        age::since(creation(&ns.metadata), ctx.now),
    ]
}

/// Lease columns after NAME.
pub fn lease_headers(_wide: bool) -> Vec<&'static str> {
    vec!["HOLDER", "AGE"]
}

/// Lease cells after NAME.
pub fn lease_row(lease: &Lease, ctx: &RowContext) -> Vec<String> {
    vec![
        lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default(),
        age::since(creation(&lease.metadata), ctx.now),
    ]
}

/// PriorityClass columns after NAME.
pub fn priorityclass_headers(_wide: bool) -> Vec<&'static str> {
    vec!["VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
}

/// PriorityClass cells after NAME.
pub fn priorityclass_row(pc: &PriorityClass, ctx: &RowContext) -> Vec<String> {
    vec![
        pc.value.to_string(),
        pc.global_default.unwrap_or(false).to_string(),
        age::since(creation(&pc.metadata), ctx.now),
        pc.preemption_policy
            .clone()
            .unwrap_or_else(|| "PreemptLowerPriority".to_owned()),
    ]
}
