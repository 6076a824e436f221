//! Every map the programs share, defined in one place so that names and sizes are easy to
//! audit against the agent's loader (`agent/src/dataplane/loader.rs`).
//!
//! Sizes here are defaults: the agent overrides them from its configuration at load time
//! and pins the load-balancing maps under the node's bpffs directory.

use aya_ebpf::{
    Global,
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{Array, HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray},
};
use skiff_ebpf_common::{
    AffinityKey, AffinityValue, Backend, CgroupNetCounters, CgroupNetKey, CtKey, CtValue,
    FlowCounter, LbEvent, LocalEndpoint, PacketClass, PacketCounter, ServiceKey, ServiceValue,
    SockRevKey, SockRevValue, service::backend_index,
};

/// Frames seen by the uplink XDP program, per packet class and CPU.
#[map(name = "UPLINK_STATS")]
pub static UPLINK_STATS: PerCpuArray<PacketCounter> =
    PerCpuArray::with_max_entries(PacketClass::COUNT, 0);

/// Service address -> how to pick its backend.
#[map(name = "SERVICES")]
pub static SERVICES: HashMap<ServiceKey, ServiceValue> = HashMap::with_max_entries(4096, 0);

/// Backends by slot (`backend_index(id)`); slot 0 is never used. An array: its lookup is
/// an offset computed inline by the JIT, where a hash lookup is a call and a bucket walk
/// over entries scattered in memory.
#[map(name = "BACKENDS")]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(16385, 0);

/// Maglev tables, one after another: slot `s` holds backend ids at
/// `s * MAGLEV_TABLE_SIZE .. (s + 1) * MAGLEV_TABLE_SIZE`.
#[map(name = "MAGLEV")]
pub static MAGLEV: Array<u32> = Array::with_max_entries(64 * 251, 0);

/// Entries per Maglev table (a prime), set by the agent at load time.
#[unsafe(no_mangle)]
pub static MAGLEV_TABLE_SIZE: Global<u32> = Global::new(251);

/// This node's address (network byte order): the source of packets XDP forwards to a
/// backend on another node. Set by the agent at load time; 0 disables such forwarding.
#[unsafe(no_mangle)]
pub static NODE_ADDR: Global<u32> = Global::new(0);

/// (socket, backend) -> the service address the socket asked for.
#[map(name = "SOCK_REV")]
pub static SOCK_REV: LruHashMap<SockRevKey, SockRevValue> = LruHashMap::with_max_entries(65536, 0);

/// (client, service) -> the backend the client sticks to.
#[map(name = "AFFINITY")]
pub static AFFINITY: LruHashMap<AffinityKey, AffinityValue> =
    LruHashMap::with_max_entries(65536, 0);

/// Pod address -> its veth on this node, for handing translated packets straight to it.
#[map(name = "LOCAL_ENDPOINTS")]
pub static LOCAL_ENDPOINTS: HashMap<u32, LocalEndpoint> = HashMap::with_max_entries(1024, 0);

/// Flows translated by XDP, both directions.
#[map(name = "CONNTRACK")]
pub static CONNTRACK: LruHashMap<CtKey, CtValue> = LruHashMap::with_max_entries(65536, 0);

/// Packets and bytes per cgroup (the cgroup_skb programs), per CPU. LRU: the counters of
/// cgroups long gone make room for new ones.
#[map(name = "CGROUP_NET_STATS")]
pub static CGROUP_NET_STATS: LruPerCpuHashMap<CgroupNetKey, CgroupNetCounters> =
    LruPerCpuHashMap::with_max_entries(16384, 0);

/// Flows, packets and bytes sent to each backend, by its `BACKENDS` slot, per CPU (as
/// `BACKENDS`, an array, because every forwarded packet counts here). The agent zeroes a
/// slot's counters before it gives the slot to a new backend.
#[map(name = "BACKEND_STATS")]
pub static BACKEND_STATS: PerCpuArray<FlowCounter> = PerCpuArray::with_max_entries(16385, 0);

/// Flows balanced for each service address, per CPU (packets and bytes are not counted
/// per service: a conntrack hit knows only its backend).
#[map(name = "SERVICE_STATS")]
pub static SERVICE_STATS: LruPerCpuHashMap<ServiceKey, FlowCounter> =
    LruPerCpuHashMap::with_max_entries(4096, 0);

/// Adds a flow (`flows` 0 or 1) and a packet of `len` bytes (none when 0) to backend `id`'s
/// counters, and the flow to `service`'s (when known), on this CPU.
#[inline(always)]
pub fn count_flow(service: Option<&ServiceKey>, id: u32, flows: u64, len: usize) {
    add_flow(BACKEND_STATS.get_ptr_mut(backend_index(id)), flows, len);
    if let Some(service) = service {
        add_flow(slot(&SERVICE_STATS, service), flows, 0);
    }
}

#[inline(always)]
fn add_flow(counter: Option<*mut FlowCounter>, flows: u64, len: usize) {
    let Some(counter) = counter else {
        return;
    };
    // SAFETY: the pointer comes from a per-CPU map for this CPU's slot, so it is valid and
    // nothing else writes it while this program runs on this CPU.
    unsafe {
        (*counter).flows += flows;
        (*counter).packets += u64::from(len > 0);
        (*counter).bytes += len as u64;
    }
}

/// This CPU's value for `key` in a per-CPU counter map, inserted zeroed when the key is
/// new; `None` when it could not be inserted.
#[inline(always)]
pub fn slot<K, V: Default>(map: &LruPerCpuHashMap<K, V>, key: &K) -> Option<*mut V> {
    if let Some(value) = map.get_ptr_mut(key) {
        return Some(value);
    }
    // Another CPU may insert the same key at once; either insert wins, and the lookup
    // below finds this CPU's (zeroed) slot.
    let _ = map.insert(key, V::default(), BPF_NOEXIST.into());
    map.get_ptr_mut(key)
}

/// Load-balancing events per CPU (`LbEvent` is the index).
#[map(name = "LB_STATS")]
pub static LB_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(LbEvent::COUNT, 0);

/// Adds one frame of `len` bytes to `class`'s counter on this CPU.
#[inline(always)]
pub fn count(class: PacketClass, len: usize) {
    if let Some(counter) = UPLINK_STATS.get_ptr_mut(class as u32) {
        // SAFETY: the pointer comes from the map for this CPU's slot, so it is valid and
        // nothing else writes it while this program runs on this CPU.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len as u64;
        }
    }
}

/// Counts one load-balancing event on this CPU.
#[inline(always)]
pub fn count_lb(event: LbEvent) {
    if let Some(counter) = LB_STATS.get_ptr_mut(event as u32) {
        // SAFETY: as in `count`: this CPU's slot, written only by this CPU.
        unsafe { *counter += 1 };
    }
}
