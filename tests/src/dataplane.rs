//! The data plane as tests load it: the embedded programs with small Maglev tables (251
//! entries, 16 of them), nothing pinned.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use skiff_agent::dataplane::{Dataplane, LoadOptions, MapSizes};
use skiff_ebpf_common::LbEvent;

/// Entries per Maglev table in tests.
pub const TABLE_SIZE: u32 = 251;

/// The map sizes tests use: the defaults with 16 small Maglev tables.
pub fn small_sizes() -> MapSizes {
    MapSizes {
        maglev_table_size: TABLE_SIZE,
        maglev_tables: 16,
        ..MapSizes::default()
    }
}

/// Loads the programs for a node whose address is `node_addr`.
///
/// # Errors
/// When the kernel refuses a program or a map.
pub fn load(node_addr: Ipv4Addr) -> Result<Dataplane> {
    load_with(small_sizes(), Some(node_addr))
}

/// Loads the programs with maps of `sizes` (a test of a map's limit makes one small).
///
/// # Errors
/// When the kernel refuses a program or a map.
pub fn load_with(sizes: MapSizes, node_addr: Option<Ipv4Addr>) -> Result<Dataplane> {
    Dataplane::load(&LoadOptions {
        pin_path: None,
        sizes,
        node_addr,
    })
    .context("loading the data plane")
}

/// How many times the programs counted `event`, over all CPUs.
///
/// # Panics
/// When the counters cannot be read.
pub fn lb_count(dataplane: &Dataplane, event: LbEvent) -> u64 {
    let stats = dataplane
        .lb_stats()
        .expect("reading the load-balancing counters");
    stats
        .iter()
        .find(|(e, _)| *e == event)
        .map_or(0, |(_, n)| *n)
}
