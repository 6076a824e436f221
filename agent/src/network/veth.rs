//! The veth pair between the node and a pod, through rtnetlink: the host side routed (a /32
//! route to the pod, proxy ARP, forwarding on), the pod side renamed to eth0 with the pod's
//! address and a default route out of it.

use std::{collections::BTreeMap, net::Ipv4Addr, os::fd::AsRawFd, path::Path};

use futures::TryStreamExt;
use rtnetlink::{
    Handle, LinkUnspec, LinkVeth, RouteMessageBuilder, new_connection,
    packet_route::{
        link::{LinkAttribute, LinkMessage},
        route::{RouteAddress, RouteAttribute, RouteScope},
    },
};
use sha2::{Digest, Sha256};

use super::namespaces::{self, NamespaceError};

/// Errors wiring a pod's veth.
#[derive(Debug, thiserror::Error)]
pub enum VethError {
    #[error("netlink: {what}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("opening a netlink socket")]
    Socket(#[source] std::io::Error),
    #[error("writing sysctl {path}")]
    Sysctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error("link {name} vanished while being set up")]
    Missing { name: String },
}

/// The prefix of every pod's host-side link name.
const HOST_PREFIX: &str = "sk";

/// The host side's name for a pod (15 bytes at most, stable for the pod's UID).
pub fn host_name(pod_uid: &str) -> String {
    let digest = Sha256::digest(pod_uid.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{HOST_PREFIX}{}", &hex[..11])
}

/// The pod side's MAC for a pod at `ip`: locally administered and derived from the address
/// (`0a:58` then its four bytes, as other CNI plugins do), so that the node can name it
/// without looking inside the pod's namespace.
pub fn pod_mac(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x0a, 0x58, a, b, c, d]
}

/// A pod's veth as seen from the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodVeth {
    /// The host side's interface index and MAC.
    pub host_index: u32,
    pub host_mac: [u8; 6],
    /// The pod side's MAC (`pod_mac`).
    pub pod_mac: [u8; 6],
}

/// Every pod wired on this node, by address: each /32 route out of a pod's host-side link,
/// with that link's index and MAC. What the data plane's endpoint map is rebuilt from.
///
/// # Errors
/// When netlink fails.
pub async fn pod_veths() -> Result<BTreeMap<Ipv4Addr, PodVeth>, VethError> {
    let (connection, handle, _) = new_connection().map_err(VethError::Socket)?;
    let connection = tokio::spawn(connection);
    let result = async {
        let links: Vec<LinkMessage> = handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(netlink("listing links"))?;
        let hosts: BTreeMap<u32, [u8; 6]> = links
            .iter()
            .filter_map(|link| {
                let mut name = None;
                let mut mac = None;
                for attribute in &link.attributes {
                    match attribute {
                        LinkAttribute::IfName(n) => name = Some(n),
                        LinkAttribute::Address(a) => mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
                        _ => {}
                    }
                }
                name.filter(|n| n.starts_with(HOST_PREFIX))?;
                Some((link.header.index, mac?))
            })
            .collect();
        let routes = super::routes::ipv4_routes(&handle)
            .await
            .map_err(netlink("listing routes"))?;
        Ok(routes
            .iter()
            .filter(|route| route.header.destination_prefix_length == 32)
            .filter_map(|route| {
                let mut destination = None;
                let mut oif = None;
                for attribute in &route.attributes {
                    match attribute {
                        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                            destination = Some(*ip);
                        }
                        RouteAttribute::Oif(index) => oif = Some(*index),
                        _ => {}
                    }
                }
                let (ip, index) = (destination?, oif?);
                let host_mac = *hosts.get(&index)?;
                Some((
                    ip,
                    PodVeth {
                        host_index: index,
                        host_mac,
                        pod_mac: pod_mac(ip),
                    },
                ))
            })
            .collect())
    }
    .await;
    connection.abort();
    result
}

fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> VethError {
    let what = what.into();
    move |source| VethError::Netlink { what, source }
}

async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>, VethError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        // The kernel answers ENODEV for a missing name.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(source) => Err(VethError::Netlink {
            what: format!("looking up {name}"),
            source,
        }),
    }
}

/// Turns IPv4 forwarding on in the agent's network namespace. Pods need it, and so does the
/// uplink program from the start: it hands NodePort and LoadBalancer flows for other nodes'
/// pods to the FIB, which refuses to route them ("forwarding disabled") without it, also on
/// a node that has no pod of its own yet.
///
/// # Errors
/// When the sysctl cannot be written.
pub fn enable_ipv4_forwarding() -> Result<(), VethError> {
    sysctl("/proc/sys/net/ipv4/ip_forward", "1")
}

fn sysctl(path: &str, value: &str) -> Result<(), VethError> {
    std::fs::write(path, value).map_err(|source| VethError::Sysctl {
        path: path.into(),
        source,
    })
}

/// Wires the pod whose network namespace is at `netns` to this node with address `ip`.
/// Replaces a half-made pair from an earlier attempt.
///
/// # Errors
/// When a netlink call or sysctl fails.
pub async fn attach(netns: &Path, pod_uid: &str, ip: Ipv4Addr) -> Result<(), VethError> {
    let (connection, handle, _) = new_connection().map_err(VethError::Socket)?;
    let connection = tokio::spawn(connection);
    let result = attach_with(&handle, netns, pod_uid, ip).await;
    connection.abort();
    result
}

async fn attach_with(
    handle: &Handle,
    netns: &Path,
    pod_uid: &str,
    ip: Ipv4Addr,
) -> Result<(), VethError> {
    let host = host_name(pod_uid);
    let peer = format!("{host}p");
    if let Some(index) = index_of(handle, &host).await? {
        handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(netlink(format!("deleting the stale {host}")))?;
    }
    handle
        .link()
        .add(LinkVeth::new(&host, &peer).build())
        .execute()
        .await
        .map_err(netlink(format!("adding veth {host}")))?;
    let peer_index = index_of(handle, &peer)
        .await?
        .ok_or_else(|| VethError::Missing { name: peer.clone() })?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(peer_index)
                .address(pod_mac(ip).to_vec())
                .build(),
        )
        .execute()
        .await
        .map_err(netlink(format!("setting {peer}'s address")))?;
    let ns_file = std::fs::File::open(netns).map_err(|source| {
        VethError::Namespace(NamespaceError::Os {
            what: "opening the network namespace",
            path: netns.into(),
            source,
        })
    })?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(peer_index)
                .setns_by_fd(ns_file.as_raw_fd())
                .build(),
        )
        .execute()
        .await
        .map_err(netlink(format!("moving {peer} into the pod")))?;

    let host_index = index_of(handle, &host)
        .await?
        .ok_or_else(|| VethError::Missing { name: host.clone() })?;
    sysctl(&format!("/proc/sys/net/ipv4/conf/{host}/proxy_arp"), "1")?;
    sysctl(&format!("/proc/sys/net/ipv4/neigh/{host}/proxy_delay"), "0")?;
    enable_ipv4_forwarding()?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(host_index).up().build())
        .execute()
        .await
        .map_err(netlink(format!("setting {host} up")))?;
    handle
        .route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(ip, 32)
                .output_interface(host_index)
                .scope(RouteScope::Link)
                .build(),
        )
        .replace()
        .execute()
        .await
        .map_err(netlink(format!("routing {ip} to {host}")))?;

    namespaces::in_netns(netns, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(VethError::Socket)?;
        runtime.block_on(configure_pod_side(peer, ip))
    })?
}

async fn configure_pod_side(peer: String, ip: Ipv4Addr) -> Result<(), VethError> {
    let (connection, handle, _) = new_connection().map_err(VethError::Socket)?;
    tokio::spawn(connection);
    let index = index_of(&handle, &peer)
        .await?
        .ok_or_else(|| VethError::Missing { name: peer.clone() })?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).name("eth0").up().build())
        .execute()
        .await
        .map_err(netlink("naming the pod side eth0"))?;
    if let Some(lo) = index_of(&handle, "lo").await? {
        handle
            .link()
            .set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await
            .map_err(netlink("setting lo up"))?;
    }
    handle
        .address()
        .add(index, ip.into(), 32)
        .replace()
        .execute()
        .await
        .map_err(netlink(format!("adding {ip}/32 to eth0")))?;
    handle
        .route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                .output_interface(index)
                .scope(RouteScope::Link)
                .build(),
        )
        .replace()
        .execute()
        .await
        .map_err(netlink("adding the default route"))?;
    Ok(())
}

/// Removes the pod's host-side link (its peer goes with it); nothing to do when absent.
///
/// # Errors
/// When netlink fails.
pub async fn detach(pod_uid: &str) -> Result<(), VethError> {
    let (connection, handle, _) = new_connection().map_err(VethError::Socket)?;
    let connection = tokio::spawn(connection);
    let host = host_name(pod_uid);
    let result = async {
        if let Some(index) = index_of(&handle, &host).await? {
            handle
                .link()
                .del(index)
                .execute()
                .await
                .map_err(netlink(format!("deleting {host}")))?;
        }
        Ok(())
    }
    .await;
    connection.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_fit_an_interface_and_are_stable_per_pod() {
        let a = host_name("3f1c2a4e-0000-4000-8000-000000000001");
        assert!(a.len() <= 15, "{a}");
        assert_eq!(a, host_name("3f1c2a4e-0000-4000-8000-000000000001"));
        assert_ne!(a, host_name("3f1c2a4e-0000-4000-8000-000000000002"));
    }

    #[test]
    fn a_pods_mac_is_locally_administered_unicast_and_carries_its_address() {
        let mac = pod_mac(Ipv4Addr::new(10, 244, 1, 7));
        assert_eq!(mac, [0x0a, 0x58, 10, 244, 1, 7]);
        assert_eq!(mac[0] & 0b11, 0b10, "locally administered, not multicast");
    }
}
