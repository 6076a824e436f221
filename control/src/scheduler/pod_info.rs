//! What the scheduler needs to know about a pod, computed once: its resource requests
//! (Kubernetes' init-container, sidecar and overhead rules), host ports, priority and parsed
//! inter-pod affinity terms. Pods on nodes keep theirs in [`NodeInfo`](super::NodeInfo); the
//! pod being scheduled gets one per cycle.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use skiff_api::k8s_openapi::api::core::v1::{Container, Pod, PodAffinityTerm};
use skiff_api::k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use skiff_api::selector::LabelSelector;
use skiff_api::validation::quantity::Quantity;

/// The cpu a container without a cpu request is counted as by the scoring plugins (100m).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory a container without a memory request is counted as by the scoring plugins.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A label map with nothing in it, for objects without labels.
pub(crate) static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// Labels of namespaces by name, for the `namespaceSelector` of affinity terms.
pub type NamespaceLabels = HashMap<String, BTreeMap<String, String>>;

/// An amount of each schedulable resource: what a pod requests, what a node has requested of
/// it, or what a node can allocate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    /// cpu in millicores.
    pub milli_cpu: i64,
    /// memory in bytes.
    pub memory: i64,
    /// ephemeral-storage in bytes.
    pub ephemeral_storage: i64,
    /// The number of pods (only meaningful for a node's allocatable).
    pub pods: i64,
    /// Extended resources (`example.com/gpu`) and hugepages, in whole units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    /// Reads a `ResourceList`. Unparsable quantities count as zero and are reported in
    /// `errors`.
    pub fn from_list(list: &BTreeMap<String, ApiQuantity>, errors: &mut Vec<String>) -> Self {
        let mut resource = Resource::default();
        for (name, quantity) in list {
            let parsed = match Quantity::try_from(quantity) {
                Ok(q) => q,
                Err(e) => {
                    errors.push(format!("resource {name}: {:?}: {e}", quantity.0));
                    continue;
                }
            };
            match name.as_str() {
                "cpu" => resource.milli_cpu = parsed.milli_value(),
                "memory" => resource.memory = parsed.value(),
                "ephemeral-storage" => resource.ephemeral_storage = parsed.value(),
                "pods" => resource.pods = parsed.value(),
                other if is_scalar_resource(other) => {
                    resource.scalar.insert(other.to_string(), parsed.value());
                }
                _ => {}
            }
        }
        resource
    }

    /// True when nothing is requested.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }

    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (name, value) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() += value;
        }
    }

    /// Subtracts `other` from `self`.
    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (name, value) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() -= value;
        }
    }

    /// Raises each amount of `self` to at least the one of `other`.
    pub fn set_max(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.pods = self.pods.max(other.pods);
        for (name, value) in &other.scalar {
            let entry = self.scalar.entry(name.clone()).or_default();
            *entry = (*entry).max(*value);
        }
    }

    /// The amount of the scalar resource `name`, zero when absent.
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.get(name).copied().unwrap_or(0)
    }
}

/// Resources that are neither cpu, memory, ephemeral-storage nor pods and that the
/// scheduler still accounts for: extended resources (with a domain) and hugepages.
fn is_scalar_resource(name: &str) -> bool {
    name.starts_with("hugepages-") || name.contains('/')
}

/// A host port a pod asks for (`hostPort` of a container port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// The host address; `0.0.0.0` when unset.
    pub ip: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// True when both cannot be bound at once: same protocol and port, and the same
    /// address or either is the wildcard.
    pub fn conflicts_with(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == WILDCARD_IP || other.ip == WILDCARD_IP)
    }
}

const WILDCARD_IP: &str = "0.0.0.0";

/// One inter-pod (anti-)affinity term, parsed: which pods it selects and over which topology.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    /// Namespaces named by the term, or the owner's namespace when the term names none and
    /// has no namespace selector.
    pub namespaces: Vec<String>,
    /// `namespaceSelector`; an empty selector selects every namespace.
    pub namespace_selector: Option<LabelSelector>,
    /// `labelSelector`; `None` (no selector) selects no pod, as in Kubernetes.
    pub selector: Option<LabelSelector>,
    pub topology_key: String,
}

impl AffinityTerm {
    fn parse(
        owner_namespace: &str,
        term: &PodAffinityTerm,
        errors: &mut Vec<String>,
    ) -> Option<Self> {
        let selector = match term.label_selector.as_ref().map(LabelSelector::from_meta) {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                errors.push(format!("affinity term labelSelector: {e}"));
                return None;
            }
        };
        let namespace_selector = match term
            .namespace_selector
            .as_ref()
            .map(LabelSelector::from_meta)
        {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                errors.push(format!("affinity term namespaceSelector: {e}"));
                return None;
            }
        };
        let mut namespaces = term.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.push(owner_namespace.to_string());
        }
        Some(Self {
            namespaces,
            namespace_selector,
            selector,
            topology_key: term.topology_key.clone(),
        })
    }

    /// True when `pod` is one of the pods this term selects.
    pub fn matches(&self, pod: &PodInfo, namespace_labels: &NamespaceLabels) -> bool {
        self.matches_namespace(pod.namespace(), namespace_labels)
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(pod.labels()))
    }

    fn matches_namespace(&self, namespace: &str, namespace_labels: &NamespaceLabels) -> bool {
        self.namespaces.iter().any(|n| n == namespace)
            || self.namespace_selector.as_ref().is_some_and(|s| {
                s.is_empty() || s.matches(namespace_labels.get(namespace).unwrap_or(&NO_LABELS))
            })
    }
}

/// An affinity term with the weight of a `preferredDuringScheduling...` rule.
#[derive(Debug, Clone)]
pub struct WeightedAffinityTerm {
    pub term: AffinityTerm,
    pub weight: i32,
}

/// A pod with everything the plugins read from it precomputed.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    /// The pod's identity in the cache and queue: its uid, or `namespace/name` without one.
    pub key: String,
    /// Requests as the resource-fit filter sees them (init containers, sidecars, overhead).
    pub requests: Resource,
    /// cpu and memory as the scoring plugins see them: containers without a request count
    /// as 100m and 200Mi.
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
    pub host_ports: Vec<HostPort>,
    /// `spec.priority`, 0 when unset.
    pub priority: i32,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<WeightedAffinityTerm>,
    pub preferred_anti_affinity: Vec<WeightedAffinityTerm>,
    /// What could not be parsed (quantities, selectors); such parts are left out.
    pub parse_errors: Vec<String>,
}

/// The identity of a pod in the cache and queue: its uid, or `namespace/name` when it has
/// none (objects built in tests).
pub fn pod_key(pod: &Pod) -> String {
    match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_string(),
        _ => format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or("")
        ),
    }
}

impl PodInfo {
    /// Computes everything the plugins need from `pod`.
    pub fn new(pod: Arc<Pod>) -> Self {
        let mut errors = Vec::new();
        let key = pod_key(&pod);
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let spec = pod.spec.as_ref();
        let mut requests = Resource::default();
        let mut non_zero = Resource::default();
        let mut host_ports = Vec::new();
        let mut required_affinity = Vec::new();
        let mut required_anti_affinity = Vec::new();
        let mut preferred_affinity = Vec::new();
        let mut preferred_anti_affinity = Vec::new();
        if let Some(spec) = spec {
            let init = spec.init_containers.as_deref().unwrap_or(&[]);
            requests = pod_requests(&spec.containers, init, |c| {
                container_requests(c, false, &mut errors)
            });
            let mut ignored = Vec::new();
            non_zero = pod_requests(&spec.containers, init, |c| {
                container_requests(c, true, &mut ignored)
            });
            if let Some(overhead) = &spec.overhead {
                let overhead = Resource::from_list(overhead, &mut errors);
                requests.add(&overhead);
                non_zero.add(&overhead);
            }
            let sidecars = init.iter().filter(|c| is_sidecar(c));
            for container in spec.containers.iter().chain(sidecars) {
                for port in container.ports.iter().flatten() {
                    if let Some(host_port) = port.host_port.filter(|p| *p > 0) {
                        host_ports.push(HostPort {
                            ip: port
                                .host_ip
                                .clone()
                                .filter(|ip| !ip.is_empty())
                                .unwrap_or_else(|| WILDCARD_IP.to_string()),
                            protocol: port.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                            port: host_port,
                        });
                    }
                }
            }
            if let Some(affinity) = &spec.affinity {
                if let Some(a) = &affinity.pod_affinity {
                    required_affinity = parse_terms(
                        namespace,
                        a.required_during_scheduling_ignored_during_execution
                            .as_deref(),
                        &mut errors,
                    );
                    preferred_affinity = parse_weighted_terms(
                        namespace,
                        a.preferred_during_scheduling_ignored_during_execution
                            .as_deref(),
                        &mut errors,
                    );
                }
                if let Some(a) = &affinity.pod_anti_affinity {
                    required_anti_affinity = parse_terms(
                        namespace,
                        a.required_during_scheduling_ignored_during_execution
                            .as_deref(),
                        &mut errors,
                    );
                    preferred_anti_affinity = parse_weighted_terms(
                        namespace,
                        a.preferred_during_scheduling_ignored_during_execution
                            .as_deref(),
                        &mut errors,
                    );
                }
            }
        }
        Self {
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            key,
            requests,
            non_zero_milli_cpu: non_zero.milli_cpu,
            non_zero_memory: non_zero.memory,
            host_ports,
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            parse_errors: errors,
            pod,
        }
    }

    /// The same pod information for a new version of the object whose spec did not change
    /// (e.g. with `spec.nodeName` set when it is assumed).
    pub fn with_pod(&self, pod: Arc<Pod>) -> Self {
        Self {
            pod,
            ..self.clone()
        }
    }

    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    pub fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or("")
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    /// `spec.nodeName`, when the pod is bound (or assumed).
    pub fn node_name(&self) -> Option<&str> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
    }

    /// True when the pod is being deleted.
    pub fn is_terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    /// True when the pod has any inter-pod affinity or anti-affinity term.
    pub fn has_affinity(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.required_anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    /// True when the pod has terms that score other pods: required affinity (scored with
    /// the hard affinity weight) or any preferred term.
    pub fn has_scoring_affinity(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    /// True when the pod has a required anti-affinity term.
    pub fn has_required_anti_affinity(&self) -> bool {
        !self.required_anti_affinity.is_empty()
    }
}

/// True for an init container that keeps running beside the app (`restartPolicy: Always`).
fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

/// A container's requests; with `non_zero`, cpu and memory default to the scoring defaults
/// when not requested.
fn container_requests(container: &Container, non_zero: bool, errors: &mut Vec<String>) -> Resource {
    let list = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref());
    let mut resource = list
        .map(|l| Resource::from_list(l, errors))
        .unwrap_or_default();
    if non_zero {
        if list.is_none_or(|l| !l.contains_key("cpu")) {
            resource.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if list.is_none_or(|l| !l.contains_key("memory")) {
            resource.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    resource
}

/// Kubernetes' `PodRequests`: the sum of the app containers and sidecars, raised to what any
/// init container needs while it runs (itself plus the sidecars started before it).
fn pod_requests(
    containers: &[Container],
    init_containers: &[Container],
    mut requests_of: impl FnMut(&Container) -> Resource,
) -> Resource {
    let mut total = Resource::default();
    for container in containers {
        total.add(&requests_of(container));
    }
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    for container in init_containers {
        let requests = requests_of(container);
        if is_sidecar(container) {
            total.add(&requests);
            sidecars.add(&requests);
            init_max.set_max(&sidecars);
        } else {
            let mut running = requests;
            running.add(&sidecars);
            init_max.set_max(&running);
        }
    }
    total.set_max(&init_max);
    total
}

fn parse_terms(
    namespace: &str,
    terms: Option<&[PodAffinityTerm]>,
    errors: &mut Vec<String>,
) -> Vec<AffinityTerm> {
    terms
        .unwrap_or(&[])
        .iter()
        .filter_map(|t| AffinityTerm::parse(namespace, t, errors))
        .collect()
}

fn parse_weighted_terms(
    namespace: &str,
    terms: Option<&[skiff_api::k8s_openapi::api::core::v1::WeightedPodAffinityTerm]>,
    errors: &mut Vec<String>,
) -> Vec<WeightedAffinityTerm> {
    terms
        .unwrap_or(&[])
        .iter()
        .filter_map(|t| {
            AffinityTerm::parse(namespace, &t.pod_affinity_term, errors).map(|term| {
                WeightedAffinityTerm {
                    term,
                    weight: t.weight,
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(value: serde_json::Value) -> PodInfo {
        PodInfo::new(Arc::new(serde_json::from_value(value).unwrap()))
    }

    #[test]
    fn requests_sum_containers_and_take_the_largest_init_container() {
        let pod = info(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "200m", "memory": "1Gi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "300m", "memory": "1Gi"}}}
                ],
                "initContainers": [
                    {"name": "i1", "resources": {"requests": {"cpu": "2", "memory": "10Mi"}}}
                ],
                "overhead": {"cpu": "10m"}
            }
        }));
        assert_eq!(pod.requests.milli_cpu, 2010);
        assert_eq!(pod.requests.memory, 2 << 30);
        assert_eq!(pod.key, "ns/p");
    }

    #[test]
    fn sidecars_add_to_the_pod_and_to_every_later_init_container() {
        let pod = info(json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
                "initContainers": [
                    {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
                    {"name": "init", "resources": {"requests": {"cpu": "1"}}}
                ]
            }
        }));
        // The init container runs beside the sidecar: 1500m; the app runs with it: 600m.
        assert_eq!(pod.requests.milli_cpu, 1500);
    }

    #[test]
    fn containers_without_requests_count_as_defaults_for_scoring_only() {
        let pod = info(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}));
        assert!(pod.requests.is_zero());
        assert_eq!(pod.non_zero_milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(pod.non_zero_memory, DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn host_ports_default_to_tcp_on_every_address() {
        let pod = info(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}
        ]}}));
        assert_eq!(
            pod.host_ports,
            vec![HostPort {
                ip: "0.0.0.0".into(),
                protocol: "TCP".into(),
                port: 8080
            }]
        );
        let other = HostPort {
            ip: "10.0.0.1".into(),
            protocol: "TCP".into(),
            port: 8080,
        };
        assert!(pod.host_ports[0].conflicts_with(&other));
        let udp = HostPort {
            protocol: "UDP".into(),
            ..other
        };
        assert!(!pod.host_ports[0].conflicts_with(&udp));
    }

    #[test]
    fn affinity_terms_default_to_the_pods_own_namespace() {
        let pod = info(
            json!({"metadata": {"name": "p", "namespace": "team"}, "spec": {
                "containers": [{"name": "a"}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
                ]}}
            }}),
        );
        let term = &pod.required_anti_affinity[0];
        assert_eq!(term.namespaces, vec!["team".to_string()]);
        let same = info(
            json!({"metadata": {"name": "q", "namespace": "team", "labels": {"app": "web"}}, "spec": {"containers": []}}),
        );
        let other_ns = info(
            json!({"metadata": {"name": "q", "namespace": "x", "labels": {"app": "web"}}, "spec": {"containers": []}}),
        );
        assert!(term.matches(&same, &NamespaceLabels::new()));
        assert!(!term.matches(&other_ns, &NamespaceLabels::new()));
        assert!(pod.has_required_anti_affinity());
    }

    #[test]
    fn unparsable_quantities_are_reported_and_count_as_zero() {
        let pod = info(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "lots"}}}
        ]}}));
        assert_eq!(pod.requests.milli_cpu, 0);
        assert_eq!(pod.parse_errors.len(), 1);
    }
}
