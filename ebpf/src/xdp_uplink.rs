//! XDP on a node's uplink: the entry point for traffic from outside the node.
//!
//! Today it classifies and counts every frame and passes it on; the NodePort and
//! LoadBalancer translation is added here, on top of the same parsing.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use skiff_ebpf_common::PacketClass;

use crate::{
    maps::count,
    parse::{
        ETH_HLEN, ETH_P_IP, EthHdr, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, L4Ports,
        Packet, TcpHdr,
    },
};

#[xdp]
pub fn xdp_uplink(ctx: XdpContext) -> u32 {
    let packet = Packet {
        start: ctx.data(),
        end: ctx.data_end(),
    };
    count(classify(&packet), packet.len());
    xdp_action::XDP_PASS
}

/// Which class a frame belongs to; never reads outside the frame.
#[inline(always)]
fn classify(packet: &Packet) -> PacketClass {
    let Some(eth) = packet.header::<EthHdr>(0) else {
        return PacketClass::Malformed;
    };
    // SAFETY: `header` checked that the Ethernet header lies inside the packet.
    if u16::from_be_bytes(unsafe { (*eth).proto }) != ETH_P_IP {
        return PacketClass::NonIpv4;
    }
    let Some(ip) = packet.header::<Ipv4Hdr>(ETH_HLEN) else {
        return PacketClass::Malformed;
    };
    // SAFETY: `header` checked that the fixed IPv4 header lies inside the packet.
    let ip = unsafe { &*ip };
    let ihl = ip.header_len();
    if ip.version() != 4 || ihl < size_of::<Ipv4Hdr>() {
        return PacketClass::Malformed;
    }
    if ip.is_later_fragment() {
        return PacketClass::Fragment;
    }
    let l4 = ETH_HLEN + ihl;
    match ip.protocol {
        IPPROTO_TCP => l4_class(packet.header::<TcpHdr>(l4).is_some(), PacketClass::Tcp),
        IPPROTO_UDP => l4_class(packet.header::<L4Ports>(l4).is_some(), PacketClass::Udp),
        IPPROTO_ICMP => l4_class(packet.header::<L4Ports>(l4).is_some(), PacketClass::Icmp),
        _ => PacketClass::OtherIpv4,
    }
}

#[inline(always)]
fn l4_class(header_present: bool, class: PacketClass) -> PacketClass {
    if header_present {
        class
    } else {
        PacketClass::Malformed
    }
}
