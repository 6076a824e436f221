//! TC on a node's uplink. Egress: reverse NAT for replies of flows the ingress side sent to
//! a pod on this node, so the client sees them come from the service address it asked for.
//! Ingress: the same work as the XDP program (`uplink`), for interfaces where XDP costs
//! more than it saves (veths: native XDP there copies every cloned TCP skb) or cannot run.

use aya_ebpf::{
    bindings::{
        BPF_F_PSEUDO_HDR, TC_ACT_OK, TC_ACT_SHOT, bpf_adj_room_mode::BPF_ADJ_ROOM_NET,
        bpf_fib_lookup,
    },
    helpers::generated::{
        bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer,
        bpf_skb_change_tail,
    },
    macros::classifier,
    programs::TcContext,
};
use skiff_ebpf_common::{
    CtKey, LbEvent,
    service::{CT_REPLY, CT_SNAT},
};

use crate::{
    maps::{CONNTRACK, count_lb},
    nat::{csum_replace2, csum_replace4},
    parse::{ETH_HLEN, ETH_P_IP, EthHdr, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, L4Ports, Packet},
    uplink::{Hook, TCP_RST, Verdict, forget, ingress, mark_closing},
};

/// Offsets of the fields rewritten, from the start of the IPv4 header / L4 header.
const IP_CHECK: usize = 10;
const IP_SADDR: usize = 12;
const L4_SPORT: usize = 0;
const TCP_FLAGS: usize = 13;
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
    let entry = CONNTRACK.get_ptr_mut(&key)?;
    // SAFETY: a successful lookup of an LRU entry; copied out at once.
    let current = unsafe { *entry };
    if current.flags & CT_REPLY == 0 || current.flags & CT_SNAT != 0 {
        return None;
    }
    let tcp_flags = packet.header::<u8>(l4 + TCP_FLAGS);
    // SAFETY: `header` checked the bounds. Only for TCP: at this offset UDP has payload.
    let tcp_flags = match tcp_flags {
        Some(f) if proto == IPPROTO_TCP => unsafe { *f },
        _ => 0,
    };
    // SAFETY: as above; racing updates of the entry only move its timestamp or set a flag.
    // The coarse clock (a tick's resolution) is plenty for the idle time the agent's
    // collector reads.
    unsafe {
        (*entry).last_seen_ns = aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns();
        mark_closing(&mut (*entry).flags, tcp_flags);
    }
    let entry = current;
    // A UDP header's checksum is the last 2 of its 8 bytes.
    let udp_without_checksum = proto == IPPROTO_UDP && ports.rest[2..] == [0, 0];
    // L4 checksums through the helpers, which keep them right whatever the skb's checksum
    // state (offloads); the IPv4 header checksum is always whole, so it is updated here.
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
    // The helpers may have moved the packet: take its bounds again.
    let packet = Packet {
        start: ctx.data(),
        end: ctx.data_end(),
    };
    packet.update_check(ETH_HLEN + IP_CHECK, |c| {
        csum_replace4(c, saddr, entry.nat_addr)
    })?;
    packet.write(ETH_HLEN + IP_SADDR, &entry.nat_addr)?;
    packet.write(l4 + L4_SPORT, &entry.nat_port)?;
    count_lb(LbEvent::ReverseTranslated);
    if tcp_flags & TCP_RST != 0 {
        // The pod reset the connection: the flow's entries go (see `forget`).
        let forward = CtKey {
            saddr: key.daddr,
            daddr: entry.nat_addr,
            sport: key.dport,
            dport: entry.nat_port,
            proto,
            pad: [0; 3],
        };
        forget(&forward, &key);
    }
    Some(())
}

/// The fixed TCP header, the longest L4 header the ingress side reads (UDP's and ICMP's
/// are 8 bytes); it never reads TCP options or payload.
const TCP_HLEN: usize = 20;

/// Makes the headers the ingress side reads linear (Ethernet, IPv4 with its options, the
/// fixed TCP header), and only when they are not: pulling may copy the skb's head, and a
/// TCP segment's payload usually sits in page fragments, which must stay there.
#[inline(always)]
fn linearize_headers(ctx: &TcContext) {
    let packet = Packet {
        start: ctx.data(),
        end: ctx.data_end(),
    };
    let ihl = packet
        .header::<Ipv4Hdr>(ETH_HLEN)
        // SAFETY: `header` checked the bounds.
        .map_or(60, |ip| unsafe { (*ip).header_len() })
        .max(size_of::<Ipv4Hdr>());
    let need = (ETH_HLEN + ihl + TCP_HLEN).min(ctx.len() as usize);
    if packet.len() < need {
        let _ = ctx.pull_data(need as u32);
    }
}

#[classifier]
pub fn tc_uplink_ingress(ctx: TcContext) -> i32 {
    linearize_headers(&ctx);
    let hook = Tc(&ctx);
    let ifindex = hook.ingress_ifindex();
    match ingress(&hook) {
        Verdict::Pass => TC_ACT_OK as i32,
        Verdict::Drop => TC_ACT_SHOT as i32,
        // SAFETY: `bpf_redirect` only records the target interface; out of its egress.
        Verdict::Tx => unsafe { bpf_redirect(ifindex, 0) as i32 },
        // SAFETY: as above.
        Verdict::Redirect(target) => unsafe { bpf_redirect(target, 0) as i32 },
        // SAFETY: without parameters the helper looks the next hop up itself.
        Verdict::RedirectNeigh(target) => unsafe {
            bpf_redirect_neigh(target, core::ptr::null_mut(), 0, 0) as i32
        },
        // SAFETY: `bpf_redirect_peer` only records the target; valid at TC ingress.
        Verdict::RedirectPeer(target) => unsafe { bpf_redirect_peer(target, 0) as i32 },
    }
}

/// Packet access for TC: writes and checksum updates through the kernel's helpers, which
/// keep the skb's checksum state (offloads) right.
struct Tc<'a>(&'a TcContext);

impl Hook for Tc<'_> {
    const RESOLVES_NEIGHBOURS: bool = true;
    const REDIRECTS_TO_PEER: bool = true;
    const AGGREGATES: bool = true;

    #[inline(always)]
    fn packet(&self) -> Packet {
        Packet {
            start: self.0.data(),
            end: self.0.data_end(),
        }
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.0.len() as usize
    }

    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        // SAFETY: `skb` is the kernel's __sk_buff.
        unsafe { (*self.0.skb.skb).ifindex }
    }

    #[inline(always)]
    fn store<T: Copy>(&self, offset: usize, value: &T) -> Option<()> {
        self.packet().write(offset, value)
    }

    #[inline(always)]
    fn ip_csum4(&self, old: u32, new: u32) -> Option<()> {
        self.packet()
            .update_check(ETH_HLEN + IP_CHECK, |c| csum_replace4(c, old, new))
    }

    #[inline(always)]
    fn ip_csum2(&self, old: u16, new: u16) -> Option<()> {
        self.packet()
            .update_check(ETH_HLEN + IP_CHECK, |c| csum_replace2(c, old, new))
    }

    #[inline(always)]
    fn l4_csum4(&self, offset: usize, old: u32, new: u32, pseudo: bool) -> Option<()> {
        let pseudo = if pseudo {
            u64::from(BPF_F_PSEUDO_HDR)
        } else {
            0
        };
        self.0
            .l4_csum_replace(offset, u64::from(old), u64::from(new), pseudo | 4)
            .ok()
    }

    #[inline(always)]
    fn l4_csum2(&self, offset: usize, old: u16, new: u16) -> Option<()> {
        self.0
            .l4_csum_replace(offset, u64::from(old), u64::from(new), 2)
            .ok()
    }

    #[inline(always)]
    fn fib_lookup(&self, params: &mut bpf_fib_lookup) -> i64 {
        // SAFETY: the helper reads and writes `params`, whose size is passed.
        unsafe {
            fib_lookup(
                self.0.skb.skb.cast(),
                params,
                size_of::<bpf_fib_lookup>() as i32,
                0,
            )
        }
    }

    #[inline(always)]
    fn reshape(&self, grow: usize, len: usize) -> Option<()> {
        self.0.adjust_room(grow as i32, BPF_ADJ_ROOM_NET, 0).ok()?;
        // SAFETY: `skb` is the kernel's __sk_buff; the helper checks the length.
        (unsafe { bpf_skb_change_tail(self.0.skb.skb, len as u32, 0) } == 0).then_some(())
    }
}
