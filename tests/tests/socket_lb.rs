//! Privileged tests of socket load balancing: the cgroup programs attached to a test cgroup,
//! real TCP and UDP backends in a test network namespace, and a client process placed in
//! that cgroup and namespace that connects to service addresses nobody listens on.

use std::{
    collections::{BTreeMap, HashMap},
    io::Write,
    net::{SocketAddr, TcpListener, UdpSocket},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use skiff_agent::dataplane::{
    Dataplane, LoadOptions, MapSizes,
    lb_maps::KernelLbMaps,
    maglev::Maglev,
    services::{DesiredService, ServiceSync},
};
use skiff_ebpf_common::{
    Backend, LbEvent, ServiceKey,
    service::{PROTO_TCP, PROTO_UDP, SERVICE_AFFINITY},
};
use skiff_tests::{
    cgroup::{TestCgroup, UNIFIED, require_cgroup2},
    netns::Netns,
    require_root,
};

const SERVICE: [u8; 4] = [10, 96, 7, 10];
const EMPTY_SERVICE: [u8; 4] = [10, 96, 7, 11];
const STICKY_SERVICE: [u8; 4] = [10, 96, 7, 12];
const BACKENDS: [[u8; 4]; 3] = [[10, 250, 0, 1], [10, 250, 0, 2], [10, 250, 0, 3]];

/// TCP and UDP servers in the test namespace that answer with their own name; stopped and
/// joined on drop.
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Servers {
    fn start(ns: &Netns, tcp_port: u16, udp_port: u16) -> Self {
        let sockets = ns
            .run(|| {
                BACKENDS
                    .iter()
                    .map(|octets| {
                        let tcp = TcpListener::bind((std::net::Ipv4Addr::from(*octets), tcp_port))
                            .expect("bind TCP");
                        let udp = UdpSocket::bind((std::net::Ipv4Addr::from(*octets), udp_port))
                            .expect("bind UDP");
                        (tcp, udp)
                    })
                    .collect::<Vec<_>>()
            })
            .expect("entering the test namespace");
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (tcp, udp) in sockets {
            let name = tcp.local_addr().unwrap().ip().to_string();
            tcp.set_nonblocking(true).unwrap();
            let (stop_tcp, tcp_name) = (stop.clone(), name.clone());
            threads.push(std::thread::spawn(move || {
                while !stop_tcp.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((mut conn, _)) => {
                            let _ = conn.write_all(tcp_name.as_bytes());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            }));
            udp.set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let stop_udp = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !stop_udp.load(Ordering::Relaxed) {
                    if let Ok((_, from)) = udp.recv_from(&mut buf) {
                        let _ = udp.send_to(name.as_bytes(), from);
                    }
                }
            }));
        }
        Self { stop, threads }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.drain(..).for_each(|t| {
            let _ = t.join();
        });
    }
}

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
    _servers: Servers,
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
    let servers = Servers::start(&ns, 8080, 5353);
    let cgroup = TestCgroup::new("skiffcg").unwrap();
    let sizes = MapSizes {
        maglev_table_size: 251,
        maglev_tables: 16,
        ..MapSizes::default()
    };
    let mut dataplane = Dataplane::load(&LoadOptions {
        pin_path: None,
        sizes,
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
    let mut command = Command::new(env!("CARGO_BIN_EXE_sock_probe"));
    command.args([mode, target, &count.to_string()]);
    let output = if in_cgroup {
        setup.cgroup.output_in(&setup.ns, &mut command).unwrap()
    } else {
        let mut argv = vec![env!("CARGO_BIN_EXE_sock_probe"), mode, target];
        let count = count.to_string();
        argv.push(&count);
        let stdout = setup.ns.exec(&argv).unwrap();
        return stdout.lines().map(str::to_string).collect();
    };
    assert!(
        output.status.success(),
        "sock_probe failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
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
