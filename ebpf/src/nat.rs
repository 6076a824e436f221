//! Checksums for programs that write packets directly (XDP): incremental updates (RFC 1624)
//! and whole sums (RFC 1071). Values are in network byte order as in the packet.

/// Folds a 32-bit one's-complement sum to 16 bits.
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The Internet checksum (RFC 1071) of `bytes`, as stored (network byte order). The length
/// is a constant, so the loop unrolls and every index is provably in bounds.
#[inline(always)]
pub fn checksum<const N: usize>(bytes: &[u8; N]) -> [u8; 2] {
    let mut sum = 0u32;
    let mut at = 0;
    while at + 1 < N {
        sum += u32::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
        at += 2;
    }
    if N % 2 == 1 {
        sum += u32::from(bytes[N - 1]) << 8;
    }
    (!fold(sum)).to_be_bytes()
}

/// The checksum `check` (as stored: network byte order) after a 32-bit field changed from
/// `old` to `new` (both as stored).
#[inline(always)]
pub fn csum_replace4(check: [u8; 2], old: u32, new: u32) -> [u8; 2] {
    let [o0, o1, o2, o3] = old.to_ne_bytes();
    let [n0, n1, n2, n3] = new.to_ne_bytes();
    let c = u16::from_be_bytes(check);
    let mut sum = u32::from(!c);
    sum += u32::from(!u16::from_be_bytes([o0, o1]));
    sum += u32::from(!u16::from_be_bytes([o2, o3]));
    sum += u32::from(u16::from_be_bytes([n0, n1]));
    sum += u32::from(u16::from_be_bytes([n2, n3]));
    (!fold(sum)).to_be_bytes()
}

/// The checksum `check` after a 16-bit field changed from `old` to `new` (both as stored).
#[inline(always)]
pub fn csum_replace2(check: [u8; 2], old: u16, new: u16) -> [u8; 2] {
    let c = u16::from_be_bytes(check);
    let mut sum = u32::from(!c);
    sum += u32::from(!u16::from_be_bytes(old.to_ne_bytes()));
    sum += u32::from(u16::from_be_bytes(new.to_ne_bytes()));
    (!fold(sum)).to_be_bytes()
}
