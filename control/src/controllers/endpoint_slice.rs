//! The EndpointSlice controller: for every Service with a selector, EndpointSlices listing
//! the pods it selects (address, node, ready/serving/terminating, ports resolved by name),
//! at most [`MAX_ENDPOINTS_PER_SLICE`] each, rewritten only where something changed.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::json;
use skiff_api::k8s_openapi::api::{
    core::v1::{ObjectReference, Pod, Service, ServicePort},
    discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
};
use skiff_api::{
    client::ClientError,
    runtime::{Action, Change, Controller, ObjectKey, Store, Writer},
};
use tracing::debug;

use super::{
    Context, Stop,
    cluster_api::{ClusterApi, LiveApi, is_not_found},
    feed::{feed, informer},
};

/// Kubernetes' default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// The label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// How soon a reconcile looks again when the cache has not yet caught up with its writes.
const STALE_CACHE_RETRY: Duration = Duration::from_millis(200);

/// Why a Service's slices could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum EndpointSliceError {
    #[error("writing EndpointSlice {namespace}/{name} for Service {service}")]
    Write {
        service: String,
        namespace: String,
        name: String,
        #[source]
        source: ClientError,
    },
    #[error("encoding EndpointSlice {name}")]
    Encode {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The caches a reconcile reads: Services, Pods (indexed by namespace) and slices
/// (indexed by their Service's `namespace/name`).
#[derive(Clone, Debug)]
pub struct Caches {
    pub services: Store<Service>,
    pub pods: Store<Pod>,
    pub slices: Store<EndpointSlice>,
}

/// The index of pods by namespace.
pub const BY_NAMESPACE: &str = "namespace";
/// The index of slices by the `namespace/name` of their Service.
pub const BY_SERVICE: &str = "service";

/// A pod store indexed as [`Caches::pods`] must be.
pub fn pod_writer() -> Writer<Pod> {
    Writer::new().with_index(BY_NAMESPACE, |pod: &Pod| {
        vec![pod.metadata.namespace.clone().unwrap_or_default()]
    })
}

/// A service store indexed by namespace.
pub fn service_writer() -> Writer<Service> {
    Writer::new().with_index(BY_NAMESPACE, |svc: &Service| {
        vec![svc.metadata.namespace.clone().unwrap_or_default()]
    })
}

/// A slice store indexed as [`Caches::slices`] must be (only slices this controller manages).
pub fn slice_writer() -> Writer<EndpointSlice> {
    Writer::new().with_index(BY_SERVICE, |slice: &EndpointSlice| {
        owning_service(slice)
            .map(|key| vec![key.to_string()])
            .unwrap_or_default()
    })
}

/// The Service a slice managed by this controller belongs to.
fn owning_service(slice: &EndpointSlice) -> Option<ObjectKey> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY) {
        return None;
    }
    let service = labels.get(SERVICE_NAME_LABEL)?;
    Some(ObjectKey::new(
        slice.metadata.namespace.clone().unwrap_or_default(),
        service.clone(),
    ))
}

/// What the cache must show before a reconcile trusts it: the versions this controller
/// wrote (or the absence of what it deleted).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    AtLeast(u64),
    Gone,
}

/// Reconciles Services' slices through `api`.
#[derive(Debug)]
pub struct Reconciler<A> {
    api: A,
    caches: Caches,
    expected: Mutex<HashMap<ObjectKey, HashMap<String, Expect>>>,
}

/// One slice as this reconcile wants it.
struct Planned {
    existing: Option<Arc<EndpointSlice>>,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
}

impl<A: ClusterApi> Reconciler<A> {
    pub fn new(api: A, caches: Caches) -> Self {
        Self {
            api,
            caches,
            expected: Mutex::default(),
        }
    }

    /// Brings the slices of the Service `key` in line with the pods it selects.
    ///
    /// # Errors
    /// When a write fails; the key is retried with backoff.
    pub async fn reconcile(&self, key: &ObjectKey) -> Result<Action, EndpointSliceError> {
        let existing = self.caches.slices.by_index(BY_SERVICE, &key.to_string());
        if !self.cache_caught_up(key, &existing) {
            return Ok(Action::RequeueAfter(STALE_CACHE_RETRY));
        }
        let service = self
            .caches
            .services
            .get(key)
            .filter(|svc| selector(svc).is_some());
        let Some(service) = service else {
            // Gone, or no longer selecting pods: nothing of ours should stay.
            for slice in existing {
                self.delete(key, &slice).await?;
            }
            return Ok(Action::Done);
        };

        let desired = desired_endpoints(&service, &self.caches.pods);
        let plan = plan(&existing, desired);
        let mut keep = Vec::new();
        for planned in plan {
            match &planned.existing {
                Some(slice)
                    if slice.endpoints == planned.endpoints
                        && slice.ports.clone().unwrap_or_default() == planned.ports
                        && labels_match(slice, &service) =>
                {
                    keep.push(name_of(slice));
                }
                _ => keep.push(self.write(key, &service, planned).await?),
            }
        }
        for slice in existing {
            if !keep.contains(&name_of(&slice)) {
                self.delete(key, &slice).await?;
            }
        }
        Ok(Action::Done)
    }

    /// False while the cache still lacks a write this controller made for `key`.
    fn cache_caught_up(&self, key: &ObjectKey, existing: &[Arc<EndpointSlice>]) -> bool {
        let mut expected = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slices) = expected.get_mut(key) else {
            return true;
        };
        slices.retain(|name, expect| {
            let seen = existing.iter().find(|s| name_of(s) == *name);
            match (&*expect, seen) {
                (Expect::Gone, None) => false,
                (Expect::Gone, Some(_)) => true,
                (Expect::AtLeast(_), None) => true,
                (Expect::AtLeast(version), Some(slice)) => version_of(slice) < *version,
            }
        });
        let caught_up = slices.is_empty();
        if caught_up {
            expected.remove(key);
        }
        caught_up
    }

    fn expect(&self, key: &ObjectKey, name: String, expect: Expect) {
        self.expected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .insert(name, expect);
    }

    async fn write(
        &self,
        key: &ObjectKey,
        service: &Service,
        planned: Planned,
    ) -> Result<String, EndpointSliceError> {
        let service_name = service.metadata.name.clone().unwrap_or_default();
        let mut slice = match &planned.existing {
            Some(slice) => (**slice).clone(),
            None => EndpointSlice {
                address_type: "IPv4".into(),
                ..EndpointSlice::default()
            },
        };
        let mut labels = service.metadata.labels.clone().unwrap_or_default();
        labels.insert(SERVICE_NAME_LABEL.into(), service_name.clone());
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        slice.metadata.labels = Some(labels);
        slice.endpoints = planned.endpoints;
        slice.ports = Some(planned.ports);
        let body = if planned.existing.is_some() {
            serde_json::to_value(&slice)
        } else {
            slice.metadata.generate_name = Some(format!("{service_name}-"));
            slice.metadata.namespace = Some(key.namespace.clone());
            serde_json::to_value(&slice).map(|mut body| {
                body["apiVersion"] = json!("discovery.k8s.io/v1");
                body["kind"] = json!("EndpointSlice");
                body["metadata"]["ownerReferences"] = json!([{
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": service_name,
                    "uid": service.metadata.uid.clone().unwrap_or_default(),
                    "controller": true,
                    "blockOwnerDeletion": true,
                }]);
                body
            })
        }
        .map_err(|source| EndpointSliceError::Encode {
            name: service_name.clone(),
            source,
        })?;
        let name = name_of(&slice);
        let written = if planned.existing.is_some() {
            self.api
                .update("endpointslices", &key.namespace, body)
                .await
        } else {
            self.api
                .create("endpointslices", &key.namespace, body)
                .await
        }
        .map_err(|source| EndpointSliceError::Write {
            service: key.to_string(),
            namespace: key.namespace.clone(),
            name: if name.is_empty() {
                format!("{service_name}-*")
            } else {
                name.clone()
            },
            source,
        })?;
        let written_name = written["metadata"]["name"]
            .as_str()
            .unwrap_or(&name)
            .to_string();
        if let Some(version) = written["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok())
        {
            self.expect(key, written_name.clone(), Expect::AtLeast(version));
        }
        debug!(service = %key, slice = written_name, "EndpointSlice written");
        Ok(written_name)
    }

    async fn delete(
        &self,
        key: &ObjectKey,
        slice: &EndpointSlice,
    ) -> Result<(), EndpointSliceError> {
        let name = name_of(slice);
        match self
            .api
            .delete("endpointslices", &key.namespace, &name)
            .await
        {
            Ok(()) => {}
            Err(error) if is_not_found(&error) => {}
            Err(source) => {
                return Err(EndpointSliceError::Write {
                    service: key.to_string(),
                    namespace: key.namespace.clone(),
                    name,
                    source,
                });
            }
        }
        self.expect(key, name, Expect::Gone);
        Ok(())
    }
}

fn name_of(slice: &EndpointSlice) -> String {
    slice.metadata.name.clone().unwrap_or_default()
}

fn version_of(slice: &EndpointSlice) -> u64 {
    slice
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn labels_match(slice: &EndpointSlice, service: &Service) -> bool {
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    let mut wanted = service.metadata.labels.clone().unwrap_or_default();
    wanted.insert(
        SERVICE_NAME_LABEL.into(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    wanted.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels == wanted
}

/// The Service's selector, when it has a non-empty one.
fn selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    service
        .spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = selector(service) else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// True when the pod's Ready condition is True.
pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// The port a Service port reaches on `pod`: its number, or the pod's container port of
/// that name; `None` when the name is not among the pod's ports.
fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    use skiff_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(0)) => Some(port.port),
        Some(IntOrString::Int(number)) => Some(*number),
        Some(IntOrString::String(name)) => {
            if let Ok(number) = name.parse::<i32>() {
                return Some(number);
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The endpoints the Service should have, grouped by the ports they serve (pods that
/// resolve a named port differently land in different slices), ordered by pod name.
fn desired_endpoints(
    service: &Service,
    pods: &Store<Pod>,
) -> BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> {
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let publish_not_ready = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let service_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut pods: Vec<Arc<Pod>> = pods
        .by_index(BY_NAMESPACE, &namespace)
        .into_iter()
        .filter(|pod| selects(service, pod))
        .collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut groups: BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    for pod in pods {
        let status = pod.status.clone().unwrap_or_default();
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            continue;
        }
        let Some(ip) = status
            .pod_ip
            .filter(|ip| !ip.is_empty() && !ip.contains(':'))
        else {
            continue;
        };
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let ready = pod_is_ready(&pod);
        let ports: Vec<EndpointPort> = service_ports
            .iter()
            .filter_map(|port| {
                Some(EndpointPort {
                    name: Some(port.name.clone().unwrap_or_default()),
                    port: Some(target_port(port, &pod)?),
                    protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: port.app_protocol.clone(),
                })
            })
            .collect();
        let endpoint = Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some(publish_not_ready || (ready && !terminating)),
                serving: Some(publish_not_ready || ready),
                terminating: Some(terminating),
            }),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some(namespace.clone()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..ObjectReference::default()
            }),
            ..Endpoint::default()
        };
        let group_key = serde_json::to_string(&ports).unwrap_or_default();
        groups
            .entry(group_key)
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(endpoint);
    }
    groups
}

/// Which endpoint an entry stands for: its pod (or its address when it names none).
fn identity(endpoint: &Endpoint) -> String {
    endpoint
        .target_ref
        .as_ref()
        .and_then(|r| r.name.clone())
        .unwrap_or_else(|| endpoint.addresses.join(","))
}

/// Lays the desired endpoints out over the existing slices with as few changes as
/// possible: an endpoint stays in the slice that has it, new ones fill the slices with
/// room before new slices are made, and a Service with no endpoints keeps one empty slice.
fn plan(
    existing: &[Arc<EndpointSlice>],
    desired: BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)>,
) -> Vec<Planned> {
    let mut existing: Vec<Arc<EndpointSlice>> = existing.to_vec();
    existing.sort_by_key(|s| name_of(s));
    let mut planned = Vec::new();
    for (ports, endpoints) in desired.into_values() {
        let mut wanted: BTreeMap<String, Endpoint> =
            endpoints.into_iter().map(|e| (identity(&e), e)).collect();
        let mut group = Vec::new();
        for slice in existing
            .iter()
            .filter(|s| s.ports.clone().unwrap_or_default() == ports)
        {
            let kept: Vec<Endpoint> = slice
                .endpoints
                .iter()
                .filter_map(|e| wanted.remove(&identity(e)))
                .collect();
            group.push(Planned {
                existing: Some(Arc::clone(slice)),
                ports: ports.clone(),
                endpoints: kept,
            });
        }
        let mut fresh = wanted.into_values();
        for slice in &mut group {
            while slice.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
                match fresh.next() {
                    Some(endpoint) => slice.endpoints.push(endpoint),
                    None => break,
                }
            }
        }
        let rest: Vec<Endpoint> = fresh.collect();
        for chunk in rest.chunks(MAX_ENDPOINTS_PER_SLICE) {
            group.push(Planned {
                existing: None,
                ports: ports.clone(),
                endpoints: chunk.to_vec(),
            });
        }
        planned.extend(group.into_iter().filter(|p| !p.endpoints.is_empty()));
    }
    if planned.is_empty() {
        // The placeholder: a Service with no endpoints still has one (empty) slice.
        let reuse = existing
            .iter()
            .find(|s| s.endpoints.is_empty())
            .or(existing.first());
        planned.push(Planned {
            existing: reuse.cloned(),
            ports: Vec::new(),
            endpoints: Vec::new(),
        });
    }
    planned
}

/// The Services in `pod`'s namespace that select it.
fn services_selecting(services: &Store<Service>, pod: &Pod) -> Vec<ObjectKey> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    services
        .by_index(BY_NAMESPACE, &namespace)
        .iter()
        .filter(|svc| selects(svc, pod))
        .map(|svc| ObjectKey::of(&**svc))
        .collect()
}

/// Runs the controller until `stop` fires.
pub async fn run(context: Context, stop: Stop) {
    let services = informer(&context, "services", service_writer());
    let pods = informer(&context, "pods", pod_writer());
    let slices = informer(&context, "endpointslices", slice_writer());
    let queue = context.queue("endpointslice");
    let caches = Caches {
        services: services.store(),
        pods: pods.store(),
        slices: slices.store(),
    };
    feed(services.subscribe(), queue.clone(), {
        let store = services.store();
        move |change: &Change<Service>| match change.object() {
            Some(svc) => vec![ObjectKey::of(&**svc)],
            None => store.keys(),
        }
    });
    feed(pods.subscribe(), queue.clone(), {
        let store = services.store();
        move |change: &Change<Pod>| match change {
            Change::Updated { old, new } => {
                let mut keys = services_selecting(&store, old);
                keys.extend(services_selecting(&store, new));
                keys
            }
            Change::Added(pod) | Change::Deleted(pod) => services_selecting(&store, pod),
            Change::Resynced => store.keys(),
        }
    });
    feed(slices.subscribe(), queue.clone(), {
        let store = slices.store();
        move |change: &Change<EndpointSlice>| match change.object() {
            Some(slice) => owning_service(slice).into_iter().collect(),
            None => store
                .list()
                .iter()
                .filter_map(|s| owning_service(s))
                .collect(),
        }
    });
    let synced = async {
        tokio::join!(
            caches.services.wait_until_ready(),
            caches.pods.wait_until_ready(),
            caches.slices.wait_until_ready()
        )
    };
    tokio::select! {
        _ = synced => {}
        () = stop.clone().wait() => return,
    }
    let api = LiveApi::new(
        context.client.clone(),
        "endpointslice-controller",
        &context.identity,
    );
    let reconciler = Arc::new(Reconciler::new(api, caches));
    Controller::new(queue)
        .graceful_shutdown_on(stop.wait())
        .run(4, move |key: ObjectKey| {
            let reconciler = Arc::clone(&reconciler);
            async move { reconciler.reconcile(&key).await }
        })
        .await;
    drop((services, pods, slices));
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use skiff_api::runtime::Event;

    use super::*;
    use crate::controllers::cluster_api::fake::{Call, FakeApi};

    fn store<T: serde::de::DeserializeOwned>(
        mut writer: Writer<T>,
        objects: Vec<Value>,
    ) -> Store<T> {
        writer.apply(Event::Restarted {
            objects,
            resource_version: "1".into(),
        });
        writer.reader()
    }

    fn service(name: &str, target_port: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "shop", "uid": "svc-uid", "resourceVersion": "5",
                         "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": target_port}]}
        })
    }

    fn pod(name: &str, ip: &str, ready: bool) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                         "resourceVersion": "7", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "i",
                     "ports": [{"name": "web", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        })
    }

    fn caches(services: Vec<Value>, pods: Vec<Value>, slices: Vec<Value>) -> Caches {
        Caches {
            services: store(service_writer(), services),
            pods: store(pod_writer(), pods),
            slices: store(slice_writer(), slices),
        }
    }

    fn created(api: &FakeApi) -> Vec<Value> {
        api.writes()
            .into_iter()
            .filter_map(|c| match c {
                Call::Create { object, .. } => Some(object),
                _ => None,
            })
            .collect()
    }

    /// An endpoint's (ready, serving, terminating).
    fn conditions(endpoint: &Value) -> (bool, bool, bool) {
        let c = &endpoint["conditions"];
        (
            c["ready"].as_bool().unwrap_or(false),
            c["serving"].as_bool().unwrap_or(false),
            c["terminating"].as_bool().unwrap_or(false),
        )
    }

    fn key() -> ObjectKey {
        ObjectKey::new("shop", "web")
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_gets_one_slice_with_its_pods_and_ports_resolved_by_name() {
        let api = FakeApi::new();
        let reconciler = Reconciler::new(
            api.clone(),
            caches(
                vec![service("web", json!("web"))],
                vec![
                    pod("a", "10.244.0.2", true),
                    pod("b", "10.244.0.3", false),
                    // No IP yet: not an endpoint.
                    pod("c", "", true),
                ],
                vec![],
            ),
        );
        assert_eq!(reconciler.reconcile(&key()).await.unwrap(), Action::Done);
        let slices = created(&api);
        assert_eq!(slices.len(), 1);
        let slice = &slices[0];
        assert_eq!(slice["metadata"]["generateName"], "web-");
        assert_eq!(slice["metadata"]["labels"][SERVICE_NAME_LABEL], "web");
        assert_eq!(slice["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(slice["metadata"]["labels"]["team"], "a");
        assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
        assert_eq!(slice["metadata"]["ownerReferences"][0]["uid"], "svc-uid");
        assert_eq!(slice["addressType"], "IPv4");
        assert_eq!(
            slice["ports"],
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
        );
        let endpoints = slice["endpoints"].as_array().unwrap();
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[0]["addresses"], json!(["10.244.0.2"]));
        assert_eq!(endpoints[0]["nodeName"], "node-1");
        assert_eq!(endpoints[0]["targetRef"]["name"], "a");
        assert_eq!(conditions(&endpoints[0]), (true, true, false));
        assert_eq!(conditions(&endpoints[1]), (false, false, false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_terminating_pod_stays_as_not_ready_and_serving_by_its_readiness() {
        let api = FakeApi::new();
        let mut leaving = pod("a", "10.244.0.2", true);
        leaving["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let reconciler = Reconciler::new(
            api.clone(),
            caches(vec![service("web", json!(8080))], vec![leaving], vec![]),
        );
        reconciler.reconcile(&key()).await.unwrap();
        let slices = created(&api);
        assert_eq!(
            conditions(&slices[0]["endpoints"][0]),
            (false, true, true),
            "ready=false, serving=true (its readiness), terminating=true"
        );
    }

    /// Runs reconciles, feeding the written slices back into the cache as the informer
    /// would, until nothing more is written; returns the slices.
    async fn converge(
        services: Vec<Value>,
        pods: Vec<Value>,
        mut slices: Vec<Value>,
    ) -> (Vec<Value>, Vec<Call>) {
        let mut all_writes = Vec::new();
        for _ in 0..5 {
            let api = FakeApi::new();
            let reconciler = Reconciler::new(
                api.clone(),
                caches(services.clone(), pods.clone(), slices.clone()),
            );
            reconciler.reconcile(&key()).await.unwrap();
            let writes = api.writes();
            if writes.is_empty() {
                return (slices, all_writes);
            }
            for write in &writes {
                match write {
                    Call::Create { object, .. } | Call::Update { object, .. } => {
                        let mut object = object.clone();
                        object["metadata"]["namespace"] = json!("shop");
                        if object["metadata"]["name"].is_null() {
                            object["metadata"]["name"] = json!(format!("web-{}", slices.len()));
                        }
                        let name = object["metadata"]["name"].clone();
                        slices.retain(|s| s["metadata"]["name"] != name);
                        slices.push(object);
                    }
                    Call::Delete { name, .. } => slices.retain(|s| s["metadata"]["name"] != *name),
                    _ => {}
                }
            }
            all_writes.extend(writes);
        }
        panic!("the slices never settled: {slices:#?}");
    }

    #[tokio::test(start_paused = true)]
    async fn endpoints_are_split_into_slices_of_at_most_one_hundred() {
        let pods: Vec<Value> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    &format!("10.244.{}.{}", i / 200, i % 200 + 1),
                    true,
                )
            })
            .collect();
        let (slices, _) = converge(vec![service("web", json!(8080))], pods, vec![]).await;
        let mut sizes: Vec<usize> = slices
            .iter()
            .map(|s| s["endpoints"].as_array().unwrap().len())
            .collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [50, 100, 100]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_pod_turning_ready_rewrites_only_the_slice_that_holds_it() {
        let services = vec![service("web", json!(8080))];
        let mut pods: Vec<Value> = (0..150)
            .map(|i| pod(&format!("p{i:03}"), &format!("10.244.0.{}", i + 1), true))
            .collect();
        pods[120] = pod("p120", "10.244.0.121", false);
        let (slices, _) = converge(services.clone(), pods.clone(), vec![]).await;
        pods[120] = pod("p120", "10.244.0.121", true);
        let (after, writes) = converge(services, pods, slices).await;
        assert_eq!(
            writes.len(),
            1,
            "one update, no create or delete: {writes:#?}"
        );
        assert!(matches!(&writes[0], Call::Update { .. }));
        assert_eq!(after.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_with_no_ready_pods_keeps_one_empty_slice_and_a_deleted_one_keeps_none() {
        let (slices, _) = converge(vec![service("web", json!(8080))], vec![], vec![]).await;
        assert_eq!(slices.len(), 1);
        assert_eq!(slices[0]["endpoints"], json!([]));
        let (slices, writes) = converge(vec![], vec![], slices).await;
        assert!(slices.is_empty());
        assert!(matches!(&writes[..], [Call::Delete { .. }]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_waits_while_the_cache_lacks_its_own_last_write() {
        let api = FakeApi::new();
        let reconciler = Reconciler::new(
            api.clone(),
            caches(
                vec![service("web", json!(8080))],
                vec![pod("a", "10.244.0.2", true)],
                vec![],
            ),
        );
        reconciler.reconcile(&key()).await.unwrap();
        assert_eq!(created(&api).len(), 1);
        // The cache has not seen the new slice yet: no second one is made.
        assert_eq!(
            reconciler.reconcile(&key()).await.unwrap(),
            Action::RequeueAfter(STALE_CACHE_RETRY)
        );
        assert_eq!(created(&api).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_named_port_the_pod_lacks_leaves_the_port_out_of_its_slice() {
        let api = FakeApi::new();
        let reconciler = Reconciler::new(
            api.clone(),
            caches(
                vec![service("web", json!("metrics"))],
                vec![pod("a", "10.244.0.2", true)],
                vec![],
            ),
        );
        reconciler.reconcile(&key()).await.unwrap();
        let slices = created(&api);
        assert_eq!(slices[0]["ports"], json!([]));
        assert_eq!(slices[0]["endpoints"].as_array().unwrap().len(), 1);
    }
}
