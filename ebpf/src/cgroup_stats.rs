//! `cgroup_skb` ingress and egress on the node's cgroup subtree: counts the packets and
//! bytes each cgroup's sockets receive and send on real interfaces (not loopback, as
//! cAdvisor reads a pod's `eth0`), per CPU, keyed by cgroup id. They only count: every
//! packet is allowed.

use aya_ebpf::{
    helpers::generated::bpf_skb_cgroup_id, macros::cgroup_skb, programs::SkBuffContext,
};
use skiff_ebpf_common::CgroupNetKey;

use crate::maps::{CGROUP_NET_STATS, slot};

/// What a cgroup_skb program returns to let the packet through.
const ALLOW: i32 = 1;
/// The loopback device's index, the same in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

#[cgroup_skb(ingress)]
pub fn cgroup_skb_ingress(ctx: SkBuffContext) -> i32 {
    count(&ctx, Direction::Receive);
    ALLOW
}

#[cgroup_skb(egress)]
pub fn cgroup_skb_egress(ctx: SkBuffContext) -> i32 {
    count(&ctx, Direction::Transmit);
    ALLOW
}

#[derive(Clone, Copy)]
enum Direction {
    Receive,
    Transmit,
}

/// Adds the packet to its cgroup's counters on this CPU.
#[inline(always)]
fn count(ctx: &SkBuffContext, direction: Direction) {
    // SAFETY: `ifindex` is readable in both cgroup_skb hooks.
    if unsafe { (*ctx.skb.skb).ifindex } == LOOPBACK_IFINDEX {
        return;
    }
    // SAFETY: the helper takes the program's own `__sk_buff` context.
    let cgroup_id = unsafe { bpf_skb_cgroup_id(ctx.skb.skb) };
    if cgroup_id == 0 {
        return;
    }
    let key = CgroupNetKey { cgroup_id };
    let len = u64::from(ctx.len());
    let Some(counters) = slot(&CGROUP_NET_STATS, &key) else {
        return;
    };
    // SAFETY: the pointer comes from the map for this CPU's slot, so it is valid and
    // nothing else writes it while this program runs on this CPU.
    unsafe {
        match direction {
            Direction::Receive => {
                (*counters).rx_packets += 1;
                (*counters).rx_bytes += len;
            }
            Direction::Transmit => {
                (*counters).tx_packets += 1;
                (*counters).tx_bytes += len;
            }
        }
    }
}
