//! Direct routing between nodes: a route to every other node's pod CIDR via that node's
//! address, kept in step with the Node objects. The agent's routes carry their own netlink
//! protocol number, so it finds (and removes) exactly the ones it made. The agent also
//! keeps every such node's link-layer address resolved, which the uplink XDP program's FIB
//! lookup needs to forward a NodePort connection to another node's pod.

use std::{borrow::Borrow, collections::BTreeMap, net::Ipv4Addr, time::Duration};

use futures::TryStreamExt;
use rtnetlink::{
    Handle, RouteMessageBuilder, new_connection,
    packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol},
};
use skiff_api::{
    client::Client,
    k8s_openapi::api::core::v1::Node,
    runtime::{Config, Informer},
};
use tracing::{info, warn};

use super::Cidr;

/// A route: a pod CIDR and the node address it goes via.
pub type Route = (Cidr, Ipv4Addr);

/// The netlink protocol number marking Skiff's routes (`ip route` shows `proto 92`).
pub const PROTOCOL: u8 = 92;

/// Errors syncing routes.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("netlink: {what}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("opening a netlink socket")]
    Socket(#[source] std::io::Error),
}

/// The routes wanted: every other node with a pod CIDR and an InternalIP.
pub fn desired(nodes: &[impl Borrow<Node>], own: &str) -> BTreeMap<String, Route> {
    nodes
        .iter()
        .map(Borrow::borrow)
        .filter(|n| n.metadata.name.as_deref() != Some(own))
        .filter_map(|n| {
            let cidr: Cidr = n.spec.as_ref()?.pod_cidr.as_ref()?.parse().ok()?;
            let ip = n
                .status
                .as_ref()?
                .addresses
                .iter()
                .flatten()
                .find(|a| a.type_ == "InternalIP")?
                .address
                .parse()
                .ok()?;
            Some((cidr.to_string(), (cidr, ip)))
        })
        .collect()
}

/// What to add (or replace) and what to delete to go from `current` to `wanted`.
pub fn plan(
    current: &BTreeMap<String, Route>,
    wanted: &BTreeMap<String, Route>,
) -> (Vec<Route>, Vec<Route>) {
    let add = wanted
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(v))
        .map(|(_, v)| *v)
        .collect();
    let remove = current
        .iter()
        .filter(|(k, _)| !wanted.contains_key(*k))
        .map(|(_, v)| *v)
        .collect();
    (add, remove)
}

fn parse(route: &RouteMessage) -> Option<(Cidr, Ipv4Addr)> {
    let mut destination = None;
    let mut gateway = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = Some(*ip),
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
            _ => {}
        }
    }
    Some((
        Cidr {
            network: destination?,
            prefix: route.header.destination_prefix_length,
        },
        gateway?,
    ))
}

fn message(cidr: Cidr, via: Ipv4Addr) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(cidr.network, cidr.prefix)
        .gateway(via)
        .protocol(RouteProtocol::from(PROTOCOL))
        .build()
}

/// Every IPv4 route of this network namespace's main table.
pub(super) async fn ipv4_routes(handle: &Handle) -> Result<Vec<RouteMessage>, rtnetlink::Error> {
    handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
}

/// Makes this network namespace's Skiff routes exactly `wanted`.
///
/// # Errors
/// When netlink fails.
pub async fn sync(wanted: &BTreeMap<String, Route>) -> Result<(), RouteError> {
    let (connection, handle, _) = new_connection().map_err(RouteError::Socket)?;
    let connection = tokio::spawn(connection);
    let result = async {
        let routes = ipv4_routes(&handle)
            .await
            .map_err(|source| RouteError::Netlink {
                what: "listing routes".into(),
                source,
            })?;
        let current: BTreeMap<String, Route> = routes
            .iter()
            .filter(|r| u8::from(r.header.protocol) == PROTOCOL)
            .filter_map(parse)
            .map(|(cidr, via)| (cidr.to_string(), (cidr, via)))
            .collect();
        let (add, remove) = plan(&current, wanted);
        for (cidr, via) in remove {
            handle
                .route()
                .del(message(cidr, via))
                .execute()
                .await
                .map_err(|source| RouteError::Netlink {
                    what: format!("deleting the route to {cidr}"),
                    source,
                })?;
            info!(%cidr, %via, "removed the route to a node's pods");
        }
        for (cidr, via) in add {
            handle
                .route()
                .add(message(cidr, via))
                .replace()
                .execute()
                .await
                .map_err(|source| RouteError::Netlink {
                    what: format!("routing {cidr} via {via}"),
                    source,
                })?;
            info!(%cidr, %via, "routed a node's pods");
        }
        Ok(())
    }
    .await;
    connection.abort();
    result
}

/// The addresses among `peers` that `arp` (the text of `/proc/net/arp`) has no complete
/// entry for.
pub fn unresolved(arp: &str, peers: impl IntoIterator<Item = Ipv4Addr>) -> Vec<Ipv4Addr> {
    const ATF_COM: u32 = 0x2;
    let complete: Vec<Ipv4Addr> = arp
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let ip = fields.next()?.parse().ok()?;
            let flags = u32::from_str_radix(fields.nth(1)?.trim_start_matches("0x"), 16).ok()?;
            (flags & ATF_COM != 0).then_some(ip)
        })
        .collect();
    peers
        .into_iter()
        .filter(|peer| !complete.contains(peer))
        .collect()
}

/// Has the kernel resolve the link-layer address of every route's next hop it does not
/// know, by sending each one empty UDP datagram (to the discard port). XDP cannot start
/// neighbour resolution itself: without an entry its FIB lookup fails and a NodePort
/// connection to a pod on that node is dropped.
fn resolve_next_hops(wanted: &BTreeMap<String, Route>) {
    let arp = std::fs::read_to_string("/proc/net/arp").unwrap_or_default();
    let missing = unresolved(&arp, wanted.values().map(|(_, via)| *via));
    if missing.is_empty() {
        return;
    }
    let Ok(socket) = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) else {
        return;
    };
    for via in missing {
        if let Err(error) = socket.send_to(&[], (via, 9)) {
            warn!(%via, error = %error, "resolving a node's link-layer address");
        }
    }
}

/// How often routes and next hops are checked without a Node change (a route removed by
/// hand comes back, an ARP entry that failed is asked for again).
pub const RESYNC: Duration = Duration::from_secs(3);

/// Keeps the routes to other nodes' pods in step with the Node objects: at once when a
/// Node changes (a node that joins is routed to within milliseconds, not a poll later), and
/// every [`RESYNC`].
pub async fn run(client: Client, own: String) {
    let nodes = Informer::<Node>::new(client, "nodes", "", Config::default());
    let mut changes = nodes.subscribe();
    let store = nodes.store();
    store.wait_until_ready().await;
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        let wanted = desired(&store.list(), &own);
        if let Err(error) = sync(&wanted).await {
            warn!(error = %error, "syncing routes to other nodes' pods");
        }
        resolve_next_hops(&wanted);
        tokio::select! {
            _ = resync.tick() => {}
            changed = changes.recv() => if changed.is_none() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(node: serde_json::Value) -> Node {
        serde_json::from_value(node).unwrap()
    }

    fn node(name: &str, cidr: &str, ip: &str) -> Node {
        parse(
            json!({"metadata": {"name": name}, "spec": {"podCIDR": cidr},
               "status": {"addresses": [{"type": "Hostname", "address": name},
                                        {"type": "InternalIP", "address": ip}]}}),
        )
    }

    #[test]
    fn every_other_node_with_a_cidr_and_an_address_gets_a_route() {
        let nodes = [
            node("a", "10.244.1.0/24", "192.168.0.1"),
            node("b", "10.244.2.0/24", "192.168.0.2"),
            parse(json!({"metadata": {"name": "c"}, "spec": {}})),
        ];
        let wanted = desired(&nodes, "a");
        assert_eq!(wanted.len(), 1);
        assert_eq!(
            wanted["10.244.2.0/24"],
            (
                "10.244.2.0/24".parse().unwrap(),
                Ipv4Addr::new(192, 168, 0, 2)
            )
        );
    }

    #[test]
    fn only_next_hops_without_a_complete_arp_entry_are_unresolved() {
        let arp = "IP address       HW type     Flags       HW address            Mask     Device\n\
                   10.0.0.2         0x1         0x2         02:00:00:00:00:02     *        eth0\n\
                   10.0.0.3         0x1         0x0         00:00:00:00:00:00     *        eth0\n";
        let peers = ["10.0.0.2", "10.0.0.3", "10.0.0.4"].map(|p| p.parse().unwrap());
        assert_eq!(
            unresolved(arp, peers),
            [
                "10.0.0.3".parse::<Ipv4Addr>().unwrap(),
                "10.0.0.4".parse().unwrap()
            ]
        );
    }

    #[test]
    fn the_plan_adds_changed_routes_and_removes_gone_ones() {
        let entry = |cidr: &str, ip: [u8; 4]| {
            (
                cidr.to_string(),
                (cidr.parse::<Cidr>().unwrap(), Ipv4Addr::from(ip)),
            )
        };
        let current = BTreeMap::from([
            entry("10.0.1.0/24", [1, 1, 1, 1]),
            entry("10.0.2.0/24", [2, 2, 2, 2]),
        ]);
        let wanted = BTreeMap::from([
            entry("10.0.1.0/24", [1, 1, 1, 9]),
            entry("10.0.3.0/24", [3, 3, 3, 3]),
        ]);
        let (add, remove) = plan(&current, &wanted);
        assert_eq!(add.len(), 2);
        assert_eq!(
            remove,
            vec![("10.0.2.0/24".parse().unwrap(), Ipv4Addr::new(2, 2, 2, 2))]
        );
        let (add, remove) = plan(&wanted, &wanted);
        assert!(add.is_empty() && remove.is_empty());
    }
}
