//! Service load-balancing maps: services, backends, Maglev tables, socket reverse NAT,
//! session affinity and conntrack, as the socket, XDP and TC programs and the agent see them.
//!
//! Addresses and ports are kept in network byte order, exactly as they sit in packets and in
//! `bpf_sock_addr`, so the programs never swap bytes; the constructors here do the swapping.

/// `ServiceKey::proto` for TCP.
pub const PROTO_TCP: u8 = 6;
/// `ServiceKey::proto` for UDP.
pub const PROTO_UDP: u8 = 17;

/// `ServiceKey::scope` for an entry every client may use (ClusterIP from inside, NodePort,
/// LoadBalancer and external IPs from outside).
pub const SCOPE_ANY: u8 = 0;

/// `ServiceValue::flags`: ClientIP session affinity (`spec.sessionAffinity: ClientIP`).
pub const SERVICE_AFFINITY: u32 = 1 << 0;
/// `ServiceValue::flags`: `spec.externalTrafficPolicy: Local`; only node-local backends are
/// in the table and the client address is preserved.
pub const SERVICE_EXTERNAL_LOCAL: u32 = 1 << 1;
/// `ServiceValue::flags`: `spec.internalTrafficPolicy: Local`.
pub const SERVICE_INTERNAL_LOCAL: u32 = 1 << 2;
/// `ServiceValue::flags`: the address is a NodePort, LoadBalancer or external IP (reached
/// from outside through XDP), not a ClusterIP.
pub const SERVICE_EXTERNAL: u32 = 1 << 3;

/// `Backend::flags`: the backend runs on this node (DNAT straight to the pod, no SNAT).
pub const BACKEND_LOCAL: u32 = 1 << 0;
/// `Backend::flags`: the endpoint is terminating; it keeps existing flows but is never
/// chosen for a new one.
pub const BACKEND_TERMINATING: u32 = 1 << 1;

/// The address a client asks for: a ClusterIP, node address (NodePort), LoadBalancer or
/// external IP, with port and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// IPv4 address, network byte order.
    pub addr: u32,
    /// Port, network byte order.
    pub port: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    /// `SCOPE_ANY` today; room for a separate internal-traffic entry.
    pub scope: u8,
}

const _: () = assert!(size_of::<ServiceKey>() == 8);

impl ServiceKey {
    /// A key from an address's octets and a port in host byte order.
    pub const fn new(octets: [u8; 4], port: u16, proto: u8) -> Self {
        Self {
            addr: u32::from_ne_bytes(octets),
            port: port.to_be(),
            proto,
            scope: SCOPE_ANY,
        }
    }

    /// The address's octets.
    pub const fn octets(&self) -> [u8; 4] {
        self.addr.to_ne_bytes()
    }

    /// The port in host byte order.
    pub const fn host_port(&self) -> u16 {
        u16::from_be(self.port)
    }
}

/// What the programs need to pick a backend for a service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    /// A number stable for the service's lifetime (affinity entries are keyed by it).
    pub service_id: u32,
    /// Which Maglev table (`MAGLEV` slot) holds this service's backend ids. A new table is
    /// written into a free slot before the service entry points at it.
    pub maglev_slot: u32,
    /// Backends that new flows may be sent to; 0 means every connection is refused.
    pub backend_count: u32,
    /// `SERVICE_*` bits.
    pub flags: u32,
    /// ClientIP affinity timeout in seconds (`sessionAffinityConfig.clientIP.timeoutSeconds`).
    pub affinity_timeout_secs: u32,
    /// Explicit padding; always zero.
    pub pad: u32,
}

const _: () = assert!(size_of::<ServiceValue>() == 24);

/// Bits of a backend id that name its `BACKENDS` slot; the bits above are the slot's
/// generation, bumped each time the slot is given to another backend.
pub const BACKEND_INDEX_BITS: u32 = 24;
/// Mask of a backend id's slot bits.
pub const BACKEND_INDEX_MASK: u32 = (1 << BACKEND_INDEX_BITS) - 1;
/// The most backends a node can hold: every slot but 0, which no backend ever gets (an
/// unwritten Maglev entry, 0, names no backend).
pub const MAX_BACKENDS: u32 = BACKEND_INDEX_MASK;

/// The `BACKENDS` slot of backend `id`.
pub const fn backend_index(id: u32) -> u32 {
    id & BACKEND_INDEX_MASK
}

/// One endpoint address of a service, in slot `backend_index(id)` of the `BACKENDS` array.
///
/// A conntrack or affinity entry keeps the backend's whole id; when the slot has been given
/// to another backend since, the generation differs and the entry is known to be stale, so
/// slots are reused without ever sending an old flow to a new backend. A free slot keeps
/// its last id with `addr` 0. `id` and `addr` share the first 8 bytes (the alignment), so
/// a program reads them in one load and never sees one backend's id with another's address.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Slot and generation (see [`BACKEND_INDEX_BITS`]); set by the agent's service sync.
    pub id: u32,
    /// IPv4 address, network byte order; 0 in a free slot.
    pub addr: u32,
    /// Port, network byte order.
    pub port: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    /// Explicit padding; always zero.
    pub pad: u8,
    /// `BACKEND_*` bits.
    pub flags: u32,
}

const _: () = assert!(size_of::<Backend>() == 16);

impl Backend {
    /// A backend from an address's octets and a port in host byte order (id 0 until service
    /// sync gives it one).
    pub const fn new(octets: [u8; 4], port: u16, proto: u8, flags: u32) -> Self {
        Self {
            id: 0,
            addr: u32::from_ne_bytes(octets),
            port: port.to_be(),
            proto,
            pad: 0,
            flags,
        }
    }

    /// The free slot that backend `id` leaves behind: it keeps the id (and so the slot's
    /// generation) and holds no address.
    pub const fn freed(id: u32) -> Self {
        Self {
            id,
            addr: 0,
            port: 0,
            proto: 0,
            pad: 0,
            flags: 0,
        }
    }

    /// True for a slot that holds no backend.
    pub const fn is_free(&self) -> bool {
        self.addr == 0
    }
}

/// Key of the socket reverse-NAT map: a socket and the backend it was sent to, so that
/// `recvmsg` and `getpeername` can show the service address instead.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockRevKey {
    /// `bpf_get_socket_cookie` of the client socket.
    pub cookie: u64,
    /// Backend address, network byte order.
    pub addr: u32,
    /// Backend port, network byte order.
    pub port: u16,
    /// Explicit padding; always zero.
    pub pad: u16,
}

const _: () = assert!(size_of::<SockRevKey>() == 16);

/// The service address a socket asked for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockRevValue {
    /// Service address, network byte order.
    pub addr: u32,
    /// Service port, network byte order.
    pub port: u16,
    /// Explicit padding; always zero.
    pub pad: u16,
}

const _: () = assert!(size_of::<SockRevValue>() == 8);

/// Key of the session-affinity map: one client of one service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    /// The client: its network namespace cookie for socket LB, its IPv4 address (network
    /// byte order, zero-extended) for XDP.
    pub client: u64,
    /// `ServiceValue::service_id`.
    pub service_id: u32,
    /// Explicit padding; always zero.
    pub pad: u32,
}

const _: () = assert!(size_of::<AffinityKey>() == 16);

/// The backend a client sticks to, and when it last used it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffinityValue {
    /// `bpf_ktime_get_ns` of the last use.
    pub last_used_ns: u64,
    /// The backend's id (`Backend::id`, generation included).
    pub backend_id: u32,
    /// Explicit padding; always zero.
    pub pad: u32,
}

const _: () = assert!(size_of::<AffinityValue>() == 16);

/// Key of the conntrack map: one direction of a flow through the XDP/TC path.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    /// Source address, network byte order.
    pub saddr: u32,
    /// Destination address, network byte order.
    pub daddr: u32,
    /// Source port, network byte order.
    pub sport: u16,
    /// Destination port, network byte order.
    pub dport: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    /// Explicit padding; always zero.
    pub pad: [u8; 3],
}

const _: () = assert!(size_of::<CtKey>() == 16);

/// `CtValue::flags`: the entry is for replies (rewrite the source back to the service).
pub const CT_REPLY: u32 = 1 << 0;
/// `CtValue::flags`: the forward direction was also SNATed to the node address.
pub const CT_SNAT: u32 = 1 << 1;
/// `CtValue::flags`: this direction sent a TCP FIN. The flow is closing: the agent's
/// conntrack collector removes it after a short idle time instead of the established one.
pub const CT_FIN: u32 = 1 << 2;

/// What a flow was translated to.
///
/// A forward entry (client -> service) names the backend; a reply entry (backend -> client,
/// or backend -> node address when SNATed) says which addresses to put back.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtValue {
    /// `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC_COARSE) of the last packet.
    pub last_seen_ns: u64,
    /// Forward entries: the backend's id (`Backend::id`, generation included). Reply
    /// entries: zero.
    pub backend_id: u32,
    /// `CT_*` bits.
    pub flags: u32,
    /// Reply entries: the service address replies must come from. Network byte order.
    pub nat_addr: u32,
    /// Reply entries with `CT_SNAT`: the client address replies must go back to.
    pub client_addr: u32,
    /// Reply entries: the service port replies must come from, network byte order.
    pub nat_port: u16,
    /// Explicit padding; always zero.
    pub pad: [u8; 6],
}

const _: () = assert!(size_of::<CtValue>() == 32);

/// A pod on this node, by address (`LOCAL_ENDPOINTS`): where the uplink's TC program hands a
/// packet translated to it, straight into the pod (`bpf_redirect_peer`) instead of through
/// the node's forwarding path.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalEndpoint {
    /// The host side of the pod's veth pair.
    pub ifindex: u32,
    /// The pod side's MAC: the frame's destination.
    pub mac: [u8; 6],
    /// The host side's MAC (the pod's gateway): the frame's source.
    pub node_mac: [u8; 6],
}

const _: () = assert!(size_of::<LocalEndpoint>() == 16);

/// Counters of the load-balancing programs; the discriminant is the `LB_STATS` index.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LbEvent {
    /// A connection or datagram was translated to a backend.
    Translated = 0,
    /// A service with no backend refused a connection.
    NoBackend = 1,
    /// A session-affinity entry chose the backend.
    AffinityHit = 2,
    /// The Maglev table pointed at a backend that no longer exists.
    StaleBackend = 3,
    /// A reply had its source rewritten back to the service address.
    ReverseTranslated = 4,
    /// XDP translated a packet of a flow it already tracked.
    ConntrackHit = 5,
    /// The FIB had no usable route for a translated packet; the stack got it instead (and
    /// answers as a router does, with an ICMP error when it cannot forward either).
    NoRoute = 6,
    /// A translated packet was larger than the next hop's MTU; the stack got it instead
    /// (it fragments it or sends "fragmentation needed").
    FragNeeded = 7,
    /// A translated packet was handed straight to a pod on this node (its veth peer).
    LocalDelivered = 8,
}

impl LbEvent {
    /// Number of events, the size of `LB_STATS`.
    pub const COUNT: u32 = 9;

    /// Every event, in index order.
    pub const ALL: [LbEvent; Self::COUNT as usize] = [
        LbEvent::Translated,
        LbEvent::NoBackend,
        LbEvent::AffinityHit,
        LbEvent::StaleBackend,
        LbEvent::ReverseTranslated,
        LbEvent::ConntrackHit,
        LbEvent::NoRoute,
        LbEvent::FragNeeded,
        LbEvent::LocalDelivered,
    ];

    /// The label used in metrics and CLI output.
    pub const fn name(self) -> &'static str {
        match self {
            LbEvent::Translated => "translated",
            LbEvent::NoBackend => "no_backend",
            LbEvent::AffinityHit => "affinity_hit",
            LbEvent::StaleBackend => "stale_backend",
            LbEvent::ReverseTranslated => "reverse_translated",
            LbEvent::ConntrackHit => "conntrack_hit",
            LbEvent::NoRoute => "no_route",
            LbEvent::FragNeeded => "frag_needed",
            LbEvent::LocalDelivered => "local_delivered",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;

    // SAFETY: each type below is `repr(C)`, made only of integers, and its padding is
    // explicit, so every bit pattern is valid and no byte is uninitialised.
    unsafe impl aya::Pod for ServiceKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for ServiceValue {}
    // SAFETY: see above.
    unsafe impl aya::Pod for Backend {}
    // SAFETY: see above.
    unsafe impl aya::Pod for SockRevKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for SockRevValue {}
    // SAFETY: see above.
    unsafe impl aya::Pod for AffinityKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for AffinityValue {}
    // SAFETY: see above.
    unsafe impl aya::Pod for CtKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for CtValue {}
    // SAFETY: see above.
    unsafe impl aya::Pod for LocalEndpoint {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_key_keeps_address_and_port_in_network_order() {
        let key = ServiceKey::new([10, 96, 0, 10], 53, PROTO_UDP);
        assert_eq!(key.addr.to_ne_bytes(), [10, 96, 0, 10]);
        assert_eq!(key.port.to_ne_bytes(), [0, 53]);
        assert_eq!(key.host_port(), 53);
        assert_eq!(key.octets(), [10, 96, 0, 10]);
    }
}
