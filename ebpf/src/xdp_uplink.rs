//! XDP on a node's uplink: the entry point for traffic from outside the node on interfaces
//! whose driver runs XDP natively (see `uplink` for what is done with each frame).

use aya_ebpf::{
    bindings::{bpf_fib_lookup, xdp_action},
    helpers::generated::{
        bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_xdp_adjust_head, bpf_xdp_adjust_tail,
    },
    macros::xdp,
    programs::XdpContext,
};

use crate::{
    nat::{csum_replace2, csum_replace4},
    parse::Packet,
    uplink::{Hook, IP_CHECK, Verdict, ingress},
};

#[xdp]
pub fn xdp_uplink(ctx: XdpContext) -> u32 {
    let hook = Xdp(&ctx);
    match ingress(&hook) {
        Verdict::Pass => xdp_action::XDP_PASS,
        Verdict::Tx => xdp_action::XDP_TX,
        // SAFETY: `bpf_redirect` only records the target interface.
        Verdict::Redirect(ifindex) => unsafe { bpf_redirect(ifindex, 0) as u32 },
        Verdict::Drop | Verdict::RedirectNeigh(_) | Verdict::RedirectPeer(_) => {
            xdp_action::XDP_DROP
        }
    }
}

/// Packet access for XDP: direct writes with incremental checksum updates (no skb exists
/// yet, so there is no checksum state to keep).
struct Xdp<'a>(&'a XdpContext);

impl Hook for Xdp<'_> {
    const RESOLVES_NEIGHBOURS: bool = false;
    const REDIRECTS_TO_PEER: bool = false;
    const AGGREGATES: bool = false;

    #[inline(always)]
    fn packet(&self) -> Packet {
        Packet {
            start: self.0.data(),
            end: self.0.data_end(),
        }
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.packet().len()
    }

    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        // SAFETY: `ctx` is the kernel's xdp_md.
        unsafe { (*self.0.ctx).ingress_ifindex }
    }

    #[inline(always)]
    fn store<T: Copy>(&self, offset: usize, value: &T) -> Option<()> {
        self.packet().write(offset, value)
    }

    #[inline(always)]
    fn ip_csum4(&self, old: u32, new: u32) -> Option<()> {
        self.packet().update_check(IP_CHECK, |c| csum_replace4(c, old, new))
    }

    #[inline(always)]
    fn ip_csum2(&self, old: u16, new: u16) -> Option<()> {
        self.packet().update_check(IP_CHECK, |c| csum_replace2(c, old, new))
    }

    #[inline(always)]
    fn l4_csum4(&self, offset: usize, old: u32, new: u32, _pseudo: bool) -> Option<()> {
        self.packet().update_check(offset, |c| csum_replace4(c, old, new))
    }

    #[inline(always)]
    fn l4_csum2(&self, offset: usize, old: u16, new: u16) -> Option<()> {
        self.packet().update_check(offset, |c| csum_replace2(c, old, new))
    }

    #[inline(always)]
    fn fib_lookup(&self, params: &mut bpf_fib_lookup) -> i64 {
        // SAFETY: the helper reads and writes `params`, whose size is passed.
        unsafe {
            fib_lookup(
                self.0.ctx.cast(),
                params,
                size_of::<bpf_fib_lookup>() as i32,
                0,
            )
        }
    }

    #[inline(always)]
    fn reshape(&self, grow: usize, len: usize) -> Option<()> {
        // Growing the head moves the Ethernet header's place too; the caller rewrites the
        // whole frame anyway.
        // SAFETY: `ctx` is the kernel's xdp_md; the helpers check the new bounds.
        if unsafe { bpf_xdp_adjust_head(self.0.ctx, -(grow as i32)) } != 0 {
            return None;
        }
        let extra = self.len().saturating_sub(len);
        // SAFETY: as above.
        if extra > 0 && unsafe { bpf_xdp_adjust_tail(self.0.ctx, -(extra as i32)) } != 0 {
            return None;
        }
        Some(())
    }
}
