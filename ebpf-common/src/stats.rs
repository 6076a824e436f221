//! Per-CPU packet counters kept by the data-plane programs, indexed by packet class.
//!
//! The XDP program on a node's uplink classifies every frame it sees (by L3/L4 protocol, or
//! as malformed) and adds it to `UPLINK_STATS[class]`; the agent sums the per-CPU slots.

/// Packets and bytes seen for one class on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketCounter {
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(size_of::<PacketCounter>() == 16);

impl PacketCounter {
    /// Adds `other` to `self`, e.g. to sum the per-CPU slots of one class.
    pub fn merge(&mut self, other: &PacketCounter) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
    }
}

#[cfg(feature = "user")]
// SAFETY: `PacketCounter` is `repr(C)`, made only of integers, and has no padding.
unsafe impl aya::Pod for PacketCounter {}

/// What the load balancers sent one backend (`BACKEND_STATS`, by backend id) or one service
/// address (`SERVICE_STATS`, flows only), on one CPU: flows they chose it for (connections,
/// and datagrams of unconnected UDP sockets), and the packets and bytes the uplink program
/// forwarded to it. The socket load balancer translates once per connection and sees no
/// packets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounter {
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(size_of::<FlowCounter>() == 24);

impl FlowCounter {
    /// Adds `other` to `self`, e.g. to sum the per-CPU slots of one backend.
    pub fn merge(&mut self, other: &FlowCounter) {
        self.flows = self.flows.wrapping_add(other.flows);
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
    }
}

#[cfg(feature = "user")]
// SAFETY: `FlowCounter` is `repr(C)`, made only of integers, and has no padding.
unsafe impl aya::Pod for FlowCounter {}

/// Classes of packets counted by the uplink program; the discriminant is the map index.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketClass {
    /// Not IPv4 (ARP, IPv6, ...): passed untouched.
    NonIpv4 = 0,
    Tcp = 1,
    Udp = 2,
    Icmp = 3,
    /// IPv4 with another L4 protocol.
    OtherIpv4 = 4,
    /// Truncated or invalid headers: passed untouched, never read out of bounds.
    Malformed = 5,
    /// IPv4 fragments after the first, which carry no L4 header.
    Fragment = 6,
}

impl PacketClass {
    /// Number of classes, the size of the stats map.
    pub const COUNT: u32 = 7;

    /// Every class, in index order.
    pub const ALL: [PacketClass; Self::COUNT as usize] = [
        PacketClass::NonIpv4,
        PacketClass::Tcp,
        PacketClass::Udp,
        PacketClass::Icmp,
        PacketClass::OtherIpv4,
        PacketClass::Malformed,
        PacketClass::Fragment,
    ];

    /// The label used in metrics and CLI output.
    pub const fn name(self) -> &'static str {
        match self {
            PacketClass::NonIpv4 => "non_ipv4",
            PacketClass::Tcp => "tcp",
            PacketClass::Udp => "udp",
            PacketClass::Icmp => "icmp",
            PacketClass::OtherIpv4 => "other_ipv4",
            PacketClass::Malformed => "malformed",
            PacketClass::Fragment => "fragment",
        }
    }
}
