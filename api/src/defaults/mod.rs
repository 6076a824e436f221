//! Server-side defaulting, as the Kubernetes API server's versioned defaulters
//! (`SetDefaults_*`) do it: what a user leaves out of a manifest is filled in before the
//! object is validated and stored, so every component reads complete objects.
//!
//! [`set_namespace`] puts a namespaced object in the request's namespace (or `default`);
//! [`apply_defaults`] dispatches on the kind to [`pod`], [`workloads`], [`service`] and the
//! small defaulters below. Defaulting never fails and is idempotent: defaulting a defaulted
//! object changes nothing.

pub mod pod;
pub mod service;
pub mod workloads;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Subject;
use k8s_openapi::api::scheduling::v1::PriorityClass;

use crate::object::Object;
use crate::validation::{FieldError, Path};

use pod::set_if_empty;

/// The namespace of namespaced objects that name none.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The label every Namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The API group of RBAC users and groups.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Puts a namespaced object in `request_namespace` (the namespace of the request's path),
/// or in `default` when the request names none; cluster-scoped objects are left alone
/// (validation rejects a namespace on them).
///
/// # Errors
/// An object that names a namespace other than the request's, as the API server refuses it.
pub fn set_namespace(
    object: &mut Object,
    request_namespace: Option<&str>,
) -> Result<(), FieldError> {
    if !object.resource().namespaced() {
        return Ok(());
    }
    let metadata = object.metadata_mut();
    let own = metadata.namespace.as_deref().filter(|ns| !ns.is_empty());
    match (own, request_namespace.filter(|ns| !ns.is_empty())) {
        (Some(own), Some(request)) if own != request => Err(FieldError::invalid(
            &Path::new("metadata").child("namespace"),
            own,
            format!("does not match the namespace of the request ({request:?})"),
        )),
        (Some(_), _) => Ok(()),
        (None, request) => {
            metadata.namespace = Some(request.unwrap_or(DEFAULT_NAMESPACE).to_owned());
            Ok(())
        }
    }
}

/// Applies the defaulters of the object's kind.
pub fn apply_defaults(object: &mut Object) {
    match object {
        Object::Namespace(ns) => default_namespace(ns),
        Object::Pod(p) => pod::default_pod(p),
        Object::Service(svc) => service::default_service(svc),
        Object::Node(node) => default_node(node),
        Object::Secret(secret) => default_secret(secret),
        Object::Deployment(d) => workloads::default_deployment(d),
        Object::ReplicaSet(rs) => workloads::default_replica_set(rs),
        Object::DaemonSet(ds) => workloads::default_daemon_set(ds),
        Object::Job(job) => workloads::default_job(job),
        Object::EndpointSlice(slice) => default_endpoint_slice(slice),
        Object::NetworkPolicy(np) => default_network_policy(np),
        Object::RoleBinding(rb) => default_subjects(rb.subjects.as_mut()),
        Object::ClusterRoleBinding(crb) => default_subjects(crb.subjects.as_mut()),
        Object::PriorityClass(pc) => default_priority_class(pc),
        Object::Event(_)
        | Object::ConfigMap(_)
        | Object::ServiceAccount(_)
        | Object::Lease(_)
        | Object::Role(_)
        | Object::ClusterRole(_) => {}
    }
}

/// Every Namespace is labelled with its name.
fn default_namespace(namespace: &mut Namespace) {
    if let Some(name) = namespace.metadata.name.clone().filter(|n| !n.is_empty()) {
        namespace
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(NAMESPACE_NAME_LABEL.to_owned(), name);
    }
}

/// A node's allocatable resources default to its capacity.
fn default_node(node: &mut Node) {
    if let Some(status) = node.status.as_mut()
        && status.allocatable.is_none()
    {
        status.allocatable = status.capacity.clone();
    }
}

/// Secrets are `Opaque` unless typed; `stringData` is merged into `data` (and wins), as
/// Kubernetes does on write.
fn default_secret(secret: &mut Secret) {
    set_if_empty(&mut secret.type_, "Opaque");
    if let Some(string_data) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (key, value) in string_data {
            data.insert(key, ByteString(value.into_bytes()));
        }
    }
}

fn default_endpoint_slice(slice: &mut EndpointSlice) {
    for port in slice.ports.iter_mut().flatten() {
        port.name.get_or_insert_with(String::new);
        set_if_empty(&mut port.protocol, "TCP");
    }
}

/// Ports are TCP; a policy without `policyTypes` governs ingress, and egress too when it has
/// egress rules.
fn default_network_policy(policy: &mut NetworkPolicy) {
    let Some(spec) = policy.spec.as_mut() else {
        return;
    };
    let rule_ports = spec
        .ingress
        .iter_mut()
        .flatten()
        .flat_map(|rule| rule.ports.iter_mut().flatten())
        .chain(
            spec.egress
                .iter_mut()
                .flatten()
                .flat_map(|rule| rule.ports.iter_mut().flatten()),
        );
    for port in rule_ports {
        set_if_empty(&mut port.protocol, "TCP");
    }
    if spec.policy_types.as_ref().is_none_or(Vec::is_empty) {
        let mut types = vec!["Ingress".to_owned()];
        if spec.egress.as_ref().is_some_and(|rules| !rules.is_empty()) {
            types.push("Egress".to_owned());
        }
        spec.policy_types = Some(types);
    }
}

/// Users and groups belong to the RBAC API group.
fn default_subjects(subjects: Option<&mut Vec<Subject>>) {
    for subject in subjects.into_iter().flatten() {
        if subject.api_group.as_deref().is_none_or(str::is_empty)
            && matches!(subject.kind.as_str(), "User" | "Group")
        {
            subject.api_group = Some(RBAC_GROUP.to_owned());
        }
    }
}

fn default_priority_class(class: &mut PriorityClass) {
    set_if_empty(&mut class.preemption_policy, "PreemptLowerPriority");
}

/// Characters of generated name suffixes: no vowels (no words), no look-alikes.
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Longest generateName prefix kept, leaving room for the suffix in a 63-character label.
pub const MAX_GENERATED_NAME_PREFIX: usize = 58;

/// Kubernetes' `SimpleNameGenerator`: `prefix` (cut to 58 bytes) plus five characters drawn
/// from `seed`. The control plane passes a random seed and retries with another on a name
/// conflict.
pub fn generate_name(prefix: &str, seed: u64) -> String {
    let mut cut = prefix.len().min(MAX_GENERATED_NAME_PREFIX);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut name = prefix[..cut].to_owned();
    let base = NAME_ALPHABET.len() as u64;
    let mut state = seed;
    for _ in 0..5 {
        name.push(char::from(NAME_ALPHABET[(state % base) as usize]));
        state /= base;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};
    use k8s_openapi::api::networking::v1::{NetworkPolicyEgressRule, NetworkPolicySpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn named<T: Default>(name: &str, build: impl FnOnce(ObjectMeta) -> T) -> T {
        build(ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        })
    }

    #[test]
    fn namespaced_object_without_namespace_goes_to_the_request_namespace_or_default() {
        let mut pod: Object = named("p", |metadata| Pod {
            metadata,
            ..Default::default()
        })
        .into();
        set_namespace(&mut pod, None).expect("no conflict");
        assert_eq!(pod.namespace(), Some("default"));

        let mut cm: Object = named("c", |metadata| ConfigMap {
            metadata,
            ..Default::default()
        })
        .into();
        set_namespace(&mut cm, Some("shop")).expect("no conflict");
        assert_eq!(cm.namespace(), Some("shop"));
    }

    #[test]
    fn object_in_another_namespace_than_the_request_is_rejected() {
        let mut pod: Object = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("a".into()),
                ..Default::default()
            },
            ..Default::default()
        }
        .into();
        let error = set_namespace(&mut pod, Some("b")).expect_err("conflict");
        assert_eq!(
            error.to_string(),
            r#"metadata.namespace: Invalid value: "a": does not match the namespace of the request ("b")"#
        );
        assert!(set_namespace(&mut pod, Some("a")).is_ok());
    }

    #[test]
    fn cluster_scoped_objects_get_no_namespace() {
        let mut ns: Object = named("shop", |metadata| Namespace {
            metadata,
            ..Default::default()
        })
        .into();
        set_namespace(&mut ns, Some("default")).expect("ignored");
        assert_eq!(ns.namespace(), None);
    }

    #[test]
    fn namespaces_are_labelled_with_their_name() {
        let mut ns: Object = named("shop", |metadata| Namespace {
            metadata,
            ..Default::default()
        })
        .into();
        apply_defaults(&mut ns);
        assert_eq!(
            ns.metadata().labels.as_ref().expect("labels")[NAMESPACE_NAME_LABEL],
            "shop"
        );
    }

    #[test]
    fn secret_string_data_is_merged_into_data() {
        let mut secret = Secret {
            data: Some(BTreeMap::from([(
                "a".to_owned(),
                ByteString(b"old".to_vec()),
            )])),
            string_data: Some(BTreeMap::from([
                ("a".to_owned(), "new".to_owned()),
                ("b".to_owned(), "x".to_owned()),
            ])),
            ..Default::default()
        };
        default_secret(&mut secret);
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        assert_eq!(secret.string_data, None);
        let data = secret.data.expect("data");
        assert_eq!(data["a"].0, b"new");
        assert_eq!(data["b"].0, b"x");
    }

    #[test]
    fn network_policy_with_egress_rules_governs_both_directions() {
        let mut np = NetworkPolicy {
            spec: Some(NetworkPolicySpec {
                egress: Some(vec![NetworkPolicyEgressRule::default()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        default_network_policy(&mut np);
        assert_eq!(
            np.spec.expect("spec").policy_types,
            Some(vec!["Ingress".to_owned(), "Egress".to_owned()])
        );
    }

    #[test]
    fn rbac_users_and_groups_get_the_rbac_api_group() {
        let mut subjects = vec![
            Subject {
                kind: "User".into(),
                name: "alice".into(),
                ..Default::default()
            },
            Subject {
                kind: "ServiceAccount".into(),
                name: "default".into(),
                namespace: Some("default".into()),
                ..Default::default()
            },
        ];
        default_subjects(Some(&mut subjects));
        assert_eq!(subjects[0].api_group.as_deref(), Some(RBAC_GROUP));
        assert_eq!(subjects[1].api_group, None);
    }

    #[test]
    fn generated_names_are_the_prefix_and_five_safe_characters() {
        let name = generate_name("web-", 12345);
        assert!(name.starts_with("web-"));
        assert_eq!(name.len(), 9);
        assert!(name[4..].bytes().all(|c| NAME_ALPHABET.contains(&c)));
        assert_ne!(generate_name("web-", 1), generate_name("web-", 2));
        assert_eq!(generate_name(&"a".repeat(100), 0).len(), 63);
    }

    #[test]
    fn defaulting_twice_changes_nothing() {
        for resource in crate::resources::RESOURCES {
            let value = serde_json::json!({"metadata": {"name": "x"}, "spec": {}});
            let Ok(mut object) = Object::decode(resource, &value) else {
                continue;
            };
            apply_defaults(&mut object);
            let once = object.clone();
            apply_defaults(&mut object);
            assert_eq!(object, once, "{}", resource.kind);
        }
    }
}
