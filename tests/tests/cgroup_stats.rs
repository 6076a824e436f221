//! Privileged tests of the cgroup_skb traffic counters: run by `BPF_PROG_TEST_RUN` on
//! crafted (and truncated) packets, and attached to a test cgroup while a process in it
//! pings through a veth between two test network namespaces.

use std::{os::unix::fs::MetadataExt, path::Path, process::Command};

use aya::programs::{TestRun, TestRunOptions};
use skiff_agent::dataplane::{Dataplane, LoadOptions};
use skiff_ebpf_common::CgroupNetCounters;
use skiff_tests::{
    cgroup::{TestCgroup, UNIFIED, require_cgroup2},
    netns::{Netns, veth_between},
    packets::{self, Ipv4},
    require_root,
};

const INGRESS: &str = "cgroup_skb_ingress";
const EGRESS: &str = "cgroup_skb_egress";
/// What a cgroup_skb program returns to allow a packet.
const ALLOW: u32 = 1;
/// `offsetof(struct __sk_buff, ifindex)`: the context field test runs may set.
const SKB_IFINDEX_OFFSET: usize = 40;

/// The cgroup v2 id of this process's cgroup: the inode of its unified directory (what
/// `bpf_skb_cgroup_id` reports for the socket a test run makes for the packet).
fn own_cgroup_id() -> u64 {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("this process is in the unified hierarchy");
    std::fs::metadata(Path::new(UNIFIED).join(path.trim_start_matches('/')))
        .unwrap()
        .ino()
}

fn counters(dataplane: &Dataplane, cgroup_id: u64) -> CgroupNetCounters {
    dataplane
        .cgroup_net_stats()
        .expect("reading CGROUP_NET_STATS")
        .get(&cgroup_id)
        .copied()
        .unwrap_or_default()
}

/// Runs `program` `repeat` times on `frame` as if it crossed interface `ifindex` (0: the
/// loopback device) and returns its verdict.
fn run(
    dataplane: &mut Dataplane,
    program: &'static str,
    frame: &[u8],
    ifindex: u32,
    repeat: u32,
) -> u32 {
    let mut ctx = [0u8; SKB_IFINDEX_OFFSET + 4];
    ctx[SKB_IFINDEX_OFFSET..].copy_from_slice(&ifindex.to_ne_bytes());
    dataplane
        .cgroup_skb_program(program)
        .unwrap()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: (ifindex != 0).then_some(&ctx[..]),
            repeat,
            ..TestRunOptions::new()
        })
        .expect("BPF_PROG_TEST_RUN")
        .return_value
}

/// A namespace with a veth in it, and that veth's ifindex there.
fn namespace_with_interface() -> (Netns, Netns, u32) {
    let ns = Netns::new("skcs").unwrap();
    let peer = Netns::new("skcp").unwrap();
    let (ifname, _) = veth_between(&ns, "10.78.0.1/24", &peer, "10.78.0.2/24").unwrap();
    let index = ns
        .exec(&["cat", &format!("/sys/class/net/{ifname}/ifindex")])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (ns, peer, index)
}

fn udp_frame(payload: &[u8]) -> Vec<u8> {
    let ip = Ipv4::new(
        "10.78.0.1".parse().unwrap(),
        "10.78.0.2".parse().unwrap(),
        packets::IPPROTO_UDP,
    );
    packets::ethernet(
        packets::ETH_P_IP,
        &ip.packet(&packets::udp(&ip, 40000, 53, payload)),
    )
}

#[test]
fn privileged_cgroup_skb_counts_crafted_packets_under_the_sockets_cgroup_and_allows_them() {
    require_root();
    require_cgroup2(Path::new(UNIFIED)).unwrap();
    let (ns, _peer, ifindex) = namespace_with_interface();
    let mut dataplane = Dataplane::load(&LoadOptions::default()).unwrap();
    let cgroup_id = own_cgroup_id();
    let frame = udp_frame(b"twelve bytes");
    // The programs see the packet from its IP header on.
    let ip_len = (frame.len() - 14) as u64;

    let (rx_verdict, tx_verdict) = ns
        .run(|| {
            (
                run(&mut dataplane, INGRESS, &frame, ifindex, 7),
                run(&mut dataplane, EGRESS, &frame, ifindex, 3),
            )
        })
        .unwrap();
    assert_eq!((rx_verdict, tx_verdict), (ALLOW, ALLOW));
    assert_eq!(
        counters(&dataplane, cgroup_id),
        CgroupNetCounters {
            rx_packets: 7,
            rx_bytes: 7 * ip_len,
            tx_packets: 3,
            tx_bytes: 3 * ip_len,
        }
    );
    let ids: Vec<u64> = dataplane.cgroup_net_stats().unwrap().into_keys().collect();
    assert_eq!(ids, vec![cgroup_id], "only this process's cgroup counted");
}

#[test]
fn privileged_cgroup_skb_allows_and_counts_truncated_packets_without_reading_past_them() {
    require_root();
    let (ns, _peer, ifindex) = namespace_with_interface();
    let mut dataplane = Dataplane::load(&LoadOptions::default()).unwrap();
    let cgroup_id = own_cgroup_id();
    let full = udp_frame(b"payload");
    // An IPv4 header with no UDP header, a UDP header cut in half, a payload cut short of
    // the IP total length, and a one-byte non-IP frame. (The kernel refuses test runs of
    // IPv4 frames shorter than an IPv4 header, so nothing shorter can reach the program.)
    let runt = packets::ethernet(packets::ETH_P_ARP, &[0]);
    let truncated: [&[u8]; 4] = [&full[..34], &full[..38], &full[..full.len() - 3], &runt];
    let verdicts = ns
        .run(|| {
            truncated
                .iter()
                .flat_map(|frame| {
                    [
                        run(&mut dataplane, INGRESS, frame, ifindex, 1),
                        run(&mut dataplane, EGRESS, frame, ifindex, 1),
                    ]
                })
                .collect::<Vec<_>>()
        })
        .unwrap();
    assert_eq!(verdicts, vec![ALLOW; 8]);
    let bytes: u64 = truncated.iter().map(|f| (f.len() - 14) as u64).sum();
    assert_eq!(
        counters(&dataplane, cgroup_id),
        CgroupNetCounters {
            rx_packets: 4,
            rx_bytes: bytes,
            tx_packets: 4,
            tx_bytes: bytes,
        }
    );
}

#[test]
fn privileged_cgroup_skb_leaves_loopback_traffic_uncounted() {
    require_root();
    let mut dataplane = Dataplane::load(&LoadOptions::default()).unwrap();
    let frame = udp_frame(b"local");
    // Without a context the test run's packet crosses the loopback device.
    assert_eq!(run(&mut dataplane, INGRESS, &frame, 0, 5), ALLOW);
    assert_eq!(run(&mut dataplane, EGRESS, &frame, 0, 5), ALLOW);
    assert!(dataplane.cgroup_net_stats().unwrap().is_empty());
}

#[test]
fn privileged_cgroup_skb_on_a_cgroup_counts_exactly_the_pings_of_a_process_inside_it() {
    require_root();
    require_cgroup2(Path::new(UNIFIED)).unwrap();
    let client = Netns::new("skcc").unwrap();
    let server = Netns::new("skcv").unwrap();
    veth_between(&client, "10.79.0.1/24", &server, "10.79.0.2/24").unwrap();
    let cgroup = TestCgroup::new("skiffstats").unwrap();
    let mut dataplane = Dataplane::load(&LoadOptions::default()).unwrap();
    dataplane.attach_cgroup_stats(cgroup.path()).unwrap();
    let cgroup_id = std::fs::metadata(cgroup.path()).unwrap().ino();

    // 5 echo requests and 5 replies of 20 (IPv4) + 8 (ICMP) + 56 (payload) bytes.
    let output = cgroup
        .output_in(
            &client,
            Command::new("ping").args(["-n", "-c", "5", "-i", "0.2", "-W", "2", "10.79.0.2"]),
        )
        .unwrap();
    assert!(
        output.status.success(),
        "ping failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    // Packets of other processes (e.g. the server namespace's replies to ARP) are not
    // sockets of this cgroup and stay out.
    assert_eq!(
        counters(&dataplane, cgroup_id),
        CgroupNetCounters {
            rx_packets: 5,
            rx_bytes: 5 * 84,
            tx_packets: 5,
            tx_bytes: 5 * 84,
        }
    );
    // The programs are gone with the data plane; the cgroup can then be removed.
    drop(dataplane);
}
