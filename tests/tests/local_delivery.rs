//! NodePort traffic to a pod on the node, handed by the uplink's TC program straight into
//! the pod's veth (`bpf_redirect_peer`) once the pod is in the endpoint map: the pod is
//! wired by the agent's own `veth::attach`, and the map filled the way the agent's endpoint
//! sync does, from the node's routes. Unregistered pods are still reached through the
//! node's stack.

use std::{collections::BTreeMap, net::Ipv4Addr, path::PathBuf};

use skiff_agent::{
    dataplane::{
        UplinkHook, UplinkMode,
        endpoints::{self, LocalEndpoints},
        lb_maps::KernelLbMaps,
        maglev::Maglev,
        services::{DesiredService, ServiceSync},
    },
    network::veth,
};
use skiff_ebpf_common::{
    Backend, LbEvent, ServiceKey,
    service::{BACKEND_LOCAL, PROTO_TCP, SERVICE_EXTERNAL},
};
use skiff_tests::{
    backends::NameServers,
    dataplane,
    netns::{Netns, disable_tx_checksum_offload, veth_between},
    require_root,
};

const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 10);
const NODE_PORT: u16 = 30080;

/// Runs `future` on a runtime of its own inside `ns` (netlink talks to the thread's netns).
fn block_on_in<T: Send>(ns: &Netns, future: impl Future<Output = T> + Send) -> T {
    ns.run(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(future)
    })
    .expect("entering the namespace")
}

/// Packets the host side of the pod's veth sent (what the node's forwarding put into it).
fn host_side_tx_packets(node: &Netns, link: &str) -> u64 {
    let out = node
        .exec(&["ip", "-s", "-o", "link", "show", "dev", link])
        .unwrap();
    // `ip -s -o` prints "... TX: bytes packets ...\    <bytes> <packets> ..." on one line.
    let tx = out.split("TX:").nth(1).expect("TX counters");
    let numbers: Vec<u64> = tx
        .split(|c: char| c.is_whitespace() || c == '\\')
        .filter_map(|w| w.parse().ok())
        .collect();
    numbers[1]
}

/// `count` connections from the client to the NodePort; each line of the probe must be an
/// answer from the pod that saw the client's own address.
fn connect(client: &Netns, count: usize) {
    let out = client
        .exec(&[
            env!("CARGO_BIN_EXE_sock_probe"),
            "tcp",
            &format!("{NODE_IP}:{NODE_PORT}"),
            &count.to_string(),
        ])
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), count, "{out}");
    for line in lines {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[0], "ok", "{line}");
        assert_eq!(parts[1], format!("{NODE_IP}:{NODE_PORT}"), "{line}");
        assert_eq!(parts[2], POD_IP.to_string(), "the pod answered: {line}");
        assert_eq!(parts[3], "10.78.0.1", "the pod saw the client: {line}");
    }
}

#[test]
fn privileged_nodeport_hands_a_registered_pods_packets_straight_into_its_veth() {
    require_root();
    let client = Netns::new("sklc").unwrap();
    let node = Netns::new("skln").unwrap();
    let pod = Netns::new("sklp").unwrap();
    let (client_if, uplink) = veth_between(&client, "10.78.0.1/24", &node, "10.78.0.2/24").unwrap();
    client
        .run(|| disable_tx_checksum_offload(&client_if))
        .unwrap()
        .unwrap();
    node.exec(&["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"])
        .unwrap();
    // The agent's own wiring: a routed veth, the pod side eth0 with the pod's /32.
    let pod_netns = PathBuf::from(format!("/var/run/netns/{}", pod.name()));
    block_on_in(
        &node,
        veth::attach(&pod_netns, "local-delivery-pod", POD_IP),
    )
    .unwrap();
    let host_link = veth::host_name("local-delivery-pod");
    assert_eq!(
        pod.link("eth0").unwrap().mac,
        veth::pod_mac(POD_IP),
        "the pod side has the MAC derived from its address"
    );
    let _servers = NameServers::start(&pod, &[POD_IP], 8080, 5353).unwrap();

    let mut dataplane = dataplane::load(NODE_IP).unwrap();
    let mode = node
        .run(|| dataplane.attach_uplink(&uplink, UplinkHook::Tc))
        .unwrap()
        .unwrap();
    assert_eq!(mode, UplinkMode::Tc);
    let mut maps = KernelLbMaps::take(&mut dataplane, dataplane::TABLE_SIZE).unwrap();
    let mut sync =
        ServiceSync::adopt(&maps, Maglev::new(dataplane::TABLE_SIZE, 3).unwrap()).unwrap();
    let desired: BTreeMap<_, _> = [(
        ServiceKey::new(NODE_IP.octets(), NODE_PORT, PROTO_TCP),
        DesiredService {
            backends: vec![Backend::new(
                POD_IP.octets(),
                8080,
                PROTO_TCP,
                BACKEND_LOCAL,
            )],
            flags: SERVICE_EXTERNAL,
            affinity_timeout_secs: 0,
        },
    )]
    .into_iter()
    .collect();
    let (_, errors) = sync.apply(&mut maps, &desired);
    assert!(errors.is_empty(), "{errors:?}");
    let mut local = LocalEndpoints::take(&mut dataplane).unwrap();

    // Not registered yet: the node's stack forwards into the veth.
    let tx = host_side_tx_packets(&node, &host_link);
    connect(&client, 10);
    assert_eq!(dataplane::lb_count(&dataplane, LbEvent::LocalDelivered), 0);
    let through_stack = host_side_tx_packets(&node, &host_link) - tx;
    assert!(
        through_stack >= 30,
        "10 connections went out of the host side: {through_stack} packets"
    );

    // Registered from the node's routes, as the agent's endpoint sync does.
    let veths = block_on_in(&node, veth::pod_veths()).unwrap();
    let wired = veths
        .get(&POD_IP)
        .expect("the pod's /32 route out of its veth");
    let host = node.link(&host_link).unwrap();
    assert_eq!(
        (wired.host_index, wired.host_mac, wired.pod_mac),
        (host.index, host.mac, veth::pod_mac(POD_IP))
    );
    let wanted = veths
        .iter()
        .map(|(ip, v)| (*ip, endpoints::endpoint(v)))
        .collect();
    local.reconcile(&wanted).unwrap();
    assert_eq!(local.entries(), wanted);

    let tx = host_side_tx_packets(&node, &host_link);
    connect(&client, 20);
    let delivered = dataplane::lb_count(&dataplane, LbEvent::LocalDelivered);
    assert!(
        delivered >= 60,
        "each connection's SYN, ACK, request and close went straight in: {delivered}"
    );
    let past_stack = host_side_tx_packets(&node, &host_link) - tx;
    assert!(
        past_stack < 10,
        "the node's forwarding sent nothing into the veth: {past_stack} packets"
    );

    // The pod gone from the node's wiring: its entry goes, and the stack takes over again.
    local.reconcile(&BTreeMap::new()).unwrap();
    assert!(local.entries().is_empty());
    connect(&client, 5);
    assert_eq!(
        dataplane::lb_count(&dataplane, LbEvent::LocalDelivered),
        delivered
    );
    block_on_in(&node, veth::detach("local-delivery-pod")).unwrap();
    assert!(
        block_on_in(&node, veth::pod_veths()).unwrap().is_empty(),
        "no /32 route out of a pod veth is left"
    );
}
