//! What both ends of the node API agree on: the port an agent serves it on unless told
//! otherwise, and the name in the only client certificate agents accept (the API server's).

/// The node API's port when a Node does not report one (the kubelet's).
pub const DEFAULT_PORT: u16 = 10250;

/// The common name of the API server's client certificate towards node APIs (Kubernetes
/// calls its own `kube-apiserver-kubelet-client`).
pub const API_SERVER_CLIENT_NAME: &str = "skiff-apiserver-node-client";
