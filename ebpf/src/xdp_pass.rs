//! An XDP program that passes every frame: attached to the receiving end of a veth so that
//! frames redirected or transmitted into it by XDP are not dropped, and the baseline the
//! data-plane benchmark measures the uplink program against.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
