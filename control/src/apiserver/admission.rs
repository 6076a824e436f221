//! Admission steps the API server applies to new objects beyond defaulting and validation:
//! Kubernetes' DefaultTolerationSeconds, which gives every pod a bounded stay on a node that
//! turns not ready or unreachable.

use serde_json::{Value, json};

/// The taint of a node whose agent stopped reporting.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// The taint of a node that reports Ready=False.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

/// How long pods stay on a node that became not ready or unreachable, unless they say
/// otherwise (`--default-not-ready-toleration-seconds`,
/// `--default-unreachable-toleration-seconds`; 300 each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultTolerationSeconds {
    pub not_ready: i64,
    pub unreachable: i64,
}

impl Default for DefaultTolerationSeconds {
    fn default() -> Self {
        Self {
            not_ready: 300,
            unreachable: 300,
        }
    }
}

impl DefaultTolerationSeconds {
    /// Adds `not-ready:NoExecute` and `unreachable:NoExecute` tolerations for these
    /// seconds to a pod that tolerates neither taint already.
    pub fn apply(&self, pod: &mut Value) {
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
        if !tolerations.is_array() {
            *tolerations = json!([]);
        }
        let list = tolerations.as_array_mut().expect("made an array above");
        for (key, seconds) in [
            (NOT_READY_TAINT, self.not_ready),
            (UNREACHABLE_TAINT, self.unreachable),
        ] {
            if !list.iter().any(|t| tolerates_no_execute(t, key)) {
                list.push(json!({
                    "key": key, "operator": "Exists", "effect": "NoExecute",
                    "tolerationSeconds": seconds,
                }));
            }
        }
    }
}

/// Whether `toleration` already covers `key:NoExecute` (any value), as Kubernetes checks.
fn tolerates_no_execute(toleration: &Value, key: &str) -> bool {
    let effect = toleration["effect"].as_str().unwrap_or("");
    let t_key = toleration["key"].as_str().unwrap_or("");
    let operator = toleration["operator"].as_str().unwrap_or("Equal");
    (effect.is_empty() || effect == "NoExecute")
        && (t_key == key || (t_key.is_empty() && operator == "Exists"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_gets_both_default_tolerations_once() {
        let mut pod = json!({"spec": {"containers": []}});
        let defaults = DefaultTolerationSeconds {
            not_ready: 300,
            unreachable: 60,
        };
        defaults.apply(&mut pod);
        defaults.apply(&mut pod);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
            ])
        );
    }

    #[test]
    fn a_pod_that_tolerates_a_taint_already_keeps_its_own_toleration() {
        let mut pod = json!({"spec": {"tolerations": [
            {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
        ]}});
        DefaultTolerationSeconds::default().apply(&mut pod);
        let list = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["tolerationSeconds"], 5);
        assert_eq!(list[1]["key"], NOT_READY_TAINT);
        let mut everything = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        DefaultTolerationSeconds::default().apply(&mut everything);
        assert_eq!(
            everything["spec"]["tolerations"].as_array().unwrap().len(),
            1
        );
    }
}
