//! Namespaces: finalizers are qualified names and the phase, when set, is one Kubernetes
//! knows. The name rule (a DNS-1123 label) is applied with the metadata.

use k8s_openapi::api::core::v1::Namespace;

use super::names::is_qualified_name;
use super::{FieldError, Path};

/// Validates a Namespace.
pub fn validate_namespace(namespace: &Namespace) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let finalizers = namespace.spec.as_ref().and_then(|s| s.finalizers.as_ref());
    for (i, finalizer) in finalizers.into_iter().flatten().enumerate() {
        for msg in is_qualified_name(finalizer) {
            errors.push(FieldError::invalid(
                &Path::new("spec").child("finalizers").index(i),
                finalizer.as_str(),
                msg,
            ));
        }
    }
    let phase = namespace.status.as_ref().and_then(|s| s.phase.as_deref());
    if let Some(phase) = phase.filter(|p| !p.is_empty())
        && !["Active", "Terminating"].contains(&phase)
    {
        errors.push(FieldError::not_supported(
            &Path::new("status").child("phase"),
            phase,
            &["Active", "Terminating"],
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NamespaceSpec, NamespaceStatus};

    #[test]
    fn namespace_with_kubernetes_finalizer_is_valid() {
        let ns = Namespace {
            spec: Some(NamespaceSpec {
                finalizers: Some(vec!["kubernetes".into()]),
            }),
            ..Default::default()
        };
        assert!(validate_namespace(&ns).is_empty());
    }

    #[test]
    fn namespace_with_unknown_phase_is_rejected() {
        let ns = Namespace {
            status: Some(NamespaceStatus {
                phase: Some("Sleeping".into()),
                conditions: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            validate_namespace(&ns)[0].to_string(),
            r#"status.phase: Unsupported value: "Sleeping": supported values: "Active", "Terminating""#
        );
    }
}
