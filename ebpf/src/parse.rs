//! Bounds-checked header access for XDP and TC programs.
//!
//! Every read goes through [`Packet::header`], which proves to the verifier that the bytes
//! lie between `data` and `data_end`; a truncated frame yields `None`, never a fault.

use core::mem::size_of;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// An Ethernet header.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// Big-endian EtherType.
    pub proto: [u8; 2],
}

/// The fixed part of an IPv4 header (options follow when `ihl > 5`).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: [u8; 2],
    pub id: [u8; 2],
    pub frag_off: [u8; 2],
    pub ttl: u8,
    pub protocol: u8,
    pub check: [u8; 2],
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
}

impl Ipv4Hdr {
    pub fn version(&self) -> u8 {
        self.version_ihl >> 4
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        ((self.version_ihl & 0x0f) as usize) * 4
    }

    /// True for every fragment but the first (those carry no L4 header).
    pub fn is_later_fragment(&self) -> bool {
        u16::from_be_bytes(self.frag_off) & 0x1fff != 0
    }
}

/// The first 8 bytes of TCP, UDP and ICMP headers alike: enough to classify and to read ports.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct L4Ports {
    pub source: [u8; 2],
    pub dest: [u8; 2],
    pub rest: [u8; 4],
}

/// The fixed part of a TCP header.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct TcpHdr {
    pub source: [u8; 2],
    pub dest: [u8; 2],
    pub seq: [u8; 4],
    pub ack_seq: [u8; 4],
    pub doff_flags: [u8; 2],
    pub window: [u8; 2],
    pub check: [u8; 2],
    pub urg_ptr: [u8; 2],
}

/// A packet's linear data, as `[start, end)` addresses.
#[derive(Clone, Copy)]
pub struct Packet {
    pub start: usize,
    pub end: usize,
}

impl Packet {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// A pointer to a `T` at `offset`, if the whole `T` lies inside the packet.
    #[inline(always)]
    pub fn header<T>(&self, offset: usize) -> Option<*const T> {
        let at = self.start + offset;
        if at + size_of::<T>() > self.end {
            return None;
        }
        Some(at as *const T)
    }

    /// A writable pointer to a `T` at `offset`, if the whole `T` lies inside the packet.
    #[inline(always)]
    pub fn header_mut<T>(&self, offset: usize) -> Option<*mut T> {
        self.header::<T>(offset).map(|p| p.cast_mut())
    }

    /// Writes `value` at `offset`, if it fits inside the packet.
    #[inline(always)]
    pub fn write<T: Copy>(&self, offset: usize, value: &T) -> Option<()> {
        let at = self.header_mut::<T>(offset)?;
        // SAFETY: bounds-checked by `header_mut`; packet data has no alignment.
        unsafe { core::ptr::write_unaligned(at, *value) };
        Some(())
    }

    /// Replaces the 2-byte checksum at `offset` with `update(checksum)`.
    #[inline(always)]
    pub fn update_check(&self, offset: usize, update: impl FnOnce([u8; 2]) -> [u8; 2]) -> Option<()> {
        let check = self.header_mut::<[u8; 2]>(offset)?;
        // SAFETY: bounds-checked by `header_mut`.
        unsafe { *check = update(*check) };
        Some(())
    }
}
