//! The API server's side of the node API (kube-apiserver's kubelet client): where a pod's
//! node is (its Node's InternalIP and `daemonEndpoints.kubeletEndpoint.Port`), and a
//! mutual-TLS connection to that node's agent to relay logs, exec and image uploads.
//!
//! The agent's certificate must be signed by the cluster CA for the node's name (the API
//! server dials the address but checks the name), and the API server presents its own
//! client certificate ([`super::tls::NODE_API_CLIENT_NAME`]), the only caller nodes accept.

use std::time::Duration;

use serde_json::Value;
use skiff_api::{
    proto::node_client::NodeClient,
    runtime::error_chain,
    status::{ApiError, Reason},
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::tls::Pki;

pub use skiff_api::node_api::DEFAULT_PORT as DEFAULT_NODE_API_PORT;

/// How long dialing a node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Dials node APIs with the API server's client certificate.
#[derive(Clone)]
pub struct NodeDialer {
    ca: Certificate,
    identity: Identity,
}

impl std::fmt::Debug for NodeDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeDialer { .. }")
    }
}

/// Where one node's API is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddress {
    pub node: String,
    pub ip: String,
    pub port: u16,
}

impl NodeDialer {
    pub fn new(pki: &Pki) -> Self {
        Self {
            ca: Certificate::from_pem(&pki.ca_pem),
            identity: Identity::from_pem(&pki.node_client_cert_pem, &pki.node_client_key_pem),
        }
    }

    /// Connects to the node API at `address`.
    ///
    /// # Errors
    /// ServiceUnavailable when the node does not answer or its certificate is not the
    /// node's.
    pub async fn connect(&self, address: &NodeAddress) -> Result<NodeClient<Channel>, ApiError> {
        let url = format!("https://{}:{}", address.ip, address.port);
        let unavailable = |detail: String| {
            ApiError::new(
                Reason::ServiceUnavailable,
                format!(
                    "cannot reach node \"{}\" at {url}: {detail}; is its agent running and \
                     reachable from the control plane?",
                    address.node
                ),
            )
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .domain_name(address.node.clone());
        let channel = Endpoint::from_shared(url.clone())
            .map_err(|e| unavailable(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .tls_config(tls)
            .map_err(|e| unavailable(error_chain(&e)))?
            .connect()
            .await
            .map_err(|e| unavailable(error_chain(&e)))?;
        Ok(NodeClient::new(channel)
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20))
    }
}

/// The node API address a Node object reports: its InternalIP (else its first address)
/// and its kubelet endpoint port.
///
/// # Errors
/// ServiceUnavailable when the Node lists no address.
pub fn node_address(node: &Value) -> Result<NodeAddress, ApiError> {
    let name = node
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let pick = |kind: Option<&str>| {
        addresses
            .iter()
            .find(|a| kind.is_none_or(|k| a["type"] == k))
            .and_then(|a| a["address"].as_str())
            .map(str::to_string)
    };
    let ip = pick(Some("InternalIP"))
        .or_else(|| pick(None))
        .ok_or_else(|| {
            ApiError::new(
                Reason::ServiceUnavailable,
                format!(
                    "node \"{name}\" reports no address in status.addresses: its agent has not \
                     registered it yet"
                ),
            )
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
        .unwrap_or(DEFAULT_NODE_API_PORT);
    Ok(NodeAddress {
        node: name,
        ip,
        port,
    })
}

/// The container of `pod` a request is about: `requested`, or the only one. As the API
/// server does, a pod with several containers needs a name.
///
/// # Errors
/// BadRequest naming the containers to choose from.
pub fn pick_container(pod: &Value, requested: &str) -> Result<String, ApiError> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let names = |path: &str| -> Vec<String> {
        pod.pointer(path)
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("/spec/containers");
    let init = names("/spec/initContainers");
    if requested.is_empty() {
        return match containers.as_slice() {
            [only] => Ok(only.clone()),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            ))),
        };
    }
    if containers.iter().chain(&init).any(|c| c == requested) {
        return Ok(requested.to_string());
    }
    Err(ApiError::bad_request(format!(
        "container {requested} is not valid for pod {name}; choose one of: [{}]",
        containers
            .iter()
            .chain(&init)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    )))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_node_is_reached_at_its_internal_ip_and_reported_port() {
        let node = json!({
            "metadata": {"name": "n1"},
            "status": {
                "addresses": [
                    {"type": "Hostname", "address": "n1"},
                    {"type": "InternalIP", "address": "10.0.0.7"},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 11250}},
            },
        });
        assert_eq!(
            node_address(&node).unwrap(),
            NodeAddress {
                node: "n1".into(),
                ip: "10.0.0.7".into(),
                port: 11250
            }
        );
        let bare = json!({"metadata": {"name": "n2"}, "status": {"addresses": [{"type": "Hostname", "address": "n2"}]}});
        assert_eq!(node_address(&bare).unwrap().port, DEFAULT_NODE_API_PORT);
        let unregistered = json!({"metadata": {"name": "n3"}});
        let error = node_address(&unregistered).unwrap_err();
        assert!(error.is(Reason::ServiceUnavailable));
        assert!(error.message.contains("\"n3\""), "{}", error.message);
    }

    #[test]
    fn a_pod_with_several_containers_needs_a_container_name() {
        let pod = json!({
            "metadata": {"name": "web"},
            "spec": {
                "initContainers": [{"name": "setup"}],
                "containers": [{"name": "app"}, {"name": "sidecar"}],
            },
        });
        let error = pick_container(&pod, "").unwrap_err();
        assert_eq!(
            error.message,
            "a container name must be specified for pod web, choose one of: [app sidecar]"
        );
        assert_eq!(pick_container(&pod, "sidecar").unwrap(), "sidecar");
        assert_eq!(pick_container(&pod, "setup").unwrap(), "setup");
        assert!(
            pick_container(&pod, "nope")
                .unwrap_err()
                .message
                .contains("not valid")
        );
        let single = json!({"metadata": {"name": "one"}, "spec": {"containers": [{"name": "c"}]}});
        assert_eq!(pick_container(&single, "").unwrap(), "c");
    }
}
