//! Backend choice shared by the socket and XDP load balancers: session affinity first, then
//! the service's Maglev table, never a terminating backend for a new flow.

use aya_ebpf::helpers::generated::bpf_ktime_get_ns;
use skiff_ebpf_common::{
    AffinityKey, AffinityValue, Backend, LbEvent, ServiceKey, ServiceValue,
    service::{BACKEND_TERMINATING, SERVICE_AFFINITY, backend_index},
};

use crate::maps::{AFFINITY, BACKENDS, MAGLEV, MAGLEV_TABLE_SIZE, SERVICES, count_lb};

/// The service entry for `key`, if the address is a service.
#[inline(always)]
pub fn service(key: &ServiceKey) -> Option<ServiceValue> {
    let value = SERVICES.get_ptr(key)?;
    // SAFETY: the pointer comes from a successful lookup; the value is plain integers and
    // copied out at once (the agent replaces entries whole, never in place).
    Some(unsafe { *value })
}

/// The backend with id `id`: `None` when its slot is free or has been given to another
/// backend since (a stale conntrack or affinity entry).
#[inline(always)]
pub fn backend(id: u32) -> Option<Backend> {
    let value = BACKENDS.get_ptr(backend_index(id))?;
    // SAFETY: the pointer comes from a successful array lookup, and array values are 8-byte
    // aligned (as `Backend` is). Id and address are read in one 8-byte load: the agent
    // rewrites a slot in place, and this never pairs one backend's id with another's address.
    let [slot_id, addr]: [u32; 2] =
        unsafe { core::mem::transmute(core::ptr::read_volatile(value.cast::<u64>())) };
    if slot_id != id || addr == 0 {
        return None;
    }
    // SAFETY: as above; the rest of the entry changes in place only for the same backend
    // (its flags).
    let value = unsafe { &*value };
    Some(Backend {
        id,
        addr,
        port: value.port,
        proto: value.proto,
        pad: 0,
        flags: value.flags,
    })
}

/// Picks the backend for a new flow of `service`, `hash` being the flow's hash; `client`
/// tells who the client is, and is asked only for a service with session affinity (as the
/// clock is: helper calls cost). `None` when the service has no usable backend: the caller
/// refuses the flow.
#[inline(always)]
pub fn choose(
    service: &ServiceValue,
    client: impl FnOnce() -> u64,
    hash: u32,
) -> Option<(u32, Backend)> {
    if service.backend_count == 0 {
        return None;
    }
    if service.flags & SERVICE_AFFINITY == 0 {
        return from_table(service, hash);
    }
    let key = AffinityKey {
        client: client(),
        service_id: service.service_id,
        pad: 0,
    };
    // SAFETY: `bpf_ktime_get_ns` has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(entry) = AFFINITY.get_ptr_mut(&key) {
        // SAFETY: the pointer comes from a successful lookup of an LRU entry; a concurrent
        // update of the same entry at worst loses one timestamp.
        let entry = unsafe { &mut *entry };
        let timeout = u64::from(service.affinity_timeout_secs) * 1_000_000_000;
        if now.wrapping_sub(entry.last_used_ns) <= timeout
            && let Some(backend) = backend(entry.backend_id)
            && backend.flags & BACKEND_TERMINATING == 0
        {
            entry.last_used_ns = now;
            count_lb(LbEvent::AffinityHit);
            return Some((entry.backend_id, backend));
        }
    }
    let (id, chosen) = from_table(service, hash)?;
    let value = AffinityValue {
        last_used_ns: now,
        backend_id: id,
        pad: 0,
    };
    let _ = AFFINITY.insert(&key, &value, 0);
    Some((id, chosen))
}

/// The backend `service`'s Maglev table gives `hash`.
#[inline(always)]
fn from_table(service: &ServiceValue, hash: u32) -> Option<(u32, Backend)> {
    let size = MAGLEV_TABLE_SIZE.load();
    if size == 0 {
        return None;
    }
    let index = service
        .maglev_slot
        .wrapping_mul(size)
        .wrapping_add(hash % size);
    let id = *MAGLEV.get(index)?;
    let Some(chosen) = backend(id) else {
        count_lb(LbEvent::StaleBackend);
        return None;
    };
    Some((id, chosen))
}

/// A well-mixed 32-bit hash of a 64-bit value (the finaliser of MurmurHash3).
#[inline(always)]
pub fn mix64(value: u64) -> u32 {
    let mut h = value;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h as u32
}
