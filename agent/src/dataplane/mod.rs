//! The node's eBPF data plane: the embedded programs, loading and attaching them, and
//! reading their maps.
//!
//! `loader` turns the object built from the `ebpf` crate into loaded programs and maps;
//! attach points (the uplink's XDP hook today) are attached by interface.

pub mod loader;

pub use loader::{Dataplane, DataplaneError, LoadOptions, XdpAttachMode};
