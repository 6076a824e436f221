//! The resource metrics API, `metrics.k8s.io/v1beta1` (metrics-server's): its two resources,
//! `nodes` (NodeMetrics) and `pods` (PodMetrics), served live by the API server from the
//! nodes' usage summaries rather than stored, and the quantities they report usage in.
//!
//! Requests name them group-qualified (`nodes.metrics.k8s.io`), so they never collide with
//! the core `nodes` and `pods` of the [`crate::resources`] registry.

use crate::validation::quantity::{Quantity, QuantityFormat};

/// The API group.
pub const GROUP: &str = "metrics.k8s.io";
/// `apiVersion` of its objects.
pub const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// One of the two resources of the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricsResource {
    /// NodeMetrics: one per node, cluster-scoped.
    Nodes,
    /// PodMetrics: one per pod, namespaced.
    Pods,
}

impl MetricsResource {
    /// Both, in the order `api-resources` lists them.
    pub const ALL: [MetricsResource; 2] = [MetricsResource::Nodes, MetricsResource::Pods];

    /// The resource a request names: `nodes.metrics.k8s.io` or `pods.metrics.k8s.io`
    /// (also with the version, `pods.v1beta1.metrics.k8s.io`).
    pub fn from_name(name: &str) -> Option<Self> {
        let (plural, rest) = name.split_once('.')?;
        let group = rest.strip_prefix("v1beta1.").unwrap_or(rest);
        if !group.eq_ignore_ascii_case(GROUP) {
            return None;
        }
        Self::ALL.into_iter().find(|r| {
            plural.eq_ignore_ascii_case(r.plural())
                || plural.eq_ignore_ascii_case(r.kind())
                || plural.eq_ignore_ascii_case(&r.kind().to_ascii_lowercase())
        })
    }

    /// The plural name within the group (what RBAC rules name).
    pub fn plural(self) -> &'static str {
        match self {
            MetricsResource::Nodes => "nodes",
            MetricsResource::Pods => "pods",
        }
    }

    /// The kind of its objects.
    pub fn kind(self) -> &'static str {
        match self {
            MetricsResource::Nodes => "NodeMetrics",
            MetricsResource::Pods => "PodMetrics",
        }
    }

    /// `plural.group`, as requests and messages name it.
    pub fn group_resource(self) -> String {
        format!("{}.{GROUP}", self.plural())
    }

    /// Whether its objects live in a namespace.
    pub fn namespaced(self) -> bool {
        self == MetricsResource::Pods
    }
}

/// CPU usage as metrics-server reports it: nanocores in canonical form (`123456789n`,
/// `250m`, `2`).
pub fn cpu_quantity(nano_cores: u64) -> String {
    Quantity::from_nanos(
        i64::try_from(nano_cores).unwrap_or(i64::MAX),
        QuantityFormat::DecimalSi,
    )
    .to_string()
}

/// Memory as metrics-server reports it: bytes in binary canonical form (`12345Ki`, or plain
/// bytes when not a whole number of KiB).
pub fn memory_quantity(bytes: u64) -> String {
    Quantity::from_value(
        i64::try_from(bytes).unwrap_or(i64::MAX),
        QuantityFormat::BinarySi,
    )
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_group_qualified_names_are_metrics_resources() {
        assert_eq!(
            MetricsResource::from_name("nodes.metrics.k8s.io"),
            Some(MetricsResource::Nodes)
        );
        assert_eq!(
            MetricsResource::from_name("pods.v1beta1.metrics.k8s.io"),
            Some(MetricsResource::Pods)
        );
        assert_eq!(
            MetricsResource::from_name("PodMetrics.metrics.k8s.io"),
            Some(MetricsResource::Pods)
        );
        assert_eq!(MetricsResource::from_name("pods"), None);
        assert_eq!(MetricsResource::from_name("pods.apps"), None);
        assert_eq!(MetricsResource::from_name("services.metrics.k8s.io"), None);
        assert_eq!(
            MetricsResource::Nodes.group_resource(),
            "nodes.metrics.k8s.io"
        );
    }

    #[test]
    fn usage_prints_in_kubernetes_canonical_quantities() {
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(cpu_quantity(123_456_789), "123456789n");
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(1_500), "1500n");
        assert_eq!(cpu_quantity(12_000), "12u");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(memory_quantity(0), "0");
        assert_eq!(memory_quantity(12_345 * 1024), "12345Ki");
        assert_eq!(memory_quantity(64 << 20), "64Mi");
        assert_eq!(
            memory_quantity(1000),
            "1k",
            "below 1Ki Kubernetes prints decimal"
        );
        assert_eq!(memory_quantity(1025), "1025");
    }
}
