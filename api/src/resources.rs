//! The registry of resource types Skiff serves: for each, its API group and version, kind,
//! plural and singular resource names, kubectl's short names, scope and subresources.
//! Manifests are resolved by `apiVersion` + `kind` ([`lookup_kind`]), the CLI resolves what a
//! user types (`po`, `deployments.apps`, `Service`) with [`resolve`], and the store keys
//! objects under `/registry/<plural>/...` ([`ResourceType::key`]).

use std::fmt;

/// Identifies one served resource type; each has one entry in [`RESOURCES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceId {
    /// core/v1 Namespace.
    Namespace,
    /// core/v1 Pod.
    Pod,
    /// core/v1 Service.
    Service,
    /// core/v1 Node.
    Node,
    /// core/v1 Event.
    Event,
    /// core/v1 ConfigMap.
    ConfigMap,
    /// core/v1 Secret.
    Secret,
    /// core/v1 ServiceAccount.
    ServiceAccount,
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// batch/v1 Job.
    Job,
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice,
    /// coordination.k8s.io/v1 Lease.
    Lease,
    /// networking.k8s.io/v1 NetworkPolicy.
    NetworkPolicy,
    /// rbac.authorization.k8s.io/v1 Role.
    Role,
    /// rbac.authorization.k8s.io/v1 RoleBinding.
    RoleBinding,
    /// rbac.authorization.k8s.io/v1 ClusterRole.
    ClusterRole,
    /// rbac.authorization.k8s.io/v1 ClusterRoleBinding.
    ClusterRoleBinding,
    /// scheduling.k8s.io/v1 PriorityClass.
    PriorityClass,
}

/// Whether objects of a type live in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Objects live in a namespace: `/registry/pods/<namespace>/<name>`.
    Namespaced,
    /// Objects are cluster-wide: `/registry/nodes/<name>`.
    Cluster,
}

/// One served resource type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// Which type this is.
    pub id: ResourceId,
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version within the group (`v1`).
    pub version: &'static str,
    /// `apiVersion` as written in manifests: `v1`, `apps/v1`.
    pub api_version: &'static str,
    /// `kind` as written in manifests: `Deployment`.
    pub kind: &'static str,
    /// The resource name, plural and lower-case: `deployments`. Also the store key segment.
    pub plural: &'static str,
    /// The singular name: `deployment`.
    pub singular: &'static str,
    /// kubectl's short names: `deploy`.
    pub short_names: &'static [&'static str],
    /// Namespaced or cluster-scoped.
    pub scope: Scope,
    /// Whether the type has a `status` subresource (its status is written apart from its spec).
    pub has_status: bool,
}

/// One row of [`RESOURCES`]: id, group, apiVersion, kind, plural, singular, short names,
/// scope, status subresource. Every served type is at version `v1`.
macro_rules! resource {
    ($id:ident, $group:expr, $api_version:expr, $kind:expr, $plural:expr, $singular:expr,
     $short:expr, $scope:ident, $status:expr) => {
        ResourceType {
            id: ResourceId::$id,
            group: $group,
            version: "v1",
            api_version: $api_version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: $short,
            scope: Scope::$scope,
            has_status: $status,
        }
    };
}

/// Every resource type Skiff serves, in the order of [`ResourceId`].
#[rustfmt::skip]
pub static RESOURCES: &[ResourceType] = &[
    resource!(Namespace, "", "v1", "Namespace", "namespaces", "namespace", &["ns"], Cluster, true),
    resource!(Pod, "", "v1", "Pod", "pods", "pod", &["po"], Namespaced, true),
    resource!(Service, "", "v1", "Service", "services", "service", &["svc"], Namespaced, true),
    resource!(Node, "", "v1", "Node", "nodes", "node", &["no"], Cluster, true),
    resource!(Event, "", "v1", "Event", "events", "event", &["ev"], Namespaced, false),
    resource!(ConfigMap, "", "v1", "ConfigMap", "configmaps", "configmap", &["cm"], Namespaced, false),
    resource!(Secret, "", "v1", "Secret", "secrets", "secret", &[], Namespaced, false),
    resource!(ServiceAccount, "", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", &["sa"], Namespaced, false),
    resource!(Deployment, "apps", "apps/v1", "Deployment", "deployments", "deployment", &["deploy"], Namespaced, true),
    resource!(ReplicaSet, "apps", "apps/v1", "ReplicaSet", "replicasets", "replicaset", &["rs"], Namespaced, true),
    resource!(DaemonSet, "apps", "apps/v1", "DaemonSet", "daemonsets", "daemonset", &["ds"], Namespaced, true),
    resource!(Job, "batch", "batch/v1", "Job", "jobs", "job", &[], Namespaced, true),
    resource!(EndpointSlice, "discovery.k8s.io", "discovery.k8s.io/v1", "EndpointSlice", "endpointslices", "endpointslice", &[], Namespaced, false),
    resource!(Lease, "coordination.k8s.io", "coordination.k8s.io/v1", "Lease", "leases", "lease", &[], Namespaced, false),
    resource!(NetworkPolicy, "networking.k8s.io", "networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", "networkpolicy", &["netpol"], Namespaced, false),
    resource!(Role, "rbac.authorization.k8s.io", "rbac.authorization.k8s.io/v1", "Role", "roles", "role", &[], Namespaced, false),
    resource!(RoleBinding, "rbac.authorization.k8s.io", "rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", "rolebinding", &[], Namespaced, false),
    resource!(ClusterRole, "rbac.authorization.k8s.io", "rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", "clusterrole", &[], Cluster, false),
    resource!(ClusterRoleBinding, "rbac.authorization.k8s.io", "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", &[], Cluster, false),
    resource!(PriorityClass, "scheduling.k8s.io", "scheduling.k8s.io/v1", "PriorityClass", "priorityclasses", "priorityclass", &["pc"], Cluster, false),
];

/// The root of every key in the store.
pub const REGISTRY_PREFIX: &str = "/registry";

impl ResourceType {
    /// Whether objects of this type live in a namespace.
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// `kind.group` as Kubernetes names a type in messages (`Deployment.apps`); the bare
    /// kind for the core group.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_owned()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Kubernetes' GroupResource, `plural.group` (`deployments.apps`); the bare plural for
    /// the core group. Names the type in API errors (`deployments.apps "web" not found`).
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The store key of one object: `/registry/<plural>/<namespace>/<name>` when namespaced,
    /// `/registry/<plural>/<name>` when cluster-scoped (the namespace is then ignored).
    /// A namespaced type given no namespace is keyed under `default`, as the API server
    /// defaults it.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match self.scope {
            Scope::Namespaced => format!(
                "{REGISTRY_PREFIX}/{}/{}/{name}",
                self.plural,
                namespace.unwrap_or(crate::defaults::DEFAULT_NAMESPACE)
            ),
            Scope::Cluster => format!("{REGISTRY_PREFIX}/{}/{name}", self.plural),
        }
    }

    /// The key prefix for listing: every object of the type with `None` (or for a
    /// cluster-scoped type), the objects of one namespace with `Some(ns)`. It ends in `/`, so
    /// namespace `a` never lists namespace `ab`.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match (self.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => format!("{REGISTRY_PREFIX}/{}/{ns}/", self.plural),
            _ => format!("{REGISTRY_PREFIX}/{}/", self.plural),
        }
    }

    /// The store key of an object given as JSON, from its `metadata.namespace` and
    /// `metadata.name`; `None` when it has no name.
    pub fn key_for(&self, object: &serde_json::Value) -> Option<String> {
        let metadata = object.get("metadata")?;
        let name = metadata.get("name")?.as_str().filter(|n| !n.is_empty())?;
        let namespace = metadata
            .get("namespace")
            .and_then(serde_json::Value::as_str);
        Some(self.key(namespace, name))
    }

    /// Whether `name` (compared case-insensitively) is one of this type's names: plural,
    /// singular, a short name or the kind.
    pub fn answers_to(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(self.plural)
            || name.eq_ignore_ascii_case(self.singular)
            || name.eq_ignore_ascii_case(self.kind)
            || self
                .short_names
                .iter()
                .any(|s| name.eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.group_resource())
    }
}

/// Why a manifest's `apiVersion` and `kind` name no served type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No served type has this kind.
    #[error("unknown kind {kind:?} for apiVersion {api_version:?}")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// The apiVersion asked for.
        api_version: String,
    },
    /// The kind is served, but under another apiVersion.
    #[error("apiVersion {api_version:?} is not served for kind {kind}; use apiVersion {served:?}")]
    VersionNotServed {
        /// The kind asked for.
        kind: String,
        /// The apiVersion asked for.
        api_version: String,
        /// The apiVersion that serves the kind.
        served: &'static str,
    },
}

/// The type a manifest names with `apiVersion` and `kind` (both exact, as the API server
/// matches them).
///
/// # Errors
/// [`LookupError::UnknownKind`] when no served type has the kind,
/// [`LookupError::VersionNotServed`] when the kind is served under another apiVersion.
pub fn lookup_kind(api_version: &str, kind: &str) -> Result<&'static ResourceType, LookupError> {
    if let Some(found) = RESOURCES
        .iter()
        .find(|r| r.api_version == api_version && r.kind == kind)
    {
        return Ok(found);
    }
    match RESOURCES.iter().find(|r| r.kind == kind) {
        Some(served) => Err(LookupError::VersionNotServed {
            kind: kind.to_owned(),
            api_version: api_version.to_owned(),
            served: served.api_version,
        }),
        None => Err(LookupError::UnknownKind {
            kind: kind.to_owned(),
            api_version: api_version.to_owned(),
        }),
    }
}

/// The entry of a [`ResourceId`].
pub fn get(id: ResourceId) -> &'static ResourceType {
    // RESOURCES lists one entry per id, in the enum's order (checked by a test).
    &RESOURCES[id as usize]
}

/// The type served under a resource name (`pods`, `deployments`), as API requests name it:
/// exact and lower-case, unlike [`resolve`].
pub fn by_plural(plural: &str) -> Option<&'static ResourceType> {
    RESOURCES.iter().find(|r| r.plural == plural)
}

/// Resolves what a user types on the command line, like kubectl: a plural, singular, short
/// name or kind in any case (`pods`, `pod`, `po`, `Pod`), optionally qualified by its group
/// (`deployments.apps`) or version and group (`deployments.v1.apps`). Returns `None` when
/// nothing matches.
pub fn resolve(name: &str) -> Option<&'static ResourceType> {
    if let Some(found) = RESOURCES.iter().find(|r| r.answers_to(name)) {
        return Some(found);
    }
    let (resource, qualifier) = name.split_once('.')?;
    RESOURCES.iter().find(|r| {
        let group_matches = qualifier.eq_ignore_ascii_case(r.group)
            || qualifier.split_once('.').is_some_and(|(version, group)| {
                version.eq_ignore_ascii_case(r.version) && group.eq_ignore_ascii_case(r.group)
            })
            || (r.group.is_empty() && qualifier.eq_ignore_ascii_case(r.version));
        group_matches && r.answers_to(resource)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::Resource;

    fn check<T: Resource>(id: ResourceId, namespaced: bool) {
        let entry = get(id);
        assert_eq!(entry.id, id);
        assert_eq!(entry.api_version, T::API_VERSION, "{id:?}");
        assert_eq!(entry.group, T::GROUP, "{id:?}");
        assert_eq!(entry.version, T::VERSION, "{id:?}");
        assert_eq!(entry.kind, T::KIND, "{id:?}");
        assert_eq!(entry.plural, T::URL_PATH_SEGMENT, "{id:?}");
        assert_eq!(entry.singular, T::KIND.to_lowercase(), "{id:?}");
        assert_eq!(entry.namespaced(), namespaced, "{id:?}");
    }

    #[test]
    fn registry_agrees_with_the_kubernetes_types() {
        use k8s_openapi::api::{
            apps, batch, coordination, core, discovery, networking, rbac, scheduling,
        };
        check::<core::v1::Namespace>(ResourceId::Namespace, false);
        check::<core::v1::Pod>(ResourceId::Pod, true);
        check::<core::v1::Service>(ResourceId::Service, true);
        check::<core::v1::Node>(ResourceId::Node, false);
        check::<core::v1::Event>(ResourceId::Event, true);
        check::<core::v1::ConfigMap>(ResourceId::ConfigMap, true);
        check::<core::v1::Secret>(ResourceId::Secret, true);
        check::<core::v1::ServiceAccount>(ResourceId::ServiceAccount, true);
        check::<apps::v1::Deployment>(ResourceId::Deployment, true);
        check::<apps::v1::ReplicaSet>(ResourceId::ReplicaSet, true);
        check::<apps::v1::DaemonSet>(ResourceId::DaemonSet, true);
        check::<batch::v1::Job>(ResourceId::Job, true);
        check::<discovery::v1::EndpointSlice>(ResourceId::EndpointSlice, true);
        check::<coordination::v1::Lease>(ResourceId::Lease, true);
        check::<networking::v1::NetworkPolicy>(ResourceId::NetworkPolicy, true);
        check::<rbac::v1::Role>(ResourceId::Role, true);
        check::<rbac::v1::RoleBinding>(ResourceId::RoleBinding, true);
        check::<rbac::v1::ClusterRole>(ResourceId::ClusterRole, false);
        check::<rbac::v1::ClusterRoleBinding>(ResourceId::ClusterRoleBinding, false);
        check::<scheduling::v1::PriorityClass>(ResourceId::PriorityClass, false);
        assert_eq!(RESOURCES.len(), 20);
        for (i, entry) in RESOURCES.iter().enumerate() {
            assert_eq!(entry.id as usize, i, "RESOURCES is in ResourceId order");
        }
    }

    #[test]
    fn every_name_resolves_to_exactly_one_type() {
        for entry in RESOURCES {
            let mut names = vec![entry.plural, entry.singular, entry.kind];
            names.extend(entry.short_names);
            for name in names {
                let owners: Vec<_> = RESOURCES.iter().filter(|r| r.answers_to(name)).collect();
                assert_eq!(owners.len(), 1, "{name} is ambiguous");
            }
        }
    }

    #[test]
    fn kubectl_short_names_resolve() {
        for (short, kind) in [
            ("po", "Pod"),
            ("svc", "Service"),
            ("deploy", "Deployment"),
            ("rs", "ReplicaSet"),
            ("ds", "DaemonSet"),
            ("no", "Node"),
            ("ns", "Namespace"),
            ("cm", "ConfigMap"),
            ("sa", "ServiceAccount"),
            ("ev", "Event"),
            ("netpol", "NetworkPolicy"),
            ("pc", "PriorityClass"),
        ] {
            assert_eq!(resolve(short).map(|r| r.kind), Some(kind), "{short}");
        }
    }

    #[test]
    fn names_resolve_case_insensitively_and_with_a_group() {
        assert_eq!(resolve("PODS").map(|r| r.id), Some(ResourceId::Pod));
        assert_eq!(
            resolve("Deployment").map(|r| r.id),
            Some(ResourceId::Deployment)
        );
        assert_eq!(
            resolve("deployments.apps").map(|r| r.id),
            Some(ResourceId::Deployment)
        );
        assert_eq!(
            resolve("deployments.v1.apps").map(|r| r.id),
            Some(ResourceId::Deployment)
        );
        assert_eq!(
            resolve("clusterroles.rbac.authorization.k8s.io").map(|r| r.id),
            Some(ResourceId::ClusterRole)
        );
        assert_eq!(resolve("pods.v1").map(|r| r.id), Some(ResourceId::Pod));
        assert_eq!(resolve("deployments.batch"), None);
        assert_eq!(resolve("endpoints"), None);
        assert_eq!(resolve("widgets"), None);
    }

    #[test]
    fn api_requests_find_types_by_exact_plural() {
        assert_eq!(
            by_plural("networkpolicies").map(|r| r.id),
            Some(ResourceId::NetworkPolicy)
        );
        assert_eq!(by_plural("po"), None);
        assert_eq!(by_plural("Pods"), None);
    }

    #[test]
    fn manifest_kinds_resolve_by_api_version_and_kind() {
        assert_eq!(
            lookup_kind("apps/v1", "Deployment").map(|r| r.plural),
            Ok("deployments")
        );
        assert_eq!(
            lookup_kind("v1", "Foo")
                .map(|r| r.id)
                .unwrap_err()
                .to_string(),
            r#"unknown kind "Foo" for apiVersion "v1""#
        );
        assert_eq!(
            lookup_kind("apps/v2", "Deployment")
                .map(|r| r.id)
                .unwrap_err()
                .to_string(),
            r#"apiVersion "apps/v2" is not served for kind Deployment; use apiVersion "apps/v1""#
        );
        assert!(
            lookup_kind("v1", "pod").is_err(),
            "kinds are case-sensitive in manifests"
        );
    }

    #[test]
    fn namespaced_keys_hold_the_namespace_and_cluster_keys_do_not() {
        let pods = get(ResourceId::Pod);
        assert_eq!(
            pods.key(Some("kube-system"), "dns"),
            "/registry/pods/kube-system/dns"
        );
        assert_eq!(pods.key(None, "web"), "/registry/pods/default/web");
        assert_eq!(pods.prefix(Some("default")), "/registry/pods/default/");
        assert_eq!(pods.prefix(None), "/registry/pods/");
        let nodes = get(ResourceId::Node);
        assert_eq!(nodes.key(Some("ignored"), "n1"), "/registry/nodes/n1");
        assert_eq!(nodes.prefix(Some("ignored")), "/registry/nodes/");
    }

    #[test]
    fn keys_are_built_from_an_objects_metadata() {
        let svc = get(ResourceId::Service);
        let object = serde_json::json!({"metadata": {"name": "web", "namespace": "shop"}});
        assert_eq!(
            svc.key_for(&object).as_deref(),
            Some("/registry/services/shop/web")
        );
        assert_eq!(svc.key_for(&serde_json::json!({"metadata": {}})), None);
    }

    #[test]
    fn status_subresources_are_on_the_kinds_that_have_status() {
        let with_status: Vec<_> = RESOURCES
            .iter()
            .filter(|r| r.has_status)
            .map(|r| r.kind)
            .collect();
        assert_eq!(
            with_status,
            [
                "Namespace",
                "Pod",
                "Service",
                "Node",
                "Deployment",
                "ReplicaSet",
                "DaemonSet",
                "Job"
            ]
        );
    }

    #[test]
    fn qualified_names_include_the_group_except_for_core() {
        assert_eq!(
            get(ResourceId::Deployment).qualified_kind(),
            "Deployment.apps"
        );
        assert_eq!(get(ResourceId::Pod).qualified_kind(), "Pod");
        assert_eq!(
            get(ResourceId::Lease).to_string(),
            "leases.coordination.k8s.io"
        );
    }
}
