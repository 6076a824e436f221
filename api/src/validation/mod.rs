//! Validation of API objects, the way the Kubernetes API server's `pkg/apis/*/validation`
//! does it: every rule appends a [`FieldError`] naming the field by its path
//! (`spec.template.spec.containers[0].image`), and all errors found are returned together
//! as [`ValidationErrors`]. Messages are Kubernetes' own, so users see what kubectl shows.
//!
//! Data flows from [`validate`] (create) or [`validate_update`] (update) on an [`Object`],
//! through one file per area: object metadata ([`metadata`]), names and formats ([`names`]),
//! labels and selectors ([`labels`]), quantities ([`quantity`]), pods ([`pod`]), workloads
//! ([`workloads`]), services ([`service`]), and the smaller kinds.

pub mod config;
pub mod endpoint_slice;
pub mod labels;
pub mod lease;
pub mod metadata;
pub mod names;
pub mod namespace;
pub mod network_policy;
pub mod node;
pub mod pod;
pub mod priority_class;
pub mod quantity;
pub mod rbac;
pub mod service;
pub mod workloads;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::object::Object;
use crate::resources::ResourceType;

/// The path of a field inside an object, printed the way Kubernetes prints it:
/// `spec.containers[0].image`, `metadata.labels[app]`.
///
/// Paths are values: every builder method returns a new path and leaves `self` alone, so a
/// parent path can be reused for each child.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Path(String);

impl Path {
    /// A path whose first segment is `name` (`Path::new("spec")`).
    pub fn new(name: &str) -> Self {
        Path(name.to_owned())
    }

    /// The empty path, for errors about the object as a whole.
    pub fn root() -> Self {
        Path(String::new())
    }

    /// The field `name` of this path: `spec` -> `spec.containers`.
    #[must_use]
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Path(name.to_owned())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }

    /// The element `index` of the list at this path: `spec.containers` -> `spec.containers[0]`.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        Path(format!("{}[{index}]", self.0))
    }

    /// The entry `key` of the map at this path: `metadata.labels` -> `metadata.labels[app]`.
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        Path(format!("{}[{key}]", self.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is wrong with a field; each prints as Kubernetes' `field.ErrorType` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A required field is missing or empty (`Required value`).
    Required,
    /// The value is malformed or out of range (`Invalid value`).
    Invalid,
    /// The value is not one of a fixed set (`Unsupported value`).
    NotSupported,
    /// The value repeats one that must be unique (`Duplicate value`).
    Duplicate,
    /// The value refers to something that does not exist (`Not found`).
    NotFound,
    /// The value is longer than allowed (`Too long`).
    TooLong,
    /// The list has more items than allowed (`Too many`).
    TooMany,
    /// The field may not be set, or not changed (`Forbidden`).
    Forbidden,
    /// The server failed, not the object (`Internal error`).
    Internal,
}

impl ErrorKind {
    /// The words Kubernetes prints for this kind of error.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Required => "Required value",
            ErrorKind::Invalid => "Invalid value",
            ErrorKind::NotSupported => "Unsupported value",
            ErrorKind::Duplicate => "Duplicate value",
            ErrorKind::NotFound => "Not found",
            ErrorKind::TooLong => "Too long",
            ErrorKind::TooMany => "Too many",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::Internal => "Internal error",
        }
    }

    /// Kubernetes' `metav1.CauseType` for this kind, as API status causes carry it
    /// (`FieldValueRequired`, `FieldValueInvalid`, ...).
    pub fn cause_type(self) -> &'static str {
        match self {
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::NotSupported => "FieldValueNotSupported",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::NotFound => "FieldValueNotFound",
            ErrorKind::TooLong => "FieldValueTooLong",
            ErrorKind::TooMany => "FieldValueTooMany",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::Internal => "InternalError",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing wrong with one field, printed exactly as Kubernetes prints a `field.Error`:
/// `spec.ports[0].protocol: Unsupported value: "SCTPX": supported values: "SCTP", "TCP", "UDP"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.path, *.kind, .value.as_deref(), .detail))]
pub struct FieldError {
    /// The field's path (`spec.containers[0].image`); empty for the object as a whole.
    pub path: String,
    /// What is wrong.
    pub kind: ErrorKind,
    /// The offending value, already rendered the way Kubernetes prints it: strings quoted
    /// (`"Bad_Name"`), numbers bare (`-1`), string maps as `map[string]string{"app":"web"}`.
    pub value: Option<String>,
    /// Why it is wrong and what would be right; may be empty.
    pub detail: String,
}

/// `path: body`, or the body alone for an error about the whole object.
fn render(path: &str, kind: ErrorKind, value: Option<&str>, detail: &str) -> String {
    let body = error_body(kind, value, detail);
    if path.is_empty() {
        body
    } else {
        format!("{path}: {body}")
    }
}

/// Kubernetes' `field.Error.ErrorBody`: Required, Forbidden, TooLong and Internal never
/// print the value.
fn error_body(kind: ErrorKind, value: Option<&str>, detail: &str) -> String {
    let mut body = match (kind, value) {
        (
            ErrorKind::Required | ErrorKind::Forbidden | ErrorKind::TooLong | ErrorKind::Internal,
            _,
        )
        | (_, None) => kind.as_str().to_owned(),
        (_, Some(value)) => format!("{kind}: {value}"),
    };
    if !detail.is_empty() {
        body.push_str(": ");
        body.push_str(detail);
    }
    body
}

impl FieldError {
    /// The error without its path (`Required value`, `Invalid value: "x": ...`), as the
    /// message of a Kubernetes status cause whose `field` holds the path.
    pub fn message(&self) -> String {
        error_body(self.kind, self.value.as_deref(), &self.detail)
    }

    fn new(path: &Path, kind: ErrorKind, value: Option<String>, detail: impl Into<String>) -> Self {
        FieldError {
            path: path.to_string(),
            kind,
            value,
            detail: detail.into(),
        }
    }

    /// `path: Required value[: detail]`.
    pub fn required(path: &Path, detail: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Required, None, detail)
    }

    /// `path: Invalid value: <value>: detail`.
    pub fn invalid(
        path: &Path,
        value: &(impl BadValue + ?Sized),
        detail: impl Into<String>,
    ) -> Self {
        Self::new(path, ErrorKind::Invalid, Some(value.render()), detail)
    }

    /// `path: Unsupported value: <value>: supported values: "a", "b"` (sorted, as Kubernetes
    /// lists them).
    pub fn not_supported(
        path: &Path,
        value: &(impl BadValue + ?Sized),
        supported: &[&str],
    ) -> Self {
        let mut supported: Vec<&str> = supported.to_vec();
        supported.sort_unstable();
        let list: Vec<String> = supported.iter().map(|s| quote(s)).collect();
        Self::new(
            path,
            ErrorKind::NotSupported,
            Some(value.render()),
            format!("supported values: {}", list.join(", ")),
        )
    }

    /// `path: Duplicate value: <value>`.
    pub fn duplicate(path: &Path, value: &(impl BadValue + ?Sized)) -> Self {
        Self::new(path, ErrorKind::Duplicate, Some(value.render()), "")
    }

    /// `path: Not found: <value>`.
    pub fn not_found(path: &Path, value: &(impl BadValue + ?Sized)) -> Self {
        Self::new(path, ErrorKind::NotFound, Some(value.render()), "")
    }

    /// `path: Too long: may not be more than <max> bytes`.
    pub fn too_long(path: &Path, max_bytes: usize) -> Self {
        let unit = if max_bytes == 1 { "byte" } else { "bytes" };
        Self::new(
            path,
            ErrorKind::TooLong,
            None,
            format!("may not be more than {max_bytes} {unit}"),
        )
    }

    /// `path: Too many: <actual>: must have at most <max> items`.
    pub fn too_many(path: &Path, actual: usize, max: usize) -> Self {
        let unit = if max == 1 { "item" } else { "items" };
        Self::new(
            path,
            ErrorKind::TooMany,
            Some(actual.to_string()),
            format!("must have at most {max} {unit}"),
        )
    }

    /// `path: Forbidden: detail`.
    pub fn forbidden(path: &Path, detail: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Forbidden, None, detail)
    }

    /// `path: Internal error: detail`, for failures of the server rather than the object.
    pub fn internal(path: &Path, detail: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Internal, None, detail)
    }
}

/// Every error found in one object. Printed as the errors joined by `, `; the list itself
/// is [`ValidationErrors::errors`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", join(.errors))]
pub struct ValidationErrors {
    /// The errors, in the order the rules found them. Never empty when returned as an `Err`.
    pub errors: Vec<FieldError>,
}

fn join(errors: &[FieldError]) -> String {
    let parts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    parts.join(", ")
}

impl ValidationErrors {
    /// Wraps a list of errors.
    pub fn new(errors: Vec<FieldError>) -> Self {
        ValidationErrors { errors }
    }

    /// The errors found.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// `Ok(())` when `errors` is empty, else the errors.
    ///
    /// # Errors
    /// Returns the errors when there is at least one.
    pub fn check(errors: Vec<FieldError>) -> Result<(), ValidationErrors> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors { errors })
        }
    }

    /// The message the Kubernetes API server returns for an invalid object, for the CLI and
    /// the API edge: `Deployment.apps "web" is invalid: spec.replicas: Invalid value: ...`
    /// (several errors are listed in brackets, as Kubernetes does).
    pub fn describe(&self, resource: &ResourceType, name: &str) -> String {
        let qualified = resource.qualified_kind();
        let list = if self.errors.len() == 1 {
            self.errors[0].to_string()
        } else {
            format!("[{}]", join(&self.errors))
        };
        format!("{qualified} {} is invalid: {list}", quote(name))
    }
}

impl From<FieldError> for ValidationErrors {
    fn from(error: FieldError) -> Self {
        ValidationErrors {
            errors: vec![error],
        }
    }
}

/// A value that can be shown in an error, rendered as Go's `field.Error` shows it.
pub trait BadValue {
    /// The value as Kubernetes prints it.
    fn render(&self) -> String;
}

/// Quotes a string as Go's `%q` does for the printable text found in manifests.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

impl BadValue for str {
    fn render(&self) -> String {
        quote(self)
    }
}

impl BadValue for String {
    fn render(&self) -> String {
        quote(self)
    }
}

macro_rules! bare_bad_value {
    ($($ty:ty),*) => {
        $(impl BadValue for $ty {
            fn render(&self) -> String {
                self.to_string()
            }
        })*
    };
}
bare_bad_value!(i32, i64, u32, u64, usize, bool);

impl BadValue for IntOrString {
    /// `IntOrString` has a `String()` method in Go, so it prints bare: `25%`, `0`.
    fn render(&self) -> String {
        match self {
            IntOrString::Int(i) => i.to_string(),
            IntOrString::String(s) => s.clone(),
        }
    }
}

impl BadValue for BTreeMap<String, String> {
    /// Go's `%#v` of a `map[string]string`.
    fn render(&self) -> String {
        let entries: Vec<String> = self
            .iter()
            .map(|(k, v)| format!("{}:{}", quote(k), quote(v)))
            .collect();
        format!("map[string]string{{{}}}", entries.join(", "))
    }
}

impl BadValue for Option<BTreeMap<String, String>> {
    fn render(&self) -> String {
        match self {
            Some(map) => map.render(),
            None => "map[string]string(nil)".to_owned(),
        }
    }
}

impl BadValue for [String] {
    /// Go's `%#v` of a `[]string`.
    fn render(&self) -> String {
        let items: Vec<String> = self.iter().map(|s| quote(s)).collect();
        format!("[]string{{{}}}", items.join(", "))
    }
}

impl BadValue for serde_json::Value {
    fn render(&self) -> String {
        match self {
            serde_json::Value::String(s) => quote(s),
            serde_json::Value::Null => "null".to_owned(),
            other => other.to_string(),
        }
    }
}

/// Renders any serializable value (a struct) as compact JSON, for errors about whole
/// sub-objects such as a selector.
pub fn json_value<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Validates a new object, as the API server does on create, after defaulting.
///
/// # Errors
/// Returns every rule the object breaks.
pub fn validate(object: &Object) -> Result<(), ValidationErrors> {
    ValidationErrors::check(validate_errors(object))
}

/// The errors of [`validate`], as a list (empty when the object is valid).
pub fn validate_errors(object: &Object) -> Vec<FieldError> {
    let resource = object.resource();
    let mut errors = metadata::validate_object_meta(
        object.metadata(),
        resource.namespaced(),
        names::name_validator(resource.id),
        &Path::new("metadata"),
    );
    match object {
        Object::Namespace(ns) => errors.extend(namespace::validate_namespace(ns)),
        Object::Pod(pod) => errors.extend(pod::validate_pod(pod)),
        Object::Service(svc) => errors.extend(service::validate_service(svc)),
        Object::Node(node) => errors.extend(node::validate_node(node)),
        Object::Event(event) => errors.extend(config::validate_event(event)),
        Object::ConfigMap(cm) => errors.extend(config::validate_config_map(cm)),
        Object::Secret(secret) => errors.extend(config::validate_secret(secret)),
        Object::ServiceAccount(_) => {}
        Object::Deployment(d) => errors.extend(workloads::validate_deployment(d)),
        Object::ReplicaSet(rs) => errors.extend(workloads::validate_replica_set(rs)),
        Object::DaemonSet(ds) => errors.extend(workloads::validate_daemon_set(ds)),
        Object::Job(job) => errors.extend(workloads::validate_job(job)),
        Object::EndpointSlice(slice) => {
            errors.extend(endpoint_slice::validate_endpoint_slice(slice));
        }
        Object::Lease(lease) => errors.extend(lease::validate_lease(lease)),
        Object::NetworkPolicy(np) => errors.extend(network_policy::validate_network_policy(np)),
        Object::Role(role) => errors.extend(rbac::validate_role(role)),
        Object::RoleBinding(rb) => errors.extend(rbac::validate_role_binding(rb)),
        Object::ClusterRole(role) => errors.extend(rbac::validate_cluster_role(role)),
        Object::ClusterRoleBinding(crb) => errors.extend(rbac::validate_cluster_role_binding(crb)),
        Object::PriorityClass(pc) => errors.extend(priority_class::validate_priority_class(pc)),
    }
    errors
}

/// Validates an update: the new object must be valid on its own, and may not change what
/// Kubernetes keeps immutable (names, uid, a pod's spec, a workload's selector, a Service's
/// clusterIP, a Job's template, ...).
///
/// # Errors
/// Returns every rule broken. An `old` of another kind than `new` is an internal error.
pub fn validate_update(old: &Object, new: &Object) -> Result<(), ValidationErrors> {
    ValidationErrors::check(validate_update_errors(old, new))
}

/// The errors of [`validate_update`], as a list.
pub fn validate_update_errors(old: &Object, new: &Object) -> Vec<FieldError> {
    let mut errors = metadata::validate_object_meta_update(
        old.metadata(),
        new.metadata(),
        &Path::new("metadata"),
    );
    errors.extend(validate_errors(new));
    match (old, new) {
        (Object::Pod(old), Object::Pod(new)) => errors.extend(pod::validate_pod_update(old, new)),
        (Object::Service(old), Object::Service(new)) => {
            errors.extend(service::validate_service_update(old, new));
        }
        (Object::Node(old), Object::Node(new)) => {
            errors.extend(node::validate_node_update(old, new));
        }
        (Object::ConfigMap(old), Object::ConfigMap(new)) => {
            errors.extend(config::validate_config_map_update(old, new));
        }
        (Object::Secret(old), Object::Secret(new)) => {
            errors.extend(config::validate_secret_update(old, new));
        }
        (Object::Deployment(old), Object::Deployment(new)) => {
            errors.extend(workloads::validate_deployment_update(old, new));
        }
        (Object::ReplicaSet(old), Object::ReplicaSet(new)) => {
            errors.extend(workloads::validate_replica_set_update(old, new));
        }
        (Object::DaemonSet(old), Object::DaemonSet(new)) => {
            errors.extend(workloads::validate_daemon_set_update(old, new));
        }
        (Object::Job(old), Object::Job(new)) => {
            errors.extend(workloads::validate_job_update(old, new));
        }
        (Object::EndpointSlice(old), Object::EndpointSlice(new)) => {
            errors.extend(endpoint_slice::validate_endpoint_slice_update(old, new));
        }
        (Object::RoleBinding(old), Object::RoleBinding(new)) => {
            errors.extend(rbac::validate_role_binding_update(old, new));
        }
        (Object::ClusterRoleBinding(old), Object::ClusterRoleBinding(new)) => {
            errors.extend(rbac::validate_cluster_role_binding_update(old, new));
        }
        (Object::PriorityClass(old), Object::PriorityClass(new)) => {
            errors.extend(priority_class::validate_priority_class_update(old, new));
        }
        (old, new) if old.resource().id != new.resource().id => {
            errors.push(FieldError::internal(
                &Path::new("kind"),
                format!(
                    "cannot update a {} with a {}",
                    old.resource().kind,
                    new.resource().kind
                ),
            ));
        }
        _ => {}
    }
    errors
}

/// Shared checks on numbers, as Kubernetes' `ValidateNonnegativeField` and friends.
pub(crate) fn non_negative(value: i64, path: &Path) -> Option<FieldError> {
    (value < 0).then(|| FieldError::invalid(path, &value, names::IS_NEGATIVE_ERROR))
}

/// Kubernetes' `ValidateImmutableField`: `path: Invalid value: <new>: field is immutable`.
pub(crate) fn immutable<T: PartialEq + ?Sized, V: BadValue + ?Sized>(
    old: &T,
    new: &T,
    rendered: &V,
    path: &Path,
) -> Option<FieldError> {
    (old != new).then(|| FieldError::invalid(path, rendered, names::FIELD_IMMUTABLE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_builder_prints_children_indexes_and_keys_like_kubernetes() {
        let path = Path::new("spec")
            .child("containers")
            .index(0)
            .child("image");
        assert_eq!(path.to_string(), "spec.containers[0].image");
        assert_eq!(
            Path::new("metadata").child("labels").key("app").as_str(),
            "metadata.labels[app]"
        );
        assert_eq!(Path::root().child("spec").as_str(), "spec");
    }

    #[test]
    fn required_error_prints_without_a_value() {
        let path = Path::new("spec")
            .child("template")
            .child("spec")
            .child("containers")
            .index(0)
            .child("image");
        assert_eq!(
            FieldError::required(&path, "").to_string(),
            "spec.template.spec.containers[0].image: Required value"
        );
    }

    #[test]
    fn not_supported_error_lists_sorted_quoted_values() {
        let path = Path::new("spec").child("ports").index(0).child("protocol");
        assert_eq!(
            FieldError::not_supported(&path, "SCTPX", &["TCP", "UDP", "SCTP"]).to_string(),
            r#"spec.ports[0].protocol: Unsupported value: "SCTPX": supported values: "SCTP", "TCP", "UDP""#
        );
    }

    #[test]
    fn invalid_error_renders_numbers_bare_and_maps_as_go_does() {
        let path = Path::new("spec").child("replicas");
        assert_eq!(
            FieldError::invalid(&path, &-1i32, "must be greater than or equal to 0").to_string(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        let labels = BTreeMap::from([
            ("app".to_owned(), "web".to_owned()),
            ("tier".to_owned(), "db".to_owned()),
        ]);
        assert_eq!(
            labels.render(),
            r#"map[string]string{"app":"web", "tier":"db"}"#
        );
    }

    #[test]
    fn message_is_the_error_without_its_path_and_cause_types_are_kubernetes() {
        let error = FieldError::invalid(&Path::new("spec").child("replicas"), &-1i32, "too low");
        assert_eq!(error.message(), "Invalid value: -1: too low");
        assert_eq!(error.kind.cause_type(), "FieldValueInvalid");
        assert_eq!(ErrorKind::Required.cause_type(), "FieldValueRequired");
    }

    #[test]
    fn forbidden_and_too_long_errors_print_only_their_detail() {
        let path = Path::new("spec");
        assert_eq!(
            FieldError::forbidden(&path, "not allowed").to_string(),
            "spec: Forbidden: not allowed"
        );
        assert_eq!(
            FieldError::too_long(&Path::new("data"), 1_048_576).to_string(),
            "data: Too long: may not be more than 1048576 bytes"
        );
        assert_eq!(
            FieldError::duplicate(&Path::new("a"), "x").to_string(),
            r#"a: Duplicate value: "x""#
        );
        assert_eq!(
            FieldError::not_found(&Path::new("a"), "x").to_string(),
            r#"a: Not found: "x""#
        );
        assert_eq!(
            FieldError::too_many(&Path::new("a"), 3, 2).to_string(),
            "a: Too many: 3: must have at most 2 items"
        );
    }

    #[test]
    fn validation_errors_join_with_commas_and_describe_like_the_api_server() {
        let errors = ValidationErrors::new(vec![
            FieldError::required(&Path::new("a"), ""),
            FieldError::forbidden(&Path::new("b"), "no"),
        ]);
        assert_eq!(errors.to_string(), "a: Required value, b: Forbidden: no");
        let deployments =
            crate::resources::lookup_kind("apps/v1", "Deployment").expect("deployments are served");
        assert_eq!(
            errors.describe(deployments, "web"),
            r#"Deployment.apps "web" is invalid: [a: Required value, b: Forbidden: no]"#
        );
        assert!(ValidationErrors::check(Vec::new()).is_ok());
    }
}
