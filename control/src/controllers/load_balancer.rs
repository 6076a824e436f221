//! The service load balancer controller (the cloud-controller role): every Service of type
//! LoadBalancer gets a load balancer from a [`LoadBalancerProvider`] and its
//! `status.loadBalancer.ingress`; it is released when the Service goes or changes type.
//! [`BareMetalPool`] is the provider for machines without a cloud: addresses from a
//! configured pool, remembered only in the Services' status (rebuilt from there at start).

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    future::Future,
    net::Ipv4Addr,
    str::FromStr,
    sync::{Arc, Mutex},
};

use serde_json::{Value, json};
use skiff_api::{
    client::ClientError,
    k8s_openapi::api::core::v1::Service,
    runtime::{Action, Change, Controller, ObjectKey, Store, WorkQueue, Writer},
};
use tracing::info;

use super::{
    Context, Stop,
    cluster_api::{ClusterApi, LiveApi, is_not_found},
    feed::{feed, informer},
};
use crate::events::EventType;

/// Why a load balancer could not be made or its status written.
#[derive(Debug, thiserror::Error)]
pub enum LoadBalancerError {
    #[error(
        "spec.loadBalancerIP: {ip} is already used by Service {holder}; choose another address \
         or leave it empty to get one from the pool"
    )]
    Taken { ip: Ipv4Addr, holder: String },
    #[error(
        "spec.loadBalancerIP: {ip} is not in the load balancer pool {pool}; choose an address in it \
         or leave it empty"
    )]
    OutsidePool { ip: Ipv4Addr, pool: String },
    #[error("spec.loadBalancerIP: {given:?} is not an IPv4 address")]
    NotAnAddress { given: String },
    #[error(
        "the load balancer pool {pool} has no free address left; widen --load-balancer-ip-pool or delete a LoadBalancer Service"
    )]
    Exhausted { pool: String },
    #[error("writing the status of Service {service}")]
    Status {
        service: String,
        #[source]
        source: ClientError,
    },
}

/// Why `--load-balancer-ip-pool` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PoolParseError {
    #[error(
        "{text:?} is not an IPv4 range like 10.250.0.200-10.250.0.250 or a CIDR like 10.250.0.0/24"
    )]
    Syntax { text: String },
    #[error("{text:?}: the first address is above the last")]
    Backwards { text: String },
}

/// One address a load balancer is reached at (`status.loadBalancer.ingress[]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ingress {
    pub ip: Ipv4Addr,
}

/// Makes and removes load balancers for Services (a cloud provider would call its API).
pub trait LoadBalancerProvider: Send + Sync + 'static {
    /// Makes sure `service` has a load balancer; returns where it is reached.
    fn ensure(
        &self,
        service: &Service,
    ) -> impl Future<Output = Result<Vec<Ingress>, LoadBalancerError>> + Send;
    /// Removes the load balancer of the Service `key` (nothing if it has none).
    fn delete(&self, key: &ObjectKey)
    -> impl Future<Output = Result<(), LoadBalancerError>> + Send;
}

/// A set of IPv4 ranges (inclusive), e.g. `10.250.0.200-10.250.0.250,10.251.0.0/28`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpPool {
    ranges: Vec<(u32, u32)>,
}

impl FromStr for IpPool {
    type Err = PoolParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || PoolParseError::Syntax { text: text.into() };
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (low, high) = if let Some((low, high)) = part.split_once('-') {
                let low: Ipv4Addr = low.trim().parse().map_err(|_| syntax())?;
                let high: Ipv4Addr = high.trim().parse().map_err(|_| syntax())?;
                (u32::from(low), u32::from(high))
            } else if let Some((network, len)) = part.split_once('/') {
                let network: Ipv4Addr = network.parse().map_err(|_| syntax())?;
                let len: u32 = len.parse().map_err(|_| syntax())?;
                if len > 32 {
                    return Err(syntax());
                }
                let size = 1u64 << (32 - len);
                let base = u32::from(network) & (u64::from(u32::MAX) << (32 - len)) as u32;
                let last = (u64::from(base) + size - 1) as u32;
                // Leave out the network and broadcast addresses of real subnets.
                if len < 31 {
                    (base + 1, last - 1)
                } else {
                    (base, last)
                }
            } else {
                let ip: Ipv4Addr = part.parse().map_err(|_| syntax())?;
                (u32::from(ip), u32::from(ip))
            };
            if low > high {
                return Err(PoolParseError::Backwards { text: part.into() });
            }
            ranges.push((low, high));
        }
        if ranges.is_empty() {
            return Err(syntax());
        }
        Ok(Self { ranges })
    }
}

impl fmt::Display for IpPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|(low, high)| format!("{}-{}", Ipv4Addr::from(*low), Ipv4Addr::from(*high)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl IpPool {
    fn contains(&self, ip: u32) -> bool {
        self.ranges
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&ip))
    }

    fn addresses(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|(low, high)| *low..=*high)
    }
}

#[derive(Debug, Default)]
struct Allocations {
    holder: BTreeMap<u32, ObjectKey>,
    by_service: HashMap<ObjectKey, u32>,
}

/// The bare-metal provider: one address per Service from an [`IpPool`], never two
/// Services on one address.
#[derive(Debug)]
pub struct BareMetalPool {
    pool: IpPool,
    state: Mutex<Allocations>,
}

impl BareMetalPool {
    pub fn new(pool: IpPool) -> Self {
        Self {
            pool,
            state: Mutex::default(),
        }
    }

    /// Takes back what the Services' status says they hold (after a restart); an address
    /// claimed twice stays with the first, and the other Service is given a new one.
    pub fn rebuild<'a>(&self, services: impl IntoIterator<Item = &'a Service>) {
        let mut state = self.lock();
        for service in services {
            if !is_load_balancer(service) {
                continue;
            }
            let key = ObjectKey::of(service);
            for ip in ingress_ips(service) {
                let ip = u32::from(ip);
                if self.pool.contains(ip)
                    && !state.holder.contains_key(&ip)
                    && !state.by_service.contains_key(&key)
                {
                    state.holder.insert(ip, key.clone());
                    state.by_service.insert(key.clone(), ip);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Allocations> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The address for the Service `key`, asking for `requested` if given.
    fn take(
        &self,
        key: &ObjectKey,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, LoadBalancerError> {
        let mut state = self.lock();
        let held = state.by_service.get(key).copied();
        if let Some(ip) = requested {
            let wanted = u32::from(ip);
            if held == Some(wanted) {
                return Ok(ip);
            }
            if !self.pool.contains(wanted) {
                return Err(LoadBalancerError::OutsidePool {
                    ip,
                    pool: self.pool.to_string(),
                });
            }
            if let Some(holder) = state.holder.get(&wanted) {
                return Err(LoadBalancerError::Taken {
                    ip,
                    holder: holder.to_string(),
                });
            }
            if let Some(old) = held {
                state.holder.remove(&old);
            }
            state.holder.insert(wanted, key.clone());
            state.by_service.insert(key.clone(), wanted);
            return Ok(ip);
        }
        if let Some(ip) = held {
            return Ok(Ipv4Addr::from(ip));
        }
        let free = self
            .pool
            .addresses()
            .find(|ip| !state.holder.contains_key(ip))
            .ok_or_else(|| LoadBalancerError::Exhausted {
                pool: self.pool.to_string(),
            })?;
        state.holder.insert(free, key.clone());
        state.by_service.insert(key.clone(), free);
        Ok(Ipv4Addr::from(free))
    }

    fn release(&self, key: &ObjectKey) {
        let mut state = self.lock();
        if let Some(ip) = state.by_service.remove(key) {
            state.holder.remove(&ip);
        }
    }
}

impl LoadBalancerProvider for BareMetalPool {
    async fn ensure(&self, service: &Service) -> Result<Vec<Ingress>, LoadBalancerError> {
        let requested = match service
            .spec
            .as_ref()
            .and_then(|s| s.load_balancer_ip.as_deref())
            .filter(|ip| !ip.is_empty())
        {
            Some(text) => Some(
                text.parse::<Ipv4Addr>()
                    .map_err(|_| LoadBalancerError::NotAnAddress { given: text.into() })?,
            ),
            None => None,
        };
        let ip = self.take(&ObjectKey::of(service), requested)?;
        Ok(vec![Ingress { ip }])
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), LoadBalancerError> {
        self.release(key);
        Ok(())
    }
}

fn is_load_balancer(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        // A Service naming another load balancer class is another controller's.
        && spec.and_then(|s| s.load_balancer_class.as_deref()).is_none_or(str::is_empty)
}

fn ingress_ips(service: &Service) -> Vec<Ipv4Addr> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

fn service_reference(service: &Service) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": service.metadata.name, "namespace": service.metadata.namespace,
                     "uid": service.metadata.uid},
    })
}

/// Reconciles one Service at a time.
#[derive(Debug)]
pub struct Reconciler<A, P> {
    api: A,
    provider: Arc<P>,
    services: Store<Service>,
    /// Services refused an address; looked at again as soon as one is released.
    waiting: Mutex<std::collections::BTreeSet<ObjectKey>>,
    queue: Option<WorkQueue<ObjectKey>>,
}

impl<A: ClusterApi, P: LoadBalancerProvider> Reconciler<A, P> {
    pub fn new(api: A, provider: Arc<P>, services: Store<Service>) -> Self {
        Self {
            api,
            provider,
            services,
            waiting: Mutex::default(),
            queue: None,
        }
    }

    /// Adds the Services waiting for an address to `queue` whenever one is released.
    #[must_use]
    pub fn with_queue(mut self, queue: WorkQueue<ObjectKey>) -> Self {
        self.queue = Some(queue);
        self
    }

    async fn release(&self, key: &ObjectKey) -> Result<(), LoadBalancerError> {
        self.provider.delete(key).await?;
        let waiting = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(queue) = &self.queue {
            for waiting in waiting.into_iter().filter(|w| w != key) {
                queue.add(waiting);
            }
        }
        Ok(())
    }

    /// Ensures or removes the Service's load balancer and writes its ingress.
    ///
    /// # Errors
    /// When the provider refuses (also recorded as a Warning event) or the status write
    /// fails; the key is retried with backoff.
    pub async fn reconcile(&self, key: &ObjectKey) -> Result<Action, LoadBalancerError> {
        let Some(service) = self.services.get(key) else {
            self.release(key).await?;
            return Ok(Action::Done);
        };
        if !is_load_balancer(&service) {
            self.release(key).await?;
            if !ingress_ips(&service).is_empty() {
                self.write_ingress(&service, json!(null)).await?;
                info!(service = %key, "released the load balancer of a Service no longer of type LoadBalancer");
            }
            return Ok(Action::Done);
        }
        let ingress = match self.provider.ensure(&service).await {
            Ok(ingress) => ingress,
            Err(error) => {
                if matches!(
                    error,
                    LoadBalancerError::Taken { .. } | LoadBalancerError::Exhausted { .. }
                ) {
                    self.waiting
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key.clone());
                }
                self.api
                    .event(
                        &service_reference(&service),
                        EventType::Warning,
                        "SyncLoadBalancerFailed",
                        &format!("Error syncing load balancer: {error}"),
                    )
                    .await;
                return Err(error);
            }
        };
        let ips: Vec<Ipv4Addr> = ingress.iter().map(|i| i.ip).collect();
        if ingress_ips(&service) != ips {
            let list: Vec<Value> = ips
                .iter()
                .map(|ip| json!({"ip": ip.to_string(), "ipMode": "VIP"}))
                .collect();
            self.write_ingress(&service, json!(list)).await?;
            self.api
                .event(
                    &service_reference(&service),
                    EventType::Normal,
                    "EnsuredLoadBalancer",
                    &format!(
                        "Ensured load balancer at {}",
                        ips.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .await;
        }
        Ok(Action::Done)
    }

    async fn write_ingress(
        &self,
        service: &Service,
        ingress: Value,
    ) -> Result<(), LoadBalancerError> {
        let key = ObjectKey::of(service);
        let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        match self
            .api
            .patch("services", &key.namespace, &key.name, patch, "status")
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            Err(source) => Err(LoadBalancerError::Status {
                service: key.to_string(),
                source,
            }),
        }
    }
}

/// Runs the controller with the bare-metal pool until `stop` fires; without a pool it does
/// not run (LoadBalancer Services then stay pending, as on a cluster without a cloud).
pub async fn run(context: Context, stop: Stop) {
    let Some(pool) = context.options.load_balancer_pool.clone() else {
        info!("no --load-balancer-ip-pool: LoadBalancer Services get no external address");
        return;
    };
    let services = informer(&context, "services", Writer::<Service>::new());
    let queue: WorkQueue<ObjectKey> = context.queue("service");
    feed(services.subscribe(), queue.clone(), {
        let store = services.store();
        move |change: &Change<Service>| match change.object() {
            Some(svc) => vec![ObjectKey::of(&**svc)],
            None => store.keys(),
        }
    });
    let store = services.store();
    tokio::select! {
        () = store.wait_until_ready() => {}
        () = stop.clone().wait() => return,
    }
    let provider = Arc::new(BareMetalPool::new(pool));
    // Before any reconcile: what the Services already hold is taken.
    provider.rebuild(store.list().iter().map(|s| &**s));
    let api = LiveApi::new(
        context.client.clone(),
        "service-controller",
        &context.identity,
    );
    let reconciler = Arc::new(Reconciler::new(api, provider, store).with_queue(queue.clone()));
    Controller::new(queue)
        .graceful_shutdown_on(stop.wait())
        .run(2, move |key: ObjectKey| {
            let reconciler = Arc::clone(&reconciler);
            async move { reconciler.reconcile(&key).await }
        })
        .await;
    drop(services);
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;
    use skiff_api::runtime::Event;

    use super::*;
    use crate::controllers::cluster_api::fake::{Call, FakeApi};

    fn service(name: &str, type_: &str, requested: Option<&str>, ingress: Option<&str>) -> Value {
        let mut svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "shop", "uid": format!("u-{name}"), "resourceVersion": "3"},
            "spec": {"type": type_, "ports": [{"port": 80}]},
        });
        if let Some(ip) = requested {
            svc["spec"]["loadBalancerIP"] = json!(ip);
        }
        if let Some(ip) = ingress {
            svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": ip}]}});
        }
        svc
    }

    fn services(objects: Vec<Value>) -> Store<Service> {
        let mut writer = Writer::new();
        writer.apply(Event::Restarted {
            objects,
            resource_version: "1".into(),
        });
        writer.reader()
    }

    fn typed(value: Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    fn written_ingress(api: &FakeApi) -> Vec<(String, Value)> {
        api.writes()
            .into_iter()
            .filter_map(|c| match c {
                Call::Patch {
                    name,
                    patch,
                    subresource,
                    ..
                } if subresource == "status" => {
                    Some((name, patch["status"]["loadBalancer"]["ingress"].clone()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn pools_parse_as_ranges_cidrs_and_lists() {
        let pool: IpPool = "10.250.0.200-10.250.0.250".parse().unwrap();
        assert_eq!(pool.addresses().count(), 51);
        let pool: IpPool = "10.250.1.0/30, 10.250.2.7".parse().unwrap();
        let all: Vec<Ipv4Addr> = pool.addresses().map(Ipv4Addr::from).collect();
        assert_eq!(
            all,
            [
                Ipv4Addr::new(10, 250, 1, 1),
                Ipv4Addr::new(10, 250, 1, 2),
                Ipv4Addr::new(10, 250, 2, 7)
            ]
        );
        assert!("10.0.0.9-10.0.0.1".parse::<IpPool>().is_err());
        assert!("ten".parse::<IpPool>().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_load_balancer_service_gets_the_first_free_address_and_keeps_it() {
        let api = FakeApi::new();
        let provider = Arc::new(BareMetalPool::new(
            "10.250.0.200-10.250.0.201".parse().unwrap(),
        ));
        let r = Reconciler::new(
            api.clone(),
            Arc::clone(&provider),
            services(vec![service("web", "LoadBalancer", None, None)]),
        );
        r.reconcile(&ObjectKey::new("shop", "web")).await.unwrap();
        assert_eq!(
            written_ingress(&api),
            [(
                "web".to_string(),
                json!([{"ip": "10.250.0.200", "ipMode": "VIP"}])
            )]
        );
        assert!(
            api.event_reasons()
                .contains(&"EnsuredLoadBalancer".to_string())
        );
        // Status already says so: nothing more is written.
        let api = FakeApi::new();
        let r = Reconciler::new(
            api.clone(),
            provider,
            services(vec![service(
                "web",
                "LoadBalancer",
                None,
                Some("10.250.0.200"),
            )]),
        );
        r.reconcile(&ObjectKey::new("shop", "web")).await.unwrap();
        assert!(api.writes().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_requested_address_is_honoured_when_free_and_refused_with_an_event_when_taken() {
        let api = FakeApi::new();
        let provider = Arc::new(BareMetalPool::new(
            "10.250.0.200-10.250.0.250".parse().unwrap(),
        ));
        let store = services(vec![
            service("a", "LoadBalancer", Some("10.250.0.210"), None),
            service("b", "LoadBalancer", Some("10.250.0.210"), None),
            service("c", "LoadBalancer", Some("192.168.1.1"), None),
        ]);
        let r = Reconciler::new(api.clone(), provider, store);
        r.reconcile(&ObjectKey::new("shop", "a")).await.unwrap();
        assert_eq!(written_ingress(&api)[0].1[0]["ip"], "10.250.0.210");
        let taken = r.reconcile(&ObjectKey::new("shop", "b")).await.unwrap_err();
        assert!(
            taken.to_string().contains("already used by Service shop/a"),
            "{taken}"
        );
        let outside = r.reconcile(&ObjectKey::new("shop", "c")).await.unwrap_err();
        assert!(
            outside
                .to_string()
                .contains("not in the load balancer pool"),
            "{outside}"
        );
        assert_eq!(
            api.event_reasons()
                .iter()
                .filter(|r| *r == "SyncLoadBalancerFailed")
                .count(),
            2
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_address_is_released_on_delete_or_type_change_and_handed_out_again() {
        let api = FakeApi::new();
        let provider = Arc::new(BareMetalPool::new("10.250.0.200".parse().unwrap()));
        provider.rebuild(&[typed(service(
            "a",
            "LoadBalancer",
            None,
            Some("10.250.0.200"),
        ))]);
        // "a" became a ClusterIP Service: its address goes and its status is cleared.
        let r = Reconciler::new(
            api.clone(),
            Arc::clone(&provider),
            services(vec![
                service("a", "ClusterIP", None, Some("10.250.0.200")),
                service("b", "LoadBalancer", None, None),
            ]),
        );
        r.reconcile(&ObjectKey::new("shop", "a")).await.unwrap();
        assert_eq!(written_ingress(&api)[0], ("a".to_string(), Value::Null));
        r.reconcile(&ObjectKey::new("shop", "b")).await.unwrap();
        assert_eq!(written_ingress(&api)[1].1[0]["ip"], "10.250.0.200");
        // "b" deleted: the address is free again.
        let r = Reconciler::new(
            api.clone(),
            Arc::clone(&provider),
            services(vec![service("c", "LoadBalancer", None, None)]),
        );
        r.reconcile(&ObjectKey::new("shop", "b")).await.unwrap();
        r.reconcile(&ObjectKey::new("shop", "c")).await.unwrap();
        assert_eq!(written_ingress(&api)[2].1[0]["ip"], "10.250.0.200");
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_refused_an_address_is_looked_at_again_when_one_is_released() {
        let api = FakeApi::new();
        let queue = WorkQueue::new();
        let provider = Arc::new(BareMetalPool::new("10.250.0.200".parse().unwrap()));
        provider.rebuild(&[typed(service(
            "a",
            "LoadBalancer",
            None,
            Some("10.250.0.200"),
        ))]);
        let r = Reconciler::new(
            api.clone(),
            provider,
            services(vec![service("b", "LoadBalancer", None, None)]),
        )
        .with_queue(queue.clone());
        let refused = r.reconcile(&ObjectKey::new("shop", "b")).await.unwrap_err();
        assert!(
            matches!(refused, LoadBalancerError::Exhausted { .. }),
            "{refused}"
        );
        assert!(queue.is_empty());
        // "a" is gone from the cache: its address is released and "b" comes back.
        r.reconcile(&ObjectKey::new("shop", "a")).await.unwrap();
        assert_eq!(queue.get().await, Some(ObjectKey::new("shop", "b")));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Services allocating at once, then a restart that rebuilds from their status and
        /// more allocations: no address is ever held by two Services.
        #[test]
        fn the_pool_never_hands_out_one_address_twice_across_concurrency_and_restarts(
            before in 1usize..30, after in 0usize..30, requested in proptest::collection::vec(0u32..20, 0..10),
        ) {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
            runtime.block_on(async {
                let pool: IpPool = "10.250.0.0-10.250.0.19".parse().unwrap();
                let make = |i: usize| {
                    let ask = requested.get(i).map(|o| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 250, 0, 0)) + o).to_string());
                    typed(service(&format!("s{i}"), "LoadBalancer", ask.as_deref(), None))
                };
                let first = Arc::new(BareMetalPool::new(pool.clone()));
                let tasks: Vec<_> = (0..before).map(|i| {
                    let (provider, svc) = (Arc::clone(&first), make(i));
                    tokio::spawn(async move { provider.ensure(&svc).await.ok().map(|ingress| (svc, ingress)) })
                }).collect();
                let mut held: Vec<Service> = Vec::new();
                for task in tasks {
                    if let Some((mut svc, ingress)) = task.await.unwrap() {
                        svc.status = Some(serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": ingress[0].ip.to_string()}]}})).unwrap());
                        held.push(svc);
                    }
                }
                // Restart: a new pool learns from the Services' status.
                let second = Arc::new(BareMetalPool::new(pool));
                second.rebuild(held.iter());
                let tasks: Vec<_> = (before..before + after).map(|i| {
                    let (provider, svc) = (Arc::clone(&second), make(i));
                    tokio::spawn(async move { provider.ensure(&svc).await.ok().map(|ingress| ingress[0].ip) })
                }).collect();
                let mut seen: HashSet<Ipv4Addr> = held.iter().flat_map(ingress_ips).collect();
                prop_assert_eq!(seen.len(), held.len());
                for task in tasks {
                    if let Some(ip) = task.await.unwrap() {
                        prop_assert!(seen.insert(ip), "{} handed out twice", ip);
                    }
                }
                prop_assert!(seen.len() <= 20);
                Ok(())
            })?;
        }
    }
}
