//! From Services and EndpointSlices to the load-balancing entries this node should hold:
//! one entry per ClusterIP, NodePort (on the node address), LoadBalancer ingress IP and
//! external IP, per port, following kube-proxy's rules for traffic policies and endpoints.

use std::{
    borrow::Borrow,
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
};

use skiff_api::k8s_openapi::api::{
    core::v1::{Service, ServicePort},
    discovery::v1::{Endpoint, EndpointSlice},
};
use skiff_ebpf_common::{
    Backend, ServiceKey,
    service::{
        BACKEND_LOCAL, BACKEND_TERMINATING, PROTO_TCP, PROTO_UDP, SERVICE_AFFINITY,
        SERVICE_EXTERNAL, SERVICE_EXTERNAL_LOCAL, SERVICE_INTERNAL_LOCAL,
    },
};

use super::services::DesiredService;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Kubernetes' default ClientIP affinity timeout (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECS: u32 = 10800;

/// Who this node is, for NodePort entries and node-local backends.
#[derive(Clone, Debug)]
pub struct NodeView {
    /// The Node's name (matched against endpoints' `nodeName`).
    pub name: String,
    /// The address NodePorts are served on.
    pub address: Option<Ipv4Addr>,
}

/// Every entry the node's maps should hold for `services` and their `slices`.
pub fn desired_services(
    node: &NodeView,
    services: &[impl Borrow<Service>],
    slices: &[impl Borrow<EndpointSlice>],
) -> BTreeMap<ServiceKey, DesiredService> {
    let mut by_service: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices.iter().map(Borrow::borrow) {
        if slice.address_type != "IPv4" {
            continue;
        }
        let labels = slice.metadata.labels.as_ref();
        let Some(name) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) else {
            continue;
        };
        let namespace = slice.metadata.namespace.clone().unwrap_or_default();
        by_service
            .entry((namespace, name.clone()))
            .or_default()
            .push(slice);
    }
    let mut desired = BTreeMap::new();
    for service in services.iter().map(Borrow::borrow) {
        let key = (
            service.metadata.namespace.clone().unwrap_or_default(),
            service.metadata.name.clone().unwrap_or_default(),
        );
        let slices = by_service.get(&key).map(Vec::as_slice).unwrap_or_default();
        add_service(node, service, slices, &mut desired);
    }
    desired
}

fn add_service(
    node: &NodeView,
    service: &Service,
    slices: &[&EndpointSlice],
    desired: &mut BTreeMap<ServiceKey, DesiredService>,
) {
    let Some(spec) = &service.spec else { return };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if kind == "ExternalName" {
        return;
    }
    let cluster_ips: Vec<Ipv4Addr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if cluster_ips.is_empty() {
        // Headless ("None") or not yet allocated: nothing to balance.
        return;
    }
    let mut flags = 0;
    let mut affinity_timeout_secs = 0;
    if spec.session_affinity.as_deref() == Some("ClientIP") {
        flags |= SERVICE_AFFINITY;
        affinity_timeout_secs = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECS);
    }
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let mut external: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if kind == "LoadBalancer" {
        let ingress = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        external.extend(
            ingress
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok()),
        );
    }
    for port in spec.ports.iter().flatten() {
        let Some(proto) = protocol(port.protocol.as_deref()) else {
            continue;
        };
        let Ok(service_port) = u16::try_from(port.port) else {
            continue;
        };
        let all = backends(node, port, proto, slices);
        let local: Vec<Backend> = all
            .iter()
            .filter(|b| b.flags & BACKEND_LOCAL != 0)
            .copied()
            .collect();
        let internal = DesiredService {
            backends: if internal_local {
                local.clone()
            } else {
                all.clone()
            },
            flags: flags
                | if internal_local {
                    SERVICE_INTERNAL_LOCAL
                } else {
                    0
                },
            affinity_timeout_secs,
        };
        let outside = DesiredService {
            backends: if external_local { local } else { all },
            flags: flags
                | SERVICE_EXTERNAL
                | if external_local {
                    SERVICE_EXTERNAL_LOCAL
                } else {
                    0
                },
            affinity_timeout_secs,
        };
        for ip in &cluster_ips {
            desired.insert(
                ServiceKey::new(ip.octets(), service_port, proto),
                internal.clone(),
            );
        }
        for ip in &external {
            desired.insert(
                ServiceKey::new(ip.octets(), service_port, proto),
                outside.clone(),
            );
        }
        let node_port = port.node_port.and_then(|p| u16::try_from(p).ok());
        if matches!(kind, "NodePort" | "LoadBalancer")
            && let (Some(node_port), Some(address)) = (node_port, node.address)
        {
            desired.insert(
                ServiceKey::new(address.octets(), node_port, proto),
                outside.clone(),
            );
        }
    }
}

fn protocol(name: Option<&str>) -> Option<u8> {
    match name.unwrap_or("TCP") {
        "TCP" => Some(PROTO_TCP),
        "UDP" => Some(PROTO_UDP),
        _ => None, // SCTP is not balanced by this data plane.
    }
}

/// The backends of one service port: ready endpoints, and serving-but-terminating ones
/// marked so that they keep existing flows only.
fn backends(
    node: &NodeView,
    port: &ServicePort,
    proto: u8,
    slices: &[&EndpointSlice],
) -> Vec<Backend> {
    let mut out = Vec::new();
    for slice in slices {
        // The slice port with the service port's name (both unnamed for a one-port service).
        let Some(target) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port.name.as_deref().unwrap_or("")
                && protocol(p.protocol.as_deref()) == Some(proto)
        }) else {
            continue;
        };
        let Some(target) = target.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let Some(mut flags) = endpoint_flags(endpoint) else {
                continue;
            };
            if endpoint.node_name.as_deref() == Some(node.name.as_str()) {
                flags |= BACKEND_LOCAL;
            }
            for address in &endpoint.addresses {
                if let Ok(ip) = address.parse::<Ipv4Addr>() {
                    out.push(Backend::new(ip.octets(), target, proto, flags));
                }
            }
        }
    }
    out.sort_by_key(|b| (u32::from_be(b.addr), b.port));
    out.dedup_by_key(|b| (b.addr, b.port));
    out
}

/// `Some(0)` for a ready endpoint, `Some(BACKEND_TERMINATING)` for one that is terminating
/// but still serving, `None` for one that takes no traffic.
fn endpoint_flags(endpoint: &Endpoint) -> Option<u32> {
    let conditions = endpoint.conditions.as_ref();
    // An unset `ready` means ready (discovery/v1).
    let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
    let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
    if ready && !terminating {
        Some(0)
    } else if serving && terminating {
        Some(BACKEND_TERMINATING)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::k8s_openapi::{
        api::{
            core::v1::{
                ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, ServiceSpec,
                ServiceStatus, SessionAffinityConfig,
            },
            discovery::v1::{EndpointConditions, EndpointPort},
        },
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    fn service(kind: &str, ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some(kind.into()),
                cluster_ip: Some("10.96.0.20".into()),
                cluster_ips: Some(vec!["10.96.0.20".into()]),
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    fn port(name: &str, port: i32, node_port: Option<i32>) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            node_port,
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        }
    }

    fn endpoint(ip: &str, node: &str, ready: bool, terminating: bool) -> Endpoint {
        Endpoint {
            addresses: vec![ip.into()],
            node_name: Some(node.into()),
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(ready || terminating),
                terminating: Some(terminating),
            }),
            ..Endpoint::default()
        }
    }

    fn slice(endpoints: Vec<Endpoint>, ports: &[(&str, i32)]) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("default".into()),
                labels: Some([(SERVICE_NAME_LABEL.to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints,
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port)| EndpointPort {
                        name: Some((*name).into()),
                        port: Some(*port),
                        protocol: Some("TCP".into()),
                        ..EndpointPort::default()
                    })
                    .collect(),
            ),
        }
    }

    fn node() -> NodeView {
        NodeView {
            name: "node-a".into(),
            address: Some(Ipv4Addr::new(192, 168, 7, 2)),
        }
    }

    fn key(ip: [u8; 4], port: u16) -> ServiceKey {
        ServiceKey::new(ip, port, PROTO_TCP)
    }

    #[test]
    fn a_cluster_ip_port_balances_over_ready_endpoints_with_the_matching_port_name() {
        let svc = service(
            "ClusterIP",
            vec![port("http", 80, None), port("admin", 9000, None)],
        );
        let eps = slice(
            vec![
                endpoint("10.244.1.5", "node-a", true, false),
                endpoint("10.244.2.5", "node-b", true, false),
                endpoint("10.244.2.6", "node-b", false, false),
            ],
            &[("http", 8080), ("admin", 9090)],
        );
        let desired = desired_services(&node(), &[svc], &[eps]);
        assert_eq!(desired.len(), 2);
        let http = &desired[&key([10, 96, 0, 20], 80)];
        assert_eq!(
            http.backends,
            vec![
                Backend::new([10, 244, 1, 5], 8080, PROTO_TCP, BACKEND_LOCAL),
                Backend::new([10, 244, 2, 5], 8080, PROTO_TCP, 0),
            ],
            "the unready endpoint is left out; the local one is marked"
        );
        assert_eq!(
            desired[&key([10, 96, 0, 20], 9000)].backends[0].port,
            9090u16.to_be()
        );
    }

    #[test]
    fn node_port_and_load_balancer_entries_use_only_local_backends_under_external_policy_local() {
        let mut svc = service("LoadBalancer", vec![port("http", 80, Some(30080))]);
        let spec = svc.spec.as_mut().unwrap();
        spec.external_traffic_policy = Some("Local".into());
        spec.session_affinity = Some("ClientIP".into());
        svc.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("203.0.113.7".into()),
                    ..LoadBalancerIngress::default()
                }]),
            }),
            ..ServiceStatus::default()
        });
        let eps = slice(
            vec![
                endpoint("10.244.1.5", "node-a", true, false),
                endpoint("10.244.2.5", "node-b", true, false),
            ],
            &[("http", 8080)],
        );
        let desired = desired_services(&node(), &[svc], &[eps]);
        let cluster = &desired[&key([10, 96, 0, 20], 80)];
        assert_eq!(
            cluster.backends.len(),
            2,
            "in-cluster traffic uses every backend"
        );
        assert_eq!(cluster.flags, SERVICE_AFFINITY);
        assert_eq!(cluster.affinity_timeout_secs, DEFAULT_AFFINITY_TIMEOUT_SECS);
        for outside in [key([192, 168, 7, 2], 30080), key([203, 0, 113, 7], 80)] {
            let entry = &desired[&outside];
            assert_eq!(entry.backends.len(), 1, "only the local backend");
            assert_eq!(
                entry.flags,
                SERVICE_AFFINITY | SERVICE_EXTERNAL | SERVICE_EXTERNAL_LOCAL
            );
        }
    }

    #[test]
    fn terminating_endpoints_are_kept_for_existing_flows_and_unready_ones_dropped() {
        let svc = service("ClusterIP", vec![port("", 80, None)]);
        let eps = slice(
            vec![
                endpoint("10.244.1.5", "node-a", false, true),
                endpoint("10.244.1.6", "node-a", false, false),
            ],
            &[("", 8080)],
        );
        let desired = desired_services(&node(), &[svc], &[eps]);
        let entry = &desired[&key([10, 96, 0, 20], 80)];
        assert_eq!(entry.backends.len(), 1);
        assert_eq!(entry.backends[0].flags, BACKEND_TERMINATING | BACKEND_LOCAL);
    }

    #[test]
    fn headless_and_external_name_services_get_no_entry() {
        let mut headless = service("ClusterIP", vec![port("", 80, None)]);
        let spec = headless.spec.as_mut().unwrap();
        spec.cluster_ip = Some("None".into());
        spec.cluster_ips = Some(vec!["None".into()]);
        let external_name = service("ExternalName", vec![port("", 80, None)]);
        let desired =
            desired_services(&node(), &[headless, external_name], &[] as &[EndpointSlice]);
        assert!(desired.is_empty());
    }

    #[test]
    fn a_custom_affinity_timeout_is_kept() {
        let mut svc = service("ClusterIP", vec![port("", 80, None)]);
        let spec = svc.spec.as_mut().unwrap();
        spec.session_affinity = Some("ClientIP".into());
        spec.session_affinity_config = Some(SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(60),
            }),
        });
        let desired = desired_services(&node(), &[svc], &[] as &[EndpointSlice]);
        let entry = &desired[&key([10, 96, 0, 20], 80)];
        assert_eq!(entry.affinity_timeout_secs, 60);
        assert!(
            entry.backends.is_empty(),
            "no slice yet: connections are refused"
        );
    }
}
