//! The node's eBPF data plane: the embedded programs, loading and attaching them, and
//! keeping their maps in sync with the cluster's services.
//!
//! `loader` turns the object built from the `ebpf` crate into loaded programs and maps and
//! attaches them (XDP on the uplink, socket LB on the node's cgroup); `maglev` builds the
//! backend tables the programs hash into.

pub mod loader;
pub mod maglev;

pub use loader::{Dataplane, DataplaneError, LoadOptions, MapSizes, XdpAttachMode};
