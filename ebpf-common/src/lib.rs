//! Map keys and values shared by the eBPF programs (`skiff-ebpf`) and the node agent.
//!
//! Every type is `#[repr(C)]`, `Copy`, with explicit padding, and its size is locked by a
//! compile-time assertion so that kernel and user space can never disagree on a layout.
#![no_std]

pub mod cgroup_stats;
pub mod service;
pub mod stats;

pub use cgroup_stats::{CgroupNetCounters, CgroupNetKey};
pub use service::{
    AffinityKey, AffinityValue, Backend, CtKey, CtValue, LbEvent, LocalEndpoint, ServiceKey,
    ServiceValue, SockRevKey, SockRevValue,
};
pub use stats::{FlowCounter, PacketClass, PacketCounter};
