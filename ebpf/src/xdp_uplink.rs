//! XDP on a node's uplink: the entry point for traffic from outside the node.
//!
//! Every frame is classified and counted. TCP and UDP to a NodePort, LoadBalancer or
//! external IP are load-balanced: conntrack first (a flow keeps its backend), else a new
//! backend by affinity or Maglev; DNAT to a pod on this node (passed up the stack, TC
//! reverses it on the way out), or DNAT and SNAT to the node address for a pod on another
//! node (sent straight back out after a FIB lookup; its replies are reversed here).
//! Everything else is passed untouched.

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup, xdp_action},
    helpers::generated::{bpf_fib_lookup as fib_lookup, bpf_ktime_get_ns, bpf_redirect},
    macros::xdp,
    programs::XdpContext,
};
use skiff_ebpf_common::{
    Backend, CtKey, CtValue, LbEvent, PacketClass, ServiceKey,
    service::{
        BACKEND_LOCAL, BACKEND_TERMINATING, CT_REPLY, CT_SNAT, SERVICE_EXTERNAL,
        SERVICE_EXTERNAL_LOCAL,
    },
};

use crate::{
    lb::{backend, choose, mix64, service},
    maps::{CONNTRACK, NODE_ADDR, count, count_lb},
    nat::Checksums,
    parse::{
        ETH_HLEN, ETH_P_IP, EthHdr, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, L4Ports,
        Packet, TcpHdr,
    },
};

const AF_INET: u8 = 2;

#[xdp]
pub fn xdp_uplink(ctx: XdpContext) -> u32 {
    let packet = Packet {
        start: ctx.data(),
        end: ctx.data_end(),
    };
    let class = classify(&packet);
    count(class, packet.len());
    match class {
        PacketClass::Tcp | PacketClass::Udp => {
            balance(&ctx, &packet).unwrap_or(xdp_action::XDP_PASS)
        }
        _ => xdp_action::XDP_PASS,
    }
}

/// A parsed TCP or UDP packet, with writable headers.
struct Flow {
    ip: *mut Ipv4Hdr,
    ports: *mut L4Ports,
    sums: Checksums,
    key: CtKey,
}

/// Load-balances one TCP or UDP packet; `None` passes it (not ours, or cut short).
#[inline(always)]
fn balance(ctx: &XdpContext, packet: &Packet) -> Option<u32> {
    let ip = packet.header_mut::<Ipv4Hdr>(ETH_HLEN)?;
    // SAFETY: `header_mut` checked the bounds; `classify` checked version and length.
    let (ihl, proto, saddr, daddr) = unsafe {
        (
            (*ip).header_len(),
            (*ip).protocol,
            u32::from_ne_bytes((*ip).saddr),
            u32::from_ne_bytes((*ip).daddr),
        )
    };
    let l4 = ETH_HLEN + ihl;
    let ports = packet.header_mut::<L4Ports>(l4)?;
    let check_at = if proto == IPPROTO_TCP {
        l4 + 16
    } else {
        l4 + 6
    };
    let l4_check = packet.header_mut::<[u8; 2]>(check_at)?;
    // SAFETY: bounds checked just above.
    let (sport, dport, udp_unchecked) = unsafe {
        (
            u16::from_ne_bytes((*ports).source),
            u16::from_ne_bytes((*ports).dest),
            proto == IPPROTO_UDP && *l4_check == [0, 0],
        )
    };
    let flow = Flow {
        ip,
        ports,
        sums: Checksums {
            // SAFETY: a field of the checked IPv4 header.
            ip: unsafe { &raw mut (*ip).check },
            l4: if udp_unchecked { None } else { Some(l4_check) },
        },
        key: CtKey {
            saddr,
            daddr,
            sport,
            dport,
            proto,
            pad: [0; 3],
        },
    };
    // SAFETY: `bpf_ktime_get_ns` has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };

    if let Some(entry) = CONNTRACK.get_ptr_mut(&flow.key) {
        // SAFETY: a successful lookup of an LRU entry; racing updates only move a timestamp.
        let entry = unsafe { &mut *entry };
        entry.last_seen_ns = now;
        if entry.flags & CT_REPLY != 0 {
            if entry.flags & CT_SNAT == 0 {
                return None;
            }
            // A remote backend's reply to the node: from the service, to the client.
            let (nat_addr, nat_port, client) = (entry.nat_addr, entry.nat_port, entry.client_addr);
            // SAFETY: the flow's pointers were bounds-checked above.
            unsafe {
                rewrite_source(&flow, nat_addr, nat_port);
                rewrite_destination(&flow, client, dport);
            }
            count_lb(LbEvent::ReverseTranslated);
            return Some(send_out(ctx, packet));
        }
        // A connection's first segment on a tracked tuple means the client reused its
        // port: an earlier connection's terminating backend would refuse it, so choose
        // again (as the kernel's conntrack starts a new flow on such a SYN).
        if let Some(chosen) = backend(entry.backend_id)
            && !(chosen.flags & BACKEND_TERMINATING != 0 && opens_connection(packet, proto, l4))
        {
            let snat = entry.flags & CT_SNAT != 0;
            count_lb(LbEvent::ConntrackHit);
            return Some(translate(ctx, packet, &flow, &chosen, snat));
        }
        // The backend is gone (or terminating, for a new connection): choose again below.
    }

    let svc = service(&ServiceKey {
        addr: daddr,
        port: dport,
        proto,
        scope: 0,
    })?;
    if svc.flags & SERVICE_EXTERNAL == 0 {
        // ClusterIPs are for the socket load balancer, not for traffic from outside.
        return None;
    }
    let tuple = (u64::from(saddr) << 32) | (u64::from(sport) << 16) | u64::from(proto);
    let Some((id, chosen)) = choose(
        &svc,
        u64::from(saddr),
        mix64(tuple ^ u64::from(dport) << 40),
    ) else {
        count_lb(LbEvent::NoBackend);
        if proto == IPPROTO_TCP {
            return Some(reject_tcp(packet, l4));
        }
        return Some(xdp_action::XDP_DROP);
    };
    let snat = chosen.flags & BACKEND_LOCAL == 0 && svc.flags & SERVICE_EXTERNAL_LOCAL == 0;
    let node = NODE_ADDR.load();
    if snat && node == 0 {
        count_lb(LbEvent::NoRoute);
        return Some(xdp_action::XDP_DROP);
    }
    let forward = CtValue {
        last_seen_ns: now,
        backend_id: id,
        flags: if snat { CT_SNAT } else { 0 },
        ..CtValue::default()
    };
    let reply_key = CtKey {
        saddr: chosen.addr,
        daddr: if snat { node } else { saddr },
        sport: chosen.port,
        dport: sport,
        proto,
        pad: [0; 3],
    };
    let reply = CtValue {
        last_seen_ns: now,
        flags: CT_REPLY | if snat { CT_SNAT } else { 0 },
        nat_addr: daddr,
        nat_port: dport,
        client_addr: saddr,
        ..CtValue::default()
    };
    // The reply entry first: a reply can never arrive before it exists.
    CONNTRACK.insert(&reply_key, &reply, 0).ok()?;
    CONNTRACK.insert(&flow.key, &forward, 0).ok()?;
    count_lb(LbEvent::Translated);
    Some(translate(ctx, packet, &flow, &chosen, snat))
}

/// True for a TCP segment with SYN and without ACK: the first of a connection.
#[inline(always)]
fn opens_connection(packet: &Packet, proto: u8, l4: usize) -> bool {
    if proto != IPPROTO_TCP {
        return false;
    }
    let Some(tcp) = packet.header::<TcpHdr>(l4) else {
        return false;
    };
    // SAFETY: `header` checked that the TCP header lies inside the packet.
    let flags = unsafe { (*tcp).doff_flags[1] };
    flags & (TCP_SYN | TCP_ACK) == TCP_SYN
}

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// Turns a TCP segment without payload into the RST that refuses it (RFC 9293 3.10.7.1)
/// and sends it back (`XDP_TX`): the client sees "connection refused" at once instead of
/// timing out. Anything else (RSTs, segments with data) is dropped.
#[inline(always)]
fn reject_tcp(packet: &Packet, l4: usize) -> u32 {
    let (Some(eth), Some(ip), Some(tcp)) = (
        packet.header_mut::<EthHdr>(0),
        packet.header_mut::<Ipv4Hdr>(ETH_HLEN),
        packet.header_mut::<TcpHdr>(l4),
    ) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: all three headers were bounds-checked just above.
    unsafe {
        let flags = (*tcp).doff_flags[1];
        let doff = usize::from((*tcp).doff_flags[0] >> 4) * 4;
        let payload = usize::from(u16::from_be_bytes((*ip).tot_len))
            .wrapping_sub((*ip).header_len())
            .wrapping_sub(doff);
        if flags & TCP_RST != 0 || payload != 0 {
            return xdp_action::XDP_DROP;
        }
        let seq = u32::from_be_bytes((*tcp).seq);
        let ack = u32::from_be_bytes((*tcp).ack_seq);
        let (new_seq, new_ack, new_flags) = if flags & TCP_ACK != 0 {
            (ack, 0, TCP_RST)
        } else {
            let len = u32::from(flags & TCP_SYN != 0) + u32::from(flags & TCP_FIN != 0);
            (0, seq.wrapping_add(len), TCP_RST | TCP_ACK)
        };
        let old_seq = u32::from_ne_bytes((*tcp).seq);
        let old_ack = u32::from_ne_bytes((*tcp).ack_seq);
        let old_word = u16::from_ne_bytes((*tcp).doff_flags);
        let new_word = u16::from_ne_bytes([(*tcp).doff_flags[0], new_flags]);
        let new_seq = u32::from_ne_bytes(new_seq.to_be_bytes());
        let new_ack = u32::from_ne_bytes(new_ack.to_be_bytes());
        let mut check = (*tcp).check;
        check = crate::nat::csum_replace4(check, old_seq, new_seq);
        check = crate::nat::csum_replace4(check, old_ack, new_ack);
        check = crate::nat::csum_replace2(check, old_word, new_word);
        (*tcp).check = check;
        (*tcp).seq = new_seq.to_ne_bytes();
        (*tcp).ack_seq = new_ack.to_ne_bytes();
        (*tcp).doff_flags[1] = new_flags;
        // Swapping addresses and ports leaves both checksums as they are.
        core::mem::swap(&mut (*ip).saddr, &mut (*ip).daddr);
        core::mem::swap(&mut (*tcp).source, &mut (*tcp).dest);
        core::mem::swap(&mut (*eth).src, &mut (*eth).dst);
    }
    xdp_action::XDP_TX
}

/// DNAT to `chosen` (and SNAT to the node address for a remote backend).
#[inline(always)]
fn translate(ctx: &XdpContext, packet: &Packet, flow: &Flow, chosen: &Backend, snat: bool) -> u32 {
    // SAFETY: the flow's pointers were bounds-checked when it was parsed.
    unsafe { rewrite_destination(flow, chosen.addr, chosen.port) };
    if !snat {
        // A pod on this node: the stack delivers it; TC egress reverses the replies.
        return xdp_action::XDP_PASS;
    }
    // SAFETY: as above.
    unsafe { rewrite_source(flow, NODE_ADDR.load(), flow.key.sport) };
    send_out(ctx, packet)
}

/// # Safety
/// The flow's pointers must be bounds-checked packet pointers.
#[inline(always)]
unsafe fn rewrite_destination(flow: &Flow, addr: u32, port: u16) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let old = u32::from_ne_bytes((*flow.ip).daddr);
        flow.sums.address(old, addr);
        (*flow.ip).daddr = addr.to_ne_bytes();
        let old_port = u16::from_ne_bytes((*flow.ports).dest);
        flow.sums.port(old_port, port);
        (*flow.ports).dest = port.to_ne_bytes();
    }
}

/// # Safety
/// As for [`rewrite_destination`].
#[inline(always)]
unsafe fn rewrite_source(flow: &Flow, addr: u32, port: u16) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let old = u32::from_ne_bytes((*flow.ip).saddr);
        flow.sums.address(old, addr);
        (*flow.ip).saddr = addr.to_ne_bytes();
        let old_port = u16::from_ne_bytes((*flow.ports).source);
        flow.sums.port(old_port, port);
        (*flow.ports).source = port.to_ne_bytes();
    }
}

/// Sends a rewritten packet towards its new destination: next-hop MACs from the FIB, back
/// out of the uplink (`XDP_TX`) or out of another interface (redirect).
#[inline(always)]
fn send_out(ctx: &XdpContext, packet: &Packet) -> u32 {
    let (Some(eth), Some(ip)) = (
        packet.header_mut::<EthHdr>(0),
        packet.header::<Ipv4Hdr>(ETH_HLEN),
    ) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: an all-zero `bpf_fib_lookup` is a valid value (integers and unions of them).
    let mut params: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    // SAFETY: `ctx.ctx` is the kernel's xdp_md; `ip` was bounds-checked.
    let ingress = unsafe { (*ctx.ctx).ingress_ifindex };
    // SAFETY: writes to fields of a local value; reads of the checked IPv4 header.
    unsafe {
        params.family = AF_INET;
        params.l4_protocol = (*ip).protocol;
        params.__bindgen_anon_1.tot_len = u16::from_be_bytes((*ip).tot_len);
        params.ifindex = ingress;
        params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes((*ip).saddr);
        params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes((*ip).daddr);
    }
    // SAFETY: the helper reads and writes `params`, whose size is passed.
    let rc = unsafe {
        fib_lookup(
            ctx.ctx.cast(),
            &mut params,
            size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    if rc != i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        count_lb(LbEvent::NoRoute);
        return xdp_action::XDP_DROP;
    }
    // SAFETY: `eth` was bounds-checked.
    unsafe {
        (*eth).dst = params.dmac;
        (*eth).src = params.smac;
    }
    if params.ifindex == ingress {
        xdp_action::XDP_TX
    } else {
        // SAFETY: `bpf_redirect` only records the target interface.
        unsafe { bpf_redirect(params.ifindex, 0) as u32 }
    }
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
