//! Address and port rewriting with incremental checksum updates (RFC 1624), for programs
//! that write packets directly (XDP). Values are in network byte order as in the packet.

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

/// Where a packet's IPv4 and L4 checksums are, and whether the L4 one is in use.
#[derive(Clone, Copy)]
pub struct Checksums {
    pub ip: *mut [u8; 2],
    /// `None` for UDP without a checksum (zero), which must stay zero.
    pub l4: Option<*mut [u8; 2]>,
}

impl Checksums {
    /// Accounts for an address change (it is in the IPv4 header and the pseudo-header).
    ///
    /// # Safety
    /// The pointers must point into the packet, checked against its end.
    #[inline(always)]
    pub unsafe fn address(&self, old: u32, new: u32) {
        // SAFETY: the caller guarantees both pointers are inside the packet.
        unsafe {
            *self.ip = csum_replace4(*self.ip, old, new);
            if let Some(l4) = self.l4 {
                *l4 = csum_replace4(*l4, old, new);
            }
        }
    }

    /// Accounts for a port change (L4 only).
    ///
    /// # Safety
    /// As for [`Checksums::address`].
    #[inline(always)]
    pub unsafe fn port(&self, old: u16, new: u16) {
        if let Some(l4) = self.l4 {
            // SAFETY: the caller guarantees the pointer is inside the packet.
            unsafe { *l4 = csum_replace2(*l4, old, new) };
        }
    }
}
