//! Services, as Kubernetes' `ValidateService` checks them: type, ports (numbers, names,
//! protocols, target ports, node ports), cluster IP (empty, `None` or IPv4: Skiff serves
//! single-stack IPv4), session affinity, traffic policies; and the cluster IP fixed once set.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Service;

use super::labels::validate_labels;
use super::names::{
    INVALID_IP, is_dns1123_label, is_dns1123_subdomain, is_valid_port_num, parse_ipv4,
};
use super::pod::{validate_port_num_or_name, validate_protocol};
use super::{FieldError, Path, immutable, json_value};

/// Service types.
pub const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
/// The cluster IP of a headless Service.
pub const HEADLESS: &str = "None";
/// Longest ClientIP session affinity, one day.
pub const MAX_CLIENT_IP_AFFINITY_SECONDS: i32 = 86400;

/// Whether a Service is headless (`clusterIP: None`).
pub fn is_headless(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .is_some_and(|s| s.cluster_ip.as_deref() == Some(HEADLESS))
}

fn validate_ip(value: &str, path: &Path) -> Option<FieldError> {
    if parse_ipv4(value).is_some() {
        None
    } else if value.parse::<std::net::Ipv6Addr>().is_ok() {
        Some(FieldError::invalid(
            path,
            value,
            "must be an IPv4 address: Skiff serves single-stack IPv4",
        ))
    } else {
        Some(FieldError::invalid(path, value, INVALID_IP))
    }
}

/// Validates a Service.
pub fn validate_service(service: &Service) -> Vec<FieldError> {
    let spec_path = Path::new("spec");
    let Some(spec) = &service.spec else {
        return vec![FieldError::required(&spec_path, "")];
    };
    let mut errors = Vec::new();
    let service_type = spec.type_.as_deref().unwrap_or_default();
    let type_path = spec_path.child("type");
    match service_type {
        "" => errors.push(FieldError::required(&type_path, "")),
        t if !SERVICE_TYPES.contains(&t) => {
            errors.push(FieldError::not_supported(&type_path, t, &SERVICE_TYPES));
        }
        _ => {}
    }
    let external_name = service_type == "ExternalName";
    let exposes_node_ports = matches!(service_type, "NodePort" | "LoadBalancer");
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or_default();
    let cluster_ip_path = spec_path.child("clusterIP");

    if external_name {
        let name = spec.external_name.as_deref().unwrap_or_default();
        let name_path = spec_path.child("externalName");
        if name.is_empty() {
            errors.push(FieldError::required(&name_path, ""));
        } else {
            for msg in is_dns1123_subdomain(name.strip_suffix('.').unwrap_or(name)) {
                errors.push(FieldError::invalid(&name_path, name, msg));
            }
        }
        if !cluster_ip.is_empty() {
            errors.push(FieldError::forbidden(
                &cluster_ip_path,
                "may not be set for ExternalName services",
            ));
        }
    } else {
        match cluster_ip {
            "" => {}
            HEADLESS => {
                if exposes_node_ports {
                    errors.push(FieldError::invalid(
                        &cluster_ip_path,
                        HEADLESS,
                        format!("may not be set to 'None' for {service_type} services"),
                    ));
                }
            }
            ip => errors.extend(validate_ip(ip, &cluster_ip_path)),
        }
        if let Some(first) = spec.cluster_ips.as_ref().and_then(|ips| ips.first())
            && !cluster_ip.is_empty()
            && first != cluster_ip
        {
            errors.push(FieldError::invalid(
                &spec_path.child("clusterIPs").index(0),
                first.as_str(),
                "must match `clusterIP` when both are specified",
            ));
        }
    }

    let ports = spec.ports.as_deref().unwrap_or_default();
    let ports_path = spec_path.child("ports");
    if ports.is_empty() && !external_name && cluster_ip != HEADLESS {
        errors.push(FieldError::required(&ports_path, ""));
    }
    let mut names = BTreeSet::new();
    let mut port_keys = BTreeSet::new();
    let mut node_port_keys = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = ports_path.index(i);
        let name = port.name.as_deref().unwrap_or_default();
        if name.is_empty() {
            if ports.len() > 1 {
                errors.push(FieldError::required(&at.child("name"), ""));
            }
        } else {
            for msg in is_dns1123_label(name) {
                errors.push(FieldError::invalid(&at.child("name"), name, msg));
            }
            if !names.insert(name) {
                errors.push(FieldError::duplicate(&at.child("name"), name));
            }
        }
        for msg in is_valid_port_num(i64::from(port.port)) {
            errors.push(FieldError::invalid(&at.child("port"), &port.port, msg));
        }
        errors.extend(validate_protocol(
            port.protocol.as_deref(),
            &at.child("protocol"),
        ));
        if let Some(target) = &port.target_port {
            errors.extend(validate_port_num_or_name(target, &at.child("targetPort")));
        }
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let key = format!("{}/{protocol}", port.port);
        if !port_keys.insert(key.clone()) {
            errors.push(FieldError::duplicate(&at, key.as_str()));
        }
        if let Some(node_port) = port.node_port.filter(|p| *p != 0) {
            let node_port_path = at.child("nodePort");
            if !exposes_node_ports {
                errors.push(FieldError::forbidden(
                    &node_port_path,
                    format!("may not be used when `type` is '{service_type}'"),
                ));
            }
            for msg in is_valid_port_num(i64::from(node_port)) {
                errors.push(FieldError::invalid(&node_port_path, &node_port, msg));
            }
            let node_key = format!("{node_port}/{protocol}");
            if !node_port_keys.insert(node_key.clone()) {
                errors.push(FieldError::duplicate(&node_port_path, node_key.as_str()));
            }
        }
    }

    let affinity_path = spec_path.child("sessionAffinity");
    match spec.session_affinity.as_deref().unwrap_or_default() {
        "" => errors.push(FieldError::required(&affinity_path, "")),
        "None" => {
            if let Some(config) = &spec.session_affinity_config {
                errors.push(FieldError::invalid(
                    &spec_path.child("sessionAffinityConfig"),
                    &json_value(config),
                    "must not be set when session affinity is None",
                ));
            }
        }
        "ClientIP" => {
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            if let Some(timeout) = timeout
                && !(1..=MAX_CLIENT_IP_AFFINITY_SECONDS).contains(&timeout)
            {
                errors.push(FieldError::invalid(
                    &spec_path
                        .child("sessionAffinityConfig")
                        .child("clientIP")
                        .child("timeoutSeconds"),
                    &timeout,
                    format!(
                        "must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"
                    ),
                ));
            }
        }
        other => errors.push(FieldError::not_supported(
            &affinity_path,
            other,
            &["ClientIP", "None"],
        )),
    }

    if let Some(policy) = spec
        .external_traffic_policy
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        let path = spec_path.child("externalTrafficPolicy");
        let has_external_ips = spec
            .external_ips
            .as_ref()
            .is_some_and(|ips| !ips.is_empty());
        if !exposes_node_ports && !has_external_ips {
            errors.push(FieldError::invalid(
                &path,
                policy,
                "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
            ));
        } else if !["Cluster", "Local"].contains(&policy) {
            errors.push(FieldError::not_supported(
                &path,
                policy,
                &["Cluster", "Local"],
            ));
        }
    }
    if let Some(policy) = spec
        .internal_traffic_policy
        .as_deref()
        .filter(|p| !p.is_empty())
        && !["Cluster", "Local"].contains(&policy)
    {
        errors.push(FieldError::not_supported(
            &spec_path.child("internalTrafficPolicy"),
            policy,
            &["Cluster", "Local"],
        ));
    }
    if let Some(selector) = &spec.selector {
        errors.extend(validate_labels(selector, &spec_path.child("selector")));
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        errors.extend(validate_ip(ip, &spec_path.child("externalIPs").index(i)));
    }
    if let Some(ip) = spec.load_balancer_ip.as_deref().filter(|ip| !ip.is_empty()) {
        errors.extend(validate_ip(ip, &spec_path.child("loadBalancerIP")));
    }
    for (i, family) in spec.ip_families.iter().flatten().enumerate() {
        if family != "IPv4" {
            errors.push(FieldError::not_supported(
                &spec_path.child("ipFamilies").index(i),
                family.as_str(),
                &["IPv4"],
            ));
        }
    }
    if let Some(policy) = spec.ip_family_policy.as_deref().filter(|p| !p.is_empty()) {
        let path = spec_path.child("ipFamilyPolicy");
        match policy {
            "SingleStack" | "PreferDualStack" => {}
            "RequireDualStack" => errors.push(FieldError::invalid(
                &path,
                policy,
                "this cluster is single-stack IPv4",
            )),
            other => errors.push(FieldError::not_supported(
                &path,
                other,
                &["PreferDualStack", "RequireDualStack", "SingleStack"],
            )),
        }
    }
    errors
}

/// A Service's cluster IP may not change once set (unless it becomes an ExternalName
/// Service, which has none).
pub fn validate_service_update(old: &Service, new: &Service) -> Vec<FieldError> {
    let (Some(old_spec), Some(new_spec)) = (&old.spec, &new.spec) else {
        return Vec::new();
    };
    let old_ip = old_spec.cluster_ip.as_deref().unwrap_or_default();
    let new_ip = new_spec.cluster_ip.as_deref().unwrap_or_default();
    if old_ip.is_empty() || new_spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    immutable(
        old_ip,
        new_ip,
        new_ip,
        &Path::new("spec").child("clusterIP"),
    )
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn port(name: Option<&str>, port: i32) -> ServicePort {
        ServicePort {
            name: name.map(Into::into),
            port,
            ..Default::default()
        }
    }

    fn service(service_type: &str, ports: Vec<ServicePort>) -> Service {
        let mut svc = Service {
            spec: Some(ServiceSpec {
                type_: Some(service_type.into()),
                ports: Some(ports),
                ..Default::default()
            }),
            ..Default::default()
        };
        crate::defaults::service::default_service(&mut svc);
        svc
    }

    fn errors(svc: &Service) -> Vec<String> {
        validate_service(svc)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn spec_mut(svc: &mut Service) -> &mut ServiceSpec {
        svc.spec.as_mut().expect("spec")
    }

    #[test]
    fn defaulted_cluster_ip_service_is_valid() {
        assert!(errors(&service("ClusterIP", vec![port(None, 80)])).is_empty());
        assert!(
            errors(&service(
                "NodePort",
                vec![port(Some("http"), 80), port(Some("https"), 443)]
            ))
            .is_empty()
        );
    }

    #[test]
    fn service_without_ports_is_rejected_unless_headless_or_external_name() {
        assert_eq!(
            errors(&service("ClusterIP", vec![])),
            vec!["spec.ports: Required value"]
        );
        let mut headless = service("ClusterIP", vec![]);
        spec_mut(&mut headless).cluster_ip = Some("None".into());
        assert!(errors(&headless).is_empty());
        let mut external = service("ExternalName", vec![]);
        spec_mut(&mut external).external_name = Some("db.example.com.".into());
        assert!(errors(&external).is_empty());
    }

    #[test]
    fn external_name_service_needs_a_dns_name() {
        assert_eq!(
            errors(&service("ExternalName", vec![])),
            vec!["spec.externalName: Required value"]
        );
    }

    #[test]
    fn unknown_service_type_is_unsupported() {
        assert_eq!(
            errors(&service("Magic", vec![port(None, 80)])),
            vec![
                r#"spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#
            ]
        );
    }

    #[test]
    fn ports_need_names_when_there_are_several() {
        assert_eq!(
            errors(&service(
                "ClusterIP",
                vec![port(None, 80), port(Some("http"), 81)]
            )),
            vec!["spec.ports[0].name: Required value"]
        );
    }

    #[test]
    fn port_names_are_unique_dns_labels() {
        assert_eq!(
            errors(&service(
                "ClusterIP",
                vec![port(Some("web"), 80), port(Some("web"), 81)]
            )),
            vec![r#"spec.ports[1].name: Duplicate value: "web""#]
        );
        let found = errors(&service("ClusterIP", vec![port(Some("Web"), 80)]));
        assert!(found[0].starts_with(
            r#"spec.ports[0].name: Invalid value: "Web": a lowercase RFC 1123 label"#
        ));
    }

    #[test]
    fn port_numbers_protocols_and_target_ports_are_checked() {
        let mut svc = service("ClusterIP", vec![port(Some("a"), 0), port(Some("b"), 81)]);
        let ports = spec_mut(&mut svc).ports.as_mut().expect("ports");
        ports[0].target_port = Some(IntOrString::Int(80));
        ports[1].protocol = Some("SCTPX".into());
        ports[1].target_port = Some(IntOrString::Int(70000));
        assert_eq!(
            errors(&svc),
            vec![
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                r#"spec.ports[1].protocol: Unsupported value: "SCTPX": supported values: "SCTP", "TCP", "UDP""#,
                "spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ]
        );
    }

    #[test]
    fn same_port_and_protocol_twice_is_a_duplicate() {
        assert_eq!(
            errors(&service(
                "ClusterIP",
                vec![port(Some("a"), 80), port(Some("b"), 80)]
            )),
            vec![r#"spec.ports[1]: Duplicate value: "80/TCP""#]
        );
    }

    #[test]
    fn node_ports_are_only_for_node_port_and_load_balancer_services() {
        let mut svc = service("ClusterIP", vec![port(None, 80)]);
        spec_mut(&mut svc).ports.as_mut().expect("ports")[0].node_port = Some(30080);
        assert_eq!(
            errors(&svc),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
        let mut node_port = service("NodePort", vec![port(None, 80)]);
        spec_mut(&mut node_port).ports.as_mut().expect("ports")[0].node_port = Some(70000);
        assert_eq!(
            errors(&node_port),
            vec![
                "spec.ports[0].nodePort: Invalid value: 70000: must be between 1 and 65535, inclusive"
            ]
        );
    }

    #[test]
    fn cluster_ip_is_none_empty_or_ipv4() {
        let mut svc = service("ClusterIP", vec![port(None, 80)]);
        spec_mut(&mut svc).cluster_ip = Some("10.96.0.10".into());
        assert!(errors(&svc).is_empty());
        spec_mut(&mut svc).cluster_ip = Some("ten".into());
        assert_eq!(
            errors(&svc),
            vec![
                r#"spec.clusterIP: Invalid value: "ten": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#
            ]
        );
        spec_mut(&mut svc).cluster_ip = Some("fd00::1".into());
        assert_eq!(errors(&svc).len(), 1);
        let mut node_port = service("NodePort", vec![port(None, 80)]);
        spec_mut(&mut node_port).cluster_ip = Some("None".into());
        assert_eq!(
            errors(&node_port),
            vec![
                r#"spec.clusterIP: Invalid value: "None": may not be set to 'None' for NodePort services"#
            ]
        );
    }

    #[test]
    fn session_affinity_is_none_or_client_ip() {
        let mut svc = service("ClusterIP", vec![port(None, 80)]);
        spec_mut(&mut svc).session_affinity = Some("Sticky".into());
        assert_eq!(
            errors(&svc),
            vec![
                r#"spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None""#
            ]
        );
    }

    #[test]
    fn external_traffic_policy_needs_an_externally_reachable_service() {
        let mut svc = service("ClusterIP", vec![port(None, 80)]);
        spec_mut(&mut svc).external_traffic_policy = Some("Local".into());
        assert_eq!(
            errors(&svc),
            vec![
                r#"spec.externalTrafficPolicy: Invalid value: "Local": may only be set when `type` is 'NodePort' or 'LoadBalancer'"#
            ]
        );
        let mut lb = service("LoadBalancer", vec![port(None, 80)]);
        spec_mut(&mut lb).external_traffic_policy = Some("Local".into());
        assert!(errors(&lb).is_empty());
    }

    #[test]
    fn only_ipv4_families_are_served() {
        let mut svc = service("ClusterIP", vec![port(None, 80)]);
        spec_mut(&mut svc).ip_families = Some(vec!["IPv6".into()]);
        assert_eq!(
            errors(&svc),
            vec![r#"spec.ipFamilies[0]: Unsupported value: "IPv6": supported values: "IPv4""#]
        );
    }

    #[test]
    fn cluster_ip_is_immutable_once_set() {
        let mut old = service("ClusterIP", vec![port(None, 80)]);
        spec_mut(&mut old).cluster_ip = Some("10.96.0.10".into());
        let mut new = old.clone();
        spec_mut(&mut new).cluster_ip = Some("10.96.0.11".into());
        assert_eq!(
            validate_service_update(&old, &new)[0].to_string(),
            r#"spec.clusterIP: Invalid value: "10.96.0.11": field is immutable"#
        );
        let mut external = new.clone();
        spec_mut(&mut external).type_ = Some("ExternalName".into());
        assert!(validate_service_update(&old, &external).is_empty());
        let unallocated = service("ClusterIP", vec![port(None, 80)]);
        assert!(validate_service_update(&unallocated, &new).is_empty());
    }
}
