//! Defaults of Services, as Kubernetes' `SetDefaults_Service` and the Service registry set
//! them: type ClusterIP, no session affinity, TCP ports whose `targetPort` is their `port`,
//! traffic policies Cluster, and single-stack IPv4 (Skiff serves IPv4).

use k8s_openapi::api::core::v1::{ClientIPConfig, Service, SessionAffinityConfig};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::set_if_empty;

/// Seconds a ClientIP session sticks to one backend unless set (3 hours).
pub const DEFAULT_CLIENT_IP_AFFINITY_SECONDS: i32 = 10800;

/// Kubernetes treats a `targetPort` of `0` or `""` as unset.
fn target_port_is_unset(target: Option<&IntOrString>) -> bool {
    match target {
        None | Some(IntOrString::Int(0)) => true,
        Some(IntOrString::String(s)) => s.is_empty(),
        Some(IntOrString::Int(_)) => false,
    }
}

/// Defaults a Service.
pub fn default_service(service: &mut Service) {
    let spec = service.spec.get_or_insert_with(Default::default);
    set_if_empty(&mut spec.session_affinity, "None");
    match spec.session_affinity.as_deref() {
        Some("None") => spec.session_affinity_config = None,
        Some("ClientIP") => {
            let has_timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .is_some_and(|c| c.timeout_seconds.is_some());
            if !has_timeout {
                spec.session_affinity_config = Some(SessionAffinityConfig {
                    client_ip: Some(ClientIPConfig {
                        timeout_seconds: Some(DEFAULT_CLIENT_IP_AFFINITY_SECONDS),
                    }),
                });
            }
        }
        _ => {}
    }
    set_if_empty(&mut spec.type_, "ClusterIP");
    for port in spec.ports.iter_mut().flatten() {
        set_if_empty(&mut port.protocol, "TCP");
        if target_port_is_unset(port.target_port.as_ref()) {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
    let service_type = spec.type_.clone().unwrap_or_default();
    let externally_accessible = matches!(service_type.as_str(), "NodePort" | "LoadBalancer")
        || (service_type == "ClusterIP"
            && spec
                .external_ips
                .as_ref()
                .is_some_and(|ips| !ips.is_empty()));
    if externally_accessible {
        set_if_empty(&mut spec.external_traffic_policy, "Cluster");
    }
    if service_type == "ExternalName" {
        return;
    }
    set_if_empty(&mut spec.internal_traffic_policy, "Cluster");
    if service_type == "LoadBalancer" {
        spec.allocate_load_balancer_node_ports.get_or_insert(true);
    }
    // clusterIP and clusterIPs say the same thing; fill in whichever is missing.
    match (&spec.cluster_ip, &spec.cluster_ips) {
        (Some(ip), None) if !ip.is_empty() => spec.cluster_ips = Some(vec![ip.clone()]),
        (None, Some(ips)) if !ips.is_empty() => spec.cluster_ip = Some(ips[0].clone()),
        _ => {}
    }
    set_if_empty(&mut spec.ip_family_policy, "SingleStack");
    if spec.ip_families.as_ref().is_none_or(Vec::is_empty) {
        spec.ip_families = Some(vec!["IPv4".to_owned()]);
    }
}

/// What the control plane allocated and an update may leave out: the cluster IP and node
/// ports of the stored Service are carried into the new one when it omits them (what
/// Kubernetes' Service REST storage does), so `kubectl replace` of a manifest without them
/// keeps them.
pub fn carry_over_allocations(old: &Service, new: &mut Service) {
    let (Some(old_spec), Some(new_spec)) = (old.spec.as_ref(), new.spec.as_mut()) else {
        return;
    };
    let old_type = old_spec.type_.as_deref().unwrap_or("ClusterIP");
    let new_type = new_spec.type_.as_deref().unwrap_or("ClusterIP");
    if new_type == "ExternalName" {
        return;
    }
    let new_ip_unset = new_spec.cluster_ip.as_deref().is_none_or(str::is_empty)
        && new_spec.cluster_ips.as_ref().is_none_or(Vec::is_empty);
    if new_ip_unset && old_type != "ExternalName" {
        new_spec.cluster_ip.clone_from(&old_spec.cluster_ip);
        new_spec.cluster_ips.clone_from(&old_spec.cluster_ips);
    }
    if !matches!(new_type, "NodePort" | "LoadBalancer") {
        return;
    }
    let protocol = |p: &Option<String>| p.clone().unwrap_or_else(|| "TCP".to_owned());
    for port in new_spec.ports.iter_mut().flatten() {
        if port.node_port.is_some_and(|p| p != 0) {
            continue;
        }
        let allocated = old_spec.ports.iter().flatten().find(|old_port| {
            old_port.port == port.port && protocol(&old_port.protocol) == protocol(&port.protocol)
        });
        if let Some(node_port) = allocated.and_then(|p| p.node_port) {
            port.node_port = Some(node_port);
        }
    }
    if new_spec.health_check_node_port.is_none() {
        new_spec.health_check_node_port = old_spec.health_check_node_port;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    fn service(service_type: Option<&str>, ports: Vec<ServicePort>) -> Service {
        Service {
            spec: Some(ServiceSpec {
                type_: service_type.map(Into::into),
                ports: Some(ports),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn port(port: i32, target: Option<IntOrString>) -> ServicePort {
        ServicePort {
            port,
            target_port: target,
            ..Default::default()
        }
    }

    #[test]
    fn cluster_ip_service_gets_kubernetes_defaults() {
        let mut svc = service(None, vec![port(80, None)]);
        default_service(&mut svc);
        let spec = svc.spec.expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.session_affinity.as_deref(), Some("None"));
        assert_eq!(spec.internal_traffic_policy.as_deref(), Some("Cluster"));
        assert_eq!(spec.external_traffic_policy, None);
        assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
        assert_eq!(spec.ip_families, Some(vec!["IPv4".to_owned()]));
        let ports = spec.ports.expect("ports");
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
        assert_eq!(ports[0].target_port, Some(IntOrString::Int(80)));
    }

    #[test]
    fn target_port_zero_or_empty_means_the_port() {
        let mut svc = service(
            None,
            vec![
                port(80, Some(IntOrString::Int(0))),
                port(81, Some(IntOrString::String(String::new()))),
                port(82, Some(IntOrString::String("http".into()))),
            ],
        );
        default_service(&mut svc);
        let ports = svc.spec.expect("spec").ports.expect("ports");
        assert_eq!(ports[0].target_port, Some(IntOrString::Int(80)));
        assert_eq!(ports[1].target_port, Some(IntOrString::Int(81)));
        assert_eq!(
            ports[2].target_port,
            Some(IntOrString::String("http".into()))
        );
    }

    #[test]
    fn node_port_and_load_balancer_services_get_an_external_traffic_policy() {
        for service_type in ["NodePort", "LoadBalancer"] {
            let mut svc = service(Some(service_type), vec![port(80, None)]);
            default_service(&mut svc);
            let spec = svc.spec.expect("spec");
            assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
        }
        let mut lb = service(Some("LoadBalancer"), vec![]);
        default_service(&mut lb);
        assert_eq!(
            lb.spec.expect("spec").allocate_load_balancer_node_ports,
            Some(true)
        );
    }

    #[test]
    fn client_ip_affinity_sticks_for_three_hours() {
        let mut svc = service(None, vec![port(80, None)]);
        svc.spec.as_mut().expect("spec").session_affinity = Some("ClientIP".into());
        default_service(&mut svc);
        let config = svc
            .spec
            .expect("spec")
            .session_affinity_config
            .expect("config");
        assert_eq!(
            config.client_ip.expect("client ip").timeout_seconds,
            Some(10800)
        );
    }

    #[test]
    fn external_name_services_get_no_ip_families() {
        let mut svc = service(Some("ExternalName"), vec![]);
        default_service(&mut svc);
        let spec = svc.spec.expect("spec");
        assert_eq!(spec.ip_families, None);
        assert_eq!(spec.internal_traffic_policy, None);
    }

    #[test]
    fn update_without_allocations_keeps_the_stored_ones() {
        let mut old = service(Some("NodePort"), vec![port(80, None)]);
        let old_spec = old.spec.as_mut().expect("spec");
        old_spec.cluster_ip = Some("10.96.0.7".into());
        old_spec.ports.as_mut().expect("ports")[0].node_port = Some(30080);
        default_service(&mut old);
        let mut new = service(Some("NodePort"), vec![port(80, None)]);
        carry_over_allocations(&old, &mut new);
        let spec = new.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.7"));
        assert_eq!(spec.ports.expect("ports")[0].node_port, Some(30080));
    }

    #[test]
    fn cluster_ip_fills_cluster_ips() {
        let mut svc = service(None, vec![port(80, None)]);
        svc.spec.as_mut().expect("spec").cluster_ip = Some("None".into());
        default_service(&mut svc);
        assert_eq!(
            svc.spec.expect("spec").cluster_ips,
            Some(vec!["None".to_owned()])
        );
    }
}
