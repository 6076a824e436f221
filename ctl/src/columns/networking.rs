//! Tables of Services, EndpointSlices and NetworkPolicies, with kubectl's columns:
//! `TYPE CLUSTER-IP EXTERNAL-IP PORT(S)` for a Service, the first three ports and
//! addresses (`+ N more...`) for a slice.

use k8s_openapi::api::{
    core::v1::{LoadBalancerStatus, Service},
    discovery::v1::EndpointSlice,
    networking::v1::NetworkPolicy,
};

use super::{RowContext, creation, format_label_map, format_label_selector};
use crate::age;

/// Service columns after NAME.
pub fn service_headers(wide: bool) -> Vec<&'static str> {
    let mut headers = vec!["TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"];
    if wide {
        headers.push("SELECTOR");
    }
    headers
}

/// Service cells after NAME.
pub fn service_row(service: &Service, ctx: &RowContext) -> Vec<String> {
    let spec = service.spec.clone().unwrap_or_default();
    let kind = spec.type_.clone().unwrap_or_else(|| "ClusterIP".to_owned());
    let cluster_ip = spec
        .cluster_ip
        .clone()
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| "<none>".to_owned());
    let mut cells = vec![
        kind,
        cluster_ip,
        external_ip(service),
        ports(service),
        age::since(creation(&service.metadata), ctx.now),
    ];
    if ctx.wide {
        cells.push(format_label_map(spec.selector.as_ref()));
    }
    cells
}

/// The EXTERNAL-IP column: load-balancer ingress and external IPs, `<pending>` for a load
/// balancer without an address yet, the DNS name of an ExternalName service.
pub fn external_ip(service: &Service) -> String {
    let spec = service.spec.clone().unwrap_or_default();
    let external = spec.external_ips.unwrap_or_default();
    match spec.type_.as_deref().unwrap_or("ClusterIP") {
        "ClusterIP" | "NodePort" if !external.is_empty() => external.join(","),
        "ClusterIP" | "NodePort" => "<none>".to_owned(),
        "LoadBalancer" => {
            let mut addresses = load_balancer_addresses(
                service
                    .status
                    .as_ref()
                    .and_then(|s| s.load_balancer.as_ref()),
            );
            addresses.extend(external);
            if addresses.is_empty() {
                "<pending>".to_owned()
            } else {
                addresses.join(",")
            }
        }
        "ExternalName" => spec.external_name.unwrap_or_default(),
        _ => "<unknown>".to_owned(),
    }
}

fn load_balancer_addresses(status: Option<&LoadBalancerStatus>) -> Vec<String> {
    status
        .and_then(|s| s.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i.ip.clone()
                .filter(|ip| !ip.is_empty())
                .or_else(|| i.hostname.clone().filter(|h| !h.is_empty()))
        })
        .collect()
}

/// The PORT(S) column: `80/TCP`, `80:30080/TCP` with a node port, comma-separated.
pub fn ports(service: &Service) -> String {
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    if ports.is_empty() {
        return "<none>".to_owned();
    }
    ports
        .iter()
        .map(|p| {
            let protocol = p.protocol.as_deref().unwrap_or("TCP");
            match p.node_port {
                Some(node_port) if node_port != 0 => {
                    format!("{}:{node_port}/{protocol}", p.port)
                }
                _ => format!("{}/{protocol}", p.port),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// EndpointSlice columns after NAME.
pub fn endpointslice_headers(_wide: bool) -> Vec<&'static str> {
    vec!["ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
}

/// EndpointSlice cells after NAME.
pub fn endpointslice_row(slice: &EndpointSlice, ctx: &RowContext) -> Vec<String> {
    let ports: Vec<String> = slice
        .ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|p| match (p.port, &p.name) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) => name.clone(),
            (None, None) => "*".to_owned(),
        })
        .collect();
    let addresses: Vec<String> = slice
        .endpoints
        .iter()
        .flat_map(|e| e.addresses.iter().cloned())
        .collect();
    vec![
        slice.address_type.clone(),
        first_three(&ports),
        first_three(&addresses),
        age::since(creation(&slice.metadata), ctx.now),
    ]
}

/// kubectl's `listWithMoreString`: the first three, then `+ N more...`; `<unset>` if none.
fn first_three(items: &[String]) -> String {
    const SHOWN: usize = 3;
    if items.is_empty() {
        return "<unset>".to_owned();
    }
    let shown = items[..items.len().min(SHOWN)].join(",");
    if items.len() > SHOWN {
        format!("{shown} + {} more...", items.len() - SHOWN)
    } else {
        shown
    }
}

/// NetworkPolicy columns after NAME.
pub fn networkpolicy_headers(_wide: bool) -> Vec<&'static str> {
    vec!["POD-SELECTOR", "AGE"]
}

/// NetworkPolicy cells after NAME.
pub fn networkpolicy_row(policy: &NetworkPolicy, ctx: &RowContext) -> Vec<String> {
    let selector = policy.spec.as_ref().and_then(|s| s.pod_selector.as_ref());
    let formatted = format_label_selector(selector);
    vec![
        if formatted == "<none>" {
            String::new()
        } else {
            formatted
        },
        age::since(creation(&policy.metadata), ctx.now),
    ]
}
