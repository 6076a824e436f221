//! `describe` for the kinds without a describer of their own: Namespaces, ConfigMaps and
//! Secrets (whose values are counted, never shown) get kubectl's short forms; any other
//! kind is printed as a tree of its fields with Title Case keys, as kubectl's generic
//! describer does.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use serde_json::Value;

use super::{
    common::{self, Context},
    writer::Writer,
};

/// Writes a Namespace's description (without events).
pub fn namespace(w: &mut Writer, ns: &Namespace) {
    let meta = &ns.metadata;
    w.field(0, "Name", meta.name.as_deref().unwrap_or_default());
    w.multiline(0, "Labels", &common::label_lines(meta.labels.as_ref()));
    w.multiline(
        0,
        "Annotations",
        &common::annotation_lines(meta.annotations.as_ref()),
    );
    w.field(
        0,
        "Status",
        ns.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or_default(),
    );
}

/// Writes a ConfigMap's description: each key and its value.
pub fn configmap(w: &mut Writer, cm: &ConfigMap, ctx: &Context) {
    common::metadata(w, &cm.metadata, true, ctx);
    w.blank();
    w.text(0, "Data");
    w.text(0, "====");
    for (key, value) in cm.data.iter().flatten() {
        w.text(0, format!("{key}:"));
        w.text(0, "----");
        for line in value.lines() {
            w.text(0, line);
        }
        w.blank();
    }
    w.blank();
    w.text(0, "BinaryData");
    w.text(0, "====");
    for (key, value) in cm.binary_data.iter().flatten() {
        w.field(0, key, format!("{} bytes", value.0.len()));
    }
    w.blank();
}

/// Writes a Secret's description: its type and the size of each value, never the value.
pub fn secret(w: &mut Writer, secret: &Secret, ctx: &Context) {
    common::metadata(w, &secret.metadata, true, ctx);
    w.blank();
    w.field(0, "Type", secret.type_.as_deref().unwrap_or("Opaque"));
    w.blank();
    w.text(0, "Data");
    w.text(0, "====");
    for (key, value) in secret.data.iter().flatten() {
        w.field(0, key, format!("{} bytes", value.0.len()));
    }
}

/// Words kubectl's generic describer writes in capitals.
const INITIALISMS: [&str; 12] = [
    "API", "CIDR", "CPU", "DNS", "HTTP", "ID", "IP", "IPS", "TCP", "TLS", "UID", "URL",
];

/// `creationTimestamp` → `Creation Timestamp`, `apiVersion` → `API Version`, as kubectl's
/// generic describer names fields.
pub fn title_case(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let boundary = i > 0 && c.is_uppercase() && {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower)
        };
        if boundary {
            words.push(std::mem::take(&mut word));
        }
        word.push(c);
    }
    words.push(word);
    words
        .iter()
        .map(|w| {
            let upper = w.to_uppercase();
            if INITIALISMS.contains(&upper.as_str()) {
                if upper == "IPS" {
                    "IPs".to_owned()
                } else {
                    upper
                }
            } else {
                let mut chars = w.chars();
                chars
                    .next()
                    .map(|first| first.to_uppercase().chain(chars).collect())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".to_owned(),
        other => other.to_string(),
    }
}

fn tree(w: &mut Writer, level: usize, value: &Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let key = title_case(key);
                match value {
                    Value::Object(inner) if inner.is_empty() => w.field(level, &key, "<none>"),
                    Value::Array(items) if items.is_empty() => w.field(level, &key, "<none>"),
                    Value::Object(_) | Value::Array(_) => {
                        w.section(level, &key);
                        tree(w, level + 1, value);
                    }
                    scalar_value => w.field(level, &key, scalar(scalar_value)),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(_) | Value::Array(_) => tree(w, level, item),
                    other => w.text(level, scalar(other)),
                }
            }
        }
        other => w.text(level, scalar(other)),
    }
}

/// Writes any object: its name, namespace, labels and annotations, then every other field
/// as a tree.
pub fn any(w: &mut Writer, object: &Value, namespaced: bool) {
    let meta = object.get("metadata").cloned().unwrap_or(Value::Null);
    let text = |key: &str| {
        meta.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    w.field(0, "Name", text("name"));
    if namespaced {
        w.field(0, "Namespace", text("namespace"));
    }
    let map = |key: &str| {
        meta.get(key)
            .and_then(|m| serde_json::from_value(m.clone()).ok())
    };
    w.multiline(0, "Labels", &common::label_lines(map("labels").as_ref()));
    w.multiline(
        0,
        "Annotations",
        &common::annotation_lines(map("annotations").as_ref()),
    );
    let mut rest = object.clone();
    if let Some(Value::Object(meta)) = rest.get_mut("metadata") {
        for shown in [
            "name",
            "namespace",
            "labels",
            "annotations",
            "managedFields",
        ] {
            meta.remove(shown);
        }
    }
    tree(w, 0, &rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_become_title_case_words() {
        assert_eq!(title_case("creationTimestamp"), "Creation Timestamp");
        assert_eq!(title_case("holderIdentity"), "Holder Identity");
        assert_eq!(title_case("apiVersion"), "API Version");
        assert_eq!(title_case("uid"), "UID");
        assert_eq!(title_case("podCIDR"), "Pod CIDR");
    }
}
