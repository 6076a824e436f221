//! Service addresses and ports handed out by the API server as it stores Services, as
//! Kubernetes' service registry does: a ClusterIP from the service range, and a NodePort
//! from the node-port range for NodePort and LoadBalancer services, whether picked by the
//! server or asked for by the user.
//!
//! Every allocation is a key in the store (`/ranges/<range>/<offset>`, outside the objects
//! under `/registry/`, holding the owner `namespace/name`) created with create-if-absent, so
//! no value is ever handed out twice, across restarts and across several API servers. A repair pass at start releases
//! what a crash between allocating and storing the Service left behind.

use std::{
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use bytes::Bytes;
use serde_json::Value;
use tracing::info;

use crate::store::{RangeOptions, Store, StoreError};

/// Why a value could not be allocated.
#[derive(Debug, thiserror::Error)]
pub enum AllocationError {
    #[error("provided {what} is already allocated")]
    Taken { what: &'static str },
    #[error("provided {what} is not in the valid range. The range of valid {what}s is {range}")]
    OutOfRange { what: &'static str, range: String },
    #[error("range is full: no free {what} left in {range}")]
    Full { what: &'static str, range: String },
    #[error("storage")]
    Store(#[from] StoreError),
}

/// A range of `size` values, offsets 0..size, each allocated as a store key.
#[derive(Debug)]
pub struct RangeAllocator {
    store: Arc<dyn Store>,
    prefix: String,
    size: u32,
    /// Where the next scan starts, so consecutive allocations do not contend on one key.
    next: AtomicU32,
}

impl RangeAllocator {
    pub fn new(store: Arc<dyn Store>, name: &str, size: u32) -> Self {
        Self {
            store,
            prefix: format!("/ranges/{name}/"),
            size,
            next: AtomicU32::new(0),
        }
    }

    fn key(&self, offset: u32) -> String {
        format!("{}{offset}", self.prefix)
    }

    /// Takes `offset` for `owner`; false when someone holds it.
    pub async fn claim(&self, offset: u32, owner: &str) -> Result<bool, StoreError> {
        match self
            .store
            .create(&self.key(offset), Bytes::from(owner.to_string()), None)
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Takes any free offset for `owner`; `None` when the range is full.
    pub async fn allocate(&self, owner: &str) -> Result<Option<u32>, StoreError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.size;
        for i in 0..self.size {
            let offset = (start + i) % self.size;
            if self.claim(offset, owner).await? {
                self.next.store(offset + 1, Ordering::Relaxed);
                return Ok(Some(offset));
            }
        }
        Ok(None)
    }

    /// Gives `offset` back (no error if it was free).
    pub async fn release(&self, offset: u32) -> Result<(), StoreError> {
        match self.store.delete(&self.key(offset), None).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every allocated offset with its owner.
    pub async fn allocated(&self) -> Result<Vec<(u32, String)>, StoreError> {
        let page = self
            .store
            .range(&self.prefix, RangeOptions::default())
            .await?;
        Ok(page
            .kvs
            .iter()
            .filter_map(|kv| {
                let offset = kv.key.strip_prefix(&self.prefix)?.parse().ok()?;
                Some((offset, String::from_utf8_lossy(&kv.value).into_owned()))
            })
            .collect())
    }
}

/// The ClusterIP and NodePort ranges of a cluster.
#[derive(Debug)]
pub struct ServiceAllocator {
    ips: RangeAllocator,
    ip_base: u32,
    ip_range: String,
    ports: RangeAllocator,
    port_base: u16,
    port_range: String,
}

/// A parsed `a.b.c.d/len` service range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (a.b.c.d/len)"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: {ip:?} is not an IPv4 address"))?;
        let prefix_len: u8 = len
            .parse()
            .ok()
            .filter(|l| (8..=30).contains(l))
            .ok_or_else(|| format!("{s:?}: the prefix length must be 8..=30"))?;
        let mask = u32::MAX << (32 - prefix_len);
        Ok(Self {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix_len,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// Allocations a Service holds, to release them if storing it fails.
#[derive(Debug, Default)]
pub struct Allocated {
    ip: Option<u32>,
    ports: Vec<u32>,
}

impl ServiceAllocator {
    /// `ips`: the service CIDR (its network and broadcast addresses are never handed out);
    /// `ports`: an inclusive node-port range such as 30000-32767.
    pub fn new(store: Arc<dyn Store>, ips: Cidr, ports: (u16, u16)) -> Self {
        let size = (1u32 << (32 - ips.prefix_len)) - 2;
        Self {
            ips: RangeAllocator::new(Arc::clone(&store), "serviceips", size),
            ip_base: u32::from(ips.network) + 1,
            ip_range: ips.to_string(),
            ports: RangeAllocator::new(store, "servicenodeports", u32::from(ports.1 - ports.0) + 1),
            port_base: ports.0,
            port_range: format!("{}-{}", ports.0, ports.1),
        }
    }

    /// Fills in (or claims) the ClusterIP and NodePorts of a Service about to be stored.
    /// `old` is the stored Service on an update (its allocations are kept).
    ///
    /// # Errors
    /// A taken or out-of-range value the user asked for (with its field path), a full range.
    pub async fn allocate(
        &self,
        service: &mut Value,
        old: Option<&Value>,
    ) -> Result<Allocated, (String, AllocationError)> {
        let owner = owner(service);
        let mut done = Allocated::default();
        let result = self.allocate_into(service, old, &owner, &mut done).await;
        if let Err(error) = result {
            self.release_allocated(&done).await;
            return Err(error);
        }
        Ok(done)
    }

    async fn allocate_into(
        &self,
        service: &mut Value,
        old: Option<&Value>,
        owner: &str,
        done: &mut Allocated,
    ) -> Result<(), (String, AllocationError)> {
        let service_type = service
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        if service_type == "ExternalName" {
            return Ok(());
        }
        let old_ip = old
            .and_then(|o| o.pointer("/spec/clusterIP"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let ip_path = "spec.clusterIP".to_string();
        match service
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
        {
            "None" => {}
            "" => {
                let offset = self
                    .ips
                    .allocate(owner)
                    .await
                    .map_err(|e| (ip_path.clone(), e.into()))?
                    .ok_or_else(|| {
                        (
                            ip_path.clone(),
                            AllocationError::Full {
                                what: "IP",
                                range: self.ip_range.clone(),
                            },
                        )
                    })?;
                done.ip = Some(offset);
                let ip = Ipv4Addr::from(self.ip_base + offset).to_string();
                service["spec"]["clusterIP"] = Value::String(ip.clone());
                service["spec"]["clusterIPs"] = serde_json::json!([ip]);
            }
            asked if old_ip.as_deref() == Some(asked) => {}
            asked => {
                let offset = asked
                    .parse::<Ipv4Addr>()
                    .ok()
                    .map(u32::from)
                    .and_then(|ip| ip.checked_sub(self.ip_base))
                    .filter(|o| *o < self.ips.size)
                    .ok_or_else(|| {
                        (
                            ip_path.clone(),
                            AllocationError::OutOfRange {
                                what: "IP",
                                range: self.ip_range.clone(),
                            },
                        )
                    })?;
                if !self
                    .ips
                    .claim(offset, owner)
                    .await
                    .map_err(|e| (ip_path.clone(), e.into()))?
                {
                    return Err((ip_path, AllocationError::Taken { what: "IP" }));
                }
                done.ip = Some(offset);
            }
        }
        if !matches!(service_type.as_str(), "NodePort" | "LoadBalancer") {
            return Ok(());
        }
        let old_ports: Vec<i64> = old_node_ports(old);
        let count = service
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        for i in 0..count {
            let path = format!("spec.ports[{i}].nodePort");
            let asked = service["spec"]["ports"][i]["nodePort"]
                .as_i64()
                .unwrap_or(0);
            if asked != 0 && old_ports.contains(&asked) {
                continue;
            }
            let offset = if asked == 0 {
                let offset = self
                    .ports
                    .allocate(owner)
                    .await
                    .map_err(|e| (path.clone(), e.into()))?
                    .ok_or_else(|| {
                        (
                            path.clone(),
                            AllocationError::Full {
                                what: "port",
                                range: self.port_range.clone(),
                            },
                        )
                    })?;
                service["spec"]["ports"][i]["nodePort"] =
                    Value::from(i64::from(self.port_base) + i64::from(offset));
                offset
            } else {
                let offset = u32::try_from(asked - i64::from(self.port_base))
                    .ok()
                    .filter(|o| *o < self.ports.size)
                    .ok_or_else(|| {
                        (
                            path.clone(),
                            AllocationError::OutOfRange {
                                what: "port",
                                range: self.port_range.clone(),
                            },
                        )
                    })?;
                if !self
                    .ports
                    .claim(offset, owner)
                    .await
                    .map_err(|e| (path.clone(), e.into()))?
                {
                    return Err((path, AllocationError::Taken { what: "port" }));
                }
                offset
            };
            done.ports.push(offset);
        }
        Ok(())
    }

    /// Releases what an `allocate` took (the Service was not stored).
    pub async fn release_allocated(&self, allocated: &Allocated) {
        if let Some(ip) = allocated.ip {
            let _ = self.ips.release(ip).await;
        }
        for &port in &allocated.ports {
            let _ = self.ports.release(port).await;
        }
    }

    /// Releases what `service` holds and `keep` (the updated Service, if any) does not.
    pub async fn release(&self, service: &Value, keep: Option<&Value>) {
        let ip = |s: &Value| {
            s.pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        };
        if let Some(held) = ip(service)
            && keep.and_then(ip) != Some(held)
            && let Some(offset) = u32::from(held).checked_sub(self.ip_base)
        {
            let _ = self.ips.release(offset).await;
        }
        let kept = old_node_ports(keep);
        for port in old_node_ports(Some(service)) {
            if !kept.contains(&port)
                && let Ok(offset) = u32::try_from(port - i64::from(self.port_base))
            {
                let _ = self.ports.release(offset).await;
            }
        }
    }

    /// Releases allocations that none of the stored `services` holds (left by a crash
    /// between allocating and storing, or between deleting and releasing).
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn repair(&self, services: &[Value]) -> Result<(), StoreError> {
        let mut ips = std::collections::HashSet::new();
        let mut ports = std::collections::HashSet::new();
        for service in services {
            if let Some(ip) = service
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            {
                ips.insert(u32::from(ip));
            }
            ports.extend(old_node_ports(Some(service)));
        }
        let mut released = 0;
        for (offset, _owner) in self.ips.allocated().await? {
            if !ips.contains(&(self.ip_base + offset)) {
                self.ips.release(offset).await?;
                released += 1;
            }
        }
        for (offset, _owner) in self.ports.allocated().await? {
            if !ports.contains(&(i64::from(self.port_base) + i64::from(offset))) {
                self.ports.release(offset).await?;
                released += 1;
            }
        }
        if released > 0 {
            info!(released, "released service allocations no Service holds");
        }
        Ok(())
    }
}

fn owner(service: &Value) -> String {
    let ns = service
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = service
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    format!("{ns}/{name}")
}

fn old_node_ports(service: Option<&Value>) -> Vec<i64> {
    service
        .and_then(|s| s.pointer("/spec/ports"))
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p["nodePort"].as_i64())
                .filter(|p| *p != 0)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::store::embedded::EmbeddedStore;

    async fn allocator(dir: &std::path::Path, cidr: &str, ports: (u16, u16)) -> ServiceAllocator {
        let store = EmbeddedStore::open(dir.join("store.redb")).await.unwrap();
        ServiceAllocator::new(Arc::new(store), cidr.parse().unwrap(), ports)
    }

    fn service(name: &str, kind: &str) -> Value {
        json!({"metadata": {"namespace": "default", "name": name}, "spec": {"type": kind, "ports": [{"port": 80}]}})
    }

    #[tokio::test]
    async fn a_node_port_service_gets_an_ip_from_the_range_and_a_port_from_its_range() {
        let dir = tempfile::tempdir().unwrap();
        let alloc = allocator(dir.path(), "10.96.0.0/24", (30000, 30010)).await;
        let mut svc = service("a", "NodePort");
        alloc.allocate(&mut svc, None).await.unwrap();
        let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!(ip.octets()[..3] == [10, 96, 0] && ip.octets()[3] != 0 && ip.octets()[3] != 255);
        let port = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert!((30000..=30010).contains(&port));
    }

    #[tokio::test]
    async fn a_requested_ip_or_port_that_is_taken_is_refused_with_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let alloc = allocator(dir.path(), "10.96.0.0/24", (30000, 30010)).await;
        let mut first = service("a", "NodePort");
        first["spec"]["clusterIP"] = json!("10.96.0.10");
        first["spec"]["ports"][0]["nodePort"] = json!(30005);
        alloc.allocate(&mut first, None).await.unwrap();
        let mut second = service("b", "NodePort");
        second["spec"]["clusterIP"] = json!("10.96.0.10");
        let (field, error) = alloc.allocate(&mut second, None).await.unwrap_err();
        assert_eq!(field, "spec.clusterIP");
        assert_eq!(error.to_string(), "provided IP is already allocated");
        let mut third = service("c", "NodePort");
        third["spec"]["ports"][0]["nodePort"] = json!(30005);
        let (field, error) = alloc.allocate(&mut third, None).await.unwrap_err();
        assert_eq!(field, "spec.ports[0].nodePort");
        assert_eq!(error.to_string(), "provided port is already allocated");
        // The failed attempt gave back the IP it took before the port was refused.
        let mut fourth = service("d", "ClusterIP");
        fourth["spec"]["clusterIP"] = third["spec"]["clusterIP"].clone();
        alloc.allocate(&mut fourth, None).await.unwrap();
        let mut outside = service("e", "NodePort");
        outside["spec"]["ports"][0]["nodePort"] = json!(8080);
        let (_, error) = alloc.allocate(&mut outside, None).await.unwrap_err();
        assert!(error.to_string().contains("30000-30010"), "{error}");
    }

    #[tokio::test]
    async fn released_values_are_handed_out_again_and_a_full_range_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let alloc = allocator(dir.path(), "10.96.0.0/30", (30000, 30000)).await;
        let mut a = service("a", "ClusterIP");
        alloc.allocate(&mut a, None).await.unwrap();
        let mut b = service("b", "ClusterIP");
        alloc.allocate(&mut b, None).await.unwrap();
        let mut c = service("c", "ClusterIP");
        let (_, error) = alloc.allocate(&mut c, None).await.unwrap_err();
        assert!(matches!(error, AllocationError::Full { .. }), "{error}");
        alloc.release(&a, None).await;
        alloc.allocate(&mut c, None).await.unwrap();
        assert_eq!(c["spec"]["clusterIP"], a["spec"]["clusterIP"]);
    }

    #[tokio::test]
    async fn repair_releases_allocations_no_service_holds() {
        let dir = tempfile::tempdir().unwrap();
        let alloc = allocator(dir.path(), "10.96.0.0/29", (30000, 30001)).await;
        let mut kept = service("kept", "NodePort");
        alloc.allocate(&mut kept, None).await.unwrap();
        let mut leaked = service("leaked", "NodePort");
        alloc.allocate(&mut leaked, None).await.unwrap();
        alloc.repair(std::slice::from_ref(&kept)).await.unwrap();
        assert_eq!(alloc.ips.allocated().await.unwrap().len(), 1);
        assert_eq!(alloc.ports.allocated().await.unwrap().len(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]
        /// Concurrent allocation from several allocators over one store (several API
        /// servers, or one restarted) never hands out a value twice.
        #[test]
        fn concurrent_allocators_never_hand_out_one_ip_twice(services in 5usize..40, allocators in 1usize..4) {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path().join("s.redb")).await.unwrap());
                let all: Vec<Arc<ServiceAllocator>> = (0..allocators)
                    .map(|_| Arc::new(ServiceAllocator::new(Arc::clone(&store), "10.96.0.0/26".parse().unwrap(), (30000, 30100))))
                    .collect();
                let tasks: Vec<_> = (0..services)
                    .map(|i| {
                        let alloc = Arc::clone(&all[i % allocators]);
                        tokio::spawn(async move {
                            let mut svc = service(&format!("s{i}"), "NodePort");
                            alloc.allocate(&mut svc, None).await.map(|_| svc).ok()
                        })
                    })
                    .collect();
                let mut ips = HashSet::new();
                let mut ports = HashSet::new();
                for task in tasks {
                    if let Some(svc) = task.await.unwrap() {
                        prop_assert!(ips.insert(svc["spec"]["clusterIP"].as_str().unwrap().to_string()));
                        prop_assert!(ports.insert(svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap()));
                    }
                }
                prop_assert_eq!(ips.len(), services.min(62));
                Ok(())
            })?;
        }

        /// An API server that restarts (a fresh allocator over the same store, its scan
        /// starting from the beginning again) never hands out what it handed out before,
        /// whether picked by the server or asked for by a user.
        #[test]
        fn a_restarted_allocator_never_hands_out_an_ip_or_port_it_gave_before(
            before in 1usize..20, after in 1usize..20, asked in proptest::collection::vec(1u32..30, 0..6),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path().join("s.redb")).await.unwrap());
                let new = || ServiceAllocator::new(Arc::clone(&store), "10.96.0.0/27".parse().unwrap(), (30000, 30029));
                let mut ips = HashSet::new();
                let mut ports = HashSet::new();
                let mut record = |svc: &Value| -> Result<(), TestCaseError> {
                    prop_assert!(ips.insert(svc["spec"]["clusterIP"].as_str().unwrap().to_string()), "IP twice: {}", svc);
                    prop_assert!(ports.insert(svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap()), "port twice: {}", svc);
                    Ok(())
                };
                let first = new();
                for i in 0..before {
                    let mut svc = service(&format!("a{i}"), "NodePort");
                    if first.allocate(&mut svc, None).await.is_ok() {
                        record(&svc)?;
                    }
                }
                drop(first);
                let second = new();
                for i in 0..after {
                    let mut svc = service(&format!("b{i}"), "NodePort");
                    if let Some(offset) = asked.get(i) {
                        svc["spec"]["clusterIP"] = json!(format!("10.96.0.{offset}"));
                        svc["spec"]["ports"][0]["nodePort"] = json!(30000 + offset);
                    }
                    if second.allocate(&mut svc, None).await.is_ok() {
                        record(&svc)?;
                    }
                }
                Ok::<(), TestCaseError>(())
            })?;
        }
    }
}
