//! `describe service`: type, addresses, each port with its target and node port, the
//! endpoints behind it (from its EndpointSlices), and its traffic policies.

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};

use super::{common, writer::Writer};
use crate::columns::format_label_map;

/// `10.1.0.5:8080,10.1.0.6:8080` for the ready endpoints of `port_name` in `slices`,
/// the first three then `+ N more...`; `<none>` when there are none.
pub fn endpoints(slices: &[EndpointSlice], port_name: &str) -> String {
    let mut addresses = Vec::new();
    for slice in slices {
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| p.port);
        let Some(port) = port else { continue };
        for endpoint in &slice.endpoints {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if ready {
                addresses.extend(endpoint.addresses.iter().map(|a| format!("{a}:{port}")));
            }
        }
    }
    match addresses.len() {
        0 => "<none>".to_owned(),
        1..=3 => addresses.join(","),
        n => format!("{} + {} more...", addresses[..3].join(","), n - 3),
    }
}

/// Writes a Service's description (without events); `slices` are its EndpointSlices.
pub fn describe(w: &mut Writer, service: &Service, slices: &[EndpointSlice]) {
    let meta = &service.metadata;
    let spec = service.spec.clone().unwrap_or_default();
    w.field(0, "Name", meta.name.as_deref().unwrap_or_default());
    w.field(
        0,
        "Namespace",
        meta.namespace.as_deref().unwrap_or_default(),
    );
    w.multiline(0, "Labels", &common::label_lines(meta.labels.as_ref()));
    w.multiline(
        0,
        "Annotations",
        &common::annotation_lines(meta.annotations.as_ref()),
    );
    w.field(0, "Selector", format_label_map(spec.selector.as_ref()));
    let kind = spec.type_.clone().unwrap_or_else(|| "ClusterIP".to_owned());
    w.field(0, "Type", &kind);
    if let Some(policy) = &spec.ip_family_policy {
        w.field(0, "IP Family Policy", policy);
    }
    if let Some(families) = spec.ip_families.as_ref().filter(|f| !f.is_empty()) {
        w.field(0, "IP Families", families.join(","));
    }
    w.field_or_none(0, "IP", spec.cluster_ip.as_deref().unwrap_or_default());
    if let Some(ips) = spec.cluster_ips.as_ref().filter(|i| !i.is_empty()) {
        w.field(0, "IPs", ips.join(","));
    }
    if let Some(external) = spec.external_ips.as_ref().filter(|e| !e.is_empty()) {
        w.field(0, "External IPs", external.join(","));
    }
    if let Some(name) = &spec.external_name {
        w.field(0, "External Name", name);
    }
    let ingress: Vec<String> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect();
    if !ingress.is_empty() {
        w.field(0, "LoadBalancer Ingress", ingress.join(", "));
    }
    for port in spec.ports.iter().flatten() {
        let name = port.name.clone().filter(|n| !n.is_empty());
        let shown = name.clone().unwrap_or_else(|| "<unset>".to_owned());
        let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
        w.field(0, "Port", format!("{shown}  {}/{protocol}", port.port));
        let target = port
            .target_port
            .as_ref()
            .map_or_else(|| port.port.to_string(), common::int_or_string);
        w.field(0, "TargetPort", format!("{target}/{protocol}"));
        if let Some(node_port) = port.node_port.filter(|p| *p != 0) {
            w.field(0, "NodePort", format!("{shown}  {node_port}/{protocol}"));
        }
        w.field(
            0,
            "Endpoints",
            endpoints(slices, name.as_deref().unwrap_or("")),
        );
    }
    w.field(
        0,
        "Session Affinity",
        spec.session_affinity.as_deref().unwrap_or("None"),
    );
    if matches!(kind.as_str(), "NodePort" | "LoadBalancer") {
        w.field(
            0,
            "External Traffic Policy",
            spec.external_traffic_policy.as_deref().unwrap_or("Cluster"),
        );
    }
    if let Some(policy) = &spec.internal_traffic_policy {
        w.field(0, "Internal Traffic Policy", policy);
    }
}
