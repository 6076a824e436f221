//! The data plane as tests load it: the embedded programs with small Maglev tables (251
//! entries, 16 of them), nothing pinned.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use skiff_agent::dataplane::{Dataplane, LoadOptions, MapSizes};

/// Entries per Maglev table in tests.
pub const TABLE_SIZE: u32 = 251;

/// Loads the programs for a node whose address is `node_addr`.
///
/// # Errors
/// When the kernel refuses a program or a map.
pub fn load(node_addr: Ipv4Addr) -> Result<Dataplane> {
    let sizes = MapSizes {
        maglev_table_size: TABLE_SIZE,
        maglev_tables: 16,
        ..MapSizes::default()
    };
    Dataplane::load(&LoadOptions {
        pin_path: None,
        sizes,
        node_addr: Some(node_addr),
    })
    .context("loading the data plane")
}
