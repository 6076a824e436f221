//! ConfigMaps, Secrets and Events: config keys, the 1 MiB size limit, the keys typed
//! Secrets must hold, data frozen by `immutable: true`, and an Event's object reference.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};

use super::names::is_config_map_key;
use super::{FieldError, Path};

/// Largest ConfigMap or Secret payload (keys and values), 1 MiB.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

fn validate_keys<'a>(keys: impl Iterator<Item = &'a String>, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for key in keys {
        for msg in is_config_map_key(key) {
            errors.push(FieldError::invalid(&path.key(key), key.as_str(), msg));
        }
    }
    errors
}

/// Validates a ConfigMap: keys of `data` and `binaryData` are config keys and distinct, and
/// everything fits in 1 MiB.
pub fn validate_config_map(config_map: &ConfigMap) -> Vec<FieldError> {
    let data = config_map.data.clone().unwrap_or_default();
    let binary = config_map.binary_data.clone().unwrap_or_default();
    let data_path = Path::new("data");
    let binary_path = Path::new("binaryData");
    let mut errors = validate_keys(data.keys(), &data_path);
    errors.extend(validate_keys(binary.keys(), &binary_path));
    let mut total = 0usize;
    for (key, value) in &data {
        total = total.saturating_add(key.len() + value.len());
    }
    for (key, value) in &binary {
        if data.contains_key(key) {
            errors.push(FieldError::invalid(
                &binary_path.key(key),
                key.as_str(),
                "duplicate of key present in data",
            ));
        }
        total = total.saturating_add(key.len() + value.0.len());
    }
    if total > MAX_DATA_SIZE {
        errors.push(FieldError::too_long(&data_path, MAX_DATA_SIZE));
    }
    errors
}

/// Keys a typed Secret must hold.
fn required_keys(secret_type: &str) -> &'static [&'static str] {
    match secret_type {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        _ => &[],
    }
}

/// Validates a Secret: keys are config keys, the data fits in 1 MiB, and a typed Secret
/// holds the keys of its type.
pub fn validate_secret(secret: &Secret) -> Vec<FieldError> {
    let data_path = Path::new("data");
    let empty = BTreeMap::new();
    let data: &BTreeMap<String, ByteString> = secret.data.as_ref().unwrap_or(&empty);
    let mut errors = validate_keys(data.keys(), &data_path);
    if let Some(string_data) = &secret.string_data {
        errors.extend(validate_keys(string_data.keys(), &Path::new("stringData")));
    }
    let total = data.iter().fold(0usize, |sum, (k, v)| {
        sum.saturating_add(k.len() + v.0.len())
    });
    if total > MAX_DATA_SIZE {
        errors.push(FieldError::too_long(&data_path, MAX_DATA_SIZE));
    }
    let secret_type = secret.type_.as_deref().unwrap_or("Opaque");
    for key in required_keys(secret_type) {
        if !data.contains_key(*key) {
            errors.push(FieldError::required(&data_path.key(key), ""));
        }
    }
    if secret_type == "kubernetes.io/basic-auth"
        && !data.contains_key("username")
        && !data.contains_key("password")
    {
        errors.push(FieldError::required(
            &data_path.key("username"),
            "one of username or password is required for a basic-auth Secret",
        ));
    }
    errors
}

fn immutable_data<T: PartialEq>(
    old_immutable: Option<bool>,
    old: &T,
    new: &T,
    field: &str,
) -> Option<FieldError> {
    (old_immutable == Some(true) && old != new).then(|| {
        FieldError::forbidden(
            &Path::new(field),
            "field is immutable when `immutable` is set",
        )
    })
}

/// An immutable ConfigMap keeps its data, and stays immutable.
pub fn validate_config_map_update(old: &ConfigMap, new: &ConfigMap) -> Vec<FieldError> {
    let mut errors = Vec::new();
    errors.extend(immutable_data(old.immutable, &old.data, &new.data, "data"));
    errors.extend(immutable_data(
        old.immutable,
        &old.binary_data,
        &new.binary_data,
        "binaryData",
    ));
    errors.extend(immutable_data(
        old.immutable,
        &old.immutable,
        &new.immutable,
        "immutable",
    ));
    errors
}

/// A Secret's type never changes; an immutable Secret keeps its data and stays immutable.
pub fn validate_secret_update(old: &Secret, new: &Secret) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let old_type = old.type_.as_deref().unwrap_or("Opaque");
    let new_type = new.type_.as_deref().unwrap_or("Opaque");
    errors.extend(super::immutable(
        old_type,
        new_type,
        new_type,
        &Path::new("type"),
    ));
    errors.extend(immutable_data(old.immutable, &old.data, &new.data, "data"));
    errors.extend(immutable_data(
        old.immutable,
        &old.immutable,
        &new.immutable,
        "immutable",
    ));
    errors
}

/// Validates an Event: it names the object it is about, in its own namespace.
pub fn validate_event(event: &Event) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let involved = &event.involved_object;
    let path = Path::new("involvedObject");
    if involved.kind.as_deref().unwrap_or_default().is_empty() {
        errors.push(FieldError::required(&path.child("kind"), ""));
    }
    let event_namespace = event.metadata.namespace.as_deref().unwrap_or_default();
    let object_namespace = involved.namespace.as_deref().unwrap_or_default();
    if !object_namespace.is_empty() && object_namespace != event_namespace {
        errors.push(FieldError::invalid(
            &path.child("namespace"),
            object_namespace,
            "does not match event.namespace",
        ));
    }
    if let Some(event_type) = event.type_.as_deref().filter(|t| !t.is_empty())
        && !["Normal", "Warning"].contains(&event_type)
    {
        errors.push(FieldError::not_supported(
            &Path::new("type"),
            event_type,
            &["Normal", "Warning"],
        ));
    }
    if let Some(count) = event.count {
        errors.extend(super::non_negative(i64::from(count), &Path::new("count")));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn strings(errors: Vec<FieldError>) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn config_map_keys_must_be_config_keys() {
        let cm = ConfigMap {
            data: Some(BTreeMap::from([
                ("app.properties".to_owned(), "a=1".to_owned()),
                ("bad/key".to_owned(), String::new()),
            ])),
            ..Default::default()
        };
        let found = strings(validate_config_map(&cm));
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with(
            r#"data[bad/key]: Invalid value: "bad/key": a valid config key must consist of alphanumeric characters, '-', '_' or '.'"#
        ));
    }

    #[test]
    fn config_map_key_in_both_data_and_binary_data_is_rejected() {
        let cm = ConfigMap {
            data: Some(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
            binary_data: Some(BTreeMap::from([("k".to_owned(), ByteString(vec![1]))])),
            ..Default::default()
        };
        assert_eq!(
            strings(validate_config_map(&cm)),
            vec![r#"binaryData[k]: Invalid value: "k": duplicate of key present in data"#]
        );
    }

    #[test]
    fn config_map_larger_than_one_mebibyte_is_rejected() {
        let cm = ConfigMap {
            data: Some(BTreeMap::from([(
                "big".to_owned(),
                "x".repeat(MAX_DATA_SIZE),
            )])),
            ..Default::default()
        };
        assert_eq!(
            strings(validate_config_map(&cm)),
            vec!["data: Too long: may not be more than 1048576 bytes"]
        );
    }

    #[test]
    fn tls_secret_needs_a_certificate_and_key() {
        let secret = Secret {
            type_: Some("kubernetes.io/tls".into()),
            data: Some(BTreeMap::from([(
                "tls.crt".to_owned(),
                ByteString(b"c".to_vec()),
            )])),
            ..Default::default()
        };
        assert_eq!(
            strings(validate_secret(&secret)),
            vec!["data[tls.key]: Required value"]
        );
    }

    #[test]
    fn immutable_config_map_data_cannot_change() {
        let old = ConfigMap {
            data: Some(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
            immutable: Some(true),
            ..Default::default()
        };
        let mut new = old.clone();
        new.data = Some(BTreeMap::from([("k".to_owned(), "w".to_owned())]));
        assert_eq!(
            strings(validate_config_map_update(&old, &new)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
        let mut mutable = old.clone();
        mutable.immutable = None;
        let mut changed = mutable.clone();
        changed.data = None;
        assert!(validate_config_map_update(&mutable, &changed).is_empty());
    }

    #[test]
    fn secret_type_cannot_change() {
        let old = Secret {
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        let new = Secret {
            type_: Some("kubernetes.io/basic-auth".into()),
            data: Some(BTreeMap::from([(
                "username".to_owned(),
                ByteString(b"u".to_vec()),
            )])),
            ..Default::default()
        };
        assert_eq!(
            strings(validate_secret_update(&old, &new)),
            vec![r#"type: Invalid value: "kubernetes.io/basic-auth": field is immutable"#]
        );
    }

    #[test]
    fn event_about_an_object_in_another_namespace_is_rejected() {
        let event = Event {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some("other".into()),
                ..Default::default()
            },
            type_: Some("Normal".into()),
            ..Default::default()
        };
        assert_eq!(
            strings(validate_event(&event)),
            vec![
                r#"involvedObject.namespace: Invalid value: "other": does not match event.namespace"#
            ]
        );
    }
}
