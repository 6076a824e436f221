//! Per-cgroup network counters kept by the `cgroup_skb` programs on a node's cgroup subtree:
//! packets and bytes received and sent by the sockets of each cgroup, keyed by cgroup id
//! (the inode number of the cgroup v2 directory), one slot per CPU.

/// The key of `CGROUP_NET_STATS`: a cgroup v2 id, as `bpf_skb_cgroup_id` returns it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CgroupNetKey {
    pub cgroup_id: u64,
}

const _: () = assert!(size_of::<CgroupNetKey>() == 8);

/// Traffic of one cgroup on one CPU. Bytes are the IP packet lengths (`skb->len` at the
/// cgroup hooks: from the network header on, without the link-layer header).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupNetCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

const _: () = assert!(size_of::<CgroupNetCounters>() == 32);

impl CgroupNetCounters {
    /// Adds `other` to `self`, e.g. to sum the per-CPU slots of one cgroup.
    pub fn merge(&mut self, other: &CgroupNetCounters) {
        self.rx_packets = self.rx_packets.wrapping_add(other.rx_packets);
        self.rx_bytes = self.rx_bytes.wrapping_add(other.rx_bytes);
        self.tx_packets = self.tx_packets.wrapping_add(other.tx_packets);
        self.tx_bytes = self.tx_bytes.wrapping_add(other.tx_bytes);
    }
}

#[cfg(feature = "user")]
// SAFETY: `CgroupNetKey` is `repr(C)`, one integer, no padding.
unsafe impl aya::Pod for CgroupNetKey {}

#[cfg(feature = "user")]
// SAFETY: `CgroupNetCounters` is `repr(C)`, made only of integers, and has no padding.
unsafe impl aya::Pod for CgroupNetCounters {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_sums_every_counter() {
        let mut total = CgroupNetCounters {
            rx_packets: 1,
            rx_bytes: 100,
            tx_packets: 2,
            tx_bytes: 200,
        };
        total.merge(&CgroupNetCounters {
            rx_packets: 3,
            rx_bytes: 300,
            tx_packets: 4,
            tx_bytes: 400,
        });
        assert_eq!(
            total,
            CgroupNetCounters {
                rx_packets: 4,
                rx_bytes: 400,
                tx_packets: 6,
                tx_bytes: 600
            }
        );
    }
}
