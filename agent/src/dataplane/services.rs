//! Service map sync: the desired load-balancing state (from Services and EndpointSlices) is
//! compared with what the maps hold, and only the difference is written.
//!
//! Order of writes for one service: new backends, then a new Maglev table in a free slot,
//! then the service entry pointing at it, and only after every service is done are unused
//! backends removed; so a program never sees a half-updated service.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use skiff_ebpf_common::{
    Backend, ServiceKey, ServiceValue,
    service::{BACKEND_LOCAL, BACKEND_TERMINATING, PROTO_TCP},
};

use super::{
    backend_ids::BackendIds,
    lb_maps::{LbMaps, LbMapsError},
    loader::BACKENDS,
    maglev::{Maglev, MaglevError},
};

/// `ServiceValue::maglev_slot` of a service without a table (no backend for new flows).
pub const NO_SLOT: u32 = u32::MAX;

/// Errors from applying the desired state to the maps.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("service {service}")]
    Map {
        service: String,
        #[source]
        source: Box<LbMapsError>,
    },
    #[error("service {service}")]
    Maglev {
        service: String,
        #[source]
        source: MaglevError,
    },
    #[error(
        "service {service}: all {slots} Maglev tables are in use; raise \
         --dataplane-maglev-tables (each service needs one, plus one while it changes)"
    )]
    NoFreeTable { service: String, slots: u32 },
    #[error("adopting the pinned maps")]
    Adopt(#[source] LbMapsError),
}

impl SyncError {
    /// True when the error comes from a full map or table pool (counted for metrics).
    pub fn is_full(&self) -> bool {
        match self {
            SyncError::Map { source, .. } => matches!(**source, LbMapsError::Full { .. }),
            SyncError::NoFreeTable { .. } => true,
            _ => false,
        }
    }
}

/// What one service address should balance over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredService {
    /// Every backend, terminating ones included (they keep existing flows).
    pub backends: Vec<Backend>,
    /// `SERVICE_*` bits.
    pub flags: u32,
    /// ClientIP affinity timeout in seconds.
    pub affinity_timeout_secs: u32,
}

/// The identity of a backend (its flags may change in place).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct BackendAddr {
    addr: u32,
    port: u16,
    proto: u8,
}

impl From<&Backend> for BackendAddr {
    fn from(b: &Backend) -> Self {
        Self {
            addr: b.addr,
            port: b.port,
            proto: b.proto,
        }
    }
}

impl BackendAddr {
    /// The name Maglev hashes: the same on every node.
    fn name(&self) -> String {
        let [a, b, c, d] = self.addr.to_ne_bytes();
        let proto = if self.proto == PROTO_TCP {
            "tcp"
        } else {
            "udp"
        };
        format!("{a}.{b}.{c}.{d}:{}/{proto}", u16::from_be(self.port))
    }
}

#[derive(Clone, Debug)]
struct AppliedService {
    value: ServiceValue,
    /// Backend ids the service references (terminating ones included), sorted; `None` for
    /// a service adopted from pinned maps, whose table is rebuilt on the first apply.
    backend_ids: Option<Vec<u32>>,
    /// The ids in its Maglev table (not terminating), sorted; `None` when adopted.
    table_ids: Option<Vec<u32>>,
}

/// What one [`ServiceSync::apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Service entries written or removed.
    pub services_changed: usize,
    /// Services left as they were.
    pub services_unchanged: usize,
    /// Backends added, updated or removed.
    pub backends_changed: usize,
}

/// The load-balancing state the maps hold, and how to move it to a desired state.
#[derive(Debug)]
pub struct ServiceSync {
    maglev: Maglev,
    slots: u32,
    services: BTreeMap<ServiceKey, AppliedService>,
    /// The backends the map holds, by address (each with its id).
    backends: HashMap<BackendAddr, Backend>,
    backend_ids: BackendIds,
    used_slots: BTreeSet<u32>,
    next_service_id: u32,
    map_full_errors: u64,
}

impl ServiceSync {
    /// Starts from what the maps hold now (empty, or pinned by a previous agent).
    ///
    /// # Errors
    /// When the maps cannot be read.
    pub fn adopt(maps: &impl LbMaps, maglev: Maglev) -> Result<Self, SyncError> {
        let slots = maps.backend_slots().map_err(SyncError::Adopt)?;
        let mut sync = Self {
            maglev,
            slots: maps.table_slots(),
            services: BTreeMap::new(),
            backends: HashMap::new(),
            backend_ids: BackendIds::adopt(&slots),
            used_slots: BTreeSet::new(),
            next_service_id: 1,
            map_full_errors: 0,
        };
        for backend in slots.into_iter().filter(|b| !b.is_free()) {
            sync.backends.insert(BackendAddr::from(&backend), backend);
        }
        for (key, value) in maps.services().map_err(SyncError::Adopt)? {
            if value.maglev_slot != NO_SLOT {
                sync.used_slots.insert(value.maglev_slot);
            }
            sync.next_service_id = sync.next_service_id.max(value.service_id + 1);
            sync.services.insert(
                key,
                AppliedService {
                    value,
                    backend_ids: None,
                    table_ids: None,
                },
            );
        }
        Ok(sync)
    }

    /// How many writes failed because a map or the table pool was full, ever.
    pub fn map_full_errors(&self) -> u64 {
        self.map_full_errors
    }

    /// Service addresses the maps hold.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Writes the difference between the maps and `desired`. A service that fails is left
    /// as it was (still consistent) and reported; the others are applied.
    pub fn apply(
        &mut self,
        maps: &mut impl LbMaps,
        desired: &BTreeMap<ServiceKey, DesiredService>,
    ) -> (ApplyReport, Vec<SyncError>) {
        let mut report = ApplyReport::default();
        let mut errors = Vec::new();
        let shared_flags = shared_backend_flags(desired);
        for (key, service) in desired {
            match self.apply_service(maps, key, service, &shared_flags) {
                Ok(true) => report.services_changed += 1,
                Ok(false) => report.services_unchanged += 1,
                Err(error) => errors.push(error),
            }
        }
        let stale: Vec<ServiceKey> = self
            .services
            .keys()
            .filter(|key| !desired.contains_key(key))
            .copied()
            .collect();
        for key in stale {
            match maps.remove_service(&key) {
                Ok(()) => {
                    if let Some(old) = self.services.remove(&key) {
                        self.used_slots.remove(&old.value.maglev_slot);
                    }
                    report.services_changed += 1;
                }
                Err(source) => errors.push(SyncError::Map {
                    service: describe(&key),
                    source: Box::new(source),
                }),
            }
        }
        // Backends go last, once no service entry (and so no table in use) names them.
        let referenced: BTreeSet<u32> = self
            .services
            .values()
            .flat_map(|s| s.backend_ids.iter().flatten().copied())
            .collect();
        let adopted_unknown = self.services.values().any(|s| s.backend_ids.is_none());
        if !adopted_unknown {
            let unused: Vec<BackendAddr> = self
                .backends
                .iter()
                .filter(|(_, backend)| !referenced.contains(&backend.id))
                .map(|(addr, _)| *addr)
                .collect();
            for addr in unused {
                let id = self.backends[&addr].id;
                match maps.remove_backend(id) {
                    Ok(()) => {
                        self.backends.remove(&addr);
                        self.backend_ids.release(id);
                        report.backends_changed += 1;
                    }
                    Err(source) => errors.push(SyncError::Map {
                        service: addr.name(),
                        source: Box::new(source),
                    }),
                }
            }
        }
        self.map_full_errors += errors.iter().filter(|e| e.is_full()).count() as u64;
        (report, errors)
    }

    /// A free backend slot's next id.
    fn new_backend_id(&mut self) -> Result<u32, LbMapsError> {
        self.backend_ids.allocate().ok_or(LbMapsError::Full {
            map: BACKENDS,
            capacity: self.backend_ids.capacity(),
            flag: "max-backends",
        })
    }

    /// Brings one service up to date; `Ok(false)` when nothing had to be written.
    fn apply_service(
        &mut self,
        maps: &mut impl LbMaps,
        key: &ServiceKey,
        desired: &DesiredService,
        shared_flags: &HashMap<BackendAddr, u32>,
    ) -> Result<bool, SyncError> {
        let map_err = |source| SyncError::Map {
            service: describe(key),
            source: Box::new(source),
        };
        // 1. Backends, new or with new flags.
        let mut ids = Vec::with_capacity(desired.backends.len());
        let mut active: Vec<(BackendAddr, u32)> = Vec::new();
        for wanted in &desired.backends {
            let addr = BackendAddr::from(wanted);
            let flags = shared_flags.get(&addr).copied().unwrap_or(wanted.flags);
            let id = match self.backends.get(&addr) {
                Some(current) if current.flags == flags => current.id,
                Some(current) => {
                    let backend = Backend { flags, ..*current };
                    maps.put_backend(&backend).map_err(map_err)?;
                    self.backends.insert(addr, backend);
                    backend.id
                }
                None => {
                    let backend = Backend {
                        id: self.new_backend_id().map_err(map_err)?,
                        flags,
                        ..*wanted
                    };
                    let written = maps
                        .clear_backend_counters(backend.id)
                        .and_then(|()| maps.put_backend(&backend));
                    if let Err(error) = written {
                        self.backend_ids.release(backend.id);
                        return Err(map_err(error));
                    }
                    self.backends.insert(addr, backend);
                    backend.id
                }
            };
            ids.push(id);
            // Table membership follows this service's view of the endpoint.
            if wanted.flags & BACKEND_TERMINATING == 0 {
                active.push((addr, id));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        active.sort_unstable();
        active.dedup();

        let current = self.services.get(key);
        let service_id = current.map_or(self.next_service_id, |c| c.value.service_id);
        let mut value = ServiceValue {
            service_id,
            maglev_slot: current.map_or(NO_SLOT, |c| c.value.maglev_slot),
            backend_count: active.len() as u32,
            flags: desired.flags,
            affinity_timeout_secs: desired.affinity_timeout_secs,
            pad: 0,
        };
        let mut active_ids: Vec<u32> = active.iter().map(|(_, id)| *id).collect();
        active_ids.sort_unstable();
        let table_changed = current.and_then(|c| c.table_ids.as_ref()) != Some(&active_ids);
        if !table_changed
            && current.is_some_and(|c| c.value == value && c.backend_ids.as_ref() == Some(&ids))
        {
            return Ok(false);
        }

        // 2. A new table in a free slot (a live one is never rewritten in place).
        let old_slot = value.maglev_slot;
        if table_changed {
            if active.is_empty() {
                value.maglev_slot = NO_SLOT;
            } else {
                let names: Vec<String> = active.iter().map(|(addr, _)| addr.name()).collect();
                let table = self
                    .maglev
                    .table(&names)
                    .map_err(|source| SyncError::Maglev {
                        service: describe(key),
                        source,
                    })?;
                let table: Vec<u32> = table.iter().map(|&i| active[i as usize].1).collect();
                let slot = (0..self.slots)
                    .find(|s| !self.used_slots.contains(s))
                    .ok_or_else(|| SyncError::NoFreeTable {
                        service: describe(key),
                        slots: self.slots,
                    })?;
                maps.put_table(slot, &table).map_err(map_err)?;
                self.used_slots.insert(slot);
                value.maglev_slot = slot;
            }
        }

        // 3. The service entry, switching to the new table in one write.
        if let Err(source) = maps.put_service(key, &value) {
            if value.maglev_slot != old_slot {
                self.used_slots.remove(&value.maglev_slot);
            }
            return Err(map_err(source));
        }
        if old_slot != value.maglev_slot && old_slot != NO_SLOT {
            self.used_slots.remove(&old_slot);
        }
        if current.is_none() {
            self.next_service_id += 1;
        }
        self.services.insert(
            *key,
            AppliedService {
                value,
                backend_ids: Some(ids),
                table_ids: Some(active_ids),
            },
        );
        Ok(true)
    }
}

/// How long changes are collected before one apply: a rollout's burst of EndpointSlice
/// updates becomes one pass over the maps.
pub const SYNC_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(50);

/// Watches Services and EndpointSlices through `client` and keeps `maps` in sync until
/// `shutdown` resolves. Level-triggered: every pass recomputes the desired state from the
/// informer caches and applies the difference; failures are logged and retried on the next
/// change, and at least every `resync`.
pub async fn run(
    client: skiff_api::client::Client,
    node: super::desired::NodeView,
    mut maps: impl LbMaps,
    mut sync: ServiceSync,
    resync: std::time::Duration,
    shutdown: impl Future<Output = ()>,
) {
    use skiff_api::{
        k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice},
        runtime::{Config, Informer},
    };
    let services = Informer::<Service>::new(client.clone(), "services", "", Config::default());
    let slices = Informer::<EndpointSlice>::new(client, "endpointslices", "", Config::default());
    let (mut service_changes, mut slice_changes) = (services.subscribe(), slices.subscribe());
    let (service_store, slice_store) = (services.store(), slices.store());
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => return,
        _ = async { service_store.wait_until_ready().await; slice_store.wait_until_ready().await } => {}
    }
    let mut tick = tokio::time::interval(resync);
    loop {
        let desired =
            super::desired::desired_services(&node, &service_store.list(), &slice_store.list());
        let (report, errors) = sync.apply(&mut maps, &desired);
        if report.services_changed + report.backends_changed > 0 {
            tracing::info!(
                services = desired.len(),
                changed = report.services_changed,
                backends_changed = report.backends_changed,
                "service maps synced"
            );
        }
        for error in &errors {
            tracing::warn!(error = %crate::error_chain(error), full_total = sync.map_full_errors(), "service map sync");
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
            changed = service_changes.recv() => if changed.is_none() { return },
            changed = slice_changes.recv() => if changed.is_none() { return },
        }
        tokio::time::sleep(SYNC_DEBOUNCE).await;
    }
}

/// One backend entry serves every service that names the address, so its flags must not
/// flip between services' views while slices catch up: node-local if any says so,
/// terminating only once all say so (until then it is still chosen by some service).
fn shared_backend_flags(
    desired: &BTreeMap<ServiceKey, DesiredService>,
) -> HashMap<BackendAddr, u32> {
    let mut flags: HashMap<BackendAddr, u32> = HashMap::new();
    for backend in desired.values().flat_map(|s| &s.backends) {
        flags
            .entry(BackendAddr::from(backend))
            .and_modify(|f| {
                let local = (*f | backend.flags) & BACKEND_LOCAL;
                let terminating = *f & backend.flags & BACKEND_TERMINATING;
                *f = local | terminating;
            })
            .or_insert(backend.flags);
    }
    flags
}

/// `10.244.1.3:8080/tcp`, for messages and metric labels.
pub fn describe_backend(backend: &Backend) -> String {
    BackendAddr::from(backend).name()
}

/// `10.96.0.10:53/udp`, for messages.
pub fn describe(key: &ServiceKey) -> String {
    BackendAddr {
        addr: key.addr,
        port: key.port,
        proto: key.proto,
    }
    .name()
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_ebpf_common::service::{PROTO_UDP, SERVICE_AFFINITY, backend_index};

    /// An in-memory stand-in for the kernel maps that records every write in order.
    #[derive(Debug, Default)]
    struct Recorder {
        services: BTreeMap<ServiceKey, ServiceValue>,
        /// The backend array: slot 0 and free slots included.
        backends: Vec<Backend>,
        tables: BTreeMap<u32, Vec<u32>>,
        log: Vec<String>,
        slots: u32,
    }

    impl Recorder {
        fn new() -> Self {
            Self::with_backends(1000)
        }

        fn with_backends(capacity: usize) -> Self {
            Self {
                backends: vec![Backend::default(); capacity + 1],
                slots: 8,
                ..Self::default()
            }
        }

        /// The live backend with id `id`, as a program's lookup finds it.
        fn backend(&self, id: u32) -> Option<&Backend> {
            let slot = self.backends.get(backend_index(id) as usize)?;
            (slot.id == id && !slot.is_free()).then_some(slot)
        }

        fn live_backends(&self) -> usize {
            self.backends.iter().filter(|b| !b.is_free()).count()
        }

        /// Every service whose entry points at a table whose ids all exist, and whose
        /// count matches: what a program could see at any moment.
        fn consistent(&self) -> Result<(), String> {
            for (key, value) in &self.services {
                if value.backend_count == 0 {
                    continue;
                }
                let table = self
                    .tables
                    .get(&value.maglev_slot)
                    .ok_or(format!("{} points at no table", describe(key)))?;
                for id in table {
                    if self.backend(*id).is_none() {
                        return Err(format!(
                            "{} table names missing backend {id}",
                            describe(key)
                        ));
                    }
                }
            }
            Ok(())
        }
    }

    impl LbMaps for Recorder {
        fn put_backend(&mut self, backend: &Backend) -> Result<(), LbMapsError> {
            let id = backend.id;
            let slot = &mut self.backends[backend_index(id) as usize];
            assert!(
                slot.is_free() || slot.id == id,
                "backend {id:#x} written over live backend {:#x}",
                slot.id
            );
            *slot = *backend;
            self.log.push(format!("backend+ {}", backend_index(id)));
            self.consistent().unwrap();
            Ok(())
        }
        fn remove_backend(&mut self, id: u32) -> Result<(), LbMapsError> {
            self.backends[backend_index(id) as usize] = Backend::freed(id);
            self.log.push(format!("backend- {}", backend_index(id)));
            self.consistent()
                .map_err(|e| panic!("after removing {id}: {e}"))
        }
        fn clear_backend_counters(&mut self, id: u32) -> Result<(), LbMapsError> {
            self.log.push(format!("counters0 {}", backend_index(id)));
            Ok(())
        }
        fn put_table(&mut self, slot: u32, table: &[u32]) -> Result<(), LbMapsError> {
            assert!(
                !self.services.values().any(|v| v.maglev_slot == slot),
                "slot {slot} rewritten while a service uses it"
            );
            self.tables.insert(slot, table.to_vec());
            self.log.push(format!("table {slot}"));
            Ok(())
        }
        fn put_service(
            &mut self,
            key: &ServiceKey,
            value: &ServiceValue,
        ) -> Result<(), LbMapsError> {
            self.services.insert(*key, *value);
            self.log.push(format!("service+ {}", describe(key)));
            self.consistent().map_err(|e| panic!("{e}"))
        }
        fn remove_service(&mut self, key: &ServiceKey) -> Result<(), LbMapsError> {
            self.services.remove(key);
            self.log.push(format!("service- {}", describe(key)));
            Ok(())
        }
        fn services(&self) -> Result<Vec<(ServiceKey, ServiceValue)>, LbMapsError> {
            Ok(self.services.iter().map(|(k, v)| (*k, *v)).collect())
        }
        fn backend_slots(&self) -> Result<Vec<Backend>, LbMapsError> {
            Ok(self.backends.clone())
        }
        fn table_slots(&self) -> u32 {
            self.slots
        }
    }

    fn svc(last: u8, port: u16) -> ServiceKey {
        ServiceKey::new([10, 96, 0, last], port, PROTO_TCP)
    }

    fn backends(n: u8) -> Vec<Backend> {
        (1..=n)
            .map(|i| Backend::new([10, 244, 0, i], 8080, PROTO_TCP, 0))
            .collect()
    }

    fn desired(entries: &[(ServiceKey, Vec<Backend>)]) -> BTreeMap<ServiceKey, DesiredService> {
        entries
            .iter()
            .map(|(k, b)| {
                (
                    *k,
                    DesiredService {
                        backends: b.clone(),
                        ..DesiredService::default()
                    },
                )
            })
            .collect()
    }

    fn sync(maps: &Recorder) -> ServiceSync {
        ServiceSync::adopt(maps, Maglev::new(251, 1).unwrap()).unwrap()
    }

    #[test]
    fn a_new_service_writes_backends_then_its_table_then_its_entry() {
        let mut maps = Recorder::new();
        let mut state = sync(&maps);
        let (report, errors) = state.apply(&mut maps, &desired(&[(svc(1, 80), backends(2))]));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(report.services_changed, 1);
        assert_eq!(
            maps.log,
            [
                "counters0 1",
                "backend+ 1",
                "counters0 2",
                "backend+ 2",
                "table 0",
                "service+ 10.96.0.1:80/tcp"
            ]
        );
        assert_eq!(maps.services[&svc(1, 80)].backend_count, 2);
        let table = &maps.tables[&0];
        assert_eq!(table.len(), 251);
        assert!(table.iter().all(|id| maps.backend(*id).is_some()));
        let slots: BTreeSet<u32> = table.iter().map(|id| backend_index(*id)).collect();
        assert_eq!(slots, BTreeSet::from([1, 2]));
    }

    #[test]
    fn applying_the_same_state_again_writes_nothing() {
        let mut maps = Recorder::new();
        let mut state = sync(&maps);
        let want = desired(&[(svc(1, 80), backends(3)), (svc(2, 53), backends(1))]);
        state.apply(&mut maps, &want);
        let writes = maps.log.len();
        let (report, errors) = state.apply(&mut maps, &want);
        assert!(errors.is_empty());
        assert_eq!(report.services_unchanged, 2);
        assert_eq!(maps.log.len(), writes, "{:?}", &maps.log[writes..]);
    }

    #[test]
    fn changing_backends_switches_to_a_new_table_and_removes_the_old_backend_last() {
        let mut maps = Recorder::new();
        let mut state = sync(&maps);
        state.apply(&mut maps, &desired(&[(svc(1, 80), backends(3))]));
        maps.log.clear();
        let fewer = backends(3)[1..].to_vec();
        state.apply(&mut maps, &desired(&[(svc(1, 80), fewer)]));
        assert_eq!(
            maps.log,
            ["table 1", "service+ 10.96.0.1:80/tcp", "backend- 1"],
            "new table in a free slot, then the entry, then the unused backend"
        );
        assert_eq!(maps.services[&svc(1, 80)].maglev_slot, 1);
        assert_eq!(maps.services[&svc(1, 80)].backend_count, 2);
    }

    #[test]
    fn a_removed_service_frees_its_table_slot_and_backends() {
        let mut maps = Recorder::new();
        let mut state = sync(&maps);
        state.apply(
            &mut maps,
            &desired(&[(svc(1, 80), backends(1)), (svc(2, 80), backends(2))]),
        );
        maps.log.clear();
        state.apply(&mut maps, &desired(&[(svc(2, 80), backends(2))]));
        assert_eq!(
            maps.log,
            ["service- 10.96.0.1:80/tcp"],
            "backend 1 is still used"
        );
        state.apply(&mut maps, &desired(&[]));
        assert!(maps.services.is_empty());
        assert_eq!(maps.live_backends(), 0);
        assert_eq!(state.service_count(), 0);
        // Both slots are free again: two new services take slots 0 and 1.
        state.apply(
            &mut maps,
            &desired(&[(svc(3, 80), backends(1)), (svc(4, 80), backends(1))]),
        );
        let slots: BTreeSet<u32> = maps.services.values().map(|v| v.maglev_slot).collect();
        assert_eq!(slots, BTreeSet::from([0, 1]));
    }

    #[test]
    fn a_service_without_ready_backends_keeps_an_entry_with_no_table_so_connections_are_refused() {
        let mut maps = Recorder::new();
        let mut state = sync(&maps);
        let mut terminating = backends(1);
        terminating[0].flags = BACKEND_TERMINATING;
        state.apply(&mut maps, &desired(&[(svc(1, 80), terminating)]));
        let value = maps.services[&svc(1, 80)];
        assert_eq!(value.backend_count, 0);
        assert_eq!(value.maglev_slot, NO_SLOT);
        assert_eq!(maps.live_backends(), 1, "kept for existing flows");
    }

    #[test]
    fn a_full_backend_map_is_a_clear_counted_error_and_leaves_other_services_applied() {
        let mut maps = Recorder::with_backends(2);
        let mut state = sync(&maps);
        let other = vec![Backend::new([10, 244, 1, 1], 53, PROTO_UDP, 0)];
        let (_, errors) = state.apply(
            &mut maps,
            &desired(&[
                (svc(1, 80), backends(3)),
                (ServiceKey::new([10, 96, 0, 2], 53, PROTO_UDP), other),
            ]),
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        let message = format!("{}: {}", errors[0], errors[0].source_text());
        assert!(message.contains("10.96.0.1:80/tcp"), "{message}");
        assert!(message.contains("--dataplane-max-backends"), "{message}");
        assert_eq!(state.map_full_errors(), 2);
        assert!(maps.services.is_empty(), "no half-made service entry");
    }

    #[test]
    fn flags_only_change_rewrites_the_entry_but_not_the_table() {
        let mut maps = Recorder::new();
        let mut state = sync(&maps);
        state.apply(&mut maps, &desired(&[(svc(1, 80), backends(2))]));
        maps.log.clear();
        let mut want = desired(&[(svc(1, 80), backends(2))]);
        want.get_mut(&svc(1, 80)).unwrap().flags = SERVICE_AFFINITY;
        want.get_mut(&svc(1, 80)).unwrap().affinity_timeout_secs = 10800;
        state.apply(&mut maps, &want);
        assert_eq!(maps.log, ["service+ 10.96.0.1:80/tcp"]);
        assert_eq!(maps.services[&svc(1, 80)].maglev_slot, 0);
    }

    #[test]
    fn a_restarted_agent_adopts_pinned_entries_and_rebuilds_them_without_a_gap() {
        let mut maps = Recorder::new();
        let mut first = sync(&maps);
        first.apply(
            &mut maps,
            &desired(&[(svc(1, 80), backends(2)), (svc(2, 80), backends(1))]),
        );
        let id_before = maps.services[&svc(1, 80)].service_id;
        maps.log.clear();
        // A new agent: svc 2 is gone meanwhile, svc 1 is unchanged.
        let mut second = sync(&maps);
        assert_eq!(second.service_count(), 2);
        let (_, errors) = second.apply(&mut maps, &desired(&[(svc(1, 80), backends(2))]));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            maps.services[&svc(1, 80)].service_id,
            id_before,
            "affinity survives"
        );
        assert_eq!(maps.services.len(), 1);
        assert_eq!(maps.live_backends(), 2);
        assert!(
            maps.log.iter().all(|l| !l.starts_with("backend+")),
            "{:?}",
            maps.log
        );
    }

    #[test]
    fn a_reused_backend_slot_gets_a_new_id_and_zeroed_counters_before_its_backend() {
        let mut maps = Recorder::with_backends(1);
        let mut state = sync(&maps);
        state.apply(&mut maps, &desired(&[(svc(1, 80), backends(1))]));
        let old = maps.backends[1].id;
        state.apply(&mut maps, &desired(&[(svc(1, 80), Vec::new())]));
        assert!(maps.backends[1].is_free());
        maps.log.clear();
        let other = vec![Backend::new([10, 244, 7, 7], 8080, PROTO_TCP, 0)];
        let (_, errors) = state.apply(&mut maps, &desired(&[(svc(2, 80), other)]));
        assert!(errors.is_empty(), "{errors:?}");
        let new = maps.backends[1].id;
        assert_ne!(
            new, old,
            "an entry naming {old:#x} must not find the new backend"
        );
        assert!(maps.backend(old).is_none());
        assert_eq!(&maps.log[..2], ["counters0 1", "backend+ 1"]);
    }

    /// Desired states over a small universe: 4 service addresses, 6 backends, some of them
    /// terminating.
    fn desired_strategy()
    -> impl proptest::strategy::Strategy<Value = BTreeMap<ServiceKey, DesiredService>> {
        use proptest::prelude::*;
        prop::collection::btree_map(
            0u8..4,
            prop::collection::vec((1u8..=6, any::<bool>()), 0..5),
            0..4,
        )
        .prop_map(|services| {
            services
                .into_iter()
                .map(|(last, backends)| {
                    let backends = backends
                        .into_iter()
                        .map(|(i, terminating)| {
                            let flags = if terminating { BACKEND_TERMINATING } else { 0 };
                            (i, Backend::new([10, 244, 0, i], 8080, PROTO_TCP, flags))
                        })
                        .collect::<BTreeMap<_, _>>()
                        .into_values()
                        .collect();
                    (
                        svc(last, 80),
                        DesiredService {
                            backends,
                            ..DesiredService::default()
                        },
                    )
                })
                .collect()
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the sequence of states, every write leaves the maps consistent (the
        /// recorder checks after each one), the maps end up holding exactly the desired
        /// services with their ready backends, and a repeated apply writes nothing.
        #[test]
        fn any_sequence_of_states_converges_with_every_intermediate_write_consistent(
            states in proptest::collection::vec(desired_strategy(), 1..6),
        ) {
            let mut maps = Recorder::new();
            let mut state = sync(&maps);
            for want in &states {
                let (_, errors) = state.apply(&mut maps, want);
                proptest::prop_assert!(errors.is_empty(), "{errors:?}");
                let keys: Vec<_> = maps.services.keys().copied().collect();
                let wanted: Vec<_> = want.keys().copied().collect();
                proptest::prop_assert_eq!(keys, wanted);
                for (key, service) in want {
                    let ready: BTreeSet<u32> = service
                        .backends
                        .iter()
                        .filter(|b| b.flags & BACKEND_TERMINATING == 0)
                        .map(|b| b.addr)
                        .collect();
                    let value = maps.services[key];
                    proptest::prop_assert_eq!(value.backend_count as usize, ready.len());
                    if !ready.is_empty() {
                        let in_table: BTreeSet<u32> = maps.tables[&value.maglev_slot]
                            .iter()
                            .map(|id| maps.backend(*id).unwrap().addr)
                            .collect();
                        proptest::prop_assert_eq!(in_table, ready);
                    }
                }
                let writes = maps.log.len();
                state.apply(&mut maps, want);
                proptest::prop_assert_eq!(maps.log.len(), writes, "a repeat writes nothing");
            }
        }
    }

    trait SourceText {
        fn source_text(&self) -> String;
    }

    impl SourceText for SyncError {
        fn source_text(&self) -> String {
            std::error::Error::source(self)
                .map(ToString::to_string)
                .unwrap_or_default()
        }
    }
}
