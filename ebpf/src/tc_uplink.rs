//! TC egress on a node's uplink: reverse NAT for replies of flows XDP sent to a pod on this
//! node, so the client sees them come from the service address it asked for.

use aya_ebpf::{
    bindings::{BPF_F_PSEUDO_HDR, TC_ACT_OK},
    macros::classifier,
    programs::TcContext,
};
use skiff_ebpf_common::{
    CtKey, LbEvent,
    service::{CT_REPLY, CT_SNAT},
};

use crate::{
    maps::{CONNTRACK, count_lb},
    parse::{ETH_HLEN, ETH_P_IP, EthHdr, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, L4Ports, Packet},
};

/// Offsets of the fields rewritten, from the start of the IPv4 header / L4 header.
const IP_CHECK: usize = 10;
const IP_SADDR: usize = 12;
const L4_SPORT: usize = 0;
const TCP_CHECK: usize = 16;
const UDP_CHECK: usize = 6;

#[classifier]
pub fn tc_uplink_egress(ctx: TcContext) -> i32 {
    let _ = reverse_nat(&ctx);
    TC_ACT_OK as i32
}

#[inline(always)]
fn reverse_nat(ctx: &TcContext) -> Option<()> {
    let packet = Packet {
        start: ctx.data(),
        end: ctx.data_end(),
    };
    let eth = packet.header::<EthHdr>(0)?;
    // SAFETY: `header` checked the bounds.
    if u16::from_be_bytes(unsafe { (*eth).proto }) != ETH_P_IP {
        return None;
    }
    let ip = packet.header::<Ipv4Hdr>(ETH_HLEN)?;
    // SAFETY: as above.
    let ip = unsafe { &*ip };
    let ihl = ip.header_len();
    if ip.version() != 4 || ihl < size_of::<Ipv4Hdr>() || ip.is_later_fragment() {
        return None;
    }
    let proto = ip.protocol;
    let l4_check = match proto {
        IPPROTO_TCP => TCP_CHECK,
        IPPROTO_UDP => UDP_CHECK,
        _ => return None,
    };
    let l4 = ETH_HLEN + ihl;
    let ports = packet.header::<L4Ports>(l4)?;
    // SAFETY: as above.
    let ports = unsafe { &*ports };
    let saddr = u32::from_ne_bytes(ip.saddr);
    let key = CtKey {
        saddr,
        daddr: u32::from_ne_bytes(ip.daddr),
        sport: u16::from_ne_bytes(ports.source),
        dport: u16::from_ne_bytes(ports.dest),
        proto,
        pad: [0; 3],
    };
    let entry = CONNTRACK.get_ptr(&key)?;
    // SAFETY: a successful lookup; copied out at once.
    let entry = unsafe { *entry };
    if entry.flags & CT_REPLY == 0 || entry.flags & CT_SNAT != 0 {
        return None;
    }
    let udp_without_checksum = proto == IPPROTO_UDP && ctx.load::<u16>(l4 + UDP_CHECK).ok()? == 0;
    // The helpers keep checksums right whatever the skb's checksum state (offloads).
    ctx.l3_csum_replace(
        ETH_HLEN + IP_CHECK,
        u64::from(saddr),
        u64::from(entry.nat_addr),
        4,
    )
    .ok()?;
    if !udp_without_checksum {
        let flags = u64::from(BPF_F_PSEUDO_HDR) | 4;
        ctx.l4_csum_replace(
            l4 + l4_check,
            u64::from(saddr),
            u64::from(entry.nat_addr),
            flags,
        )
        .ok()?;
        ctx.l4_csum_replace(
            l4 + l4_check,
            u64::from(key.sport),
            u64::from(entry.nat_port),
            2,
        )
        .ok()?;
    }
    ctx.store(ETH_HLEN + IP_SADDR, &entry.nat_addr, 0).ok()?;
    ctx.store(l4 + L4_SPORT, &entry.nat_port, 0).ok()?;
    count_lb(LbEvent::ReverseTranslated);
    Some(())
}
