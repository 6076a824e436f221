//! [`Object`]: one API object as its typed `k8s-openapi` struct, for every served kind.
//! JSON is decoded into it (a field of the wrong type becomes a [`FieldError`] at its path:
//! `spec.replicas: Invalid value: "abc": expected int32`), defaulted and validated as a
//! struct, and encoded back to JSON.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, Node, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::resources::{self, ResourceId, ResourceType};
use crate::validation::{BadValue, FieldError, Path, ValidationErrors};

macro_rules! objects {
    ($($id:ident),* $(,)?) => {
        /// One API object of a served kind, as its typed struct (boxed: the structs are large).
        #[derive(Clone, Debug, PartialEq)]
        pub enum Object {
            $(
                #[doc = concat!("A ", stringify!($id), ".")]
                $id(Box<$id>),
            )*
        }

        impl Object {
            /// Decodes JSON into the struct of `resource`'s kind.
            ///
            /// # Errors
            /// An `apiVersion` or `kind` in `value` that is not `resource`'s, or a field of the
            /// wrong type, as a [`FieldError`] at the field's path.
            pub fn decode(resource: &ResourceType, value: &Value) -> Result<Self, ValidationErrors> {
                check_type_fields(resource, value)?;
                Ok(match resource.id {
                    $(ResourceId::$id => Object::$id(Box::new(decode(value)?)),)*
                })
            }

            /// Encodes the object as JSON, with its `apiVersion` and `kind`.
            ///
            /// # Errors
            /// Only if serialization fails, which `k8s-openapi` types do not do in practice.
            pub fn encode(&self) -> Result<Value, ValidationErrors> {
                let encoded = match self {
                    $(Object::$id(o) => serde_json::to_value(o),)*
                };
                encoded.map_err(|e| {
                    ValidationErrors::from(FieldError::internal(&Path::root(), e.to_string()))
                })
            }

            /// The object's metadata.
            pub fn metadata(&self) -> &ObjectMeta {
                match self {
                    $(Object::$id(o) => &o.metadata,)*
                }
            }

            /// The object's metadata, to change it.
            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(Object::$id(o) => &mut o.metadata,)*
                }
            }

            /// The registry entry of the object's kind.
            pub fn resource(&self) -> &'static ResourceType {
                match self {
                    $(Object::$id(_) => resources::get(ResourceId::$id),)*
                }
            }
        }

        $(
            impl From<$id> for Object {
                fn from(object: $id) -> Self {
                    Object::$id(Box::new(object))
                }
            }
        )*
    };
}

objects!(
    Namespace,
    Pod,
    Service,
    Node,
    Event,
    ConfigMap,
    Secret,
    ServiceAccount,
    Deployment,
    ReplicaSet,
    DaemonSet,
    Job,
    EndpointSlice,
    Lease,
    NetworkPolicy,
    Role,
    RoleBinding,
    ClusterRole,
    ClusterRoleBinding,
    PriorityClass,
);

impl Object {
    /// `metadata.name`, or `""` when unset.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// `metadata.namespace`, when set.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }
}

/// An `apiVersion` or `kind` in the body must be the resource's own; absent ones are filled
/// in on encoding.
fn check_type_fields(resource: &ResourceType, value: &Value) -> Result<(), ValidationErrors> {
    if !value.is_object() {
        return Err(FieldError::invalid(
            &Path::root(),
            value,
            "an object must be a JSON object (a YAML mapping)",
        )
        .into());
    }
    let mut errors = Vec::new();
    for (field, expected) in [
        ("apiVersion", resource.api_version),
        ("kind", resource.kind),
    ] {
        match value.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == expected => {}
            Some(other) => errors.push(FieldError::invalid(
                &Path::new(field),
                other,
                format!("must be {}", expected.render()),
            )),
        }
    }
    ValidationErrors::check(errors)
}

/// Map fields whose keys are data, printed as `labels[app]` rather than `labels.app`.
const MAP_FIELDS: [&str; 11] = [
    "labels",
    "annotations",
    "limits",
    "requests",
    "data",
    "binaryData",
    "stringData",
    "nodeSelector",
    "matchLabels",
    "capacity",
    "allocatable",
];

/// Decodes `value` into `T`, turning a type error into a [`FieldError`] at its path.
///
/// # Errors
/// The first field that does not decode.
pub fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let mut path = Path::root();
        let mut current = Some(value);
        let mut parent_is_map = false;
        for segment in error.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => {
                    path = path.index(*index);
                    current = current.and_then(|v| v.get(*index));
                    parent_is_map = false;
                }
                serde_path_to_error::Segment::Map { key }
                | serde_path_to_error::Segment::Enum { variant: key } => {
                    path = if parent_is_map {
                        path.key(key)
                    } else {
                        path.child(key)
                    };
                    current = current.and_then(|v| v.get(key));
                    parent_is_map = !parent_is_map && MAP_FIELDS.contains(&key.as_str());
                }
                serde_path_to_error::Segment::Unknown => {
                    current = None;
                }
            }
        }
        let detail = describe_serde_error(&error.inner().to_string());
        match current {
            Some(bad) => FieldError::invalid(&path, bad, detail),
            None => FieldError {
                path: path.to_string(),
                kind: crate::validation::ErrorKind::Invalid,
                value: None,
                detail,
            },
        }
    })
}

/// Turns serde's `invalid type: string "abc", expected i32` into `expected int32`, naming
/// types as Kubernetes (Go) does.
fn describe_serde_error(message: &str) -> String {
    let Some((_, expected)) = message.rsplit_once(", expected ") else {
        return message.to_owned();
    };
    let expected = match expected {
        "i32" => "int32",
        "i64" => "int64",
        "u32" => "uint32",
        "u64" => "uint64",
        "f64" => "float64",
        "a string" => "string",
        "a boolean" => "boolean",
        "a sequence" => "array",
        "a map" => "object",
        other => other,
    };
    format!("expected {expected}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployments() -> &'static ResourceType {
        resources::get(ResourceId::Deployment)
    }

    #[test]
    fn json_decodes_into_the_kinds_struct_and_encodes_back() {
        let value = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
        });
        let object = Object::decode(deployments(), &value).expect("decodes");
        assert_eq!(object.name(), "web");
        assert_eq!(object.resource().kind, "Deployment");
        assert_eq!(object.encode().expect("encodes"), value);
    }

    #[test]
    fn a_field_of_the_wrong_type_is_reported_at_its_path() {
        let value = json!({"metadata": {"name": "web"}, "spec": {"replicas": "abc"}});
        let error = Object::decode(deployments(), &value).expect_err("replicas is not a number");
        assert_eq!(
            error.to_string(),
            r#"spec.replicas: Invalid value: "abc": expected int32"#
        );
    }

    #[test]
    fn a_wrong_type_deep_in_a_list_names_the_element() {
        let value = json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}, {"name": "b", "ports": [{"containerPort": true}]}]}});
        let error = Object::decode(resources::get(ResourceId::Pod), &value).expect_err("bad port");
        assert_eq!(
            error.to_string(),
            "spec.containers[1].ports[0].containerPort: Invalid value: true: expected int32"
        );
    }

    #[test]
    fn a_wrong_type_in_a_map_names_the_key() {
        let value = json!({"metadata": {"name": "p", "labels": {"version": 2}}});
        let error = Object::decode(resources::get(ResourceId::Pod), &value).expect_err("label");
        assert_eq!(
            error.to_string(),
            "metadata.labels[version]: Invalid value: 2: expected string"
        );
    }

    #[test]
    fn a_body_of_another_kind_is_rejected() {
        let value =
            json!({"apiVersion": "apps/v2", "kind": "Deployment", "metadata": {"name": "web"}});
        let error = Object::decode(deployments(), &value).expect_err("wrong version");
        assert_eq!(
            error.to_string(),
            r#"apiVersion: Invalid value: "apps/v2": must be "apps/v1""#
        );
        let error = Object::decode(deployments(), &json!([1])).expect_err("not an object");
        assert!(
            error.to_string().starts_with("Invalid value: [1]"),
            "{error}"
        );
    }

    #[test]
    fn metadata_is_reachable_for_every_kind() {
        for resource in resources::RESOURCES {
            let value = json!({"metadata": {"name": "x", "namespace": "ns"}});
            let mut object = Object::decode(resource, &value).expect("minimal objects decode");
            assert_eq!(object.resource().id, resource.id);
            assert_eq!(object.namespace(), Some("ns"));
            object.metadata_mut().name = Some("y".into());
            assert_eq!(object.name(), "y");
            let encoded = object.encode().expect("encodes");
            assert_eq!(encoded["kind"], resource.kind);
            assert_eq!(encoded["apiVersion"], resource.api_version);
        }
    }
}
