//! The seam between service sync and the kernel: the few writes and reads sync needs on the
//! load-balancing maps, as a trait, with the implementation over the real (pinned) maps.
//!
//! Unit tests replace it with an in-memory recorder to check what is written and in which order.

use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues};
use skiff_ebpf_common::{Backend, FlowCounter, ServiceKey, ServiceValue, service::backend_index};

use super::{
    Dataplane, DataplaneError,
    loader::{BACKEND_STATS, BACKENDS, MAGLEV, SERVICES},
};

/// Errors from the load-balancing maps.
#[derive(Debug, thiserror::Error)]
pub enum LbMapsError {
    #[error(
        "the {map} map is full ({capacity} entries); raise its size in the agent's \
         configuration (--dataplane-{flag})"
    )]
    Full {
        map: &'static str,
        capacity: u32,
        flag: &'static str,
    },
    #[error("writing the {map} map")]
    Write {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("reading the {map} map")]
    Read {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("the {map} map has the wrong type")]
    Type {
        map: &'static str,
        #[source]
        source: MapError,
    },
}

/// What service sync reads and writes. Every call is one atomic map operation.
pub trait LbMaps {
    /// Writes `backend` into its slot (`backend_index(backend.id)`).
    ///
    /// # Errors
    /// When the slot lies past the map's end, or the kernel refuses.
    fn put_backend(&mut self, backend: &Backend) -> Result<(), LbMapsError>;
    /// Frees backend `id`'s slot; the slot keeps the id (see `Backend::freed`).
    ///
    /// # Errors
    /// When the kernel refuses.
    fn remove_backend(&mut self, id: u32) -> Result<(), LbMapsError>;
    /// Zeroes the traffic counters of backend `id`'s slot, before a new backend gets it.
    ///
    /// # Errors
    /// When the kernel refuses.
    fn clear_backend_counters(&mut self, id: u32) -> Result<(), LbMapsError>;
    /// Writes Maglev table `slot` (entries are backend ids).
    ///
    /// # Errors
    /// When the slot lies past the map's end, or the kernel refuses.
    fn put_table(&mut self, slot: u32, table: &[u32]) -> Result<(), LbMapsError>;
    /// Adds or replaces a service entry.
    ///
    /// # Errors
    /// [`LbMapsError::Full`] when the map has no room, [`LbMapsError::Write`] otherwise.
    fn put_service(&mut self, key: &ServiceKey, value: &ServiceValue) -> Result<(), LbMapsError>;
    /// Removes a service entry (absent is fine).
    ///
    /// # Errors
    /// When the kernel refuses.
    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), LbMapsError>;
    /// Every service entry (to adopt what a previous agent left pinned).
    ///
    /// # Errors
    /// When the map cannot be read.
    fn services(&self) -> Result<Vec<(ServiceKey, ServiceValue)>, LbMapsError>;
    /// Every slot of the backend map, slot 0 first, free ones included (to adopt them).
    ///
    /// # Errors
    /// When the map cannot be read.
    fn backend_slots(&self) -> Result<Vec<Backend>, LbMapsError>;
    /// How many Maglev tables fit the map.
    fn table_slots(&self) -> u32;
}

/// The kernel's load-balancing maps, taken out of a loaded [`Dataplane`].
pub struct KernelLbMaps {
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    backends: Array<MapData, Backend>,
    backend_stats: PerCpuArray<MapData, FlowCounter>,
    maglev: Array<MapData, u32>,
    /// Entries the service map holds.
    service_capacity: u32,
    table_size: u32,
}

impl std::fmt::Debug for KernelLbMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelLbMaps")
            .field("service_capacity", &self.service_capacity)
            .field("table_size", &self.table_size)
            .finish_non_exhaustive()
    }
}

impl KernelLbMaps {
    /// Takes the maps out of `dataplane`, whose Maglev tables hold `table_size` entries.
    ///
    /// # Errors
    /// When a map is missing or has another type.
    pub fn take(dataplane: &mut Dataplane, table_size: u32) -> Result<Self, DataplaneError> {
        let services = dataplane.take_map(SERVICES)?;
        let backends = dataplane.take_map(BACKENDS)?;
        let backend_stats = dataplane.take_map(BACKEND_STATS)?;
        let maglev = dataplane.take_map(MAGLEV)?;
        let service_capacity = max_entries(&services);
        let wrong = |name| move |source| DataplaneError::Map { name, source };
        Ok(Self {
            services: HashMap::try_from(services).map_err(wrong(SERVICES))?,
            backends: Array::try_from(backends).map_err(wrong(BACKENDS))?,
            backend_stats: PerCpuArray::try_from(backend_stats).map_err(wrong(BACKEND_STATS))?,
            maglev: Array::try_from(maglev).map_err(wrong(MAGLEV))?,
            service_capacity,
            table_size,
        })
    }
}

pub(super) fn max_entries(map: &Map) -> u32 {
    let data = match map {
        Map::HashMap(data) | Map::Array(data) | Map::LruHashMap(data) => data,
        _ => return 0,
    };
    // 0 (unknown) only ever shows in an error message.
    data.info().map(|info| info.max_entries()).unwrap_or(0)
}

/// E2BIG: what the kernel answers when a hash map has no free element.
pub(super) fn is_full(error: &MapError) -> bool {
    matches!(error, MapError::SyscallError(e) if e.io_error.raw_os_error() == Some(libc::E2BIG))
}

impl LbMaps for KernelLbMaps {
    fn put_backend(&mut self, backend: &Backend) -> Result<(), LbMapsError> {
        self.backends
            .set(backend_index(backend.id), backend, 0)
            .map_err(|source| LbMapsError::Write {
                map: BACKENDS,
                source,
            })
    }

    fn remove_backend(&mut self, id: u32) -> Result<(), LbMapsError> {
        self.put_backend(&Backend::freed(id))
    }

    fn clear_backend_counters(&mut self, id: u32) -> Result<(), LbMapsError> {
        let write = |source| LbMapsError::Write {
            map: BACKEND_STATS,
            source,
        };
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| write(MapError::IoError(e)))?;
        let zeroes = PerCpuValues::try_from(vec![FlowCounter::default(); cpus])
            .map_err(|e| write(MapError::IoError(e)))?;
        self.backend_stats
            .set(backend_index(id), zeroes, 0)
            .map_err(write)
    }

    fn put_table(&mut self, slot: u32, table: &[u32]) -> Result<(), LbMapsError> {
        let base = slot * self.table_size;
        for (i, id) in table.iter().enumerate() {
            self.maglev
                .set(base + i as u32, id, 0)
                .map_err(|source| LbMapsError::Write {
                    map: MAGLEV,
                    source,
                })?;
        }
        Ok(())
    }

    fn put_service(&mut self, key: &ServiceKey, value: &ServiceValue) -> Result<(), LbMapsError> {
        self.services.insert(key, value, 0).map_err(|source| {
            if is_full(&source) {
                LbMapsError::Full {
                    map: SERVICES,
                    capacity: self.service_capacity,
                    flag: "max-services",
                }
            } else {
                LbMapsError::Write {
                    map: SERVICES,
                    source,
                }
            }
        })
    }

    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), LbMapsError> {
        match self.services.remove(key) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(source) => Err(LbMapsError::Write {
                map: SERVICES,
                source,
            }),
        }
    }

    fn services(&self) -> Result<Vec<(ServiceKey, ServiceValue)>, LbMapsError> {
        self.services
            .iter()
            .collect::<Result<_, _>>()
            .map_err(|source| LbMapsError::Read {
                map: SERVICES,
                source,
            })
    }

    fn backend_slots(&self) -> Result<Vec<Backend>, LbMapsError> {
        self.backends
            .iter()
            .collect::<Result<_, _>>()
            .map_err(|source| LbMapsError::Read {
                map: BACKENDS,
                source,
            })
    }

    fn table_slots(&self) -> u32 {
        self.maglev.len() / self.table_size.max(1)
    }
}

fn is_not_found(error: &MapError) -> bool {
    matches!(error, MapError::SyscallError(e) if e.io_error.raw_os_error() == Some(libc::ENOENT))
}
