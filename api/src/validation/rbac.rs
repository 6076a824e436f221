//! RBAC: rules that name verbs and what they apply to, bindings whose role reference and
//! subjects are well formed, and a role reference that never changes.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::names::{is_dns1123_subdomain, is_valid_path_segment_name};
use super::{FieldError, Path, json_value};

/// The API group of RBAC objects, users and groups.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn validate_rule(rule: &PolicyRule, namespaced: bool, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if rule.verbs.is_empty() {
        errors.push(FieldError::required(
            &path.child("verbs"),
            "verbs must contain at least one value",
        ));
    }
    let urls = rule.non_resource_urls.as_deref().unwrap_or_default();
    if !urls.is_empty() {
        let url_path = path.child("nonResourceURLs");
        if namespaced {
            errors.push(FieldError::invalid(
                &url_path,
                urls,
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        let has_resources = rule.api_groups.as_ref().is_some_and(|g| !g.is_empty())
            || rule.resources.as_ref().is_some_and(|r| !r.is_empty())
            || rule.resource_names.as_ref().is_some_and(|r| !r.is_empty());
        if has_resources {
            errors.push(FieldError::invalid(
                &url_path,
                urls,
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return errors;
    }
    if rule.api_groups.as_ref().is_none_or(Vec::is_empty) {
        errors.push(FieldError::required(
            &path.child("apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if rule.resources.as_ref().is_none_or(Vec::is_empty) {
        errors.push(FieldError::required(
            &path.child("resources"),
            "resource rules must supply at least one resource",
        ));
    }
    errors
}

fn validate_rules(rules: Option<&Vec<PolicyRule>>, namespaced: bool) -> Vec<FieldError> {
    let path = Path::new("rules");
    rules
        .into_iter()
        .flatten()
        .enumerate()
        .flat_map(|(i, rule)| validate_rule(rule, namespaced, &path.index(i)))
        .collect()
}

/// Validates a Role: its rules apply to resources only.
pub fn validate_role(role: &Role) -> Vec<FieldError> {
    validate_rules(role.rules.as_ref(), true)
}

/// Validates a ClusterRole: its rules may also apply to non-resource URLs. An aggregated
/// ClusterRole (with an `aggregationRule`) has its rules filled in by the control plane.
pub fn validate_cluster_role(role: &ClusterRole) -> Vec<FieldError> {
    validate_rules(role.rules.as_ref(), false)
}

fn validate_role_ref(role_ref: &RoleRef, kinds: &[&str]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let path = Path::new("roleRef");
    if role_ref.api_group != RBAC_GROUP {
        errors.push(FieldError::not_supported(
            &path.child("apiGroup"),
            role_ref.api_group.as_str(),
            &[RBAC_GROUP],
        ));
    }
    if !kinds.contains(&role_ref.kind.as_str()) {
        errors.push(FieldError::not_supported(
            &path.child("kind"),
            role_ref.kind.as_str(),
            kinds,
        ));
    }
    if role_ref.name.is_empty() {
        errors.push(FieldError::required(&path.child("name"), ""));
    } else {
        for msg in is_valid_path_segment_name(&role_ref.name) {
            errors.push(FieldError::invalid(
                &path.child("name"),
                role_ref.name.as_str(),
                msg,
            ));
        }
    }
    errors
}

fn validate_subject(subject: &Subject, needs_namespace: bool, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if subject.name.is_empty() {
        errors.push(FieldError::required(&path.child("name"), ""));
    }
    let api_group = subject.api_group.as_deref().unwrap_or_default();
    match subject.kind.as_str() {
        "ServiceAccount" => {
            if !subject.name.is_empty() {
                for msg in is_dns1123_subdomain(&subject.name) {
                    errors.push(FieldError::invalid(
                        &path.child("name"),
                        subject.name.as_str(),
                        msg,
                    ));
                }
            }
            if !api_group.is_empty() {
                errors.push(FieldError::not_supported(
                    &path.child("apiGroup"),
                    api_group,
                    &[""],
                ));
            }
            if needs_namespace && subject.namespace.as_deref().is_none_or(str::is_empty) {
                errors.push(FieldError::required(&path.child("namespace"), ""));
            }
        }
        "User" | "Group" => {
            if api_group != RBAC_GROUP {
                errors.push(FieldError::not_supported(
                    &path.child("apiGroup"),
                    api_group,
                    &[RBAC_GROUP],
                ));
            }
        }
        other => errors.push(FieldError::not_supported(
            &path.child("kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
    errors
}

fn validate_subjects(subjects: Option<&Vec<Subject>>, needs_namespace: bool) -> Vec<FieldError> {
    let path = Path::new("subjects");
    subjects
        .into_iter()
        .flatten()
        .enumerate()
        .flat_map(|(i, s)| validate_subject(s, needs_namespace, &path.index(i)))
        .collect()
}

/// Validates a RoleBinding: it refers to a Role or ClusterRole, and names its subjects.
pub fn validate_role_binding(binding: &RoleBinding) -> Vec<FieldError> {
    let mut errors = validate_role_ref(&binding.role_ref, &["Role", "ClusterRole"]);
    errors.extend(validate_subjects(binding.subjects.as_ref(), false));
    errors
}

/// Validates a ClusterRoleBinding: it refers to a ClusterRole; service accounts it binds
/// name their namespace.
pub fn validate_cluster_role_binding(binding: &ClusterRoleBinding) -> Vec<FieldError> {
    let mut errors = validate_role_ref(&binding.role_ref, &["ClusterRole"]);
    errors.extend(validate_subjects(binding.subjects.as_ref(), true));
    errors
}

fn role_ref_unchanged(old: &RoleRef, new: &RoleRef) -> Vec<FieldError> {
    if old == new {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            &Path::new("roleRef"),
            &json_value(new),
            "cannot change roleRef",
        )]
    }
}

/// A RoleBinding's role reference may not change.
pub fn validate_role_binding_update(old: &RoleBinding, new: &RoleBinding) -> Vec<FieldError> {
    role_ref_unchanged(&old.role_ref, &new.role_ref)
}

/// A ClusterRoleBinding's role reference may not change.
pub fn validate_cluster_role_binding_update(
    old: &ClusterRoleBinding,
    new: &ClusterRoleBinding,
) -> Vec<FieldError> {
    role_ref_unchanged(&old.role_ref, &new.role_ref)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(errors: Vec<FieldError>) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], urls: &[&str]) -> PolicyRule {
        let owned =
            |s: &[&str]| (!s.is_empty()).then(|| s.iter().map(|v| (*v).to_owned()).collect());
        PolicyRule {
            verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
            api_groups: owned(groups),
            resources: owned(resources),
            non_resource_urls: owned(urls),
            resource_names: None,
        }
    }

    fn role_ref(kind: &str, name: &str) -> RoleRef {
        RoleRef {
            api_group: RBAC_GROUP.into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    #[test]
    fn role_rules_need_verbs_groups_and_resources() {
        let role = Role {
            rules: Some(vec![
                rule(&["get", "list"], &[""], &["pods"], &[]),
                rule(&[], &["apps"], &[], &[]),
                rule(&["get"], &[], &[], &["/healthz"]),
            ]),
            ..Default::default()
        };
        assert_eq!(
            strings(validate_role(&role)),
            vec![
                "rules[1].verbs: Required value: verbs must contain at least one value",
                "rules[1].resources: Required value: resource rules must supply at least one resource",
                r#"rules[2].nonResourceURLs: Invalid value: []string{"/healthz"}: namespaced rules cannot apply to non-resource URLs"#,
            ]
        );
    }

    #[test]
    fn cluster_roles_may_grant_non_resource_urls() {
        let role = ClusterRole {
            rules: Some(vec![rule(&["get"], &[], &[], &["/metrics"])]),
            ..Default::default()
        };
        assert!(validate_cluster_role(&role).is_empty());
    }

    #[test]
    fn role_binding_refers_to_a_role_and_names_its_subjects() {
        let binding = RoleBinding {
            role_ref: role_ref("Role", "reader"),
            subjects: Some(vec![
                Subject {
                    kind: "User".into(),
                    name: "alice".into(),
                    api_group: Some(RBAC_GROUP.into()),
                    namespace: None,
                },
                Subject {
                    kind: "Robot".into(),
                    name: "r2".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        assert_eq!(
            strings(validate_role_binding(&binding)),
            vec![
                r#"subjects[1].kind: Unsupported value: "Robot": supported values: "Group", "ServiceAccount", "User""#
            ]
        );
    }

    #[test]
    fn cluster_role_binding_needs_a_cluster_role_and_service_account_namespaces() {
        let binding = ClusterRoleBinding {
            role_ref: role_ref("Role", "reader"),
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: "default".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(
            strings(validate_cluster_role_binding(&binding)),
            vec![
                r#"roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole""#,
                "subjects[0].namespace: Required value",
            ]
        );
    }

    #[test]
    fn role_ref_cannot_change() {
        let old = RoleBinding {
            role_ref: role_ref("Role", "a"),
            ..Default::default()
        };
        let new = RoleBinding {
            role_ref: role_ref("Role", "b"),
            ..Default::default()
        };
        assert_eq!(
            strings(validate_role_binding_update(&old, &new)),
            vec![
                r#"roleRef: Invalid value: {"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"b"}: cannot change roleRef"#
            ]
        );
    }
}
