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

/// An error and its causes, joined by `: ` (for messages that leave the agent).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
