//! Object metadata, as Kubernetes' `ValidateObjectMeta` and `ValidateObjectMetaUpdate`
//! check it: name (or generateName), namespace, labels, annotations, owner references and
//! finalizers on create; name, namespace, uid and creation time unchanged on update.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::labels::{validate_annotations, validate_labels};
use super::names::{NameValidator, is_dns1123_label, is_qualified_name};
use super::{FieldError, Path, immutable, json_value};

/// Validates the metadata of a new object. `name_validator` is the kind's name rule
/// ([`super::names::name_validator`]); `namespaced` whether the kind lives in a namespace.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_validator: NameValidator,
    path: &Path,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = meta.name.as_deref().unwrap_or_default();
    let generate_name = meta.generate_name.as_deref().unwrap_or_default();
    if !generate_name.is_empty() {
        for msg in name_validator(generate_name, true) {
            errors.push(FieldError::invalid(
                &path.child("generateName"),
                generate_name,
                msg,
            ));
        }
    }
    if name.is_empty() {
        if generate_name.is_empty() {
            errors.push(FieldError::required(
                &path.child("name"),
                "name or generateName is required",
            ));
        }
    } else {
        for msg in name_validator(name, false) {
            errors.push(FieldError::invalid(&path.child("name"), name, msg));
        }
    }
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    if namespaced {
        if namespace.is_empty() {
            errors.push(FieldError::required(&path.child("namespace"), ""));
        } else {
            for msg in is_dns1123_label(namespace) {
                errors.push(FieldError::invalid(
                    &path.child("namespace"),
                    namespace,
                    msg,
                ));
            }
        }
    } else if !namespace.is_empty() {
        errors.push(FieldError::forbidden(
            &path.child("namespace"),
            "not allowed on this type",
        ));
    }
    if let Some(labels) = &meta.labels {
        errors.extend(validate_labels(labels, &path.child("labels")));
    }
    if let Some(annotations) = &meta.annotations {
        errors.extend(validate_annotations(
            annotations,
            &path.child("annotations"),
        ));
    }
    errors.extend(validate_owner_references(
        meta,
        &path.child("ownerReferences"),
    ));
    for (i, finalizer) in meta.finalizers.iter().flatten().enumerate() {
        for msg in is_qualified_name(finalizer) {
            errors.push(FieldError::invalid(
                &path.child("finalizers").index(i),
                finalizer.as_str(),
                msg,
            ));
        }
    }
    if let Some(generation) = meta.generation
        && generation < 0
    {
        errors.push(FieldError::invalid(
            &path.child("generation"),
            &generation,
            super::names::IS_NEGATIVE_ERROR,
        ));
    }
    errors
}

fn validate_owner_references(meta: &ObjectMeta, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut controllers = Vec::new();
    for (i, owner) in meta.owner_references.iter().flatten().enumerate() {
        let at = path.index(i);
        if owner.api_version.is_empty() {
            errors.push(FieldError::invalid(
                &at.child("apiVersion"),
                owner.api_version.as_str(),
                "version must not be empty",
            ));
        }
        if owner.kind.is_empty() {
            errors.push(FieldError::invalid(
                &at.child("kind"),
                owner.kind.as_str(),
                "kind must not be empty",
            ));
        }
        if owner.name.is_empty() {
            errors.push(FieldError::invalid(
                &at.child("name"),
                owner.name.as_str(),
                "name must not be empty",
            ));
        }
        if owner.uid.is_empty() {
            errors.push(FieldError::invalid(
                &at.child("uid"),
                owner.uid.as_str(),
                "uid must not be empty",
            ));
        }
        if owner.controller == Some(true) {
            controllers.push(format!("{}/{}", owner.kind, owner.name));
        }
    }
    if controllers.len() > 1 {
        errors.push(FieldError::invalid(
            path,
            &json_value(&meta.owner_references),
            format!(
                "Only one reference can have Controller set to true. Found \"true\" in references for {}",
                controllers.join(" and ")
            ),
        ));
    }
    errors
}

/// Validates that an update keeps what metadata may not change: name, namespace, uid and
/// creation time.
pub fn validate_object_meta_update(
    old: &ObjectMeta,
    new: &ObjectMeta,
    path: &Path,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    for (field, old_value, new_value) in [
        ("name", &old.name, &new.name),
        ("namespace", &old.namespace, &new.namespace),
        ("uid", &old.uid, &new.uid),
    ] {
        // An update that leaves uid out means "the same object"; the control plane copies
        // the stored one in.
        if field == "uid" && new_value.is_none() {
            continue;
        }
        errors.extend(immutable(
            &text(old_value),
            &text(new_value),
            text(new_value).as_str(),
            &path.child(field),
        ));
    }
    if new.creation_timestamp.is_some() {
        errors.extend(immutable(
            &old.creation_timestamp,
            &new.creation_timestamp,
            &json_value(&new.creation_timestamp),
            &path.child("creationTimestamp"),
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::names::{name_is_dns_label, name_is_dns_subdomain};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use std::collections::BTreeMap;

    fn meta(name: Option<&str>, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: name.map(Into::into),
            namespace: namespace.map(Into::into),
            ..Default::default()
        }
    }

    fn errors(meta: &ObjectMeta, namespaced: bool) -> Vec<String> {
        validate_object_meta(
            meta,
            namespaced,
            name_is_dns_subdomain,
            &Path::new("metadata"),
        )
        .iter()
        .map(ToString::to_string)
        .collect()
    }

    #[test]
    fn valid_metadata_passes() {
        assert!(errors(&meta(Some("web"), Some("default")), true).is_empty());
        assert!(errors(&meta(Some("node-1"), None), false).is_empty());
    }

    #[test]
    fn name_with_capitals_and_underscore_is_rejected_with_kubectl_message() {
        assert_eq!(
            errors(&meta(Some("Bad_Name"), Some("default")), true),
            vec![
                r#"metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
            ]
        );
    }

    #[test]
    fn missing_name_is_required_unless_generate_name_is_set() {
        assert_eq!(
            errors(&meta(None, Some("default")), true),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        let mut generated = meta(None, Some("default"));
        generated.generate_name = Some("web-".into());
        assert!(errors(&generated, true).is_empty());
        generated.generate_name = Some("Web-".into());
        assert_eq!(errors(&generated, true).len(), 1);
        assert!(
            errors(&generated, true)[0]
                .starts_with("metadata.generateName: Invalid value: \"Web-\"")
        );
    }

    #[test]
    fn namespaced_objects_need_a_valid_namespace() {
        assert_eq!(
            errors(&meta(Some("a"), None), true),
            vec!["metadata.namespace: Required value"]
        );
        assert!(
            errors(&meta(Some("a"), Some("my.ns")), true)[0].starts_with(
                r#"metadata.namespace: Invalid value: "my.ns": a lowercase RFC 1123 label"#
            )
        );
    }

    #[test]
    fn cluster_scoped_objects_may_not_have_a_namespace() {
        assert_eq!(
            errors(&meta(Some("n1"), Some("default")), false),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
    }

    #[test]
    fn namespace_names_are_dns_labels() {
        let found = validate_object_meta(
            &meta(Some("a.b"), None),
            false,
            name_is_dns_label,
            &Path::new("metadata"),
        );
        assert_eq!(found.len(), 1);
        assert!(found[0].detail.starts_with("a lowercase RFC 1123 label"));
    }

    #[test]
    fn labels_and_annotations_are_checked() {
        let mut m = meta(Some("a"), Some("default"));
        m.labels = Some(BTreeMap::from([("app".to_owned(), "-bad".to_owned())]));
        m.annotations = Some(BTreeMap::from([("a b".to_owned(), String::new())]));
        let found = errors(&m, true);
        assert_eq!(found.len(), 2);
        assert!(found[0].starts_with(r#"metadata.labels[app]: Invalid value: "-bad""#));
        assert!(found[1].starts_with(r#"metadata.annotations: Invalid value: "a b""#));
    }

    #[test]
    fn only_one_owner_may_be_the_controller() {
        let owner = |name: &str| OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: name.into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: None,
        };
        let mut m = meta(Some("a"), Some("default"));
        m.owner_references = Some(vec![owner("a"), owner("b")]);
        let found = errors(&m, true);
        assert_eq!(found.len(), 1);
        assert!(found[0].ends_with(
            r#"Only one reference can have Controller set to true. Found "true" in references for ReplicaSet/a and ReplicaSet/b"#
        ));
    }

    #[test]
    fn finalizers_are_qualified_names() {
        let mut m = meta(Some("a"), Some("default"));
        m.finalizers = Some(vec![
            "kubernetes".into(),
            "example.com/cleanup".into(),
            "a b".into(),
        ]);
        let found = errors(&m, true);
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with(r#"metadata.finalizers[2]: Invalid value: "a b""#));
    }

    #[test]
    fn name_namespace_and_uid_are_immutable() {
        let mut old = meta(Some("a"), Some("default"));
        old.uid = Some("1".into());
        let mut new = meta(Some("b"), Some("other"));
        new.uid = Some("2".into());
        let found: Vec<String> = validate_object_meta_update(&old, &new, &Path::new("metadata"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            vec![
                r#"metadata.name: Invalid value: "b": field is immutable"#,
                r#"metadata.namespace: Invalid value: "other": field is immutable"#,
                r#"metadata.uid: Invalid value: "2": field is immutable"#,
            ]
        );
        new.uid = None;
        new.name = Some("a".into());
        new.namespace = Some("default".into());
        assert!(validate_object_meta_update(&old, &new, &Path::new("metadata")).is_empty());
    }
}
