//! Label and field selectors: parsing the `-l` / `--field-selector` syntax of kubectl and the
//! API, converting a `metav1.LabelSelector` (matchLabels, matchExpressions), and matching.
//!
//! Label syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, joined by
//! commas. Field syntax: `path=value`, `path==value`, `path!=value`, where `path` is a dotted
//! JSON path such as `metadata.name` or `spec.nodeName`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as MetaLabelSelector;
use serde_json::Value;

/// A selector that could not be parsed or converted, with what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {selector:?}: {reason}")]
pub struct SelectorError {
    pub selector: String,
    pub reason: String,
}

/// One requirement on a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals { key: String, value: String },
    NotEquals { key: String, value: String },
    In { key: String, values: Vec<String> },
    NotIn { key: String, values: Vec<String> },
    Exists { key: String },
    DoesNotExist { key: String },
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Equals { key, value } => labels.get(key) == Some(value),
            Requirement::NotEquals { key, value } => labels.get(key) != Some(value),
            Requirement::In { key, values } => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn { key, values } => {
                labels.get(key).is_none_or(|v| !values.contains(v))
            }
            Requirement::Exists { key } => labels.contains_key(key),
            Requirement::DoesNotExist { key } => !labels.contains_key(key),
        }
    }
}

/// A conjunction of label requirements; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses kubectl's `-l` syntax.
    ///
    /// # Errors
    /// When the text is not a valid selector.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let err = |reason: &str| SelectorError {
            selector: text.to_string(),
            reason: reason.to_string(),
        };
        let mut requirements = Vec::new();
        for term in split_terms(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let requirement = if let Some(key) = term.strip_prefix('!') {
                Requirement::DoesNotExist {
                    key: checked_key(key.trim(), &err)?,
                }
            } else if let Some((key, rest)) = split_set_op(term, " notin ") {
                Requirement::NotIn {
                    key: checked_key(key, &err)?,
                    values: set_values(rest, &err)?,
                }
            } else if let Some((key, rest)) = split_set_op(term, " in ") {
                Requirement::In {
                    key: checked_key(key, &err)?,
                    values: set_values(rest, &err)?,
                }
            } else if let Some((key, value)) = term.split_once("!=") {
                Requirement::NotEquals {
                    key: checked_key(key.trim(), &err)?,
                    value: value.trim().to_string(),
                }
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                Requirement::Equals {
                    key: checked_key(key.trim(), &err)?,
                    value: value.trim().to_string(),
                }
            } else {
                Requirement::Exists {
                    key: checked_key(term, &err)?,
                }
            };
            requirements.push(requirement);
        }
        Ok(Self { requirements })
    }

    /// Converts a `metav1.LabelSelector` (as in a Deployment's `spec.selector`).
    ///
    /// # Errors
    /// On an unknown operator, or `In`/`NotIn` without values.
    pub fn from_meta(selector: &MetaLabelSelector) -> Result<Self, SelectorError> {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement::Equals {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        for expr in selector.match_expressions.iter().flatten() {
            let values = expr.values.clone().unwrap_or_default();
            let err = |reason: &str| SelectorError {
                selector: format!("{} {} {:?}", expr.key, expr.operator, values),
                reason: reason.to_string(),
            };
            let key = expr.key.clone();
            requirements.push(match expr.operator.as_str() {
                "In" if !values.is_empty() => Requirement::In { key, values },
                "NotIn" if !values.is_empty() => Requirement::NotIn { key, values },
                "In" | "NotIn" => return Err(err("values must be non-empty for In and NotIn")),
                "Exists" => Requirement::Exists { key },
                "DoesNotExist" => Requirement::DoesNotExist { key },
                _ => return Err(err("operator must be In, NotIn, Exists or DoesNotExist")),
            });
        }
        Ok(Self { requirements })
    }

    /// True when there are no requirements (it selects everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// True when `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches the `metadata.labels` of an object given as JSON.
    pub fn matches_object(&self, object: &Value) -> bool {
        if self.is_empty() {
            return true;
        }
        let labels: BTreeMap<String, String> = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        self.matches(&labels)
    }
}

/// Splits on commas that are not inside parentheses (`a in (x,y),b`).
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

fn split_set_op<'a>(term: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    let (key, rest) = term.split_once(op)?;
    Some((key.trim(), rest.trim()))
}

fn set_values(
    text: &str,
    err: &impl Fn(&str) -> SelectorError,
) -> Result<Vec<String>, SelectorError> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| err("a set of values is written in parentheses: key in (a,b)"))?;
    let values: Vec<String> = inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() {
        return Err(err("a set of values must not be empty"));
    }
    Ok(values)
}

fn checked_key(key: &str, err: &impl Fn(&str) -> SelectorError) -> Result<String, SelectorError> {
    let valid = !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if valid {
        Ok(key.to_string())
    } else {
        Err(err(&format!("invalid label key {key:?}")))
    }
}

/// One requirement on a field of the object's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// Dotted path, e.g. `spec.nodeName`.
    pub path: String,
    pub value: String,
    pub negated: bool,
}

/// A conjunction of field requirements; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses `--field-selector` syntax.
    ///
    /// # Errors
    /// When a term has no operator or an empty path.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, value, negated) = if let Some((p, v)) = term.split_once("!=") {
                (p, v, true)
            } else if let Some((p, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (p, v, false)
            } else {
                return Err(SelectorError {
                    selector: text.to_string(),
                    reason: format!("{term:?}: expected path=value or path!=value"),
                });
            };
            let path = path.trim();
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(SelectorError {
                    selector: text.to_string(),
                    reason: format!("{term:?}: invalid field path"),
                });
            }
            requirements.push(FieldRequirement {
                path: path.to_string(),
                value: value.trim().to_string(),
                negated,
            });
        }
        Ok(Self { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// True when every requirement holds on `object`. A missing field reads as "".
    pub fn matches_object(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let mut current = Some(object);
            for part in r.path.split('.') {
                current = current.and_then(|v| v.get(part));
            }
            let actual = match current {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            (actual == r.value) != r.negated
        })
    }

    /// The value required for `path` by an equality term, if any (lets a server narrow a
    /// list by namespace or name before matching).
    pub fn required_value(&self, path: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.path == path && !r.negated)
            .map(|r| r.value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_parses_every_operator_of_kubectl() {
        let s = LabelSelector::parse(
            "app=web,tier!=db,env in (prod, staging),zone notin (a),canary,!legacy",
        )
        .unwrap();
        assert_eq!(s.requirements.len(), 6);
        assert!(s.matches(&labels(&[
            ("app", "web"),
            ("env", "prod"),
            ("zone", "b"),
            ("canary", "")
        ])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "dev"), ("canary", "")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("env", "prod"),
            ("canary", ""),
            ("legacy", "1")
        ])));
    }

    #[test]
    fn empty_label_selector_matches_everything() {
        let s = LabelSelector::parse("").unwrap();
        assert!(s.is_empty());
        assert!(s.matches_object(&json!({"metadata": {}})));
    }

    #[test]
    fn label_selector_rejects_an_unparenthesised_set_and_bad_keys() {
        assert!(LabelSelector::parse("env in prod").is_err());
        assert!(LabelSelector::parse("env in ()").is_err());
        assert!(LabelSelector::parse("bad key=1").is_err());
    }

    #[test]
    fn meta_label_selector_combines_match_labels_and_expressions() {
        let meta: MetaLabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]
        }))
        .unwrap();
        let s = LabelSelector::from_meta(&meta).unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "front")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
        let bad: MetaLabelSelector = serde_json::from_value(json!({
            "matchExpressions": [{"key": "tier", "operator": "Near"}]
        }))
        .unwrap();
        assert!(LabelSelector::from_meta(&bad).is_err());
    }

    #[test]
    fn field_selector_matches_nested_paths_and_missing_fields_read_as_empty() {
        let pod = json!({"metadata": {"name": "a"}, "spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}});
        assert!(
            FieldSelector::parse("spec.nodeName=node-1")
                .unwrap()
                .matches_object(&pod)
        );
        assert!(
            FieldSelector::parse("status.phase!=Pending,metadata.name==a")
                .unwrap()
                .matches_object(&pod)
        );
        assert!(
            FieldSelector::parse("spec.nodeName=")
                .unwrap()
                .matches_object(&json!({"spec": {}}))
        );
        assert!(
            !FieldSelector::parse("spec.nodeName=node-2")
                .unwrap()
                .matches_object(&pod)
        );
        assert_eq!(
            FieldSelector::parse("spec.nodeName=node-1")
                .unwrap()
                .required_value("spec.nodeName"),
            Some("node-1")
        );
        assert!(FieldSelector::parse("spec.nodeName").is_err());
    }
}
