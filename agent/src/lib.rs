//! Skiff's node agent: registers the node, runs pods through containerd, and keeps the
//! eBPF data plane in sync with the cluster's services.

pub mod config;
pub mod dataplane;
pub mod eviction;
pub mod logs;
pub mod metrics;
pub mod network;
pub mod node;
pub mod node_api;
pub mod pods;
pub mod runtime;

pub use skiff_api::runtime::error_chain;
