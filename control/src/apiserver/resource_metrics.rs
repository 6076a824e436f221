//! The resource metrics API (`metrics.k8s.io/v1beta1`, metrics-server's role) served live:
//! NodeMetrics and PodMetrics are never stored; each get or list asks the nodes concerned
//! for their usage summary (the node API's `Summary`) through [`NodeDialer`] and shapes the
//! answers like metrics-server (timestamp, window, usage in Kubernetes quantities).
//!
//! A node that does not answer is left out of a list (and logged); getting its metrics
//! fails with why.

use std::{collections::BTreeMap, time::Duration};

use futures::future::join_all;
use serde_json::{Value, json};
use skiff_api::{
    metrics_api::{API_VERSION, MetricsResource, cpu_quantity, memory_quantity},
    proto::{PodUsage, SummaryRequest, SummaryResponse, Usage},
    resources::{self, ResourceType},
    selector::{FieldSelector, LabelSelector},
    status::{ApiError, Reason},
};

use super::{
    node_proxy::{self, NodeDialer},
    objects::Objects,
};

/// How long one node may take to connect and answer.
const SUMMARY_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads usage from the nodes for the metrics.k8s.io resources.
#[derive(Clone, Copy, Debug)]
pub struct ResourceMetrics<'a> {
    pub objects: &'a Objects,
    pub dialer: &'a NodeDialer,
}

fn core(plural: &str) -> &'static ResourceType {
    resources::by_plural(plural).expect("core nodes and pods are served")
}

fn decode(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(format!("a stored object is not JSON: {e}")))
}

fn text<'v>(object: &'v Value, pointer: &str) -> &'v str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl ResourceMetrics<'_> {
    /// One object: the NodeMetrics of node `name`, or the PodMetrics of pod
    /// `namespace/name`.
    ///
    /// # Errors
    /// NotFound when there is no such node or pod (or no usage of the pod yet);
    /// ServiceUnavailable when its node does not answer or has no sample yet.
    pub async fn get(
        &self,
        which: MetricsResource,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        match which {
            MetricsResource::Nodes => {
                let node = decode(&self.objects.get(core("nodes"), "", name).await.map_err(
                    |e| not_found_as(e, &format!("nodes.metrics.k8s.io \"{name}\" not found")),
                )?)?;
                let summary = self.summary(&node).await?;
                Ok(node_metrics(&node, &summary))
            }
            MetricsResource::Pods => {
                let missing = format!("podmetrics.metrics.k8s.io \"{namespace}/{name}\" not found");
                let pod = decode(
                    &self
                        .objects
                        .get(core("pods"), namespace, name)
                        .await
                        .map_err(|e| not_found_as(e, &missing))?,
                )?;
                let node_name = text(&pod, "/spec/nodeName");
                if node_name.is_empty() {
                    return Err(ApiError::new(Reason::NotFound, missing));
                }
                let node = decode(&self.objects.get(core("nodes"), "", node_name).await?)?;
                let summary = self.summary(&node).await?;
                find_pod(&summary, namespace, name)
                    .map(|usage| pod_metrics(&pod, &summary, usage))
                    .ok_or_else(|| ApiError::new(Reason::NotFound, missing))
            }
        }
    }

    /// Every object in `namespace` ("" for all) whose node or pod matches `labels`.
    ///
    /// # Errors
    /// Only when the nodes or pods cannot be listed; a node that does not answer is left
    /// out.
    pub async fn list(
        &self,
        which: MetricsResource,
        namespace: &str,
        labels: &LabelSelector,
    ) -> Result<Vec<Value>, ApiError> {
        let everything = FieldSelector::parse("").expect("the empty selector parses");
        let all_nodes = LabelSelector::parse("").expect("the empty selector parses");
        let node_labels = if which == MetricsResource::Nodes {
            labels
        } else {
            &all_nodes
        };
        let nodes = self
            .objects
            .list(core("nodes"), "", node_labels, &everything, 0, "")
            .await?
            .items
            .iter()
            .map(|b| decode(b))
            .collect::<Result<Vec<_>, _>>()?;
        match which {
            MetricsResource::Nodes => {
                let summaries = self.summaries(nodes.iter()).await;
                Ok(nodes
                    .iter()
                    .filter_map(|node| {
                        let summary = summaries.get(text(node, "/metadata/name"))?;
                        Some(node_metrics(node, summary))
                    })
                    .collect())
            }
            MetricsResource::Pods => {
                let pods = self
                    .objects
                    .list(core("pods"), namespace, labels, &everything, 0, "")
                    .await?
                    .items
                    .iter()
                    .map(|b| decode(b))
                    .collect::<Result<Vec<_>, _>>()?;
                let wanted: Vec<&Value> = nodes
                    .iter()
                    .filter(|node| {
                        let name = text(node, "/metadata/name");
                        pods.iter().any(|p| text(p, "/spec/nodeName") == name)
                    })
                    .collect();
                let summaries = self.summaries(wanted.into_iter()).await;
                Ok(pods
                    .iter()
                    .filter_map(|pod| {
                        let summary = summaries.get(text(pod, "/spec/nodeName"))?;
                        let usage = find_pod(
                            summary,
                            text(pod, "/metadata/namespace"),
                            text(pod, "/metadata/name"),
                        )?;
                        Some(pod_metrics(pod, summary, usage))
                    })
                    .collect())
            }
        }
    }

    /// The summaries of `nodes`, asked concurrently, by node name; the nodes that fail are
    /// logged and left out.
    async fn summaries<'n>(
        &self,
        nodes: impl Iterator<Item = &'n Value>,
    ) -> BTreeMap<String, SummaryResponse> {
        let asked = nodes.map(|node| async move {
            let name = text(node, "/metadata/name").to_string();
            (name, self.summary(node).await)
        });
        join_all(asked)
            .await
            .into_iter()
            .filter_map(|(name, summary)| match summary {
                Ok(summary) => Some((name, summary)),
                Err(error) => {
                    tracing::warn!(node = %name, error = %error.message, "no usage summary from the node; left out of the metrics list");
                    None
                }
            })
            .collect()
    }

    /// One node's usage summary, within [`SUMMARY_TIMEOUT`].
    async fn summary(&self, node: &Value) -> Result<SummaryResponse, ApiError> {
        let address = node_proxy::node_address(node)?;
        let asked = async {
            let mut client = self.dialer.connect(&address).await?;
            client
                .summary(SummaryRequest {})
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| {
                    let mut error = ApiError::from(status);
                    error.message = format!("node \"{}\": {}", address.node, error.message);
                    error
                })
        };
        tokio::time::timeout(SUMMARY_TIMEOUT, asked)
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::new(
                    Reason::ServiceUnavailable,
                    format!(
                        "node \"{}\" did not answer for its usage summary within {SUMMARY_TIMEOUT:?}",
                        address.node
                    ),
                ))
            })
    }
}

/// A NotFound from the store, reworded for the metrics resource.
fn not_found_as(error: ApiError, message: &str) -> ApiError {
    if error.is(Reason::NotFound) {
        ApiError::new(Reason::NotFound, message)
    } else {
        error
    }
}

fn find_pod<'s>(summary: &'s SummaryResponse, namespace: &str, name: &str) -> Option<&'s PodUsage> {
    summary
        .pods
        .iter()
        .find(|p| p.namespace == namespace && p.name == name)
}

fn usage_json(usage: Option<&Usage>) -> Value {
    let usage = usage.cloned().unwrap_or_default();
    json!({
        "cpu": cpu_quantity(usage.cpu_nano_cores),
        "memory": memory_quantity(usage.memory_working_set_bytes),
    })
}

/// `metav1.Time`: RFC 3339 in whole seconds.
fn timestamp(unix_nanos: i64) -> String {
    jiff::Timestamp::from_second(unix_nanos.div_euclid(1_000_000_000))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `metav1.Duration` as Go prints it: `10s`, `1.5s`, `500ms`, `1m30s`.
fn go_duration(nanos: i64) -> String {
    let nanos = u64::try_from(nanos).unwrap_or(0);
    if nanos == 0 {
        return "0s".into();
    }
    let trim = |whole: u64, fraction: u64, digits: usize| {
        let fraction = format!("{fraction:0digits$}");
        let fraction = fraction.trim_end_matches('0');
        if fraction.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{fraction}")
        }
    };
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim(nanos / 1_000_000, nanos % 1_000_000, 6));
    }
    let seconds = nanos / 1_000_000_000;
    let (hours, minutes, secs) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{}s", trim(secs, nanos % 1_000_000_000, 9)));
    out
}

fn metadata(object: &Value, summary: &SummaryResponse) -> Value {
    let mut metadata = json!({
        "name": text(object, "/metadata/name"),
        "creationTimestamp": timestamp(summary.timestamp_unix_nanos),
    });
    let namespace = text(object, "/metadata/namespace");
    if !namespace.is_empty() {
        metadata["namespace"] = json!(namespace);
    }
    if let Some(labels) = object.pointer("/metadata/labels") {
        metadata["labels"] = labels.clone();
    }
    metadata
}

/// The NodeMetrics of `node` from its summary.
pub fn node_metrics(node: &Value, summary: &SummaryResponse) -> Value {
    json!({
        "kind": MetricsResource::Nodes.kind(),
        "apiVersion": API_VERSION,
        "metadata": metadata(node, summary),
        "timestamp": timestamp(summary.timestamp_unix_nanos),
        "window": go_duration(summary.window_nanos),
        "usage": usage_json(summary.node.as_ref()),
    })
}

/// The PodMetrics of `pod` from its node's summary.
pub fn pod_metrics(pod: &Value, summary: &SummaryResponse, usage: &PodUsage) -> Value {
    let containers: Vec<Value> = usage
        .containers
        .iter()
        .map(|c| json!({"name": c.name, "usage": usage_json(c.usage.as_ref())}))
        .collect();
    json!({
        "kind": MetricsResource::Pods.kind(),
        "apiVersion": API_VERSION,
        "metadata": metadata(pod, summary),
        "timestamp": timestamp(summary.timestamp_unix_nanos),
        "window": go_duration(summary.window_nanos),
        "containers": containers,
    })
}

#[cfg(test)]
mod tests {
    use skiff_api::proto::ContainerUsage;

    use super::*;

    #[test]
    fn windows_print_as_go_durations() {
        assert_eq!(go_duration(10_000_000_000), "10s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(500_250_000), "500.25ms");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(0), "0s");
    }

    #[test]
    fn metrics_objects_have_metrics_servers_shape() {
        let summary = SummaryResponse {
            timestamp_unix_nanos: 1_764_892_800_500_000_000,
            window_nanos: 10_000_000_000,
            node: Some(Usage {
                cpu_nano_cores: 250_000_000,
                memory_working_set_bytes: 64 << 20,
            }),
            pods: vec![PodUsage {
                namespace: "shop".into(),
                name: "web".into(),
                containers: vec![ContainerUsage {
                    name: "app".into(),
                    usage: Some(Usage {
                        cpu_nano_cores: 123_456_789,
                        memory_working_set_bytes: 12_345 * 1024,
                    }),
                }],
            }],
        };
        let node = json!({"metadata": {"name": "n1", "labels": {"zone": "a"}}});
        assert_eq!(
            node_metrics(&node, &summary),
            json!({
                "kind": "NodeMetrics",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {
                    "name": "n1",
                    "labels": {"zone": "a"},
                    "creationTimestamp": "2025-12-05T00:00:00Z",
                },
                "timestamp": "2025-12-05T00:00:00Z",
                "window": "10s",
                "usage": {"cpu": "250m", "memory": "64Mi"},
            })
        );
        let pod = json!({"metadata": {"name": "web", "namespace": "shop"}});
        let usage = find_pod(&summary, "shop", "web").unwrap();
        let metrics = pod_metrics(&pod, &summary, usage);
        assert_eq!(metrics["kind"], "PodMetrics");
        assert_eq!(metrics["metadata"]["namespace"], "shop");
        assert_eq!(
            metrics["containers"],
            json!([{"name": "app", "usage": {"cpu": "123456789n", "memory": "12345Ki"}}])
        );
        assert!(find_pod(&summary, "other", "web").is_none());
    }
}
