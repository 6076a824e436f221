//! The node's eBPF data plane: the embedded programs, loading and attaching them, and
//! keeping their maps in sync with the cluster's services.
//!
//! `loader` turns the object built from the `ebpf` crate into loaded programs and maps and
//! attaches them (XDP on the uplink, socket LB on the node's cgroup); `maglev` builds the
//! backend tables the programs hash into; `backend_ids` hands out backend slots that are
//! safe to reuse; `services` turns the desired services into the
//! fewest map writes, in a safe order, through the `lb_maps` seam; `endpoints` registers
//! this node's pods so that translated packets reach them past the node's stack;
//! `conntrack` removes flows idle past their timeout.

pub mod backend_ids;
pub mod conntrack;
pub mod desired;
pub mod endpoints;
pub mod lb_maps;
pub mod loader;
pub mod maglev;
pub mod options;
pub mod services;

pub use loader::{
    Dataplane, DataplaneError, LoadOptions, MapFill, MapSizes, UplinkHook, UplinkMode,
};
