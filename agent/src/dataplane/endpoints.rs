//! This node's pods in the data plane (`LOCAL_ENDPOINTS`): pod address -> the host side of
//! its veth and both ends' MACs. With an entry, the uplink's TC program hands a packet it
//! translated to the pod straight into the pod's interface (`bpf_redirect_peer`), as
//! Cilium's endpoint map does, instead of through the node's routing, neighbour and veth
//! queueing path; without one (a pod not registered yet, or the XDP hook) the node's stack
//! forwards it as before, so an entry is only ever a shortcut.
//!
//! The map is rebuilt from the node's own wiring (`run`): every /32 route out of a pod's
//! host-side veth, at start (a restarted agent corrects what changed while it was down),
//! whenever the pod worker wires or removes a veth, and periodically as a safety net.

use std::{collections::BTreeMap, net::Ipv4Addr, path::Path, sync::Arc, time::Duration};

use aya::maps::{HashMap, MapData, MapError};
use skiff_ebpf_common::LocalEndpoint;
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::network::veth::{self, PodVeth};

use super::{
    Dataplane, DataplaneError,
    lb_maps::{is_full, max_entries},
    loader::{LOCAL_ENDPOINTS, open_pinned},
};

/// The `LOCAL_ENDPOINTS` map.
#[derive(Debug)]
pub struct LocalEndpoints {
    map: HashMap<MapData, u32, LocalEndpoint>,
    capacity: u32,
}

impl LocalEndpoints {
    /// Takes the map out of a loaded data plane.
    ///
    /// # Errors
    /// When the object has no such map or it was already taken.
    pub fn take(dataplane: &mut Dataplane) -> Result<Self, DataplaneError> {
        let map = dataplane.take_map(LOCAL_ENDPOINTS)?;
        let capacity = max_entries(&map);
        let map = HashMap::try_from(map).map_err(wrong)?;
        Ok(Self { map, capacity })
    }

    /// Opens the map a node's agent pinned under `pin_path`.
    ///
    /// # Errors
    /// When it is not pinned there (no data plane loaded) or has another type.
    pub fn open(pin_path: &Path) -> Result<Self, DataplaneError> {
        let (map, capacity) = open_pinned(pin_path, LOCAL_ENDPOINTS).map_err(wrong)?;
        Ok(Self { map, capacity })
    }

    /// Registers (or replaces) the pod at `pod`.
    ///
    /// # Errors
    /// [`DataplaneError::LocalPodsFull`] when the node has more pods than the map holds
    /// (naming the flag to raise), else when the kernel refuses the write.
    pub fn insert(&mut self, pod: Ipv4Addr, endpoint: LocalEndpoint) -> Result<(), DataplaneError> {
        self.map.insert(key(pod), endpoint, 0).map_err(|source| {
            if is_full(&source) {
                DataplaneError::LocalPodsFull {
                    capacity: self.capacity,
                }
            } else {
                wrong(source)
            }
        })
    }

    /// Forgets the pod at `pod`; forgetting one not registered is not an error.
    ///
    /// # Errors
    /// When the kernel refuses the delete for another reason.
    pub fn remove(&mut self, pod: Ipv4Addr) -> Result<(), DataplaneError> {
        match self.map.remove(&key(pod)) {
            Err(MapError::KeyNotFound) | Ok(()) => Ok(()),
            Err(source) => Err(wrong(source)),
        }
    }

    /// Every registered pod.
    pub fn entries(&self) -> BTreeMap<Ipv4Addr, LocalEndpoint> {
        self.map
            .iter()
            .flatten()
            .map(|(addr, endpoint)| (Ipv4Addr::from(addr.to_ne_bytes()), endpoint))
            .collect()
    }

    /// Makes the map hold exactly `wanted`: stale pods go first, so that an address reused
    /// by a new pod never points at the old pod's veth.
    ///
    /// # Errors
    /// The first write the kernel refused; the others are still attempted.
    pub fn reconcile(
        &mut self,
        wanted: &BTreeMap<Ipv4Addr, LocalEndpoint>,
    ) -> Result<(), DataplaneError> {
        let mut first_error = None;
        for (addr, endpoint) in self.entries() {
            if wanted.get(&addr) != Some(&endpoint)
                && let Err(error) = self.remove(addr)
            {
                first_error.get_or_insert(error);
            }
        }
        for (&addr, &endpoint) in wanted {
            if let Err(error) = self.insert(addr, endpoint) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn key(pod: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(pod.octets())
}

fn wrong(source: MapError) -> DataplaneError {
    DataplaneError::Map {
        name: LOCAL_ENDPOINTS,
        source,
    }
}

/// The entry for a pod wired as `veth`.
pub fn endpoint(veth: &PodVeth) -> LocalEndpoint {
    LocalEndpoint {
        ifindex: veth.host_index,
        mac: veth.pod_mac,
        node_mac: veth.host_mac,
    }
}

/// Keeps `map` equal to the pods wired on this node: at once, whenever `changed` is
/// notified (the pod worker made or removed a veth), and every `interval`; until `stop`.
/// A failed pass is logged and retried at the next; meanwhile the stack forwards.
pub async fn run(
    mut map: LocalEndpoints,
    changed: Arc<Notify>,
    interval: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(interval);
    loop {
        let wanted = veth::pod_veths()
            .await
            .map(|veths| veths.iter().map(|(ip, v)| (*ip, endpoint(v))).collect());
        match wanted {
            Ok(wanted) => match map.reconcile(&wanted) {
                Ok(()) => debug!(pods = wanted.len(), "local endpoints in step"),
                Err(error) => warn!(
                    error = %crate::error_chain(&error),
                    "writing the local endpoint map; unwritten pods are reached through the stack"
                ),
            },
            Err(error) => warn!(
                error = %crate::error_chain(&error),
                "listing this node's pod veths for the local endpoint map"
            ),
        }
        tokio::select! {
            () = &mut stop => return,
            () = changed.notified() => {}
            _ = tick.tick() => {}
        }
    }
}
