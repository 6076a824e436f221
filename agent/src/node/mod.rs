//! This node as the cluster sees it: the credential the agent speaks with, the Node object
//! (capacity, addresses, system info, conditions), and the Lease that says it is alive.
//!
//! At start the agent exchanges its bootstrap token for a node credential (kept in the
//! state directory), registers or updates its Node, then renews its Lease in
//! `kube-node-lease` every few seconds and rewrites NodeStatus only when it changed.

pub mod credentials;
pub mod heartbeat;
pub mod status;
