//! Leases (node heartbeats, leader election): a positive duration, transitions that are
//! not negative, and a coordinated-election strategy only with a preferred holder.

use k8s_openapi::api::coordination::v1::Lease;

use super::{FieldError, Path, non_negative};

/// Validates a Lease.
pub fn validate_lease(lease: &Lease) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(spec) = &lease.spec else {
        return errors;
    };
    let path = Path::new("spec");
    if let Some(duration) = spec.lease_duration_seconds
        && duration <= 0
    {
        errors.push(FieldError::invalid(
            &path.child("leaseDurationSeconds"),
            &duration,
            "must be greater than 0",
        ));
    }
    if let Some(transitions) = spec.lease_transitions {
        errors.extend(non_negative(
            i64::from(transitions),
            &path.child("leaseTransitions"),
        ));
    }
    if let Some(strategy) = spec.strategy.as_deref().filter(|s| !s.is_empty())
        && strategy != "OldestEmulationVersion"
    {
        errors.push(FieldError::not_supported(
            &path.child("strategy"),
            strategy,
            &["OldestEmulationVersion"],
        ));
    }
    if spec
        .preferred_holder
        .as_deref()
        .is_some_and(|h| !h.is_empty())
        && spec.strategy.as_deref().is_none_or(str::is_empty)
    {
        errors.push(FieldError::forbidden(
            &path.child("preferredHolder"),
            "preferredHolder is only allowed if strategy is set",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;

    #[test]
    fn lease_with_holder_and_duration_is_valid() {
        let lease = Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some("node-1".into()),
                lease_duration_seconds: Some(40),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(validate_lease(&lease).is_empty());
    }

    #[test]
    fn lease_with_zero_duration_or_negative_transitions_is_rejected() {
        let lease = Lease {
            spec: Some(LeaseSpec {
                lease_duration_seconds: Some(0),
                lease_transitions: Some(-1),
                ..Default::default()
            }),
            ..Default::default()
        };
        let found: Vec<String> = validate_lease(&lease)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            vec![
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
    }
}
