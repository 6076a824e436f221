//! Skiff's eBPF programs, one module per attach point, built into one object that the node
//! agent embeds and loads (`agent/src/dataplane`).
//!
//! Map definitions live in `maps`, header parsing in `parse`; programs only combine them.
#![no_std]
#![no_main]

mod cgroup_stats;
mod lb;
mod maps;
mod nat;
mod parse;
mod sock_lb;
mod tc_uplink;
mod uplink;
mod xdp_pass;
mod xdp_uplink;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; this is never called.
    loop {}
}

/// The kernel only allows GPL-compatible programs to call some helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
