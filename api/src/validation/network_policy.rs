//! NetworkPolicies: the pod selector, rule ports (protocol, port or port range), peers
//! (exactly one kind of peer, IP blocks whose exceptions lie inside them) and policy types.

use std::net::Ipv4Addr;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::validate_label_selector;
use super::names::{INVALID_CIDR, parse_ipv4};
use super::pod::{validate_port_num_or_name, validate_protocol};
use super::{FieldError, Path};

/// An IPv4 CIDR, host bits allowed (as Kubernetes parses policy CIDRs), as a network and
/// prefix length.
fn parse_cidr(value: &str) -> Option<(u32, u8)> {
    let (addr, bits) = value.split_once('/')?;
    let addr: Ipv4Addr = parse_ipv4(addr)?;
    let bits: u8 = bits.parse().ok().filter(|b| *b <= 32)?;
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(bits))
    };
    Some((u32::from(addr) & mask, bits))
}

fn validate_port(port: &NetworkPolicyPort, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    errors.extend(validate_protocol(
        port.protocol.as_deref(),
        &path.child("protocol"),
    ));
    if let Some(number) = &port.port {
        errors.extend(validate_port_num_or_name(number, &path.child("port")));
    }
    if let Some(end) = port.end_port {
        match &port.port {
            Some(IntOrString::Int(start)) => {
                if end < *start {
                    errors.push(FieldError::invalid(
                        &path.child("endPort"),
                        &end,
                        "must be greater than or equal to `port`",
                    ));
                }
            }
            Some(IntOrString::String(_)) => errors.push(FieldError::forbidden(
                &path.child("endPort"),
                "may not be specified when `port` is non-numeric",
            )),
            None => errors.push(FieldError::required(
                &path.child("port"),
                "must be specified when `endPort` is set",
            )),
        }
    }
    errors
}

fn validate_peer(peer: &NetworkPolicyPeer, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let selectors =
        usize::from(peer.pod_selector.is_some()) + usize::from(peer.namespace_selector.is_some());
    if let Some(selector) = &peer.pod_selector {
        errors.extend(validate_label_selector(
            selector,
            &path.child("podSelector"),
        ));
    }
    if let Some(selector) = &peer.namespace_selector {
        errors.extend(validate_label_selector(
            selector,
            &path.child("namespaceSelector"),
        ));
    }
    match &peer.ip_block {
        Some(_) if selectors > 0 => errors.push(FieldError::forbidden(
            path,
            "may not specify both ipBlock and another peer",
        )),
        Some(block) => {
            let block_path = path.child("ipBlock");
            match parse_cidr(&block.cidr) {
                None if block.cidr.is_empty() => {
                    errors.push(FieldError::required(&block_path.child("cidr"), ""));
                }
                None => errors.push(FieldError::invalid(
                    &block_path.child("cidr"),
                    block.cidr.as_str(),
                    INVALID_CIDR,
                )),
                Some((network, bits)) => {
                    for (i, except) in block.except.iter().flatten().enumerate() {
                        let at = block_path.child("except").index(i);
                        match parse_cidr(except) {
                            None => {
                                errors.push(FieldError::invalid(&at, except.as_str(), INVALID_CIDR))
                            }
                            Some((inner, inner_bits)) => {
                                let mask = if bits == 0 {
                                    0
                                } else {
                                    u32::MAX << (32 - u32::from(bits))
                                };
                                if inner_bits <= bits || inner & mask != network {
                                    errors.push(FieldError::invalid(
                                        &at,
                                        except.as_str(),
                                        "must be a strict subset of `cidr`",
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
        None if selectors == 0 => errors.push(FieldError::required(path, "must specify a peer")),
        None => {}
    }
    errors
}

/// Validates a NetworkPolicy.
pub fn validate_network_policy(policy: &NetworkPolicy) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let spec_path = Path::new("spec");
    let Some(spec) = &policy.spec else {
        return vec![FieldError::required(&spec_path, "")];
    };
    if let Some(selector) = &spec.pod_selector {
        errors.extend(validate_label_selector(
            selector,
            &spec_path.child("podSelector"),
        ));
    }
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        let at = spec_path.child("ingress").index(i);
        for (j, port) in rule.ports.iter().flatten().enumerate() {
            errors.extend(validate_port(port, &at.child("ports").index(j)));
        }
        for (j, peer) in rule.from.iter().flatten().enumerate() {
            errors.extend(validate_peer(peer, &at.child("from").index(j)));
        }
    }
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        let at = spec_path.child("egress").index(i);
        for (j, port) in rule.ports.iter().flatten().enumerate() {
            errors.extend(validate_port(port, &at.child("ports").index(j)));
        }
        for (j, peer) in rule.to.iter().flatten().enumerate() {
            errors.extend(validate_peer(peer, &at.child("to").index(j)));
        }
    }
    let types = spec.policy_types.as_deref().unwrap_or_default();
    let types_path = spec_path.child("policyTypes");
    for (i, policy_type) in types.iter().enumerate() {
        if !["Ingress", "Egress"].contains(&policy_type.as_str()) {
            errors.push(FieldError::not_supported(
                &types_path.index(i),
                policy_type.as_str(),
                &["Egress", "Ingress"],
            ));
        }
    }
    if types.len() > 2 {
        errors.push(FieldError::invalid(
            &types_path,
            types,
            "may not specify more than two policyTypes",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicyIngressRule, NetworkPolicySpec};

    fn policy(peers: Vec<NetworkPolicyPeer>, ports: Vec<NetworkPolicyPort>) -> NetworkPolicy {
        NetworkPolicy {
            spec: Some(NetworkPolicySpec {
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(peers),
                    ports: Some(ports),
                }]),
                policy_types: Some(vec!["Ingress".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn block(cidr: &str, except: &[&str]) -> NetworkPolicyPeer {
        NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: cidr.into(),
                except: Some(except.iter().map(|e| (*e).to_owned()).collect()),
            }),
            ..Default::default()
        }
    }

    fn strings(errors: Vec<FieldError>) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn policy_allowing_a_cidr_on_a_port_range_is_valid() {
        let port = NetworkPolicyPort {
            port: Some(IntOrString::Int(8000)),
            end_port: Some(9000),
            protocol: Some("TCP".into()),
        };
        assert!(
            validate_network_policy(&policy(
                vec![block("10.0.0.0/8", &["10.1.0.0/16"])],
                vec![port]
            ))
            .is_empty()
        );
    }

    #[test]
    fn peers_and_port_ranges_are_checked() {
        let port = NetworkPolicyPort {
            port: Some(IntOrString::Int(9000)),
            end_port: Some(8000),
            protocol: Some("TCP".into()),
        };
        let found = strings(validate_network_policy(&policy(
            vec![
                NetworkPolicyPeer::default(),
                block("10.0.0.0/16", &["192.168.0.0/24"]),
            ],
            vec![port],
        )));
        assert_eq!(
            found,
            vec![
                "spec.ingress[0].ports[0].endPort: Invalid value: 8000: must be greater than or equal to `port`",
                "spec.ingress[0].from[0]: Required value: must specify a peer",
                r#"spec.ingress[0].from[1].ipBlock.except[0]: Invalid value: "192.168.0.0/24": must be a strict subset of `cidr`"#,
            ]
        );
    }
}
