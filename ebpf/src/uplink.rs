//! What a node does with a frame arriving on its uplink, shared by the XDP program and its
//! TC ingress twin (`Hook` supplies packet access and verdicts for each).
//!
//! Every frame is classified and counted. TCP and UDP to a NodePort, LoadBalancer or
//! external IP are load-balanced: conntrack first (a flow keeps its backend), else a new
//! backend by affinity or Maglev; DNAT to a pod on this node (at TC straight into its veth
//! when the agent registered it, else up the stack; TC egress reverses the replies on the
//! way out), or DNAT and SNAT to the node address for a pod on
//! another node (routed straight back out after a FIB lookup, TTL decremented; its replies
//! are reversed here). A TCP reset ends its flow's entries. A service without backends
//! refuses at once: TCP with a reset, UDP with ICMP port unreachable. Everything else is
//! passed untouched.

use aya_ebpf::bindings::{
    BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
    bpf_fib_lookup,
};
use skiff_ebpf_common::{
    Backend, CtKey, CtValue, LbEvent, PacketClass, ServiceKey,
    service::{
        BACKEND_LOCAL, BACKEND_TERMINATING, CT_FIN, CT_REPLY, CT_SNAT, SERVICE_EXTERNAL,
        SERVICE_EXTERNAL_LOCAL,
    },
};

use crate::{
    lb::{backend, choose, mix64, service},
    maps::{CONNTRACK, LOCAL_ENDPOINTS, NODE_ADDR, count, count_flow, count_lb},
    nat::checksum,
    parse::{
        ETH_HLEN, ETH_P_IP, EthHdr, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, L4Ports,
        Packet, TcpHdr,
    },
};

const AF_INET: u8 = 2;

/// Offsets inside the IPv4 header.
const IP_TTL: usize = ETH_HLEN + 8;
pub const IP_CHECK: usize = ETH_HLEN + 10;
const IP_SADDR: usize = ETH_HLEN + 12;
const IP_DADDR: usize = ETH_HLEN + 16;

/// What to do with the frame.
pub enum Verdict {
    Pass,
    Drop,
    /// Back out of the interface it arrived on.
    Tx,
    /// Out of another interface, its MACs already set.
    Redirect(u32),
    /// Out of another interface whose next hop has no neighbour entry yet: the kernel
    /// resolves it (only hooks with `RESOLVES_NEIGHBOURS`).
    RedirectNeigh(u32),
    /// Into the peer of a veth on this node (a pod's interface), as if received there
    /// (only hooks with `REDIRECTS_TO_PEER`).
    RedirectPeer(u32),
}

/// Packet access at one attach point. Offsets count from the Ethernet header; addresses
/// and ports are as stored in the packet (network byte order).
pub trait Hook {
    /// Whether `Verdict::RedirectNeigh` can be carried out here.
    const RESOLVES_NEIGHBOURS: bool;
    /// Whether `Verdict::RedirectPeer` can be carried out here.
    const REDIRECTS_TO_PEER: bool;
    /// Whether a packet can be a GRO/GSO aggregate, longer than its header's MTU check
    /// would allow (a veth passes the sender's GSO skbs whole): the FIB lookup then leaves
    /// the MTU check to the kernel's, which measures the segments, not the aggregate.
    const AGGREGATES: bool;

    /// The linear packet data as it is now (helpers that change the packet move it).
    fn packet(&self) -> Packet;
    /// The frame's whole length.
    fn len(&self) -> usize;
    fn ingress_ifindex(&self) -> u32;
    fn store<T: Copy>(&self, offset: usize, value: &T) -> Option<()>;
    /// Accounts in the IPv4 header checksum for a 4-byte field changing.
    fn ip_csum4(&self, old: u32, new: u32) -> Option<()>;
    /// Accounts in the IPv4 header checksum for a 2-byte field changing.
    fn ip_csum2(&self, old: u16, new: u16) -> Option<()>;
    /// Accounts in the L4 checksum at `offset` for a 4-byte field changing; `pseudo` when
    /// the field is part of the pseudo-header (an address).
    fn l4_csum4(&self, offset: usize, old: u32, new: u32, pseudo: bool) -> Option<()>;
    /// Accounts in the L4 checksum at `offset` for a 2-byte field of the L4 header changing.
    fn l4_csum2(&self, offset: usize, old: u16, new: u16) -> Option<()>;
    fn fib_lookup(&self, params: &mut bpf_fib_lookup) -> i64;
    /// Inserts `grow` bytes after the Ethernet header and cuts the frame to `len` bytes.
    fn reshape(&self, grow: usize, len: usize) -> Option<()>;
}

/// Handles one frame arriving on the uplink.
#[inline(always)]
pub fn ingress<H: Hook>(hook: &H) -> Verdict {
    let class = classify(&hook.packet());
    count(class, hook.len());
    match class {
        PacketClass::Tcp | PacketClass::Udp => balance(hook).unwrap_or(Verdict::Pass),
        _ => Verdict::Pass,
    }
}

/// A parsed TCP or UDP packet: where its L4 header and checksum are, and its tuple.
struct Flow {
    l4: usize,
    /// `None` for UDP without a checksum (zero), which must stay zero.
    l4_check: Option<usize>,
    key: CtKey,
}

/// Load-balances one TCP or UDP packet; `None` passes it (not ours, or cut short).
#[inline(always)]
fn balance<H: Hook>(hook: &H) -> Option<Verdict> {
    let packet = hook.packet();
    let ip = packet.header::<Ipv4Hdr>(ETH_HLEN)?;
    // SAFETY: `header` checked the bounds; `classify` checked version and length.
    let (ihl, proto, saddr, daddr) = unsafe {
        (
            (*ip).header_len(),
            (*ip).protocol,
            u32::from_ne_bytes((*ip).saddr),
            u32::from_ne_bytes((*ip).daddr),
        )
    };
    let l4 = ETH_HLEN + ihl;
    let ports = packet.header::<L4Ports>(l4)?;
    let check_at = if proto == IPPROTO_TCP {
        l4 + 16
    } else {
        l4 + 6
    };
    let l4_check = packet.header::<[u8; 2]>(check_at)?;
    // SAFETY: bounds checked just above.
    let (sport, dport, udp_unchecked) = unsafe {
        (
            u16::from_ne_bytes((*ports).source),
            u16::from_ne_bytes((*ports).dest),
            proto == IPPROTO_UDP && *l4_check == [0, 0],
        )
    };
    let flow = Flow {
        l4,
        l4_check: if udp_unchecked { None } else { Some(check_at) },
        key: CtKey {
            saddr,
            daddr,
            sport,
            dport,
            proto,
            pad: [0; 3],
        },
    };
    // SAFETY: `bpf_ktime_get_coarse_ns` has no preconditions. The coarse clock (a tick's
    // resolution) is plenty for a last-seen time and skips reading the clock source.
    let now = unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns() };
    let flags = tcp_flags(&packet, proto, l4);

    if let Some(entry) = CONNTRACK.get_ptr_mut(&flow.key) {
        // SAFETY: a successful lookup of an LRU entry; racing updates only move a timestamp.
        let entry = unsafe { &mut *entry };
        entry.last_seen_ns = now;
        mark_closing(&mut entry.flags, flags);
        if entry.flags & CT_REPLY != 0 {
            if entry.flags & CT_SNAT == 0 {
                return None;
            }
            // A remote backend's reply to the node: from the service, to the client.
            let (nat_addr, nat_port, client) = (entry.nat_addr, entry.nat_port, entry.client_addr);
            rewrite_source(hook, &flow, nat_addr, nat_port)?;
            rewrite_destination(hook, &flow, client, dport)?;
            count_lb(LbEvent::ReverseTranslated);
            if flags & TCP_RST != 0 {
                let forward = CtKey {
                    saddr: client,
                    daddr: nat_addr,
                    sport: dport,
                    dport: nat_port,
                    proto,
                    pad: [0; 3],
                };
                forget(&forward, &flow.key);
            }
            return Some(send_out(hook));
        }
        // A connection's first segment on a tracked tuple means the client reused its
        // port: an earlier connection's terminating backend would refuse it, so choose
        // again (as the kernel's conntrack starts a new flow on such a SYN).
        if let Some(chosen) = backend(entry.backend_id)
            && !(chosen.flags & BACKEND_TERMINATING != 0 && flags & (TCP_SYN | TCP_ACK) == TCP_SYN)
        {
            let snat = entry.flags & CT_SNAT != 0;
            count_lb(LbEvent::ConntrackHit);
            count_flow(None, entry.backend_id, 0, hook.len());
            if flags & TCP_RST != 0 {
                forget(&flow.key, &reply_key(&flow.key, &chosen, snat));
            }
            return translate(hook, &flow, &chosen, snat);
        }
        // The backend is gone (or terminating, for a new connection): choose again below.
    }

    let key = ServiceKey {
        addr: daddr,
        port: dport,
        proto,
        scope: 0,
    };
    let svc = service(&key)?;
    if svc.flags & SERVICE_EXTERNAL == 0 {
        // ClusterIPs are for the socket load balancer, not for traffic from outside.
        return None;
    }
    let tuple = (u64::from(saddr) << 32) | (u64::from(sport) << 16) | u64::from(proto);
    let Some((id, chosen)) = choose(
        &svc,
        || u64::from(saddr),
        mix64(tuple ^ u64::from(dport) << 40),
    ) else {
        count_lb(LbEvent::NoBackend);
        return Some(if proto == IPPROTO_TCP {
            reject_tcp(hook)
        } else {
            reject_udp(hook)
        });
    };
    let snat = chosen.flags & BACKEND_LOCAL == 0 && svc.flags & SERVICE_EXTERNAL_LOCAL == 0;
    let node = NODE_ADDR.load();
    if snat && node == 0 {
        count_lb(LbEvent::NoRoute);
        return Some(Verdict::Drop);
    }
    if flags & TCP_RST != 0 {
        // A reset on a flow not tracked (any longer) ends nothing worth tracking.
        count_lb(LbEvent::Translated);
        return translate(hook, &flow, &chosen, snat);
    }
    let forward = CtValue {
        last_seen_ns: now,
        backend_id: id,
        flags: if snat { CT_SNAT } else { 0 },
        ..CtValue::default()
    };
    let reply_key = reply_key(&flow.key, &chosen, snat);
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
    count_flow(Some(&key), id, 1, hook.len());
    translate(hook, &flow, &chosen, snat)
}

/// The tuple of the replies to `forward` once translated to `chosen` (and SNATed to the
/// node address, which keeps the client's port).
#[inline(always)]
fn reply_key(forward: &CtKey, chosen: &Backend, snat: bool) -> CtKey {
    CtKey {
        saddr: chosen.addr,
        daddr: if snat {
            NODE_ADDR.load()
        } else {
            forward.saddr
        },
        sport: chosen.port,
        dport: forward.sport,
        proto: forward.proto,
        pad: [0; 3],
    }
}

/// Keeps a conntrack entry's `CT_FIN` mark in step with the TCP `flags` of its
/// direction's packet: a FIN sets it (the flow is closing); a SYN clears it (a connection
/// reusing a closed one's tuple starts afresh, as the kernel's conntrack leaves TIME_WAIT).
#[inline(always)]
pub fn mark_closing(entry_flags: &mut u32, flags: u8) {
    if flags & TCP_FIN != 0 {
        *entry_flags |= CT_FIN;
    } else if flags & TCP_SYN != 0 {
        *entry_flags &= !CT_FIN;
    }
}

/// Forgets a flow a TCP reset ended, both directions, as the kernel's conntrack closes it:
/// under connection churn the table keeps its room for live flows instead of filling with
/// dead ones until the LRU evicts (and may evict a live flow's entry with them).
#[inline(always)]
pub fn forget(forward: &CtKey, reply: &CtKey) {
    let _ = CONNTRACK.remove(forward);
    let _ = CONNTRACK.remove(reply);
}

/// DNAT to `chosen` (and SNAT to the node address for a remote backend).
#[inline(always)]
fn translate<H: Hook>(hook: &H, flow: &Flow, chosen: &Backend, snat: bool) -> Option<Verdict> {
    rewrite_destination(hook, flow, chosen.addr, chosen.port)?;
    if !snat {
        // A pod on this node: straight into it when its veth is known, else the stack
        // forwards it. TC egress reverses the replies either way.
        return Some(deliver_local(hook, chosen.addr).unwrap_or(Verdict::Pass));
    }
    rewrite_source(hook, flow, NODE_ADDR.load(), flow.key.sport)?;
    Some(send_out(hook))
}

/// Hands a packet translated to a pod on this node straight to the pod's interface, as the
/// node's forwarding would have (TTL decremented, the node's MAC as source), without the
/// node's routing, neighbour and queueing path. `None` leaves it to the stack: no hook
/// support, a pod the agent has not registered, or a TTL that expires here (the stack
/// sends the ICMP time exceeded).
#[inline(always)]
fn deliver_local<H: Hook>(hook: &H, pod: u32) -> Option<Verdict> {
    if !H::REDIRECTS_TO_PEER {
        return None;
    }
    let endpoint = LOCAL_ENDPOINTS.get_ptr(&pod)?;
    // SAFETY: a successful lookup; copied out at once.
    let endpoint = unsafe { *endpoint };
    let ip = hook.packet().header::<Ipv4Hdr>(ETH_HLEN)?;
    // SAFETY: bounds checked by `header`.
    let (ttl, proto) = unsafe { ((*ip).ttl, (*ip).protocol) };
    if ttl <= 1 {
        return None;
    }
    decrement_ttl(hook, ttl, proto)?;
    hook.store(0, &endpoint.mac)?;
    hook.store(6, &endpoint.node_mac)?;
    count_lb(LbEvent::LocalDelivered);
    Some(Verdict::RedirectPeer(endpoint.ifindex))
}

/// Writes `ttl - 1`, keeping the header checksum right (TTL and protocol share a 16-bit
/// word of it).
#[inline(always)]
fn decrement_ttl<H: Hook>(hook: &H, ttl: u8, proto: u8) -> Option<()> {
    let word = |ttl: u8| u16::from_ne_bytes([ttl, proto]);
    hook.ip_csum2(word(ttl), word(ttl - 1))?;
    hook.store(IP_TTL, &(ttl - 1))
}

/// Rewrites the destination address and port (each field is rewritten at most once per
/// packet, so the flow's tuple holds the old values).
#[inline(always)]
fn rewrite_destination<H: Hook>(hook: &H, flow: &Flow, addr: u32, port: u16) -> Option<()> {
    rewrite(
        hook,
        flow,
        (IP_DADDR, flow.key.daddr, addr),
        (flow.l4 + 2, flow.key.dport, port),
    )
}

/// Rewrites the source address and port.
#[inline(always)]
fn rewrite_source<H: Hook>(hook: &H, flow: &Flow, addr: u32, port: u16) -> Option<()> {
    rewrite(
        hook,
        flow,
        (IP_SADDR, flow.key.saddr, addr),
        (flow.l4, flow.key.sport, port),
    )
}

/// Writes an address and a port, given as (offset, old, new), keeping both checksums right.
#[inline(always)]
fn rewrite<H: Hook>(
    hook: &H,
    flow: &Flow,
    (addr_at, old_addr, addr): (usize, u32, u32),
    (port_at, old_port, port): (usize, u16, u16),
) -> Option<()> {
    hook.ip_csum4(old_addr, addr)?;
    if let Some(check) = flow.l4_check {
        hook.l4_csum4(check, old_addr, addr, true)?;
        hook.l4_csum2(check, old_port, port)?;
    }
    hook.store(addr_at, &addr)?;
    hook.store(port_at, &port)
}

/// Routes a rewritten packet as the node would: the next hop's MACs from the FIB, the TTL
/// decremented, back out of the uplink or out of another interface. The stack gets what
/// the FIB cannot route (and routes it or answers with an ICMP error, as a router does)
/// and what expires here (it sends the ICMP time exceeded).
#[inline(always)]
fn send_out<H: Hook>(hook: &H) -> Verdict {
    let packet = hook.packet();
    let Some(ip) = packet.header::<Ipv4Hdr>(ETH_HLEN) else {
        return Verdict::Drop;
    };
    // SAFETY: bounds checked by `header`.
    let (ttl, proto) = unsafe { ((*ip).ttl, (*ip).protocol) };
    if ttl <= 1 {
        return Verdict::Pass;
    }
    // SAFETY: an all-zero `bpf_fib_lookup` is a valid value (integers and unions of them).
    let mut params: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    let ingress = hook.ingress_ifindex();
    // SAFETY: writes to fields of a local value; reads of the checked IPv4 header.
    unsafe {
        params.family = AF_INET;
        params.l4_protocol = (*ip).protocol;
        // Zero: the kernel checks the skb against the egress MTU, segment by segment.
        params.__bindgen_anon_1.tot_len = if H::AGGREGATES {
            0
        } else {
            u16::from_be_bytes((*ip).tot_len)
        };
        params.ifindex = ingress;
        params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes((*ip).saddr);
        params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes((*ip).daddr);
    }
    let rc = hook.fib_lookup(&mut params);
    let resolved = rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS);
    if !resolved && !(rc == i64::from(BPF_FIB_LKUP_RET_NO_NEIGH) && H::RESOLVES_NEIGHBOURS) {
        count_lb(if rc == i64::from(BPF_FIB_LKUP_RET_FRAG_NEEDED) {
            // Already translated: the stack fragments it or tells the sender the path MTU.
            LbEvent::FragNeeded
        } else {
            // No usable route from here (or a local destination).
            LbEvent::NoRoute
        });
        return Verdict::Pass;
    }
    if decrement_ttl(hook, ttl, proto).is_none() {
        return Verdict::Drop;
    }
    if !resolved {
        return Verdict::RedirectNeigh(params.ifindex);
    }
    if hook.store(0, &params.dmac).is_none() || hook.store(6, &params.smac).is_none() {
        return Verdict::Drop;
    }
    if params.ifindex == ingress {
        Verdict::Tx
    } else {
        Verdict::Redirect(params.ifindex)
    }
}

/// A TCP segment's flags; zero for anything else (or a TCP header cut short).
#[inline(always)]
fn tcp_flags(packet: &Packet, proto: u8, l4: usize) -> u8 {
    if proto != IPPROTO_TCP {
        return 0;
    }
    let Some(tcp) = packet.header::<TcpHdr>(l4) else {
        return 0;
    };
    // SAFETY: `header` checked that the TCP header lies inside the packet.
    unsafe { (*tcp).doff_flags[1] }
}

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// Turns a TCP segment without payload into the RST that refuses it (RFC 9293 3.10.7.1)
/// and sends it back: the client sees "connection refused" at once instead of timing out.
/// Anything else (RSTs, segments with data, segments with IP options) is dropped.
#[inline(always)]
fn reject_tcp<H: Hook>(hook: &H) -> Verdict {
    reset(hook).unwrap_or(Verdict::Drop)
}

#[inline(always)]
fn reset<H: Hook>(hook: &H) -> Option<Verdict> {
    // A constant TCP offset keeps every access below provably in bounds.
    const L4: usize = ETH_HLEN + size_of::<Ipv4Hdr>();
    let l4 = L4;
    let packet = hook.packet();
    let eth = packet.header::<EthHdr>(0)?;
    let ip = packet.header::<Ipv4Hdr>(ETH_HLEN)?;
    let tcp = packet.header::<TcpHdr>(l4)?;
    // SAFETY: all three headers were bounds-checked just above; copied out at once.
    let (eth, ip, tcp) = unsafe {
        (
            core::ptr::read_unaligned(eth),
            core::ptr::read_unaligned(ip),
            core::ptr::read_unaligned(tcp),
        )
    };
    let flags = tcp.doff_flags[1];
    let doff = usize::from(tcp.doff_flags[0] >> 4) * 4;
    let payload = usize::from(u16::from_be_bytes(ip.tot_len))
        .wrapping_sub(ip.header_len())
        .wrapping_sub(doff);
    if flags & TCP_RST != 0 || payload != 0 || ip.header_len() != size_of::<Ipv4Hdr>() {
        return Some(Verdict::Drop);
    }
    let seq = u32::from_be_bytes(tcp.seq);
    let ack = u32::from_be_bytes(tcp.ack_seq);
    let (new_seq, new_ack, new_flags) = if flags & TCP_ACK != 0 {
        (ack, 0, TCP_RST)
    } else {
        let len = u32::from(flags & TCP_SYN != 0) + u32::from(flags & TCP_FIN != 0);
        (0, seq.wrapping_add(len), TCP_RST | TCP_ACK)
    };
    let new_seq = new_seq.to_be_bytes();
    let new_ack = new_ack.to_be_bytes();
    let new_word = [tcp.doff_flags[0], new_flags];
    let check = l4 + 16;
    hook.l4_csum4(
        check,
        u32::from_ne_bytes(tcp.seq),
        u32::from_ne_bytes(new_seq),
        false,
    )?;
    hook.l4_csum4(
        check,
        u32::from_ne_bytes(tcp.ack_seq),
        u32::from_ne_bytes(new_ack),
        false,
    )?;
    hook.l4_csum2(
        check,
        u16::from_ne_bytes(tcp.doff_flags),
        u16::from_ne_bytes(new_word),
    )?;
    hook.store(l4 + 4, &new_seq)?;
    hook.store(l4 + 8, &new_ack)?;
    hook.store(l4 + 12, &new_word)?;
    // Swapping addresses and ports leaves both checksums as they are.
    hook.store(IP_SADDR, &ip.daddr)?;
    hook.store(IP_DADDR, &ip.saddr)?;
    hook.store(l4, &tcp.dest)?;
    hook.store(l4 + 2, &tcp.source)?;
    hook.store(0, &eth.src)?;
    hook.store(6, &eth.dst)?;
    Some(Verdict::Tx)
}

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;
/// What an ICMP error quotes of the datagram it refuses: its IPv4 header (without options)
/// and the first 8 bytes of its payload (RFC 792).
const QUOTED: usize = size_of::<Ipv4Hdr>() + size_of::<L4Ports>();
/// The ICMP header and the quote.
const ICMP_LEN: usize = 8 + QUOTED;

/// The whole reply to a refused datagram: Ethernet, IPv4, ICMP port unreachable.
#[derive(Clone, Copy)]
#[repr(C)]
struct PortUnreachable {
    eth: EthHdr,
    ip: Ipv4Hdr,
    icmp: [u8; ICMP_LEN],
}

/// Answers a UDP datagram for a service without backends with ICMP port unreachable, sent
/// back at once: the client's socket fails with "connection refused" instead of waiting.
/// Datagrams with IP options are dropped (their quote would vary).
#[inline(always)]
fn reject_udp<H: Hook>(hook: &H) -> Verdict {
    let packet = hook.packet();
    let (Some(eth), Some(ip), Some(quoted)) = (
        packet.header::<EthHdr>(0),
        packet.header::<Ipv4Hdr>(ETH_HLEN),
        packet.header::<[u8; QUOTED]>(ETH_HLEN),
    ) else {
        return Verdict::Drop;
    };
    // SAFETY: all three were bounds-checked just above; packet data has no alignment.
    let (eth, ip, quoted) = unsafe {
        (
            core::ptr::read_unaligned(eth),
            core::ptr::read_unaligned(ip),
            core::ptr::read_unaligned(quoted),
        )
    };
    if ip.header_len() != size_of::<Ipv4Hdr>() {
        return Verdict::Drop;
    }
    let mut icmp = [0u8; ICMP_LEN];
    icmp[0] = ICMP_DEST_UNREACH;
    icmp[1] = ICMP_PORT_UNREACH;
    icmp[8..].copy_from_slice(&quoted);
    let sum = checksum(&icmp);
    icmp[2] = sum[0];
    icmp[3] = sum[1];
    let mut reply = PortUnreachable {
        eth: EthHdr {
            dst: eth.src,
            src: eth.dst,
            proto: ETH_P_IP.to_be_bytes(),
        },
        ip: Ipv4Hdr {
            version_ihl: 0x45,
            tos: 0,
            tot_len: ((size_of::<Ipv4Hdr>() + ICMP_LEN) as u16).to_be_bytes(),
            id: [0; 2],
            frag_off: [0; 2],
            ttl: 64,
            protocol: IPPROTO_ICMP,
            check: [0; 2],
            saddr: ip.daddr,
            daddr: ip.saddr,
        },
        icmp,
    };
    // SAFETY: an `Ipv4Hdr` is 20 plain bytes.
    let header: [u8; size_of::<Ipv4Hdr>()] = unsafe { core::mem::transmute_copy(&reply.ip) };
    reply.ip.check = checksum(&header);
    // Room for the new IPv4 and ICMP headers in front of the quote; the rest is cut.
    let grow = size_of::<PortUnreachable>() - ETH_HLEN - QUOTED;
    if hook
        .reshape(grow, size_of::<PortUnreachable>())
        .and_then(|()| hook.store(0, &reply))
        .is_none()
    {
        return Verdict::Drop;
    }
    Verdict::Tx
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
