//! Privileged tests of the NodePort / LoadBalancer path: the uplink ingress program (XDP, and
//! its TC twin) and the TC egress reverse NAT run by `BPF_PROG_TEST_RUN` on crafted frames
//! against maps written by the agent's service sync (hit, conntrack, miss, no backend,
//! reverse NAT, SNAT to the node for a remote backend, IP options, fragments, truncated
//! frames), and on real connections between namespaces at either hook.

use std::{
    collections::{BTreeMap, HashMap},
    io::{Read, Write},
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use aya::programs::{TestRun, TestRunOptions};
use skiff_agent::dataplane::{
    Dataplane, LoadOptions, MapSizes, UplinkHook, UplinkMode,
    conntrack::{Conntrack, Timeouts, monotonic_now_ns},
    lb_maps::{KernelLbMaps, LbMaps},
    maglev::Maglev,
    services::{DesiredService, ServiceSync},
};
use skiff_ebpf_common::{
    Backend, LbEvent, ServiceKey,
    service::{
        BACKEND_LOCAL, BACKEND_TERMINATING, PROTO_TCP, PROTO_UDP, SERVICE_AFFINITY,
        SERVICE_EXTERNAL, backend_index,
    },
};
use skiff_tests::{
    backends::NameServers,
    netns::{Netns, disable_tx_checksum_offload, veth_between},
    packets::{self, Ipv4, checksum},
    pins::PinDir,
    process::workspace_binary,
    require_root,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;
const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

const NODE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const LOCAL_PODS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 244, 9, 10), Ipv4Addr::new(10, 244, 9, 11)];
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 20, 5);
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

struct Plane {
    dataplane: Dataplane,
    maps: KernelLbMaps,
    sync: ServiceSync,
}

fn local(port: u16, proto: u8) -> Vec<Backend> {
    LOCAL_PODS
        .iter()
        .map(|ip| Backend::new(ip.octets(), port, proto, BACKEND_LOCAL))
        .collect()
}

fn external(backends: Vec<Backend>) -> DesiredService {
    DesiredService {
        backends,
        flags: SERVICE_EXTERNAL,
        affinity_timeout_secs: 0,
    }
}

fn services(tcp_backends: Vec<Backend>) -> BTreeMap<ServiceKey, DesiredService> {
    [
        (
            ServiceKey::new(NODE.octets(), 30080, PROTO_TCP),
            external(tcp_backends),
        ),
        (
            ServiceKey::new(NODE.octets(), 30053, PROTO_UDP),
            external(local(5353, PROTO_UDP)),
        ),
        (
            ServiceKey::new(NODE.octets(), 30081, PROTO_TCP),
            external(Vec::new()),
        ),
        (
            ServiceKey::new(NODE.octets(), 30054, PROTO_UDP),
            external(Vec::new()),
        ),
        (
            ServiceKey::new(NODE.octets(), 30082, PROTO_TCP),
            external(vec![Backend::new(REMOTE_POD.octets(), 8080, PROTO_TCP, 0)]),
        ),
        (
            ServiceKey::new(NODE.octets(), 30090, PROTO_TCP),
            DesiredService {
                backends: local(8080, PROTO_TCP),
                flags: SERVICE_EXTERNAL | SERVICE_AFFINITY,
                affinity_timeout_secs: 10800,
            },
        ),
        (
            ServiceKey::new(CLUSTER_IP.octets(), 80, PROTO_TCP),
            DesiredService {
                backends: local(8080, PROTO_TCP),
                ..DesiredService::default()
            },
        ),
    ]
    .into_iter()
    .collect()
}

fn plane() -> Plane {
    plane_with(MapSizes {
        maglev_table_size: 251,
        maglev_tables: 16,
        ..MapSizes::default()
    })
}

/// A data plane with maps of `sizes` (Maglev tables of 251), holding `services`' state.
fn plane_with(sizes: MapSizes) -> Plane {
    require_root();
    let mut dataplane = Dataplane::load(&LoadOptions {
        pin_path: None,
        sizes,
        node_addr: Some(NODE),
    })
    .unwrap();
    let mut maps = KernelLbMaps::take(&mut dataplane, 251).unwrap();
    let mut sync = ServiceSync::adopt(&maps, Maglev::new(251, 9).unwrap()).unwrap();
    let (_, errors) = sync.apply(&mut maps, &services(local(8080, PROTO_TCP)));
    assert!(errors.is_empty(), "{errors:?}");
    Plane {
        dataplane,
        maps,
        sync,
    }
}

fn tcp_frame(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    let ip = Ipv4::new(src, dst, packets::IPPROTO_TCP);
    packets::ethernet(
        packets::ETH_P_IP,
        &ip.packet(&packets::tcp(&ip, sport, dport, flags, b"hello")),
    )
}

/// Runs the uplink XDP program once and returns its verdict and the frame it left.
fn xdp(plane: &mut Plane, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    let program = plane.dataplane.uplink_program().unwrap();
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        })
        .expect("BPF_PROG_TEST_RUN of xdp_uplink");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

/// Runs the uplink TC ingress program (the XDP program's twin) once.
fn tc_in(plane: &mut Plane, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    let program = plane.dataplane.uplink_ingress_program().unwrap();
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        })
        .expect("BPF_PROG_TEST_RUN of tc_uplink_ingress");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

/// Runs the uplink TC egress program once.
fn tc(plane: &mut Plane, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    let program = plane.dataplane.uplink_egress_program().unwrap();
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        })
        .expect("BPF_PROG_TEST_RUN of tc_uplink_egress");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

struct Seen {
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
}

/// Reads the addresses of an Ethernet/IPv4/TCP-or-UDP frame and checks both checksums.
fn inspect(frame: &[u8]) -> Seen {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let ip = &frame[14..14 + ihl];
    assert_eq!(checksum(ip), 0, "IPv4 header checksum");
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let l4 = &frame[14 + ihl..14 + total];
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip[12..20]);
    pseudo.extend_from_slice(&[0, ip[9]]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(l4);
    assert_eq!(checksum(&pseudo), 0, "L4 checksum over the pseudo-header");
    let addr = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    Seen {
        src: addr(&ip[12..16]),
        dst: addr(&ip[16..20]),
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
    }
}

fn stat(plane: &Plane, event: LbEvent) -> u64 {
    stat_of(&plane.dataplane, event)
}

#[test]
fn privileged_nodeport_xdp_dnats_a_new_flow_to_a_local_backend_and_tc_reverses_the_reply() {
    let mut plane = plane();
    let syn = tcp_frame(CLIENT, 40000, NODE, 30080, packets::TCP_SYN);
    let (verdict, out) = xdp(&mut plane, &syn);
    assert_eq!(
        verdict, XDP_PASS,
        "a local backend is reached through the stack"
    );
    let seen = inspect(&out);
    assert!(
        LOCAL_PODS.contains(&seen.dst),
        "DNAT to a pod, got {}",
        seen.dst
    );
    assert_eq!(
        (seen.dport, seen.src, seen.sport),
        (8080, CLIENT, 40000),
        "source kept"
    );
    assert_eq!(stat(&plane, LbEvent::Translated), 1);

    // The pod's reply leaves through the uplink: TC puts the NodePort back as its source.
    let reply = tcp_frame(
        seen.dst,
        8080,
        CLIENT,
        40000,
        packets::TCP_SYN | packets::TCP_ACK,
    );
    let (verdict, out) = tc(&mut plane, &reply);
    assert_eq!(verdict, TC_ACT_OK);
    let back = inspect(&out);
    assert_eq!(
        (back.src, back.sport, back.dst, back.dport),
        (NODE, 30080, CLIENT, 40000)
    );
    assert_eq!(stat(&plane, LbEvent::ReverseTranslated), 1);

    // UDP with a checksum is translated the same way.
    let ip = Ipv4::new(CLIENT, NODE, packets::IPPROTO_UDP);
    let query = packets::ethernet(
        packets::ETH_P_IP,
        &ip.packet(&packets::udp(&ip, 5000, 30053, b"query")),
    );
    let (verdict, out) = xdp(&mut plane, &query);
    assert_eq!(verdict, XDP_PASS);
    let seen = inspect(&out);
    assert!(LOCAL_PODS.contains(&seen.dst));
    assert_eq!(seen.dport, 5353);
}

#[test]
fn privileged_nodeport_xdp_keeps_established_flows_on_their_backend_when_backends_change() {
    let mut plane = plane();
    let mut chosen = HashMap::new();
    for port in 40000..40064 {
        let (_, out) = xdp(
            &mut plane,
            &tcp_frame(CLIENT, port, NODE, 30080, packets::TCP_SYN),
        );
        chosen.insert(port, inspect(&out).dst);
    }
    let used: std::collections::HashSet<_> = chosen.values().collect();
    assert_eq!(used.len(), 2, "64 flows spread over both pods");

    // A third pod joins: the Maglev table changes, established flows do not move.
    let mut three = local(8080, PROTO_TCP);
    three.push(Backend::new(
        [10, 244, 9, 12],
        8080,
        PROTO_TCP,
        BACKEND_LOCAL,
    ));
    let (_, errors) = plane.sync.apply(&mut plane.maps, &services(three));
    assert!(errors.is_empty(), "{errors:?}");
    let hits_before = stat(&plane, LbEvent::ConntrackHit);
    for (port, first) in &chosen {
        let (_, out) = xdp(
            &mut plane,
            &tcp_frame(CLIENT, *port, NODE, 30080, packets::TCP_ACK),
        );
        assert_eq!(inspect(&out).dst, *first, "flow from port {port} stays");
    }
    assert_eq!(stat(&plane, LbEvent::ConntrackHit) - hits_before, 64);
}

#[test]
fn privileged_nodeport_a_flow_whose_backends_slot_went_to_another_services_backend_is_refused() {
    // Room for exactly the five backends `services` names: a freed slot is reused at once.
    let mut plane = plane_with(MapSizes {
        backends: 5,
        maglev_table_size: 251,
        maglev_tables: 16,
        ..MapSizes::default()
    });
    let (_, out) = xdp(
        &mut plane,
        &tcp_frame(CLIENT, 41000, NODE, 30082, packets::TCP_SYN),
    );
    assert_eq!(inspect(&out).dst, REMOTE_POD, "tracked to the remote pod");
    let slot_of = |plane: &Plane, addr: Ipv4Addr| {
        plane
            .maps
            .backend_slots()
            .unwrap()
            .into_iter()
            .find(|b| !b.is_free() && b.addr == u32::from_ne_bytes(addr.octets()))
            .map(|b| b.id)
    };
    let old_id = slot_of(&plane, REMOTE_POD).unwrap();

    // The remote pod leaves its service; then another service's new pod gets its slot.
    let mut want = services(local(8080, PROTO_TCP));
    let port_30082 = ServiceKey::new(NODE.octets(), 30082, PROTO_TCP);
    want.insert(port_30082, external(Vec::new()));
    let (_, errors) = plane.sync.apply(&mut plane.maps, &want);
    assert!(errors.is_empty(), "{errors:?}");
    let other_pod = Ipv4Addr::new(10, 244, 20, 6);
    want.insert(
        ServiceKey::new(NODE.octets(), 30083, PROTO_TCP),
        external(vec![Backend::new(other_pod.octets(), 8080, PROTO_TCP, 0)]),
    );
    let (_, errors) = plane.sync.apply(&mut plane.maps, &want);
    assert!(errors.is_empty(), "{errors:?}");
    let new_id = slot_of(&plane, other_pod).unwrap();
    assert_eq!(
        backend_index(new_id),
        backend_index(old_id),
        "the slot is reused"
    );
    assert_ne!(new_id, old_id, "under a new generation");

    // The old flow's entry names the old id: it is stale, and its service has no backend.
    let (hits, refused) = (
        stat(&plane, LbEvent::ConntrackHit),
        stat(&plane, LbEvent::NoBackend),
    );
    let (verdict, out) = xdp(
        &mut plane,
        &bare_segment(CLIENT, 41000, NODE, 30082, packets::TCP_ACK),
    );
    assert_eq!(verdict, XDP_TX, "answered with a reset");
    assert_eq!(inspect(&out).dst, CLIENT, "never sent to {other_pod}");
    assert_eq!(stat(&plane, LbEvent::ConntrackHit), hits);
    assert_eq!(stat(&plane, LbEvent::NoBackend), refused + 1);
    // New flows of the other service reach its pod through the reused slot.
    let (_, out) = xdp(
        &mut plane,
        &tcp_frame(CLIENT, 41001, NODE, 30083, packets::TCP_SYN),
    );
    assert_eq!(inspect(&out).dst, other_pod);
}

#[test]
fn privileged_nodeport_a_reset_in_either_direction_ends_the_flows_conntrack_entries() {
    let mut plane = plane();
    let segment = |port, flags| tcp_frame(CLIENT, port, NODE, 30080, flags);
    // The client resets an established flow: the reset itself still reaches the pod...
    let (_, out) = xdp(&mut plane, &segment(40100, packets::TCP_SYN));
    let pod = inspect(&out).dst;
    let (_, out) = xdp(&mut plane, &segment(40100, packets::TCP_RST));
    assert_eq!(inspect(&out).dst, pod, "the reset goes to the flow's pod");
    assert_eq!(stat(&plane, LbEvent::ConntrackHit), 1);
    // ... then the flow is gone both ways: the pod's late reply is not reversed, and the
    // tuple's next segment is a new flow.
    let late = tcp_frame(pod, 8080, CLIENT, 40100, packets::TCP_ACK);
    let (_, out) = tc(&mut plane, &late);
    assert_eq!(out, late, "no entry reverses it");
    let (_, out) = xdp(&mut plane, &segment(40100, packets::TCP_ACK));
    assert!(LOCAL_PODS.contains(&inspect(&out).dst));
    assert_eq!(
        (
            stat(&plane, LbEvent::Translated),
            stat(&plane, LbEvent::ConntrackHit)
        ),
        (2, 1),
        "chosen afresh, not found"
    );

    // The pod resets a flow: TC reverses the reset, then forgets the flow.
    let (_, out) = xdp(&mut plane, &segment(40101, packets::TCP_SYN));
    let pod = inspect(&out).dst;
    let (_, out) = tc(
        &mut plane,
        &tcp_frame(pod, 8080, CLIENT, 40101, packets::TCP_RST),
    );
    let back = inspect(&out);
    assert_eq!((back.src, back.sport), (NODE, 30080), "the reset reversed");
    let late = tcp_frame(pod, 8080, CLIENT, 40101, packets::TCP_ACK);
    let (_, out) = tc(&mut plane, &late);
    assert_eq!(out, late, "no entry reverses it");
    xdp(&mut plane, &segment(40101, packets::TCP_ACK));
    assert_eq!(stat(&plane, LbEvent::Translated), 4, "a new flow");
    assert_eq!(stat(&plane, LbEvent::ConntrackHit), 1);

    // A reset opening no tracked flow is translated but not tracked.
    xdp(&mut plane, &segment(40102, packets::TCP_RST));
    xdp(&mut plane, &segment(40102, packets::TCP_ACK));
    assert_eq!(stat(&plane, LbEvent::Translated), 6);
    assert_eq!(stat(&plane, LbEvent::ConntrackHit), 1);
}

#[test]
fn privileged_nodeport_a_flow_closed_with_fins_is_collected_after_ten_idle_seconds_open_ones_stay()
{
    let mut plane = plane();
    let mut conntrack = Conntrack::take(&mut plane.dataplane).unwrap();
    let segment = |port, flags| tcp_frame(CLIENT, port, NODE, 30080, flags);
    let open_flow = |plane: &mut Plane, port| {
        let (_, out) = xdp(plane, &segment(port, packets::TCP_SYN));
        let pod = inspect(&out).dst;
        tc(
            plane,
            &tcp_frame(pod, 8080, CLIENT, port, packets::TCP_SYN | packets::TCP_ACK),
        );
        pod
    };
    // The client closes one flow, the pod another; a third stays open; a UDP flow.
    let client_closed = open_flow(&mut plane, 40200);
    xdp(
        &mut plane,
        &segment(40200, packets::TCP_FIN | packets::TCP_ACK),
    );
    let pod_closed = open_flow(&mut plane, 40201);
    let (_, out) = tc(
        &mut plane,
        &tcp_frame(
            pod_closed,
            8080,
            CLIENT,
            40201,
            packets::TCP_FIN | packets::TCP_ACK,
        ),
    );
    assert_eq!(inspect(&out).src, NODE, "the pod's FIN is reversed");
    open_flow(&mut plane, 40202);
    // A closed flow's tuple reused by a new connection before it was collected.
    open_flow(&mut plane, 40204);
    xdp(
        &mut plane,
        &segment(40204, packets::TCP_FIN | packets::TCP_ACK),
    );
    open_flow(&mut plane, 40204);
    let datagram = Ipv4::new(CLIENT, NODE, packets::IPPROTO_UDP);
    xdp(
        &mut plane,
        &packets::ethernet(
            packets::ETH_P_IP,
            &datagram.packet(&packets::udp(&datagram, 40203, 30053, b"q")),
        ),
    );

    let now = monotonic_now_ns();
    let after = |secs: u64| now + secs * 1_000_000_000;
    let timeouts = Timeouts::default();
    let done = conntrack.collect(after(9), &timeouts).unwrap();
    assert_eq!(
        (done.scanned, done.removed),
        (10, 0),
        "5 flows, 2 entries each"
    );
    let done = conntrack.collect(after(11), &timeouts).unwrap();
    assert_eq!(done.removed, 4, "both closed flows, both directions");
    let late = tcp_frame(client_closed, 8080, CLIENT, 40200, packets::TCP_ACK);
    assert_eq!(
        tc(&mut plane, &late).1,
        late,
        "no entry reverses a collected flow"
    );
    assert_eq!(
        conntrack.collect(after(61), &timeouts).unwrap().removed,
        2,
        "UDP"
    );
    let done = conntrack.collect(after(6 * 3600 + 1), &timeouts).unwrap();
    assert_eq!(
        (done.scanned, done.removed),
        (4, 4),
        "the open flows (the reused tuple's too), idle 6 hours"
    );
}

#[test]
fn privileged_nodeport_xdp_sends_a_new_connection_on_a_reused_port_away_from_a_terminating_backend()
{
    let mut plane = plane();
    let (_, out) = xdp(
        &mut plane,
        &tcp_frame(CLIENT, 41000, NODE, 30080, packets::TCP_SYN),
    );
    let first = inspect(&out).dst;
    // That pod starts terminating (in every service that has it): its established flow
    // stays, new connections avoid it.
    let mut desired = services(local(8080, PROTO_TCP));
    for backend in desired.values_mut().flat_map(|s| s.backends.iter_mut()) {
        if backend.addr == u32::from_ne_bytes(first.octets()) && backend.proto == PROTO_TCP {
            backend.flags |= BACKEND_TERMINATING;
        }
    }
    let (_, errors) = plane.sync.apply(&mut plane.maps, &desired);
    assert!(errors.is_empty(), "{errors:?}");
    let (_, out) = xdp(
        &mut plane,
        &tcp_frame(CLIENT, 41000, NODE, 30080, packets::TCP_ACK),
    );
    assert_eq!(inspect(&out).dst, first, "the established flow stays");
    // The client reuses the port for a new connection (its first segment: SYN, no ACK).
    let (_, out) = xdp(
        &mut plane,
        &tcp_frame(CLIENT, 41000, NODE, 30080, packets::TCP_SYN),
    );
    assert_ne!(
        inspect(&out).dst,
        first,
        "a new connection does not go to the terminating pod"
    );
}

#[test]
fn privileged_nodeport_xdp_client_ip_affinity_sends_every_flow_of_a_client_to_one_pod() {
    let mut plane = plane();
    let mut pods = std::collections::HashSet::new();
    for port in 43000..43032 {
        let (verdict, out) = xdp(
            &mut plane,
            &tcp_frame(CLIENT, port, NODE, 30090, packets::TCP_SYN),
        );
        assert_eq!(verdict, XDP_PASS);
        pods.insert(inspect(&out).dst);
    }
    assert_eq!(pods.len(), 1, "one pod for the client: {pods:?}");
    assert_eq!(stat(&plane, LbEvent::AffinityHit), 31);
    // Another client may land elsewhere, but sticks too.
    let other = Ipv4Addr::new(192, 0, 2, 99);
    let mut others = std::collections::HashSet::new();
    for port in 43000..43008 {
        let (_, out) = xdp(
            &mut plane,
            &tcp_frame(other, port, NODE, 30090, packets::TCP_SYN),
        );
        others.insert(inspect(&out).dst);
    }
    assert_eq!(others.len(), 1);
}

#[test]
fn privileged_nodeport_xdp_refuses_tcp_to_a_service_without_backends_with_a_reset() {
    let mut plane = plane();
    let (verdict, out) = xdp(
        &mut plane,
        &bare_segment(CLIENT, 40000, NODE, 30081, packets::TCP_SYN),
    );
    assert_eq!(verdict, XDP_TX, "answered on the spot");
    let seen = inspect(&out);
    assert_eq!(
        (seen.src, seen.sport, seen.dst, seen.dport),
        (NODE, 30081, CLIENT, 40000)
    );
    let tcp = &out[14 + 20..];
    assert_eq!(tcp[13], 0x14, "RST|ACK");
    assert_eq!(
        u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        0,
        "seq"
    );
    assert_eq!(
        u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
        2,
        "acknowledges the SYN (seq 1)"
    );
    assert_eq!(&out[..6], &syn_source_mac(), "back to the sender");
    assert_eq!(stat(&plane, LbEvent::NoBackend), 1);

    // Never a reset for a reset, nor for a segment with data: those are dropped.
    let (verdict, _) = xdp(
        &mut plane,
        &tcp_frame(CLIENT, 40001, NODE, 30081, packets::TCP_SYN),
    );
    assert_eq!(verdict, XDP_DROP);
    let (verdict, _) = xdp(&mut plane, &bare_segment(CLIENT, 40000, NODE, 30081, 0x04));
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(stat(&plane, LbEvent::NoBackend), 3);
}

#[test]
fn privileged_nodeport_xdp_refuses_udp_to_a_service_without_backends_with_icmp_port_unreachable() {
    let mut plane = plane();
    let ip = Ipv4::new(CLIENT, NODE, packets::IPPROTO_UDP);
    let datagram = ip.packet(&packets::udp(&ip, 5000, 30054, b"a query of some length"));
    let (verdict, out) = xdp(&mut plane, &packets::ethernet(packets::ETH_P_IP, &datagram));
    assert_eq!(verdict, XDP_TX, "answered on the spot");
    assert_eq!(
        out.len(),
        14 + 20 + 8 + 28,
        "Ethernet, IPv4, ICMP and the quote"
    );
    assert_eq!(&out[..6], &syn_source_mac(), "back to the sender");
    assert_eq!(u16::from_be_bytes([out[12], out[13]]), packets::ETH_P_IP);
    let reply = &out[14..34];
    assert_eq!(checksum(reply), 0, "IPv4 header checksum");
    assert_eq!(reply[9], packets::IPPROTO_ICMP);
    assert_eq!(usize::from(u16::from_be_bytes([reply[2], reply[3]])), 56);
    assert_eq!(
        (&reply[12..16], &reply[16..20]),
        (&NODE.octets()[..], &CLIENT.octets()[..]),
        "from the address the client sent to, back to the client"
    );
    let icmp = &out[34..];
    assert_eq!((icmp[0], icmp[1]), (3, 3), "destination unreachable, port");
    assert_eq!(checksum(icmp), 0, "ICMP checksum");
    assert_eq!(
        &icmp[8..],
        &datagram[..28],
        "quotes the IPv4 header and the first 8 bytes of the datagram"
    );
    assert_eq!(stat(&plane, LbEvent::NoBackend), 1);

    // A datagram with IP options is dropped rather than quoted.
    let mut with_options = Ipv4::new(CLIENT, NODE, packets::IPPROTO_UDP);
    with_options.options = vec![1, 1, 1, 0];
    let datagram = with_options.packet(&packets::udp(&with_options, 5000, 30054, b"q"));
    let (verdict, _) = xdp(&mut plane, &packets::ethernet(packets::ETH_P_IP, &datagram));
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(stat(&plane, LbEvent::NoBackend), 2);
}

#[test]
fn privileged_nodeport_tc_ingress_translates_keeps_flows_and_refuses_like_the_xdp_program() {
    let mut plane = plane();
    // A new flow to a local pod: DNAT, passed up the stack (which forwards it, routes and
    // TTL and all).
    let (verdict, out) = tc_in(
        &mut plane,
        &tcp_frame(CLIENT, 41000, NODE, 30080, packets::TCP_SYN),
    );
    assert_eq!(verdict, TC_ACT_OK);
    let seen = inspect(&out);
    assert!(
        LOCAL_PODS.contains(&seen.dst),
        "DNAT to a pod, got {}",
        seen.dst
    );
    assert_eq!((seen.dport, seen.src, seen.sport), (8080, CLIENT, 41000));
    assert_eq!(out[14 + 8], 64, "TTL left to the stack");
    // The flow's next segment finds its conntrack entry and the same pod.
    let (_, again) = tc_in(
        &mut plane,
        &tcp_frame(CLIENT, 41000, NODE, 30080, packets::TCP_ACK),
    );
    assert_eq!(inspect(&again).dst, seen.dst);
    assert_eq!(stat(&plane, LbEvent::ConntrackHit), 1);

    // No backend, TCP: the reset goes back out of the interface the SYN came in on.
    let (verdict, out) = tc_in(
        &mut plane,
        &bare_segment(CLIENT, 40000, NODE, 30081, packets::TCP_SYN),
    );
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let seen = inspect(&out);
    assert_eq!(
        (seen.src, seen.sport, seen.dst, seen.dport),
        (NODE, 30081, CLIENT, 40000)
    );
    assert_eq!(out[14 + 20 + 13], 0x14, "RST|ACK");
    assert_eq!(&out[..6], &syn_source_mac(), "back to the sender");
    // ... and a segment with data is dropped.
    let (verdict, _) = tc_in(
        &mut plane,
        &tcp_frame(CLIENT, 40001, NODE, 30081, packets::TCP_SYN),
    );
    assert_eq!(verdict, TC_ACT_SHOT);

    // No backend, UDP: ICMP port unreachable quoting the datagram.
    let ip = Ipv4::new(CLIENT, NODE, packets::IPPROTO_UDP);
    let datagram = ip.packet(&packets::udp(&ip, 5000, 30054, b"a query of some length"));
    let (verdict, out) = tc_in(&mut plane, &packets::ethernet(packets::ETH_P_IP, &datagram));
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(out.len(), 14 + 20 + 8 + 28);
    assert_eq!(checksum(&out[14..34]), 0, "IPv4 header checksum");
    assert_eq!(
        (&out[26..30], &out[30..34]),
        (&NODE.octets()[..], &CLIENT.octets()[..])
    );
    assert_eq!((out[34], out[35]), (3, 3), "destination unreachable, port");
    assert_eq!(checksum(&out[34..]), 0, "ICMP checksum");
    assert_eq!(&out[42..], &datagram[..28]);
    assert_eq!(stat(&plane, LbEvent::NoBackend), 3);

    // Not ours: a ClusterIP from outside, an unknown port, a truncated frame pass untouched.
    for frame in [
        tcp_frame(CLIENT, 40000, CLUSTER_IP, 80, packets::TCP_SYN),
        tcp_frame(CLIENT, 40000, NODE, 22, packets::TCP_SYN),
        tcp_frame(CLIENT, 40000, NODE, 30080, packets::TCP_SYN)[..14 + 20 + 10].to_vec(),
    ] {
        let (verdict, out) = tc_in(&mut plane, &frame);
        assert_eq!((verdict, out), (TC_ACT_OK, frame));
    }
}

/// A TCP segment without payload.
fn bare_segment(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    let ip = Ipv4::new(src, dst, packets::IPPROTO_TCP);
    packets::ethernet(
        packets::ETH_P_IP,
        &ip.packet(&packets::tcp(&ip, sport, dport, flags, b"")),
    )
}

/// The source MAC `packets::ethernet` writes.
fn syn_source_mac() -> [u8; 6] {
    [0x02, 0, 0, 0, 0, 0x01]
}

#[test]
fn privileged_nodeport_xdp_passes_cluster_ips_and_unknown_ports_untouched() {
    let mut plane = plane();
    for frame in [
        tcp_frame(CLIENT, 40000, CLUSTER_IP, 80, packets::TCP_SYN),
        tcp_frame(CLIENT, 40000, NODE, 22, packets::TCP_SYN),
    ] {
        let (verdict, out) = xdp(&mut plane, &frame);
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(out, frame, "not rewritten");
    }
    assert_eq!(stat(&plane, LbEvent::Translated), 0);
}

#[test]
fn privileged_nodeport_xdp_translates_past_ip_options_and_passes_fragments_and_truncated_frames() {
    let mut plane = plane();
    let mut with_options = Ipv4::new(CLIENT, NODE, packets::IPPROTO_TCP);
    with_options.options = vec![1, 1, 1, 0];
    let frame = packets::ethernet(
        packets::ETH_P_IP,
        &with_options.packet(&packets::tcp(
            &with_options,
            41000,
            30080,
            packets::TCP_SYN,
            b"",
        )),
    );
    let (verdict, out) = xdp(&mut plane, &frame);
    assert_eq!(verdict, XDP_PASS);
    let seen = inspect(&out);
    assert!(LOCAL_PODS.contains(&seen.dst));
    assert_eq!(seen.dport, 8080);

    let mut fragment = Ipv4::new(CLIENT, NODE, packets::IPPROTO_TCP);
    fragment.fragment_offset = 100;
    let later = packets::ethernet(packets::ETH_P_IP, &fragment.packet(&[0x75; 32]));
    let whole = tcp_frame(CLIENT, 41001, NODE, 30080, packets::TCP_SYN);
    for frame in [
        later,
        whole[..14 + 20 + 10].to_vec(),
        whole[..14 + 12].to_vec(),
    ] {
        let (verdict, out) = xdp(&mut plane, &frame);
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(out, frame, "passed untouched");
    }
    assert_eq!(stat(&plane, LbEvent::Translated), 1);
}

/// MACs of [`node_netns`]: its interface and the next hop towards other nodes and clients.
const NODE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];
const GATEWAY_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xbb];

/// A namespace for BPF_PROG_TEST_RUN's FIB lookups (it routes in the calling thread's
/// namespace), routed like a node: other nodes' pods and clients through a gateway whose
/// MAC is known.
fn node_netns() -> Netns {
    let ns = Netns::new("skx").unwrap();
    let mac = |m: [u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    // FIB lookups for forwarding need forwarding on (as on every node).
    let commands = [
        "sysctl -qw net.ipv4.conf.all.forwarding=1".to_string(),
        "ip link add up0 type veth peer name up1".into(),
        "ip link set up1 up".into(),
        format!("ip link set up0 address {} up", mac(NODE_MAC)),
        "ip addr add 198.51.100.20/24 dev up0".into(),
        format!(
            "ip neigh add 198.51.100.30 lladdr {} dev up0 nud permanent",
            mac(GATEWAY_MAC)
        ),
        "ip route add 10.244.20.0/24 via 198.51.100.30".into(),
        "ip route add 192.0.2.0/24 via 198.51.100.30".into(),
    ];
    for command in commands {
        ns.exec(&command.split(' ').collect::<Vec<_>>()).unwrap();
    }
    ns
}

#[test]
fn privileged_nodeport_xdp_snats_flows_to_a_remote_backend_and_reverses_their_replies() {
    let mut plane = plane();
    let ns = node_netns();

    let syn = tcp_frame(CLIENT, 42000, NODE, 30082, packets::TCP_SYN);
    let (verdict, out) = ns.run(|| xdp(&mut plane, &syn)).unwrap();
    assert_eq!(verdict, XDP_REDIRECT, "sent out of the route's interface");
    let seen = inspect(&out);
    assert_eq!(
        (seen.src, seen.dst, seen.dport),
        (NODE, REMOTE_POD, 8080),
        "DNAT and SNAT"
    );
    assert_eq!(&out[..6], &GATEWAY_MAC, "next hop's MAC");
    assert_eq!(&out[6..12], &NODE_MAC, "the interface's own MAC");
    assert_eq!(out[14 + 8], 63, "TTL decremented, as a router does");

    // The remote pod answers the node; XDP sends it back from the NodePort to the client.
    let reply = tcp_frame(
        REMOTE_POD,
        8080,
        NODE,
        seen.sport,
        packets::TCP_SYN | packets::TCP_ACK,
    );
    let (verdict, out) = ns.run(|| xdp(&mut plane, &reply)).unwrap();
    assert_eq!(verdict, XDP_REDIRECT);
    let back = inspect(&out);
    assert_eq!(
        (back.src, back.sport, back.dst, back.dport),
        (NODE, 30082, CLIENT, 42000)
    );

    // Without a route (the test's own namespace has none to this pod), the translated
    // packet goes to the stack, which answers as a router does, and is counted.
    let lost = tcp_frame(CLIENT, 42001, NODE, 30082, packets::TCP_SYN);
    let empty = Netns::new("skx").unwrap();
    empty
        .exec(&["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"])
        .unwrap();
    let (verdict, out) = empty.run(|| xdp(&mut plane, &lost)).unwrap();
    assert_eq!(verdict, XDP_PASS);
    let passed = inspect(&out);
    assert_eq!(
        (passed.src, passed.dst, passed.dport),
        (NODE, REMOTE_POD, 8080),
        "the stack gets the translated packet"
    );
    assert_eq!(stat(&plane, LbEvent::NoRoute), 1);
}

#[test]
fn privileged_nodeport_serves_real_connections_through_xdp_and_refuses_backendless_ports() {
    serves_real_connections_and_refuses_backendless_ports(UplinkHook::Xdp, UplinkMode::Native);
}

#[test]
fn privileged_nodeport_serves_real_connections_through_tc_ingress_and_refuses_backendless_ports() {
    serves_real_connections_and_refuses_backendless_ports(UplinkHook::Auto, UplinkMode::Tc);
}

/// A client namespace talks to NodePorts of a node namespace whose uplink runs the ingress
/// program at `hook` (a veth: `Auto` picks TC there).
fn serves_real_connections_and_refuses_backendless_ports(hook: UplinkHook, expected: UplinkMode) {
    require_root();
    let client = Netns::new("skoc").unwrap();
    let node = Netns::new("skon").unwrap();
    let (client_if, node_if) =
        veth_between(&client, "10.78.0.1/24", &node, "10.78.0.2/24").unwrap();
    // Resets are sent with XDP_TX: complete checksums in, an XDP program on the peer.
    client
        .run(|| disable_tx_checksum_offload(&client_if))
        .unwrap()
        .unwrap();
    for pod in LOCAL_PODS {
        node.exec(&["ip", "addr", "add", &format!("{pod}/32"), "dev", "lo"])
            .unwrap();
    }
    let _servers = NameServers::start(&node, &LOCAL_PODS, 8080, 5353).unwrap();
    let node_ip = Ipv4Addr::new(10, 78, 0, 2);
    let mut dataplane = skiff_tests::dataplane::load(node_ip).unwrap();
    let mode = node
        .run(|| dataplane.attach_uplink(&node_if, hook))
        .unwrap()
        .unwrap();
    assert_eq!(mode, expected);
    let mut maps = KernelLbMaps::take(&mut dataplane, 251).unwrap();
    let mut sync = ServiceSync::adopt(&maps, Maglev::new(251, 9).unwrap()).unwrap();
    client
        .run(|| {
            dataplane
                .pass_program()
                .unwrap()
                .attach(&client_if, aya::programs::XdpMode::Driver)
                .map(|_| ())
        })
        .unwrap()
        .unwrap();
    let desired: BTreeMap<_, _> = [
        (
            ServiceKey::new(node_ip.octets(), 30080, PROTO_TCP),
            external(local(8080, PROTO_TCP)),
        ),
        (
            ServiceKey::new(node_ip.octets(), 30081, PROTO_TCP),
            external(Vec::new()),
        ),
        (
            ServiceKey::new(node_ip.octets(), 30054, PROTO_UDP),
            external(Vec::new()),
        ),
    ]
    .into_iter()
    .collect();
    let (_, errors) = sync.apply(&mut maps, &desired);
    assert!(errors.is_empty(), "{errors:?}");

    // A NodePort without backends refuses at once (a reset from XDP), not after a timeout.
    let refused = client
        .exec(&[
            env!("CARGO_BIN_EXE_sock_probe"),
            "tcp",
            "10.78.0.2:30081",
            "3",
        ])
        .unwrap();
    assert_eq!(refused.lines().collect::<Vec<_>>(), vec!["err 111"; 3]);
    // Likewise for UDP: the ICMP port unreachable from XDP fails a connected socket at once
    // (111 = ECONNREFUSED; a black hole would time out with 11 = EAGAIN). XDP answers, not
    // the node's stack (which would also refuse, nothing listens there): it counts them.
    let before = stat_of(&dataplane, LbEvent::NoBackend);
    let refused = client
        .exec(&[
            env!("CARGO_BIN_EXE_sock_probe"),
            "udp-connected",
            "10.78.0.2:30054",
            "3",
        ])
        .unwrap();
    assert_eq!(refused.lines().collect::<Vec<_>>(), vec!["err 111"; 3]);
    assert_eq!(stat_of(&dataplane, LbEvent::NoBackend) - before, 3);

    // Nothing listens on 10.78.0.2:30080: only XDP's DNAT makes these connections work.
    let stdout = client
        .exec(&[
            env!("CARGO_BIN_EXE_sock_probe"),
            "tcp",
            "10.78.0.2:30080",
            "40",
        ])
        .unwrap();
    let mut replies: HashMap<String, usize> = HashMap::new();
    for line in stdout.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[0], "ok", "{line} (attached {mode:?})");
        assert_eq!(
            parts[1], "10.78.0.2:30080",
            "the client talks to the NodePort"
        );
        assert_eq!(
            parts[3], "10.78.0.1",
            "a local pod sees the client's own address"
        );
        *replies.entry(parts[2].to_string()).or_default() += 1;
    }
    assert_eq!(replies.values().sum::<usize>(), 40);
    assert_eq!(replies.len(), 2, "both pods served: {replies:?}");
    assert!(stat_of(&dataplane, LbEvent::ReverseTranslated) >= 40);
}

fn stat_of(dataplane: &Dataplane, event: LbEvent) -> u64 {
    skiff_tests::dataplane::lb_count(dataplane, event)
}

/// Plugs `ns` into the bridge `br0` of `switch` with a veth whose end in `ns` is `eth0`
/// with `cidr`; returns the switch-side interface name.
fn plug(switch: &Netns, ns: &Netns, cidr: &str) -> String {
    let port = skiff_tests::unique_name("sw");
    let status = std::process::Command::new("ip")
        .args([
            "link",
            "add",
            "eth0",
            "netns",
            ns.name(),
            "type",
            "veth",
            "peer",
            "name",
        ])
        .args([&port, "netns", switch.name()])
        .status()
        .unwrap();
    assert!(status.success(), "creating the veth for {}", ns.name());
    ns.exec(&["ip", "addr", "add", cidr, "dev", "eth0"])
        .unwrap();
    ns.exec(&["ip", "link", "set", "eth0", "up"]).unwrap();
    switch
        .exec(&["ip", "link", "set", &port, "master", "br0"])
        .unwrap();
    switch.exec(&["ip", "link", "set", &port, "up"]).unwrap();
    port
}

#[test]
fn privileged_nodeport_reaches_a_pod_on_another_node_through_snat_and_xdp_tx() {
    reaches_a_pod_on_another_node(UplinkHook::Xdp);
}

#[test]
fn privileged_nodeport_reaches_a_pod_on_another_node_through_snat_at_tc_resolving_its_neighbour() {
    reaches_a_pod_on_another_node(UplinkHook::Tc);
}

/// A client, node A (the NodePort, its ingress program at `hook`) and node B (the pod).
fn reaches_a_pod_on_another_node(hook: UplinkHook) {
    require_root();
    // client, node A (the NodePort) and node B (the pod) on one switched segment.
    let switch = Netns::new("skos").unwrap();
    switch
        .exec(&["ip", "link", "add", "br0", "type", "bridge"])
        .unwrap();
    switch.exec(&["ip", "link", "set", "br0", "up"]).unwrap();
    let client = Netns::new("skoc").unwrap();
    let node_a = Netns::new("skoa").unwrap();
    let node_b = Netns::new("skob").unwrap();
    plug(&switch, &client, "10.78.0.1/24");
    let port_a = plug(&switch, &node_a, "10.78.0.2/24");
    plug(&switch, &node_b, "10.78.0.3/24");
    node_a
        .exec(&["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"])
        .unwrap();
    node_a
        .exec(&["ip", "route", "add", "10.244.20.0/24", "via", "10.78.0.3"])
        .unwrap();
    node_b
        .exec(&["ip", "addr", "add", "10.244.20.5/32", "dev", "lo"])
        .unwrap();
    let _servers = NameServers::start(&node_b, &[REMOTE_POD], 8080, 5353).unwrap();
    let bulk = node_b
        .run(|| TcpListener::bind((REMOTE_POD, 8081)))
        .unwrap()
        .unwrap();
    let echo = std::thread::spawn(move || echo_one_connection(&bulk));
    if hook == UplinkHook::Xdp {
        // XDP rewrites checksums incrementally, which needs complete ones, as frames from a
        // real network have; veths would hand over partial (offloaded) ones. At TC the
        // offloads stay on: the kernel's helpers keep partial checksums right, and the
        // senders' GSO aggregates cross the veths whole.
        for ns in [&client, &node_b] {
            ns.run(|| disable_tx_checksum_offload("eth0"))
                .unwrap()
                .unwrap();
        }
        // XDP forwards only to resolved neighbours (bpf_fib_lookup gives no ARP); nodes that
        // talk to each other have them. Resolve node B's once, as that traffic would. TC
        // has the kernel resolve it (bpf_redirect_neigh): no help there.
        node_a
            .exec(&["ping", "-c", "1", "-W", "2", "10.78.0.3"])
            .unwrap();
    }

    let node_ip = Ipv4Addr::new(10, 78, 0, 2);
    let mut dataplane = Dataplane::load(&LoadOptions {
        pin_path: None,
        sizes: MapSizes {
            maglev_table_size: 251,
            maglev_tables: 16,
            ..MapSizes::default()
        },
        node_addr: Some(node_ip),
    })
    .unwrap();
    let mode = node_a
        .run(|| dataplane.attach_uplink("eth0", hook))
        .unwrap()
        .unwrap();
    // XDP_TX out of a veth needs an XDP program on its peer (see DESIGN.md); harmless for TC.
    switch
        .run(|| {
            dataplane
                .pass_program()
                .unwrap()
                .attach(&port_a, aya::programs::XdpMode::Driver)
                .map(|_| ())
        })
        .unwrap()
        .unwrap();
    let mut maps = KernelLbMaps::take(&mut dataplane, 251).unwrap();
    let mut sync = ServiceSync::adopt(&maps, Maglev::new(251, 9).unwrap()).unwrap();
    let desired: BTreeMap<_, _> = [
        (
            ServiceKey::new(node_ip.octets(), 30082, PROTO_TCP),
            external(vec![Backend::new(REMOTE_POD.octets(), 8080, PROTO_TCP, 0)]),
        ),
        (
            ServiceKey::new(node_ip.octets(), 30083, PROTO_TCP),
            external(vec![Backend::new(REMOTE_POD.octets(), 8081, PROTO_TCP, 0)]),
        ),
    ]
    .into_iter()
    .collect();
    let (_, errors) = sync.apply(&mut maps, &desired);
    assert!(errors.is_empty(), "{errors:?}");

    let stdout = client
        .exec(&[
            env!("CARGO_BIN_EXE_sock_probe"),
            "tcp",
            "10.78.0.2:30082",
            "10",
        ])
        .unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let stats: HashMap<_, _> = dataplane.lb_stats().unwrap().into_iter().collect();
    assert_eq!(
        lines,
        vec!["ok 10.78.0.2:30082 10.244.20.5 10.78.0.2"; 10],
        "attached {mode:?}; counters {stats:?}; node B's TCP counters: {}",
        node_b
            .exec(&["grep", "-A1", "Tcp:", "/proc/net/snmp"])
            .unwrap_or_default(),
    );

    // Bulk both ways through the NodePort: full-sized segments (and at TC, aggregates of
    // them) are forwarded and reverse-translated, none too big for the path.
    let sent = BULK;
    let echoed = client
        .run(|| echo_through((node_ip, 30083).into(), sent))
        .unwrap();
    let stats: HashMap<_, _> = dataplane.lb_stats().unwrap().into_iter().collect();
    assert_eq!(
        echoed.as_ref().ok(),
        Some(&sent),
        "{sent} bytes echoed through the NodePort, attached {mode:?}: {echoed:?}; counters {stats:?}"
    );
    assert_eq!(
        echo.join().unwrap().ok(),
        Some(sent),
        "the pod got every byte"
    );
    assert_eq!(
        stats.get(&LbEvent::FragNeeded).copied().unwrap_or(0),
        0,
        "{stats:?}"
    );
}

/// Bytes sent each way by the bulk check.
const BULK: usize = 8 << 20;

/// Accepts one connection and writes back everything it reads until the peer shuts down
/// its side; the byte count.
fn echo_one_connection(listener: &TcpListener) -> std::io::Result<usize> {
    let (mut stream, _) = listener.accept()?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = vec![0; 1 << 16];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        stream.write_all(&buf[..n])?;
        total += n;
    }
}

/// Sends `len` bytes to `target` (a writer thread) while reading the echo; the byte count
/// of the echo once the server closes.
fn echo_through(target: SocketAddr, len: usize) -> std::io::Result<usize> {
    let stream = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let chunk = vec![0x5a; 1 << 16];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            writer.write_all(&chunk[..n])?;
            left -= n;
        }
        writer.shutdown(Shutdown::Write)
    });
    let mut reader = stream;
    let mut buf = vec![0; 1 << 16];
    let mut total = 0;
    loop {
        match reader.read(&mut buf)? {
            0 => break,
            n => total += n,
        }
    }
    sender
        .join()
        .map_err(|_| std::io::Error::other("the sender panicked"))??;
    Ok(total)
}

/// A data plane as an agent runs it: maps and links pinned under `pins`, services written.
fn pinned_plane(
    node: &Netns,
    node_if: &str,
    pins: &PinDir,
    hook: UplinkHook,
) -> (Dataplane, UplinkMode) {
    let sizes = MapSizes {
        maglev_table_size: 251,
        maglev_tables: 16,
        ..MapSizes::default()
    };
    let mut dataplane = Dataplane::load(&LoadOptions {
        pin_path: Some(pins.path().to_path_buf()),
        sizes,
        node_addr: Some(Ipv4Addr::new(10, 78, 0, 2)),
    })
    .unwrap();
    let mode = node
        .run(|| dataplane.attach_uplink(node_if, hook))
        .unwrap()
        .unwrap();
    let mut maps = KernelLbMaps::take(&mut dataplane, 251).unwrap();
    let mut sync = ServiceSync::adopt(&maps, Maglev::new(251, 9).unwrap()).unwrap();
    let desired: BTreeMap<_, _> = [(
        ServiceKey::new([10, 78, 0, 2], 30080, PROTO_TCP),
        external(local(8080, PROTO_TCP)),
    )]
    .into_iter()
    .collect();
    let (_, errors) = sync.apply(&mut maps, &desired);
    assert!(errors.is_empty(), "{errors:?}");
    (dataplane, mode)
}

fn nodeport_answers(client: &Netns) -> Vec<String> {
    client
        .exec(&[
            env!("CARGO_BIN_EXE_sock_probe"),
            "tcp",
            "10.78.0.2:30080",
            "10",
        ])
        .unwrap()
        .lines()
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn privileged_pinned_uplink_programs_keep_forwarding_while_no_agent_runs_and_are_taken_over() {
    require_root();
    let client = Netns::new("skoc").unwrap();
    let node = Netns::new("skon").unwrap();
    let (_, node_if) = veth_between(&client, "10.78.0.1/24", &node, "10.78.0.2/24").unwrap();
    for pod in LOCAL_PODS {
        node.exec(&["ip", "addr", "add", &format!("{pod}/32"), "dev", "lo"])
            .unwrap();
    }
    let _servers = NameServers::start(&node, &LOCAL_PODS, 8080, 5353).unwrap();
    let pins = PinDir::new("skiffbpf").unwrap();
    let ok = vec!["ok 10.78.0.2:30080".to_string(); 10];

    let (first, mode) = pinned_plane(&node, &node_if, &pins, UplinkHook::Xdp);
    assert_ne!(mode, UplinkMode::Replaced);
    assert_eq!(nodeport_answers(&client), ok);

    // The agent exits: its pinned links and maps go on forwarding.
    drop(first);
    assert_eq!(nodeport_answers(&client), ok, "forwarding with no agent");

    // The next agent swaps its programs into the pinned links and adopts the maps.
    let (second, mode) = pinned_plane(&node, &node_if, &pins, UplinkHook::Xdp);
    assert_eq!(mode, UplinkMode::Replaced);
    assert_eq!(nodeport_answers(&client), ok);
    let links = std::fs::read_dir(pins.path().join("links"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        links,
        ["tc_uplink_egress", "xdp_uplink"]
            .map(String::from)
            .into_iter()
            .collect(),
        "one link per hook, the old TC link released"
    );
    let xdp_progs = node.exec(&["ip", "link", "show", &node_if]).unwrap();
    assert!(xdp_progs.contains("xdp"), "{xdp_progs}");

    // skiffctl reads the same pinned maps on the node.
    let skiffctl = |view: &str| {
        let output = std::process::Command::new(workspace_binary("skiffctl"))
            .args(["dataplane", view, "--maglev-table-size", "251", "--bpffs"])
            .arg(pins.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let services = skiffctl("services");
    assert!(
        services.contains("10.78.0.2:30080/tcp")
            && services.contains("10.244.9.10:8080/tcp (local), 10.244.9.11:8080/tcp (local)"),
        "{services}"
    );
    let flows = skiffctl("conntrack");
    assert!(
        flows.contains("10.78.0.1:") && flows.contains("from 10.78.0.2:30080/tcp"),
        "{flows}"
    );
    // The 30 connections so far, each counted once for the backend it went to, across
    // the agents (the counters are pinned), with every forwarded packet.
    let backends = skiffctl("backends");
    let counted: Vec<[u64; 3]> = backends
        .lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            [3, 4, 5].map(|i| fields[i].parse().unwrap())
        })
        .collect();
    assert_eq!(counted.len(), 2, "{backends}");
    let flows: u64 = counted.iter().map(|c| c[0]).sum();
    assert_eq!(flows, 30, "{backends}");
    for [flows, packets, bytes] in counted {
        // A connection sends at least its SYN, an ACK and a FIN to the backend.
        assert!(packets >= 3 * flows && bytes > 60 * packets, "{backends}");
    }

    // An agent configured for TC ingress takes over from the XDP one: its TC link comes
    // first, then the XDP link goes; forwarding goes on throughout.
    let (third, mode) = pinned_plane(&node, &node_if, &pins, UplinkHook::Tc);
    assert_eq!(mode, UplinkMode::Tc);
    drop(second);
    assert_eq!(nodeport_answers(&client), ok, "forwarding at TC ingress");
    let links = std::fs::read_dir(pins.path().join("links"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        links,
        ["tc_uplink_egress", "tc_uplink_ingress"]
            .map(String::from)
            .into_iter()
            .collect(),
        "the XDP link released"
    );
    let shown = node.exec(&["ip", "link", "show", &node_if]).unwrap();
    assert!(!shown.contains("xdp"), "{shown}");
    drop(third);
}
