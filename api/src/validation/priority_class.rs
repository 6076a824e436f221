//! PriorityClasses: user-defined values up to one billion, the `system-` prefix reserved
//! for Kubernetes' two built-in classes, a known preemption policy; value and policy fixed
//! on update.

use k8s_openapi::api::scheduling::v1::PriorityClass;

use super::{FieldError, Path, immutable};

/// The highest priority a user-defined class may have.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i32 = 1_000_000_000;
/// The built-in classes and their values.
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i32); 2] = [
    ("system-cluster-critical", 2_000_000_000),
    ("system-node-critical", 2_000_001_000),
];

/// Validates a PriorityClass.
pub fn validate_priority_class(class: &PriorityClass) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = class.metadata.name.as_deref().unwrap_or_default();
    if name.starts_with("system-") {
        let known = SYSTEM_PRIORITY_CLASSES
            .iter()
            .any(|(system, value)| *system == name && *value == class.value);
        if !known {
            errors.push(FieldError::forbidden(
                &Path::new("metadata").child("name"),
                "priority class names with 'system-' prefix are reserved for system use only",
            ));
        }
    } else if class.value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errors.push(FieldError::forbidden(
            &Path::new("value"),
            format!(
                "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
            ),
        ));
    }
    if let Some(policy) = class.preemption_policy.as_deref().filter(|p| !p.is_empty())
        && !["PreemptLowerPriority", "Never"].contains(&policy)
    {
        errors.push(FieldError::not_supported(
            &Path::new("preemptionPolicy"),
            policy,
            &["Never", "PreemptLowerPriority"],
        ));
    }
    errors
}

/// A PriorityClass's value and preemption policy may not change.
pub fn validate_priority_class_update(old: &PriorityClass, new: &PriorityClass) -> Vec<FieldError> {
    let mut errors = Vec::new();
    errors.extend(immutable(
        &old.value,
        &new.value,
        &new.value,
        &Path::new("value"),
    ));
    errors.extend(immutable(
        &old.preemption_policy,
        &new.preemption_policy,
        new.preemption_policy.as_deref().unwrap_or_default(),
        &Path::new("preemptionPolicy"),
    ));
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn class(name: &str, value: i32) -> PriorityClass {
        PriorityClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            value,
            ..Default::default()
        }
    }

    #[test]
    fn user_priority_up_to_one_billion_is_valid() {
        assert!(validate_priority_class(&class("high", 1_000_000_000)).is_empty());
        assert!(validate_priority_class(&class("system-node-critical", 2_000_001_000)).is_empty());
    }

    #[test]
    fn user_priority_above_one_billion_is_forbidden() {
        assert_eq!(
            validate_priority_class(&class("high", 1_000_000_001))[0].to_string(),
            "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
        );
    }

    #[test]
    fn system_prefix_is_reserved() {
        assert_eq!(
            validate_priority_class(&class("system-mine", 5))[0].to_string(),
            "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only"
        );
    }

    #[test]
    fn priority_value_is_immutable() {
        assert_eq!(
            validate_priority_class_update(&class("a", 1), &class("a", 2))[0].to_string(),
            "value: Invalid value: 2: field is immutable"
        );
    }
}
