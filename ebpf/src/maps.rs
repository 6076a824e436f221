//! Every map the programs share, defined in one place so that names and sizes are easy to
//! audit against the agent's loader (`agent/src/dataplane/loader.rs`).

use aya_ebpf::{macros::map, maps::PerCpuArray};
use skiff_ebpf_common::{PacketClass, PacketCounter};

/// Frames seen by the uplink XDP program, per packet class and CPU.
#[map(name = "UPLINK_STATS")]
pub static UPLINK_STATS: PerCpuArray<PacketCounter> =
    PerCpuArray::with_max_entries(PacketClass::COUNT, 0);

/// Adds one frame of `len` bytes to `class`'s counter on this CPU.
#[inline(always)]
pub fn count(class: PacketClass, len: usize) {
    if let Some(counter) = UPLINK_STATS.get_ptr_mut(class as u32) {
        // SAFETY: the pointer comes from the map for this CPU's slot, so it is valid and
        // nothing else writes it while this program runs on this CPU.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len as u64;
        }
    }
}
