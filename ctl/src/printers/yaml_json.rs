//! `-o yaml` and `-o json`: one object as it is, several wrapped in a `kind: List` the way
//! kubectl wraps them. JSON is indented by four spaces, as kubectl's is.

use serde::Serialize;
use serde_json::{Value, json};

/// Wraps objects in kubectl's `List`.
pub fn list(items: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": items,
        "metadata": {"resourceVersion": ""},
    })
}

/// Pretty JSON with four-space indentation and a final newline.
pub fn to_json(value: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serializing a Value into memory cannot fail.
    let _ = value.serialize(&mut serializer);
    out.push(b'\n');
    String::from_utf8(out).unwrap_or_default()
}

/// YAML, ending in a newline.
pub fn to_yaml(value: &Value) -> String {
    // Serializing a Value (string keys only) cannot fail.
    serde_yaml::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_indented_by_four_spaces() {
        assert_eq!(
            to_json(&json!({"kind": "Pod", "metadata": {"name": "a"}})),
            "{\n    \"kind\": \"Pod\",\n    \"metadata\": {\n        \"name\": \"a\"\n    }\n}\n"
        );
    }

    #[test]
    fn several_objects_become_a_kubectl_list() {
        let yaml = to_yaml(&list(vec![
            json!({"kind": "Pod"}),
            json!({"kind": "Service"}),
        ]));
        assert_eq!(
            yaml,
            "apiVersion: v1\nitems:\n- kind: Pod\n- kind: Service\nkind: List\nmetadata:\n  resourceVersion: ''\n"
        );
    }
}
