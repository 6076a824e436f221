//! Privileged tests of socket load balancing: the cgroup programs attached to a test cgroup,
//! real TCP and UDP backends in a test network namespace, and a client process placed in
//! that cgroup and namespace that connects to service addresses nobody listens on.

use std::{
    collections::{BTreeMap, HashMap},
    net::{Ipv4Addr, SocketAddr},
};

use skiff_agent::dataplane::{
    Dataplane, LoadOptions, MapSizes,
    lb_maps::KernelLbMaps,
    maglev::Maglev,
    services::{DesiredService, ServiceSync},
};
use skiff_ebpf_common::{
    Backend, LbEvent, ServiceKey, SockRevKey, SockRevValue,
    service::{PROTO_TCP, PROTO_UDP, SERVICE_AFFINITY},
};
use skiff_tests::{
    backends::{self, NameServers},
    cgroup::{TestCgroup, UNIFIED, require_cgroup2},
    netns::Netns,
    require_root,
};

const SERVICE: [u8; 4] = [10, 96, 7, 10];
const EMPTY_SERVICE: [u8; 4] = [10, 96, 7, 11];
const STICKY_SERVICE: [u8; 4] = [10, 96, 7, 12];
const BACKENDS: [[u8; 4]; 3] = [[10, 250, 0, 1], [10, 250, 0, 2], [10, 250, 0, 3]];

fn backends(port: u16, proto: u8) -> Vec<Backend> {
    BACKENDS
        .iter()
        .map(|o| Backend::new(*o, port, proto, 0))
        .collect()
}

/// A namespace with the backend addresses on its loopback, the programs attached to a test
/// cgroup, and the services written through `ServiceSync`.
struct Setup {
    ns: Netns,
    cgroup: TestCgroup,
    dataplane: Dataplane,
    _servers: NameServers,
}

fn setup() -> Setup {
    require_root();
    require_cgroup2(std::path::Path::new(UNIFIED)).unwrap();
    let ns = Netns::new("sks").unwrap();
    for octets in BACKENDS {
        let [a, b, c, d] = octets;
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{a}.{b}.{c}.{d}/32"),
            "dev",
            "lo",
        ])
        .unwrap();
    }
    let addresses: Vec<Ipv4Addr> = BACKENDS.iter().map(|o| Ipv4Addr::from(*o)).collect();
    let servers = NameServers::start(&ns, &addresses, 8080, 5353).unwrap();
    let cgroup = TestCgroup::new("skiffcg").unwrap();
    let sizes = MapSizes {
        maglev_table_size: 251,
        maglev_tables: 16,
        ..MapSizes::default()
    };
    let mut dataplane = Dataplane::load(&LoadOptions {
        pin_path: None,
        sizes,
        node_addr: None,
    })
    .unwrap();
    dataplane.attach_socket_lb(cgroup.path()).unwrap();
    let mut maps = KernelLbMaps::take(&mut dataplane, sizes.maglev_table_size).unwrap();
    let mut sync = ServiceSync::adopt(&maps, Maglev::new(251, 7).unwrap()).unwrap();
    let desired: BTreeMap<ServiceKey, DesiredService> = [
        (
            ServiceKey::new(SERVICE, 80, PROTO_TCP),
            DesiredService {
                backends: backends(8080, PROTO_TCP),
                ..DesiredService::default()
            },
        ),
        (
            ServiceKey::new(SERVICE, 53, PROTO_UDP),
            DesiredService {
                backends: backends(5353, PROTO_UDP),
                ..DesiredService::default()
            },
        ),
        (
            ServiceKey::new(EMPTY_SERVICE, 80, PROTO_TCP),
            DesiredService::default(),
        ),
        (
            ServiceKey::new(EMPTY_SERVICE, 53, PROTO_UDP),
            DesiredService::default(),
        ),
        (
            ServiceKey::new(STICKY_SERVICE, 80, PROTO_TCP),
            DesiredService {
                backends: backends(8080, PROTO_TCP),
                flags: SERVICE_AFFINITY,
                affinity_timeout_secs: 10800,
            },
        ),
    ]
    .into_iter()
    .collect();
    let (report, errors) = sync.apply(&mut maps, &desired);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(report.services_changed, 5);
    Setup {
        ns,
        cgroup,
        dataplane,
        _servers: servers,
    }
}

/// Runs the probe in the test cgroup (or outside it, in the namespace only) and returns
/// its lines.
fn probe(setup: &Setup, in_cgroup: bool, mode: &str, target: &str, count: usize) -> Vec<String> {
    let binary = env!("CARGO_BIN_EXE_sock_probe");
    if in_cgroup {
        backends::probe(&setup.cgroup, &setup.ns, binary, mode, target, count).unwrap()
    } else {
        let count = count.to_string();
        let stdout = setup.ns.exec(&[binary, mode, target, &count]).unwrap();
        stdout.lines().map(str::to_string).collect()
    }
}

/// `ok <addr> <reply>` lines: the shown address and how many replies each backend gave.
fn tally(lines: &[String]) -> (Vec<SocketAddr>, HashMap<String, usize>) {
    let mut shown = Vec::new();
    let mut replies = HashMap::new();
    for line in lines {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[0], "ok", "every attempt succeeds: {line}");
        shown.push(parts[1].parse().unwrap());
        *replies.entry(parts[2].to_string()).or_default() += 1;
    }
    (shown, replies)
}

#[test]
fn privileged_socket_lb_spreads_tcp_connections_over_backends_and_shows_the_service_as_peer() {
    let setup = setup();
    let lines = probe(&setup, true, "tcp", "10.96.7.10:80", 60);
    assert_eq!(lines.len(), 60);
    let (peers, replies) = tally(&lines);
    let service: SocketAddr = "10.96.7.10:80".parse().unwrap();
    assert!(
        peers.iter().all(|p| *p == service),
        "getpeername shows the service: {peers:?}"
    );
    assert_eq!(replies.len(), 3, "all three backends answered: {replies:?}");
    assert!(replies.values().all(|&n| n >= 5), "spread: {replies:?}");
    let stats: HashMap<_, _> = setup.dataplane.lb_stats().unwrap().into_iter().collect();
    assert!(stats[&LbEvent::Translated] >= 60, "{stats:?}");
    assert!(stats[&LbEvent::ReverseTranslated] >= 60, "{stats:?}");
}

#[test]
fn privileged_socket_lb_leaves_processes_outside_the_cgroup_alone() {
    let setup = setup();
    // No route to the service range exists in the namespace: untranslated, it fails.
    let lines = probe(&setup, false, "tcp", "10.96.7.10:80", 1);
    assert_eq!(lines, [format!("err {}", libc::ENETUNREACH)]);
}

#[test]
fn privileged_socket_lb_balances_connected_and_unconnected_udp_and_replies_come_from_the_service() {
    let setup = setup();
    let service: SocketAddr = "10.96.7.10:53".parse().unwrap();
    for mode in ["udp", "udp-connected"] {
        let lines = probe(&setup, true, mode, "10.96.7.10:53", 30);
        let (sources, replies) = tally(&lines);
        assert!(sources.iter().all(|s| *s == service), "{mode}: {sources:?}");
        assert!(
            replies.len() >= 2,
            "{mode} spread over backends: {replies:?}"
        );
        assert!(
            replies.keys().all(|r| r.starts_with("10.250.0.")),
            "{mode}: {replies:?}"
        );
    }
}

/// How many reverse entries (socket, backend) the socket load balancer holds.
fn reverse_entries(setup: &mut Setup) -> usize {
    let map = setup.dataplane.take_map("SOCK_REV").unwrap();
    aya::maps::HashMap::<_, SockRevKey, SockRevValue>::try_from(map)
        .unwrap()
        .keys()
        .count()
}

#[test]
fn privileged_socket_lb_forgets_a_connected_socket_when_it_closes_and_an_unconnected_one_at_need() {
    // TCP and connected UDP: one entry per socket while it is open, none once closed.
    for mode in ["tcp", "udp-connected"] {
        let mut setup = setup();
        let target = if mode == "tcp" {
            "10.96.7.10:80"
        } else {
            "10.96.7.10:53"
        };
        let lines = probe(&setup, true, mode, target, 20);
        assert_eq!(tally(&lines).0.len(), 20, "{mode}: {lines:?}");
        assert_eq!(
            reverse_entries(&mut setup),
            0,
            "{mode}: every socket closed"
        );
    }
    // An unconnected UDP socket's entries (one per backend it sent to) stay for the LRU.
    let mut setup = setup();
    let lines = probe(&setup, true, "udp", "10.96.7.10:53", 20);
    assert_eq!(tally(&lines).0.len(), 20);
    assert!(reverse_entries(&mut setup) > 0, "left to the LRU");
}

#[test]
fn privileged_socket_lb_refuses_connections_to_a_service_without_backends() {
    let setup = setup();
    let lines = probe(&setup, true, "tcp", "10.96.7.11:80", 3);
    assert_eq!(lines, vec![format!("err {}", libc::ECONNREFUSED); 3]);
    let lines = probe(&setup, true, "udp", "10.96.7.11:53", 1);
    assert_eq!(lines, [format!("err {}", libc::ECONNREFUSED)]);
    let stats: HashMap<_, _> = setup.dataplane.lb_stats().unwrap().into_iter().collect();
    assert_eq!(stats[&LbEvent::NoBackend], 4);
}

#[test]
fn privileged_socket_lb_client_ip_affinity_sticks_to_one_backend() {
    let setup = setup();
    let lines = probe(&setup, true, "tcp", "10.96.7.12:80", 20);
    let (_, replies) = tally(&lines);
    assert_eq!(
        replies.len(),
        1,
        "every connection went to one backend: {replies:?}"
    );
    let stats: HashMap<_, _> = setup.dataplane.lb_stats().unwrap().into_iter().collect();
    assert_eq!(stats[&LbEvent::AffinityHit], 19);
}
