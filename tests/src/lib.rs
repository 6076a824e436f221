//! Shared harness for Skiff's end-to-end and privileged tests: network namespaces and veth
//! links that clean up after themselves, crafted packets, and bounded waits.
//!
//! Every privileged test needs root; [`require_root`] fails (never skips) without it.

pub mod api_proxy;
pub mod backends;
pub mod cgroup;
pub mod cluster;
pub mod containerd;
pub mod control;
pub mod dataplane;
pub mod etcd;
pub mod metrics;
pub mod netns;
pub mod oci;
pub mod packets;
pub mod pins;
pub mod pod_node;
pub mod process;
pub mod prometheus;
pub mod registry;
pub mod wait;
pub mod workload;

/// Fails the calling test with a clear message unless it runs as root.
///
/// # Panics
/// When the effective user is not root: privileged tests must run, not silently pass.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (network namespaces, eBPF); run `cargo xtask test` as root"
    );
}

/// A name unique to this process and call, short enough for an interface (15 bytes).
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{:x}{n}", std::process::id() & 0xffff);
    assert!(
        name.len() <= 15,
        "name `{name}` is too long for an interface"
    );
    name
}
