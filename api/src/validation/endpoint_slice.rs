//! EndpointSlices: a known address type fixed for the slice's life, endpoints whose
//! addresses are of that type (1 to 100 each, at most 1000 endpoints), and ports with
//! unique optional names.

use std::collections::BTreeSet;

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::names::{is_dns1123_label, is_dns1123_subdomain, parse_ipv4};
use super::pod::validate_protocol;
use super::{FieldError, Path, immutable};

/// Address types.
pub const ADDRESS_TYPES: [&str; 3] = ["IPv4", "IPv6", "FQDN"];
/// Most endpoints in one slice.
pub const MAX_ENDPOINTS: usize = 1000;
/// Most addresses of one endpoint.
pub const MAX_ADDRESSES: usize = 100;
/// Most ports of one slice.
pub const MAX_PORTS: usize = 20000;

fn validate_address(address_type: &str, address: &str, path: &Path) -> Vec<FieldError> {
    match address_type {
        "IPv4" if parse_ipv4(address).is_none() => {
            vec![FieldError::invalid(
                path,
                address,
                "must be a valid IPv4 address",
            )]
        }
        "IPv6" if address.parse::<std::net::Ipv6Addr>().is_err() => {
            vec![FieldError::invalid(
                path,
                address,
                "must be a valid IPv6 address",
            )]
        }
        "FQDN" => is_dns1123_subdomain(address)
            .into_iter()
            .map(|msg| FieldError::invalid(path, address, msg))
            .collect(),
        _ => Vec::new(),
    }
}

/// Validates an EndpointSlice.
pub fn validate_endpoint_slice(slice: &EndpointSlice) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let address_type = slice.address_type.as_str();
    let type_path = Path::new("addressType");
    if address_type.is_empty() {
        errors.push(FieldError::required(&type_path, ""));
    } else if !ADDRESS_TYPES.contains(&address_type) {
        errors.push(FieldError::not_supported(
            &type_path,
            address_type,
            &ADDRESS_TYPES,
        ));
    }
    let endpoints_path = Path::new("endpoints");
    if slice.endpoints.len() > MAX_ENDPOINTS {
        errors.push(FieldError::too_many(
            &endpoints_path,
            slice.endpoints.len(),
            MAX_ENDPOINTS,
        ));
    }
    for (i, endpoint) in slice.endpoints.iter().enumerate() {
        let at = endpoints_path.index(i);
        let addresses_path = at.child("addresses");
        if endpoint.addresses.is_empty() {
            errors.push(FieldError::required(
                &addresses_path,
                "must contain at least 1 address",
            ));
        } else if endpoint.addresses.len() > MAX_ADDRESSES {
            errors.push(FieldError::too_many(
                &addresses_path,
                endpoint.addresses.len(),
                MAX_ADDRESSES,
            ));
        }
        for (j, address) in endpoint.addresses.iter().enumerate() {
            errors.extend(validate_address(
                address_type,
                address,
                &addresses_path.index(j),
            ));
        }
        if let Some(hostname) = endpoint.hostname.as_deref() {
            for msg in is_dns1123_label(hostname) {
                errors.push(FieldError::invalid(&at.child("hostname"), hostname, msg));
            }
        }
        if let Some(node) = endpoint.node_name.as_deref() {
            for msg in is_dns1123_subdomain(node) {
                errors.push(FieldError::invalid(&at.child("nodeName"), node, msg));
            }
        }
    }
    let ports_path = Path::new("ports");
    let ports = slice.ports.as_deref().unwrap_or_default();
    if ports.len() > MAX_PORTS {
        errors.push(FieldError::too_many(&ports_path, ports.len(), MAX_PORTS));
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = ports_path.index(i);
        let name = port.name.as_deref().unwrap_or_default();
        if !name.is_empty() {
            for msg in is_dns1123_label(name) {
                errors.push(FieldError::invalid(&at.child("name"), name, msg));
            }
        }
        if !names.insert(name) {
            errors.push(FieldError::duplicate(&at.child("name"), name));
        }
        if let Some(number) = port.port
            && !(0..=65535).contains(&number)
        {
            errors.push(FieldError::invalid(
                &at.child("port"),
                &number,
                super::names::inclusive_range_error(0, 65535),
            ));
        }
        errors.extend(validate_protocol(
            port.protocol.as_deref(),
            &at.child("protocol"),
        ));
    }
    errors
}

/// A slice's address type may not change.
pub fn validate_endpoint_slice_update(old: &EndpointSlice, new: &EndpointSlice) -> Vec<FieldError> {
    immutable(
        &old.address_type,
        &new.address_type,
        new.address_type.as_str(),
        &Path::new("addressType"),
    )
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort};

    fn slice(address_type: &str, addresses: Vec<Vec<&str>>) -> EndpointSlice {
        EndpointSlice {
            address_type: address_type.into(),
            endpoints: addresses
                .into_iter()
                .map(|a| Endpoint {
                    addresses: a.into_iter().map(Into::into).collect(),
                    ..Default::default()
                })
                .collect(),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                protocol: Some("TCP".into()),
                app_protocol: None,
            }]),
            ..Default::default()
        }
    }

    fn strings(errors: Vec<FieldError>) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn ipv4_slice_with_addresses_is_valid() {
        assert!(validate_endpoint_slice(&slice("IPv4", vec![vec!["10.244.1.5"]])).is_empty());
    }

    #[test]
    fn unknown_address_type_is_unsupported() {
        assert_eq!(
            strings(validate_endpoint_slice(&slice("IPX", vec![]))),
            vec![
                r#"addressType: Unsupported value: "IPX": supported values: "FQDN", "IPv4", "IPv6""#
            ]
        );
    }

    #[test]
    fn endpoints_need_addresses_of_the_slice_type() {
        assert_eq!(
            strings(validate_endpoint_slice(&slice(
                "IPv4",
                vec![vec![], vec!["fd00::1"]]
            ))),
            vec![
                "endpoints[0].addresses: Required value: must contain at least 1 address",
                r#"endpoints[1].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address"#,
            ]
        );
    }

    #[test]
    fn address_type_is_immutable() {
        let old = slice("IPv4", vec![]);
        let new = slice("IPv6", vec![]);
        assert_eq!(
            strings(validate_endpoint_slice_update(&old, &new)),
            vec![r#"addressType: Invalid value: "IPv6": field is immutable"#]
        );
    }
}
