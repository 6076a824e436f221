//! Privileged tests of the uplink XDP program: attached to a veth in a test network
//! namespace with real traffic, and run by `BPF_PROG_TEST_RUN` on crafted frames.

use std::{net::Ipv4Addr, time::Duration};

use aya::programs::{TestRun, TestRunOptions};
use skiff_agent::dataplane::{Dataplane, LoadOptions, UplinkHook};
use skiff_ebpf_common::{PacketClass, PacketCounter};
use skiff_tests::{
    netns::{Netns, veth_between},
    packets::{self, Ipv4},
    require_root,
    wait::wait_for,
};

const XDP_PASS: u32 = 2;

fn counter(dataplane: &Dataplane, class: PacketClass) -> PacketCounter {
    dataplane
        .uplink_stats()
        .expect("reading UPLINK_STATS")
        .into_iter()
        .find(|(c, _)| *c == class)
        .map(|(_, counter)| counter)
        .expect("every class has a counter")
}

#[test]
fn privileged_uplink_xdp_on_a_veth_counts_real_pings() {
    require_root();
    let client = Netns::new("skc").unwrap();
    let node = Netns::new("skn").unwrap();
    let (_, node_if) = veth_between(&client, "10.77.0.1/24", &node, "10.77.0.2/24").unwrap();

    let mut dataplane = Dataplane::load(&LoadOptions::default()).unwrap();
    let mode = node
        .run(|| dataplane.attach_uplink(&node_if, UplinkHook::Xdp))
        .unwrap()
        .unwrap();
    eprintln!(
        "xdp_uplink attached to {node_if} in {} ({mode:?})",
        node.name()
    );

    let before = counter(&dataplane, PacketClass::Icmp);
    client
        .exec(&["ping", "-c", "5", "-i", "0.2", "-W", "2", "10.77.0.2"])
        .expect("pings through the XDP program are answered");
    // Each echo request crosses the node's veth once; replies leave it (not XDP's path).
    let after = wait_for(
        "5 ICMP frames counted",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || {
            let now = counter(&dataplane, PacketClass::Icmp);
            if now.packets >= before.packets + 5 {
                Ok(now)
            } else {
                Err(format!("{now:?}"))
            }
        },
    )
    .unwrap();
    assert_eq!(
        after.packets - before.packets,
        5,
        "exactly the 5 echo requests"
    );
    // 14 (Ethernet) + 20 (IPv4) + 8 (ICMP) + 56 (ping's default payload) per request.
    assert_eq!(after.bytes - before.bytes, 5 * 98);
}

/// Runs the uplink program `repeat` times on `frame` and returns its verdict.
fn test_run(dataplane: &mut Dataplane, frame: &[u8], repeat: u32) -> u32 {
    let program = dataplane.uplink_program().unwrap();
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::new()
        })
        .expect("BPF_PROG_TEST_RUN");
    result.return_value
}

fn addrs() -> (Ipv4Addr, Ipv4Addr) {
    (
        Ipv4Addr::new(192, 0, 2, 10),
        Ipv4Addr::new(198, 51, 100, 20),
    )
}

#[test]
fn privileged_uplink_xdp_classifies_crafted_frames_by_protocol() {
    require_root();
    let mut dataplane = Dataplane::load(&LoadOptions::default()).unwrap();
    let (src, dst) = addrs();

    let tcp_ip = Ipv4::new(src, dst, packets::IPPROTO_TCP);
    let tcp = packets::ethernet(
        packets::ETH_P_IP,
        &tcp_ip.packet(&packets::tcp(&tcp_ip, 40000, 30080, packets::TCP_SYN, b"")),
    );
    let udp_ip = Ipv4::new(src, dst, packets::IPPROTO_UDP);
    let udp = packets::ethernet(
        packets::ETH_P_IP,
        &udp_ip.packet(&packets::udp(&udp_ip, 5353, 53, b"query")),
    );
    let icmp_ip = Ipv4::new(src, dst, packets::IPPROTO_ICMP);
    let icmp = packets::ethernet(
        packets::ETH_P_IP,
        &icmp_ip.packet(&packets::icmp_echo(1, 1)),
    );
    let gre_ip = Ipv4::new(src, dst, packets::IPPROTO_GRE);
    let gre = packets::ethernet(packets::ETH_P_IP, &gre_ip.packet(&[0; 8]));
    let arp = packets::ethernet(packets::ETH_P_ARP, &[0; 28]);

    let cases = [
        (&tcp, PacketClass::Tcp, 1000),
        (&udp, PacketClass::Udp, 10),
        (&icmp, PacketClass::Icmp, 3),
        (&gre, PacketClass::OtherIpv4, 2),
        (&arp, PacketClass::NonIpv4, 4),
    ];
    for (frame, class, repeat) in cases {
        let before = counter(&dataplane, class);
        assert_eq!(
            test_run(&mut dataplane, frame, repeat),
            XDP_PASS,
            "{class:?}"
        );
        let after = counter(&dataplane, class);
        assert_eq!(
            after.packets - before.packets,
            u64::from(repeat),
            "{class:?} packets"
        );
        assert_eq!(
            after.bytes - before.bytes,
            u64::from(repeat) * frame.len() as u64,
            "{class:?} bytes"
        );
    }
}

#[test]
fn privileged_uplink_xdp_reads_past_ip_options_and_counts_later_fragments_apart() {
    require_root();
    let mut dataplane = Dataplane::load(&LoadOptions::default()).unwrap();
    let (src, dst) = addrs();

    // 8 bytes of options (two NOPs, then end of list) push TCP to offset 14 + 28.
    let mut with_options = Ipv4::new(src, dst, packets::IPPROTO_TCP);
    with_options.options = vec![1, 1, 0, 0, 0, 0, 0, 0];
    let segment = packets::tcp(&with_options, 40000, 80, packets::TCP_SYN, b"");
    let frame = packets::ethernet(packets::ETH_P_IP, &with_options.packet(&segment));
    let before = counter(&dataplane, PacketClass::Tcp);
    assert_eq!(test_run(&mut dataplane, &frame, 1), XDP_PASS);
    assert_eq!(
        counter(&dataplane, PacketClass::Tcp).packets,
        before.packets + 1
    );

    // A later fragment carries no TCP header, whatever its first bytes look like.
    let mut fragment = Ipv4::new(src, dst, packets::IPPROTO_TCP);
    fragment.fragment_offset = 185;
    let frame = packets::ethernet(packets::ETH_P_IP, &fragment.packet(&[0xab; 40]));
    assert_eq!(test_run(&mut dataplane, &frame, 1), XDP_PASS);
    assert_eq!(counter(&dataplane, PacketClass::Fragment).packets, 1);
}

#[test]
fn privileged_uplink_xdp_passes_truncated_and_malformed_frames_without_reading_past_them() {
    require_root();
    let mut dataplane = Dataplane::load(&LoadOptions::default()).unwrap();
    let (src, dst) = addrs();
    let ip = Ipv4::new(src, dst, packets::IPPROTO_TCP);
    let whole = packets::ethernet(
        packets::ETH_P_IP,
        &ip.packet(&packets::tcp(&ip, 1, 2, packets::TCP_SYN, b"")),
    );

    let mut malformed = Vec::new();
    // Cut inside the IPv4 header, and inside the TCP header.
    malformed.push(whole[..14 + 10].to_vec());
    malformed.push(whole[..14 + 20 + 12].to_vec());
    // IHL of 4 (16 bytes): shorter than the fixed header.
    let mut short_ihl = whole.clone();
    short_ihl[14] = 0x44;
    malformed.push(short_ihl);
    // IHL of 15 (60 bytes) on a frame that ends before the options would.
    let mut long_ihl = whole.clone();
    long_ihl[14] = 0x4f;
    malformed.push(long_ihl);
    // Version 6 in an IPv4 EtherType.
    let mut wrong_version = whole.clone();
    wrong_version[14] = 0x65;
    malformed.push(wrong_version);

    for (i, frame) in malformed.iter().enumerate() {
        let before = counter(&dataplane, PacketClass::Malformed);
        assert_eq!(test_run(&mut dataplane, frame, 1), XDP_PASS, "frame {i}");
        assert_eq!(
            counter(&dataplane, PacketClass::Malformed).packets,
            before.packets + 1,
            "frame {i} ({} bytes) counted as malformed",
            frame.len()
        );
    }
    assert_eq!(counter(&dataplane, PacketClass::Tcp).packets, 0);
}
