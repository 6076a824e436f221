//! Conntrack expiry: the uplink programs stamp each entry with the time of its direction's
//! last packet and mark a direction that sent a FIN; this collector removes flows idle past
//! their timeout, as the kernel's conntrack and Cilium's CT GC do, so the LRU's room goes to
//! live flows instead of closed ones and a long-idle UDP flow is balanced afresh.
//!
//! A flow's two entries (client -> service, and the replies) are judged together, by the
//! later of their two last packets: a one-way stream keeps both.

use std::{collections::HashMap as StdHashMap, time::Duration};

use aya::maps::{HashMap, MapData, MapError};
use skiff_ebpf_common::{
    CtKey, CtValue,
    service::{CT_FIN, CT_REPLY, CT_SNAT, PROTO_TCP},
};
use tracing::{debug, warn};

use super::{Dataplane, DataplaneError, loader::CONNTRACK};

/// How long a flow may stay idle before it is removed (Cilium's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// An established TCP flow.
    pub tcp: Duration,
    /// A TCP flow either side has sent a FIN on.
    pub closing: Duration,
    /// A UDP flow.
    pub other: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp: Duration::from_secs(6 * 3600),
            closing: Duration::from_secs(10),
            other: Duration::from_secs(60),
        }
    }
}

/// What one collection pass found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Entries read.
    pub scanned: usize,
    /// Entries removed.
    pub removed: usize,
}

/// The `CONNTRACK` map.
pub struct Conntrack {
    map: HashMap<MapData, CtKey, CtValue>,
}

impl std::fmt::Debug for Conntrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conntrack").finish_non_exhaustive()
    }
}

impl Conntrack {
    /// Takes the map out of a loaded data plane.
    ///
    /// # Errors
    /// When the object has no such map or it was already taken.
    pub fn take(dataplane: &mut Dataplane) -> Result<Self, DataplaneError> {
        let map = HashMap::try_from(dataplane.take_map(CONNTRACK)?).map_err(wrong)?;
        Ok(Self { map })
    }

    /// Removes every flow idle past its timeout at `now_ns` (`CLOCK_MONOTONIC`, the
    /// programs' clock). An entry that the LRU evicts meanwhile is skipped.
    ///
    /// # Errors
    /// When the kernel refuses a delete for another reason than the entry being gone.
    pub fn collect(
        &mut self,
        now_ns: u64,
        timeouts: &Timeouts,
    ) -> Result<Collected, DataplaneError> {
        let entries: Vec<(CtKey, CtValue)> = self.map.iter().filter_map(Result::ok).collect();
        let stale = expired(&entries, now_ns, timeouts);
        for key in &stale {
            match self.map.remove(key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(source) => return Err(wrong(source)),
            }
        }
        Ok(Collected {
            scanned: entries.len(),
            removed: stale.len(),
        })
    }
}

fn wrong(source: MapError) -> DataplaneError {
    DataplaneError::Map {
        name: CONNTRACK,
        source,
    }
}

/// The client -> service entry a reply entry belongs to.
fn forward_of(reply: &CtKey, value: &CtValue) -> CtKey {
    CtKey {
        saddr: if value.flags & CT_SNAT != 0 {
            value.client_addr
        } else {
            reply.daddr
        },
        daddr: value.nat_addr,
        sport: reply.dport,
        dport: value.nat_port,
        proto: reply.proto,
        pad: [0; 3],
    }
}

/// The keys of `entries` whose flow has been idle past its timeout at `now_ns`.
pub fn expired(entries: &[(CtKey, CtValue)], now_ns: u64, timeouts: &Timeouts) -> Vec<CtKey> {
    // Each flow's state over both its entries: the later last packet, and whether either
    // side sent a FIN.
    let mut flows: StdHashMap<CtKey, (u64, bool)> = StdHashMap::new();
    let flow_of = |key: &CtKey, value: &CtValue| {
        if value.flags & CT_REPLY != 0 {
            forward_of(key, value)
        } else {
            *key
        }
    };
    for (key, value) in entries {
        let flow = flows.entry(flow_of(key, value)).or_default();
        flow.0 = flow.0.max(value.last_seen_ns);
        flow.1 |= value.flags & CT_FIN != 0;
    }
    entries
        .iter()
        .filter(|(key, value)| {
            let (last_seen, fin) = flows[&flow_of(key, value)];
            let timeout = if key.proto != PROTO_TCP {
                timeouts.other
            } else if fin {
                timeouts.closing
            } else {
                timeouts.tcp
            };
            now_ns.saturating_sub(last_seen) > timeout.as_nanos() as u64
        })
        .map(|(key, _)| *key)
        .collect()
}

/// Now on the programs' clock (`bpf_ktime_get_coarse_ns` reads `CLOCK_MONOTONIC_COARSE`).
pub fn monotonic_now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; CLOCK_MONOTONIC_COARSE always exists on
    // Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Collects expired flows every `interval` until `stop`, telling `collected` what each
/// pass did; a failed pass is logged and the next one tries again (meanwhile the LRU still
/// makes room).
pub async fn run(
    mut conntrack: Conntrack,
    timeouts: Timeouts,
    interval: Duration,
    collected: impl Fn(Collected),
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {}
        }
        match conntrack.collect(monotonic_now_ns(), &timeouts) {
            Ok(done) => {
                debug!(
                    scanned = done.scanned,
                    removed = done.removed,
                    "conntrack collected"
                );
                collected(done);
            }
            Err(error) => warn!(
                error = %crate::error_chain(&error),
                "removing expired conntrack entries; the LRU still evicts the oldest"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use skiff_ebpf_common::service::PROTO_UDP;

    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// A local backend's flow: client 192.0.2.10:40000 -> node:30080, to pod:8080.
    fn flow(proto: u8, forward_seen: u64, reply_seen: u64, fin: bool) -> [(CtKey, CtValue); 2] {
        let (client, node, pod) = (0x0a02_00c0, 0x1464_33c6, 0x0a09_f40a);
        let forward = CtKey {
            saddr: client,
            daddr: node,
            sport: 40000u16.to_be(),
            dport: 30080u16.to_be(),
            proto,
            pad: [0; 3],
        };
        let reply = CtKey {
            saddr: pod,
            daddr: client,
            sport: 8080u16.to_be(),
            dport: forward.sport,
            proto,
            pad: [0; 3],
        };
        [
            (
                forward,
                CtValue {
                    last_seen_ns: forward_seen,
                    backend_id: 1,
                    flags: if fin { CT_FIN } else { 0 },
                    ..CtValue::default()
                },
            ),
            (
                reply,
                CtValue {
                    last_seen_ns: reply_seen,
                    flags: CT_REPLY,
                    nat_addr: node,
                    nat_port: forward.dport,
                    ..CtValue::default()
                },
            ),
        ]
    }

    #[test]
    fn a_closing_flow_goes_after_ten_idle_seconds_an_established_one_stays() {
        let timeouts = Timeouts::default();
        let closing = flow(PROTO_TCP, 100 * SEC, 100 * SEC, true);
        assert!(expired(&closing, 109 * SEC, &timeouts).is_empty());
        let gone = expired(&closing, 111 * SEC, &timeouts);
        assert_eq!(
            gone,
            [closing[0].0, closing[1].0],
            "both entries of the flow"
        );
        let open = flow(PROTO_TCP, 100 * SEC, 100 * SEC, false);
        assert!(expired(&open, 3600 * SEC, &timeouts).is_empty());
        assert_eq!(expired(&open, (6 * 3600 + 101) * SEC, &timeouts).len(), 2);
    }

    #[test]
    fn a_one_way_udp_stream_keeps_both_entries_while_either_side_sends() {
        let timeouts = Timeouts::default();
        // The client has been silent for 5 minutes; the backend sent a second ago.
        let stream = flow(PROTO_UDP, 100 * SEC, 399 * SEC, false);
        assert!(expired(&stream, 400 * SEC, &timeouts).is_empty());
        assert_eq!(expired(&stream, 460 * SEC, &timeouts).len(), 2);
    }

    #[test]
    fn an_entry_stamped_after_the_collectors_clock_is_not_expired() {
        let entries = flow(PROTO_TCP, 500 * SEC, 500 * SEC, true);
        assert!(expired(&entries, 400 * SEC, &Timeouts::default()).is_empty());
    }
}
