//! Labels, annotations and label selectors: their validation (Kubernetes'
//! `ValidateLabels`, `ValidateAnnotations`, `ValidateLabelSelector`) and the selector
//! matching every controller and the Service data plane rely on.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::names::{is_qualified_name, is_valid_label_value};
use super::{FieldError, Path};

/// Largest total size of an object's annotations (keys and values), 256 KiB.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Validates one label key: a qualified name. Errors sit on `path` (the labels map), as
/// Kubernetes reports them.
pub fn validate_label_name(key: &str, path: &Path) -> Vec<FieldError> {
    is_qualified_name(key)
        .into_iter()
        .map(|msg| FieldError::invalid(path, key, msg))
        .collect()
}

/// Validates one label value; errors sit on `path`.
pub fn validate_label_value(value: &str, path: &Path) -> Vec<FieldError> {
    is_valid_label_value(value)
        .into_iter()
        .map(|msg| FieldError::invalid(path, value, msg))
        .collect()
}

/// Validates a label map (`metadata.labels`, a node selector, a Service selector): keys
/// are qualified names reported at `path`, values label values reported at `path[key]`.
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in labels {
        errors.extend(validate_label_name(key, path));
        errors.extend(validate_label_value(value, &path.key(key)));
    }
    errors
}

/// Validates annotations: keys are qualified names (compared lower-cased, as Kubernetes
/// does), and keys and values together hold at most 256 KiB.
pub fn validate_annotations(
    annotations: &BTreeMap<String, String>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut total = 0usize;
    for (key, value) in annotations {
        for msg in is_qualified_name(&key.to_lowercase()) {
            errors.push(FieldError::invalid(path, key.as_str(), msg));
        }
        total = total.saturating_add(key.len()).saturating_add(value.len());
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errors.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errors
}

const OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// Validates a label selector: match labels as labels, and each expression's key, operator
/// and values.
pub fn validate_label_selector(selector: &LabelSelector, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(match_labels) = &selector.match_labels {
        errors.extend(validate_labels(match_labels, &path.child("matchLabels")));
    }
    for (i, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        errors.extend(validate_requirement(
            requirement,
            &path.child("matchExpressions").index(i),
        ));
    }
    errors
}

fn validate_requirement(requirement: &LabelSelectorRequirement, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let values = requirement.values.as_deref().unwrap_or_default();
    match requirement.operator.as_str() {
        "In" | "NotIn" => {
            if values.is_empty() {
                errors.push(FieldError::required(
                    &path.child("values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ));
            }
        }
        "Exists" | "DoesNotExist" => {
            if !values.is_empty() {
                errors.push(FieldError::forbidden(
                    &path.child("values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ));
            }
        }
        other => errors.push(FieldError::invalid(
            &path.child("operator"),
            other,
            "not a valid selector operator",
        )),
    }
    errors.extend(validate_label_name(&requirement.key, &path.child("key")));
    for (i, value) in values.iter().enumerate() {
        errors.extend(validate_label_value(value, &path.child("values").index(i)));
    }
    errors
}

/// Whether a selector selects nothing in particular (no labels, no expressions). Kubernetes
/// treats an empty selector as matching everything, which workloads forbid.
pub fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// Whether `selector` selects an object with `labels`. An empty selector matches every
/// object; a selector with an unknown operator matches none, as Kubernetes' conversion to a
/// `labels.Selector` fails for it.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    crate::selector::LabelSelector::from_meta(selector).is_ok_and(|s| s.matches(labels))
}

/// Whether a selector would be accepted by Kubernetes' `LabelSelectorAsSelector` (every
/// operator known, `In`/`NotIn` with values).
pub fn selector_is_well_formed(selector: &LabelSelector) -> bool {
    selector.match_expressions.iter().flatten().all(|r| {
        OPERATORS.contains(&r.operator.as_str())
            && (!matches!(r.operator.as_str(), "In" | "NotIn")
                || r.values.as_ref().is_some_and(|v| !v.is_empty()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn valid_labels_pass() {
        let path = Path::new("metadata").child("labels");
        assert!(
            validate_labels(
                &labels(&[("app.kubernetes.io/name", "web"), ("tier", "")]),
                &path
            )
            .is_empty()
        );
    }

    #[test]
    fn bad_label_key_is_reported_on_the_map_and_bad_value_on_the_entry() {
        let path = Path::new("metadata").child("labels");
        let errors = validate_labels(&labels(&[("bad key", "ok"), ("app", "bad value")]), &path);
        assert_eq!(errors.len(), 2);
        assert!(errors[1].to_string().starts_with(
            r#"metadata.labels: Invalid value: "bad key": name part must consist of"#
        ));
        assert!(errors[0].to_string().starts_with(
            r#"metadata.labels[app]: Invalid value: "bad value": a valid label must be"#
        ));
    }

    #[test]
    fn label_value_longer_than_63_characters_is_rejected() {
        let long = "a".repeat(64);
        let errors = validate_labels(&labels(&[("app", &long)]), &Path::new("l"));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].detail, "must be no more than 63 characters");
    }

    #[test]
    fn annotation_keys_are_qualified_names_and_values_are_free() {
        let path = Path::new("metadata").child("annotations");
        assert!(
            validate_annotations(
                &labels(&[("Kubectl.Kubernetes.io/Last", "any { json } at all")]),
                &path
            )
            .is_empty()
        );
        assert_eq!(
            validate_annotations(&labels(&[("a b", "")]), &path).len(),
            1
        );
    }

    #[test]
    fn annotations_larger_than_256_kib_are_too_long() {
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let path = Path::new("metadata").child("annotations");
        let errors = validate_annotations(&labels(&[("note", &big)]), &path);
        assert_eq!(
            errors[0].to_string(),
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
    }

    #[test]
    fn selector_expressions_check_operator_and_values() {
        let path = Path::new("spec").child("selector");
        let selector = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![
                expression("app", "In", &[]),
                expression("app", "Exists", &["x"]),
                expression("app", "Near", &[]),
            ]),
        };
        let errors: Vec<String> = validate_label_selector(&selector, &path)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                r#"spec.selector.matchExpressions[2].operator: Invalid value: "Near": not a valid selector operator"#,
            ]
        );
        assert!(!selector_is_well_formed(&selector));
    }

    #[test]
    fn selectors_match_labels_and_every_expression() {
        let pod = labels(&[("app", "web"), ("tier", "front")]);
        let by_labels = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: None,
        };
        assert!(selector_matches(&by_labels, &pod));
        assert!(!selector_matches(&by_labels, &labels(&[("app", "db")])));

        let by_expressions = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![
                expression("tier", "In", &["front", "back"]),
                expression("env", "NotIn", &["prod"]),
                expression("app", "Exists", &[]),
                expression("canary", "DoesNotExist", &[]),
            ]),
        };
        assert!(selector_matches(&by_expressions, &pod));
        let canary = labels(&[("app", "web"), ("tier", "front"), ("canary", "1")]);
        assert!(!selector_matches(&by_expressions, &canary));
    }

    #[test]
    fn empty_selector_matches_everything_and_is_reported_empty() {
        let empty = LabelSelector::default();
        assert!(selector_is_empty(&empty));
        assert!(selector_matches(&empty, &labels(&[("a", "b")])));
    }
}
