//! Nodes: the pod CIDR (an IPv4 CIDR, fixed once set), taints (qualified keys, label
//! values, known effects, one per key and effect) and resource quantities in the status.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Node;

use super::names::{INVALID_CIDR, is_qualified_name, is_valid_label_value, parse_ipv4_cidr};
use super::quantity::Quantity;
use super::{FieldError, Path};

const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Validates a Node.
pub fn validate_node(node: &Node) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let spec_path = Path::new("spec");
    if let Some(spec) = &node.spec {
        if let Some(cidr) = spec.pod_cidr.as_deref().filter(|c| !c.is_empty())
            && parse_ipv4_cidr(cidr).is_none()
        {
            errors.push(FieldError::invalid(
                &spec_path.child("podCIDR"),
                cidr,
                INVALID_CIDR,
            ));
        }
        for (i, cidr) in spec.pod_cidrs.iter().flatten().enumerate() {
            if parse_ipv4_cidr(cidr).is_none() {
                errors.push(FieldError::invalid(
                    &spec_path.child("podCIDRs").index(i),
                    cidr.as_str(),
                    INVALID_CIDR,
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for (i, taint) in spec.taints.iter().flatten().enumerate() {
            let at = spec_path.child("taints").index(i);
            for msg in is_qualified_name(&taint.key) {
                errors.push(FieldError::invalid(
                    &at.child("key"),
                    taint.key.as_str(),
                    msg,
                ));
            }
            let value = taint.value.as_deref().unwrap_or_default();
            for msg in is_valid_label_value(value) {
                errors.push(FieldError::invalid(&at.child("value"), value, msg));
            }
            if taint.effect.is_empty() {
                errors.push(FieldError::required(&at.child("effect"), ""));
            } else if !TAINT_EFFECTS.contains(&taint.effect.as_str()) {
                errors.push(FieldError::not_supported(
                    &at.child("effect"),
                    taint.effect.as_str(),
                    &TAINT_EFFECTS,
                ));
            }
            if !seen.insert((taint.key.as_str(), taint.effect.as_str())) {
                errors.push(FieldError::duplicate(
                    &at,
                    format!("{}:{}", taint.key, taint.effect).as_str(),
                ));
            }
        }
    }
    if let Some(status) = &node.status {
        let status_path = Path::new("status");
        for (field, list) in [
            ("capacity", &status.capacity),
            ("allocatable", &status.allocatable),
        ] {
            for (name, quantity) in list.iter().flatten() {
                if let Err(error) = Quantity::parse(&quantity.0) {
                    errors.push(FieldError::invalid(
                        &status_path.child(field).key(name),
                        quantity.0.as_str(),
                        error.to_string(),
                    ));
                }
            }
        }
    }
    errors
}

/// A node's pod CIDR may not change once set.
pub fn validate_node_update(old: &Node, new: &Node) -> Vec<FieldError> {
    let cidr = |node: &Node| {
        node.spec
            .as_ref()
            .and_then(|s| s.pod_cidr.clone())
            .unwrap_or_default()
    };
    let (old_cidr, new_cidr) = (cidr(old), cidr(new));
    if old_cidr.is_empty() {
        return Vec::new();
    }
    super::immutable(
        &old_cidr,
        &new_cidr,
        new_cidr.as_str(),
        &Path::new("spec").child("podCIDR"),
    )
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};

    fn node(pod_cidr: &str, taints: Vec<Taint>) -> Node {
        Node {
            spec: Some(NodeSpec {
                pod_cidr: Some(pod_cidr.into()),
                taints: Some(taints),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    #[test]
    fn node_with_pod_cidr_and_taints_is_valid() {
        let n = node(
            "10.244.1.0/24",
            vec![taint("node.kubernetes.io/unreachable", "NoExecute")],
        );
        assert!(validate_node(&n).is_empty());
    }

    #[test]
    fn node_with_bad_cidr_and_duplicate_taints_is_rejected() {
        let n = node(
            "10.244.1.1/24",
            vec![
                taint("dedicated", "NoSchedule"),
                taint("dedicated", "NoSchedule"),
                taint("x", "Never"),
            ],
        );
        let found: Vec<String> = validate_node(&n).iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            vec![
                r#"spec.podCIDR: Invalid value: "10.244.1.1/24": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"#,
                r#"spec.taints[1]: Duplicate value: "dedicated:NoSchedule""#,
                r#"spec.taints[2].effect: Unsupported value: "Never": supported values: "NoExecute", "NoSchedule", "PreferNoSchedule""#,
            ]
        );
    }

    #[test]
    fn pod_cidr_is_immutable_once_set() {
        let old = node("10.244.1.0/24", vec![]);
        let new = node("10.244.2.0/24", vec![]);
        assert_eq!(validate_node_update(&old, &new).len(), 1);
        assert!(validate_node_update(&node("", vec![]), &new).is_empty());
    }
}
