//! Crafted frames for `BPF_PROG_TEST_RUN`: Ethernet, IPv4 (with options and fragments),
//! TCP, UDP and ICMP, with correct checksums, built byte by byte.

use std::net::Ipv4Addr;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_GRE: u8 = 47;

/// An Ethernet frame around `payload`.
pub fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // destination
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // source
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An IPv4 packet; the header length follows from `options` (a multiple of 4 bytes).
#[derive(Clone, Debug)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub options: Vec<u8>,
    /// Fragment offset in 8-byte units (non-zero for every fragment but the first).
    pub fragment_offset: u16,
    pub more_fragments: bool,
}

impl Ipv4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8) -> Self {
        Self {
            src,
            dst,
            protocol,
            options: Vec::new(),
            fragment_offset: 0,
            more_fragments: false,
        }
    }

    /// The packet bytes: header (with a valid checksum) followed by `payload`.
    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        assert_eq!(
            self.options.len() % 4,
            0,
            "IPv4 options are padded to 4 bytes"
        );
        let header_len = 20 + self.options.len();
        let total = u16::try_from(header_len + payload.len()).expect("fits an IPv4 packet");
        let flags_frag = (u16::from(self.more_fragments) << 13) | (self.fragment_offset & 0x1fff);
        let mut header = Vec::with_capacity(header_len);
        header.push(0x40 | (header_len / 4) as u8);
        header.push(0);
        header.extend_from_slice(&total.to_be_bytes());
        header.extend_from_slice(&0x1234u16.to_be_bytes());
        header.extend_from_slice(&flags_frag.to_be_bytes());
        header.push(64);
        header.push(self.protocol);
        header.extend_from_slice(&[0, 0]);
        header.extend_from_slice(&self.src.octets());
        header.extend_from_slice(&self.dst.octets());
        header.extend_from_slice(&self.options);
        let check = checksum(&header);
        header[10..12].copy_from_slice(&check.to_be_bytes());
        header.extend_from_slice(payload);
        header
    }
}

/// A TCP segment with the given flags (e.g. `TCP_SYN`) and no options.
pub fn tcp(ip: &Ipv4, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut segment = Vec::with_capacity(20 + payload.len());
    segment.extend_from_slice(&sport.to_be_bytes());
    segment.extend_from_slice(&dport.to_be_bytes());
    segment.extend_from_slice(&1u32.to_be_bytes());
    segment.extend_from_slice(&0u32.to_be_bytes());
    segment.push(5 << 4);
    segment.push(flags);
    segment.extend_from_slice(&65535u16.to_be_bytes());
    segment.extend_from_slice(&[0, 0, 0, 0]);
    segment.extend_from_slice(payload);
    let check = l4_checksum(ip, &segment);
    segment[16..18].copy_from_slice(&check.to_be_bytes());
    segment
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// A UDP datagram.
pub fn udp(ip: &Ipv4, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).expect("fits a UDP datagram");
    let mut datagram = Vec::with_capacity(len as usize);
    datagram.extend_from_slice(&sport.to_be_bytes());
    datagram.extend_from_slice(&dport.to_be_bytes());
    datagram.extend_from_slice(&len.to_be_bytes());
    datagram.extend_from_slice(&[0, 0]);
    datagram.extend_from_slice(payload);
    let check = l4_checksum(ip, &datagram);
    datagram[6..8].copy_from_slice(&check.to_be_bytes());
    datagram
}

/// An ICMP echo request.
pub fn icmp_echo(id: u16, seq: u16) -> Vec<u8> {
    let mut message = vec![8, 0, 0, 0];
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(b"skiff-ping");
    let check = checksum(&message);
    message[2..4].copy_from_slice(&check.to_be_bytes());
    message
}

/// The Internet checksum (RFC 1071) of `bytes`.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum::<u32>();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn l4_checksum(ip: &Ipv4, segment: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(12 + segment.len());
    pseudo.extend_from_slice(&ip.src.octets());
    pseudo.extend_from_slice(&ip.dst.octets());
    pseudo.push(0);
    pseudo.push(ip.protocol);
    pseudo.extend_from_slice(&u16::try_from(segment.len()).expect("fits").to_be_bytes());
    pseudo.extend_from_slice(segment);
    checksum(&pseudo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies_to_zero() {
        let ip = Ipv4::new(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            IPPROTO_UDP,
        );
        let packet = ip.packet(&udp(&ip, 1000, 53, b"query"));
        assert_eq!(checksum(&packet[..20]), 0);
    }

    #[test]
    fn tcp_checksum_verifies_to_zero_over_the_pseudo_header() {
        let ip = Ipv4::new(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            IPPROTO_TCP,
        );
        let segment = tcp(&ip, 40000, 80, TCP_SYN, b"");
        assert_eq!(l4_checksum(&ip, &segment), 0);
    }
}
